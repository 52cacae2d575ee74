"""The certificate-source interface and the roles every source must fill."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from ..certs import LeafProfile
from ..certs.validate import Requirement
from ..models.cluster import MTLS


class SourceError(RuntimeError):
    """The source cannot deliver; existing Secrets stay as they are. The message is safe to show.

    ``reason`` is a CamelCase condition reason (e.g. VaultUnreachable, KeyMismatch).
    """

    def __init__(self, message: str, reason: str = "SourceFailed", retry_after: float | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry_after = retry_after


@dataclass(frozen=True)
class TLSMaterial:
    cert_pem: bytes  # leaf first, then any intermediates
    key_pem: bytes  # PKCS#8
    ca_pem: bytes  # what peers of this role trust
    origin: dict[str, str] = field(default_factory=dict, compare=False)  # e.g. Key Vault name and version


@dataclass(frozen=True)
class RotationRequest:
    """What a rotation asks of a source. Sources with their own CAs act on it; for Key Vault and Secret sources the
    vault or issuer rotates, and the handlers sync at once instead."""
    reissue_leaves: bool = False  # an unhandled rotate annotation: issue new leaves now
    new_ca_signs: frozenset[str] = frozenset()  # trust domains whose leaves come from the next CA (ReissuingLeaves)


NO_ROTATION = RotationRequest()


@dataclass(frozen=True)
class ClientRequest:
    """An app's client certificate, as a TemporalClusterClient asks for it."""
    namespace: str
    secret_name: str
    common_name: str
    key_vault_certificate: str | None = None
    name: str = ""  # the TemporalClusterClient's name: its identity in the certificates the operator issues


IDENTITY_PREFIX = "spiffe://temporal-mtls.dev"


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

    def client_identity(self, client: str) -> str:
        """The URI SAN naming one TemporalClusterClient in every certificate the operator issues for it: the
        authorization policy grants by it, so a renewed or re-issued certificate keeps its permissions."""
        return f"{IDENTITY_PREFIX}/ns/{self.namespace}/cluster/{self.name}/client/{client}"

    @property
    def operator_identity(self) -> str:
        return f"{IDENTITY_PREFIX}/ns/{self.namespace}/cluster/{self.name}/operator"

    def tls_secret(self, role: str) -> str:
        return f"{self.name}-{role}-tls"

    def ca_secret(self, trust_domain: str, stage: str = "") -> str:
        """Holds a CA private key: read by the operator only, never mounted into a pod.

        ``stage`` "next" is a CA rotation's new CA until it is promoted, "previous" the CA it replaced."""
        return f"{self.name}-{trust_domain}-ca" + (f"-{stage}" if stage else "")

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
        "operator-client": ("frontend", LeafProfile("temporal-mtls-operator", client=True,
                                                    uris=(cluster.operator_identity,))),
    }


def requirements(cluster: ClusterIdentity, mtls: MTLS) -> dict[str, tuple[str, Requirement]]:
    """What a certificate brought from outside must satisfy per role: the usages and names Temporal relies on."""
    profiles = leaf_profiles(cluster, mtls)
    needed_names = {"internode": (cluster.internode_server_name,),
                    "frontend": (cluster.frontend_server_name, *mtls.extra_dns_names)}
    return {role: (domain, Requirement(server_auth=profile.server and role in needed_names,
                                       client_auth=profile.client, dns_names=needed_names.get(role, ())))
            for role, (domain, profile) in profiles.items()}


CLIENT_REQUIREMENT = Requirement(server_auth=False, client_auth=True, dns_names=())


class CertificateSource(Protocol):
    def materials(self, cluster: ClusterIdentity, mtls: MTLS,
                  rotation: RotationRequest = NO_ROTATION) -> dict[str, TLSMaterial]:
        """TLS material for every role of ``leaf_profiles``; raise SourceError, never return partial data."""
        ...

    def client_material(self, cluster: ClusterIdentity, mtls: MTLS, request: ClientRequest,
                        rotation: RotationRequest = NO_ROTATION) -> TLSMaterial:
        """An app's client certificate, trusted by the frontend; raise SourceError."""
        ...

    def forget_read(self, namespace: str, *names: str) -> None:
        """These Secrets changed outside the source: no answer may come from an earlier read of them."""
        ...
