"""Operator-managed CAs: one for internode trust, one for the frontend and its clients.

A CA lives in a Secret the operator creates once (create, never overwrite); every later
reconcile, restart or crash reads the same CA back. A CA Secret that cannot be read is
reported, never replaced.
"""

from __future__ import annotations

import base64
import os
import time

from cryptography.exceptions import InvalidSignature

from .. import certs
from ..certs.inspect import CertificateError
from ..kube import Kube
from ..models.cluster import MTLS
from .base import ClientRequest, ClusterIdentity, SourceError, TLSMaterial, leaf_profiles

TRUST_DOMAINS = ("internode", "frontend")


def secret_data(secret: dict | None) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in ((secret or {}).get("data") or {}).items()}


class SelfSignedSource:
    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    def materials(self, cluster: ClusterIdentity, mtls: MTLS) -> dict[str, TLSMaterial]:
        cas = {domain: self.ca(cluster, domain, mtls) for domain in TRUST_DOMAINS}
        return {role: self.leaf(cas[domain], profile, mtls, cluster.namespace, cluster.tls_secret(role))
                for role, (domain, profile) in leaf_profiles(cluster, mtls).items()}

    def client_material(self, cluster: ClusterIdentity, mtls: MTLS, request: ClientRequest) -> TLSMaterial:
        ca = self.ca(cluster, "frontend", mtls)
        return self.leaf(ca, certs.LeafProfile(request.common_name, client=True), mtls, request.namespace,
                         request.secret_name)

    def leaf(self, ca: certs.KeyPair, profile: certs.LeafProfile, mtls: MTLS, namespace: str,
             secret_name: str) -> TLSMaterial:
        """The leaf already in ``secret_name`` if it still fits, else a freshly issued one."""
        existing = secret_data(self.kube.get("v1", "Secret", namespace, secret_name))
        if not self._reusable(existing, ca, profile, mtls):
            pair = certs.issue_leaf(ca, profile, mtls.leaf_lifetime, mtls.key_algorithm)
            existing = {"tls.crt": pair.cert_pem, "tls.key": pair.key_pem}
        return TLSMaterial(existing["tls.crt"], existing["tls.key"], ca.cert_pem)

    def ca(self, cluster: ClusterIdentity, domain: str, mtls: MTLS) -> certs.KeyPair:
        name = cluster.ca_secret(domain)
        secret = self.kube.get("v1", "Secret", cluster.namespace, name)
        if secret is None:
            pair = certs.issue_ca(f"{cluster.name} {domain} CA", mtls.ca_lifetime, mtls.key_algorithm)
            created = self.kube.create({
                "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                "metadata": {"name": name, "namespace": cluster.namespace,
                             "labels": {"app.kubernetes.io/managed-by": "temporal-mtls-operator",
                                        "app.kubernetes.io/instance": cluster.name,
                                        "app.kubernetes.io/component": f"{domain}-ca"},
                             "ownerReferences": [cluster.owner_reference()]},
                "data": {"tls.crt": base64.b64encode(pair.cert_pem).decode(),
                         "tls.key": base64.b64encode(pair.key_pem).decode()}})
            if created is not None:
                _pause_for_tests()
                return pair
            secret = self.kube.get("v1", "Secret", cluster.namespace, name)  # another reconcile won the race
        data = secret_data(secret)
        try:
            certificate = certs.load_certificates(data.get("tls.crt", b""))[0]
            key = certs.load_private_key(data.get("tls.key", b""))
        except CertificateError as error:
            raise SourceError(f"CA Secret {name} is unreadable ({error}); it is left untouched: "
                              "repair or delete it to let the operator create a new CA", "CAUnreadable") from None
        if not certs.private_key_matches(certificate, key):
            raise SourceError(f"CA Secret {name}: tls.key does not belong to tls.crt; it is left untouched",
                              "CAUnreadable")
        return certs.KeyPair(data["tls.crt"], data["tls.key"])

    @staticmethod
    def _reusable(existing: dict[str, bytes], ca: certs.KeyPair, profile: certs.LeafProfile, mtls: MTLS) -> bool:
        """Keep a leaf that is ours, current, and says what the spec asks for."""
        try:
            leaf = certs.load_certificates(existing.get("tls.crt", b""))[0]
            key = certs.load_private_key(existing.get("tls.key", b""))
            leaf.verify_directly_issued_by(ca.certificate)
        except (CertificateError, InvalidSignature, ValueError, TypeError):
            return False
        info = certs.describe(leaf)
        # A leaf that already lasts as long as its CA cannot be bettered by a new one (leaves never outlive
        # their CA): keep it, or every reconcile would re-issue; the expiring CA is reported instead.
        renewable = leaf.not_valid_after_utc < ca.certificate.not_valid_after_utc
        return (certs.private_key_matches(leaf, key) and set(info.dns_names) == set(profile.dns_names)
                and leaf.subject.rfc4514_string() == f"CN={profile.common_name},O={profile.organization}"
                and not (renewable and certs.needs_renewal(leaf, mtls.renew_window))
                and _algorithm(key) == mtls.key_algorithm)


def _algorithm(key) -> certs.KeyAlgorithm | None:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return {"secp256r1": certs.KeyAlgorithm.ECDSA_P256, "secp384r1": certs.KeyAlgorithm.ECDSA_P384}.get(key.curve.name)
    if isinstance(key, rsa.RSAPrivateKey):
        return {2048: certs.KeyAlgorithm.RSA_2048, 4096: certs.KeyAlgorithm.RSA_4096}.get(key.key_size)
    return None


def _pause_for_tests() -> None:
    """Test-only: TMO_TEST_PAUSE_AFTER_CA=<seconds> holds a reconcile between creating one CA and the next, so a
    test can kill the operator exactly there. Unset in every real deployment."""
    seconds = float(os.environ.get("TMO_TEST_PAUSE_AFTER_CA") or 0)
    if seconds:
        time.sleep(seconds)
