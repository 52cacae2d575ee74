"""The certificate-source interface and the roles every source must fill."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ..certs import LeafProfile
from ..models.cluster import MTLS


class SourceError(RuntimeError):
    """The source cannot deliver; existing Secrets stay as they are. The message is safe to show."""


@dataclass(frozen=True)
class TLSMaterial:
    cert_pem: bytes  # leaf first, then any intermediates
    key_pem: bytes  # PKCS#8
    ca_pem: bytes  # what peers of this role trust


@dataclass(frozen=True)
class ClusterIdentity:
    name: str
    namespace: str
    uid: str

    @property
    def frontend_service(self) -> str:
        return f"{self.name}-frontend"

    @property
    def frontend_server_name(self) -> str:
        return f"{self.frontend_service}.{self.namespace}.svc"

    @property
    def internode_server_name(self) -> str:
        return f"{self.name}-internode.{self.namespace}.svc"

    def tls_secret(self, role: str) -> str:
        return f"{self.name}-{role}-tls"

    def ca_secret(self, trust_domain: str) -> str:
        """Holds a CA private key: read by the operator only, never mounted into a pod."""
        return f"{self.name}-{trust_domain}-ca"

    def owner_reference(self) -> dict:
        from ..api import API_VERSION
        return {"apiVersion": API_VERSION, "kind": "TemporalCluster", "name": self.name, "uid": self.uid,
                "controller": True, "blockOwnerDeletion": True}


# role -> (trust domain that signs it, how its leaf looks)
def leaf_profiles(cluster: ClusterIdentity, mtls: MTLS) -> dict[str, tuple[str, LeafProfile]]:
    frontend = cluster.frontend_service
    frontend_names = (frontend, f"{frontend}.{cluster.namespace}", f"{frontend}.{cluster.namespace}.svc",
                      f"{frontend}.{cluster.namespace}.svc.cluster.local", *mtls.extra_dns_names)
    internode = f"{cluster.name}-internode"
    return {
        # Internode certs serve and dial (history <-> matching <-> frontend): both usages.
        "internode": ("internode", LeafProfile(internode, (internode, cluster.internode_server_name),
                                               server=True, client=True)),
        "frontend": ("frontend", LeafProfile(frontend, frontend_names, server=True)),
        # The system worker dials the frontend, which requires client certs: both usages (Temporal docs).
        "system-worker": ("frontend", LeafProfile(f"{cluster.name}-system-worker", (f"{cluster.name}-system-worker",),
                                                  server=True, client=True)),
        "operator-client": ("frontend", LeafProfile("temporal-mtls-operator", client=True)),
    }


class CertificateSource(Protocol):
    def materials(self, cluster: ClusterIdentity, mtls: MTLS) -> dict[str, TLSMaterial]:
        """TLS material for every role of ``leaf_profiles``; raise SourceError, never return partial data."""
        ...
