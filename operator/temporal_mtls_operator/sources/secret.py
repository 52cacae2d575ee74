"""Bring your own certificates: existing kubernetes.io/tls Secrets (cert-manager, External Secrets, ...).

The operator reads them (tls.crt, tls.key, ca.crt), validates them for their role, and publishes the
result into the Secrets it owns; it never writes the user's Secrets.
"""

from __future__ import annotations

from ..certs.bundle import parse_pem
from ..certs.inspect import CertificateError
from ..certs.validate import Requirement, ValidationFailure, validate_leaf
from ..kube import Kube
from ..models.cluster import MTLS
from .base import (NO_ROTATION, ClientRequest, ClusterIdentity, RotationRequest, SourceError, TLSMaterial,
                   leaf_profiles, requirements)
from .self_signed import secret_data

SOURCE_SECRET = "temporal-mtls.dev/source-secret"


class SecretSource:
    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    def forget_read(self, namespace: str, *names: str) -> None:
        """Nothing to forget: every reconcile reads its Secrets afresh."""

    # rotation: the vault or issuer rotates; the handlers sync at once for a rotate annotation.
    def materials(self, cluster: ClusterIdentity, mtls: MTLS,
                  rotation: RotationRequest = NO_ROTATION) -> dict[str, TLSMaterial]:
        names = mtls.source.secret.by_role()
        owned = {cluster.tls_secret(role) for role in leaf_profiles(cluster, mtls)}
        clash = sorted(set(names.values()) & owned)
        if clash:
            raise SourceError(f"mtls.source.secret names {', '.join(clash)}, which the operator writes itself; "
                              "name your own Secrets differently", "InvalidSpec")
        return {role: self._read(cluster.namespace, names[role], requirement)
                for role, (_, requirement) in requirements(cluster, mtls).items()}

    def client_material(self, cluster: ClusterIdentity, mtls: MTLS, request: ClientRequest,
                        rotation: RotationRequest = NO_ROTATION) -> TLSMaterial:
        raise SourceError(f"TemporalCluster {cluster.name} uses certificates from your own Secrets: issue the app's "
                          "client certificate with the same issuer and mount that Secret directly",
                          "UnsupportedSource")

    def _read(self, namespace: str, name: str, requirement: Requirement) -> TLSMaterial:
        secret = self.kube.get("v1", "Secret", namespace, name)
        if secret is None:
            raise SourceError(f"Secret {name} does not exist in {namespace}", "SecretNotFound")
        data = secret_data(secret)
        try:
            bundle = parse_pem(data.get("tls.crt", b"") + b"\n" + data.get("tls.key", b""))
            trust = parse_pem(data.get("ca.crt", b"")).certificates
        except CertificateError as error:
            raise SourceError(f"Secret {name}: {error}", getattr(error, "rule", "Malformed")) from None
        if not trust:
            raise SourceError(f"Secret {name} has no ca.crt: the issuing CA is needed as the trust bundle",
                              "EmptyTrustBundle")
        try:
            material = validate_leaf(bundle, trust, requirement, name=f"Secret {name}")
        except ValidationFailure as failure:
            raise SourceError(f"Secret {name}: {failure}", failure.rule) from None
        return TLSMaterial(material.cert_pem, material.key_pem, material.ca_pem,
                           {SOURCE_SECRET: name})
