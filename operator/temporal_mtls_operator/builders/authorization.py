"""The authorization policy of a cluster (pure): grants -> the ConfigMap that only frontend pods mount.

Our server build (server/) reads the file, maps each client's verified leaf to Temporal claims (the union of every
grant whose ``match`` fits) and lets Temporal's default authorizer decide; it reloads the file when it changes, so
a change of permissions needs no restart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from .. import certs
from ..models.authorization import CertificateFilter, Permissions, SystemRole
from ..models.cluster import TemporalClusterSpec
from ..sources.base import ClusterIdentity
from .common import meta

POLICY_KEY = "policy.json"
POLICY_DIR = "/etc/temporal/authorization"
POLICY_FILE = f"{POLICY_DIR}/{POLICY_KEY}"
POLICY_ENV = "TEMPORAL_MTLS_AUTHORIZATION_POLICY"  # read by server/: authorization is on when it names a file


@dataclass(frozen=True)
class Grant:
    """Who (a certificate match the server evaluates) may do what (a system role, roles per namespace)."""
    name: str
    match: dict[str, str]
    system: str = SystemRole.NONE.value
    namespaces: dict[str, str] = field(default_factory=dict)

    def as_policy(self) -> dict:
        entry: dict = {"name": self.name, "match": self.match}
        if self.system != SystemRole.NONE.value:
            entry["system"] = self.system
        if self.namespaces:
            entry["namespaces"] = dict(sorted(self.namespaces.items()))
        return entry


def certificate_match(cert_pem: bytes, identity: str) -> dict[str, str]:
    """How the server recognises this certificate: the identity URI when the operator issued it (renewals keep
    it), else the leaf's SHA-256 fingerprint (a Key Vault or brought certificate: exactly that one)."""
    info = certs.describe(certs.load_certificates(cert_pem)[0])
    return {"uri": identity} if identity in info.uris else {"sha256": info.sha256}


def client_grant(kind_name: str, match: dict[str, str], permissions: Permissions) -> Grant:
    return Grant(kind_name, match, permissions.system.value, {g.name: g.role.value for g in permissions.namespaces})


def filter_grant(kind_name: str, certificate_filter: CertificateFilter, **roles) -> Grant:
    return Grant(kind_name, certificate_filter.match(), **roles)


def policy_document(grants: list[Grant]) -> str:
    """Stable text (grants sorted by name): an unchanged policy applies as a no-op."""
    return json.dumps({"version": 1, "grants": [g.as_policy() for g in sorted(grants, key=lambda g: g.name)]},
                      indent=1, sort_keys=False) + "\n"


def policy_config_map(cluster: ClusterIdentity, grants: list[Grant]) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": meta(cluster, policy_config_map_name(cluster), "authorization"),
            "data": {POLICY_KEY: policy_document(grants)}}


def policy_config_map_name(cluster: ClusterIdentity) -> str:
    return f"{cluster.name}-authorization"


# What a frontend pod adds with authorization on (nothing with it off): the policy, and where the server finds it.
# Not in the config checksum: the server reloads the file, so a change of permissions restarts no pod.
def volumes(cluster: ClusterIdentity, spec: TemporalClusterSpec) -> list[dict]:
    return [{"name": "authorization", "configMap": {"name": policy_config_map_name(cluster)}}] \
        if spec.authorization.enabled else []


def mounts(spec: TemporalClusterSpec) -> list[dict]:
    return [{"name": "authorization", "mountPath": POLICY_DIR, "readOnly": True}] if spec.authorization.enabled else []


def env(spec: TemporalClusterSpec) -> list[dict]:
    return [{"name": POLICY_ENV, "value": POLICY_FILE}] if spec.authorization.enabled else []
