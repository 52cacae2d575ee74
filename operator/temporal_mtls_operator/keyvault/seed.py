"""Seed a Key Vault with one TemporalCluster's certificates (what the sample's `make keyvault-certs` did).

A CA is created once: its key is generated here and imported with the CA certificate (exportable),
so later runs read it back from the vault instead of from a developer's disk. Each leaf (the
cluster's roles from ``leaf_profiles`` plus app client certificates) is issued locally, signed by
that CA, and imported as key + leaf only (Lowkey Vault keeps the last certificate of a PEM chain;
real Key Vault takes key + leaf as well). A leaf that is signed by the CA, has the expected names
and usages and is not close to expiry is kept, so a second run imports nothing.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass

from azure.core.exceptions import ResourceNotFoundError
from azure.keyvault.certificates import (CertificateContentType, CertificatePolicy, KeyCurveName, KeyType,
                                         KeyVaultCertificate)
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..certs import KeyAlgorithm, KeyPair, LeafProfile, issue_ca, issue_leaf, load_private_key, to_pem
from ..certs.inspect import CertificateError, needs_renewal, private_key_matches
from ..models.cluster import MTLS
from ..sources.base import ClusterIdentity, leaf_profiles
from .client import VaultClients

RENEW_BEFORE = dt.timedelta(days=30)


class SeedError(RuntimeError):
    """The vault holds something this command cannot use; the message is safe to show (no key bytes)."""


@dataclass(frozen=True)
class SeedPlan:
    cluster: str = "demo"
    namespace: str = "default"
    clients: tuple[str, ...] = ()
    prefix: str = "temporal-"
    algorithm: KeyAlgorithm = KeyAlgorithm.ECDSA_P256
    ca_duration: dt.timedelta = dt.timedelta(hours=87600)
    certificate_duration: dt.timedelta = dt.timedelta(hours=2160)
    rotate: bool = False

    @property
    def ca_name(self) -> str:
        return f"{self.prefix}ca"

    def leaves(self) -> dict[str, LeafProfile]:
        """Key Vault name -> profile: the cluster's roles exactly as the operator expects them, then the apps."""
        cluster = ClusterIdentity(self.cluster, self.namespace, uid="")
        leaves = {f"{self.prefix}{role}": profile for role, (_, profile) in leaf_profiles(cluster, MTLS()).items()}
        # The identity URI of the TemporalClusterClient of that name: the authorization policy grants by it, so the
        # next version of the certificate keeps its permissions (without it, only its fingerprint would).
        leaves.update({f"{self.prefix}client-{name}": LeafProfile(name, client=True, uris=(cluster.client_identity(name),))
                       for name in self.clients})
        return leaves


@dataclass(frozen=True)
class Outcome:
    """One certificate as the vault now has it; nothing secret."""
    name: str
    action: str  # created | kept | rotated
    version: str
    thumbprint: str  # SHA-1 of the DER certificate, hex, as Key Vault's x509_thumbprint
    not_after: str
    reason: str = ""  # why an existing leaf was not kept (empty when only --rotate asked for it)

    def as_json(self) -> dict:
        return {"version": self.version, "thumbprint": self.thumbprint, "notAfter": self.not_after,
                "action": self.action}


def seed(vault: VaultClients, plan: SeedPlan) -> Iterator[Outcome]:
    """Ensure the CA, then every leaf; yields each certificate's outcome as soon as it is settled."""
    ca, outcome = ensure_ca(vault, plan)
    yield outcome
    for name, profile in plan.leaves().items():
        yield ensure_leaf(vault, name, profile, ca, plan)


def ensure_ca(vault: VaultClients, plan: SeedPlan) -> tuple[KeyPair, Outcome]:
    existing = fetch_certificate(vault, plan.ca_name)
    if existing is None:
        ca = issue_ca(f"Temporal CA {plan.namespace}/{plan.cluster}", plan.ca_duration, plan.algorithm)
        return ca, outcome_of(import_pair(vault, plan.ca_name, ca, {"role": "ca"}), "created")
    ca = read_ca(vault, existing)
    return ca, outcome_of(existing, "kept")


def read_ca(vault: VaultClients, certificate: KeyVaultCertificate) -> KeyPair:
    """The CA certificate and its key (from the backing secret of the same version)."""
    name = certificate.name
    ca_cert = x509.load_der_x509_certificate(certificate.cer)
    try:
        constraints = ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if not constraints or not constraints.ca:
        raise SeedError(f"certificate {name!r} in the vault is not a CA certificate; use another --prefix")
    if needs_renewal(ca_cert, RENEW_BEFORE):
        raise SeedError(f"CA {name!r} expires at {not_after(ca_cert)}; CA rotation is not automated: "
                        f"use another --prefix for a new CA")
    try:
        secret = vault.secrets.get_secret(name, certificate.properties.version)
    except ResourceNotFoundError:
        raise SeedError(f"the key of CA {name!r} cannot be read: its secret is missing") from None
    key = key_from_secret(name, secret.value or "", secret.properties.content_type)
    if not private_key_matches(ca_cert, key):
        raise SeedError(f"the key of CA {name!r} in its secret does not match the CA certificate")
    return KeyPair(to_pem(ca_cert), pem_of_key(key))


def key_from_secret(name: str, value: str, content_type: str | None):
    """The private key from a certificate's backing secret (PEM, or base64 PKCS#12 with an empty password)."""
    try:
        if content_type == CertificateContentType.pkcs12:
            key = pkcs12.load_key_and_certificates(base64.b64decode(value), b"")[0]
        else:
            block = re.search(r"-----BEGIN PRIVATE KEY-----.+?-----END PRIVATE KEY-----", value, re.DOTALL)
            key = load_private_key(block.group().encode()) if block else None
    except (ValueError, CertificateError):
        key = None
    if key is None:
        raise SeedError(f"the key of CA {name!r} cannot be read from its secret "
                        f"(not exportable, or not an unencrypted PKCS#8/PKCS#12 key)")
    return key


def ensure_leaf(vault: VaultClients, name: str, profile: LeafProfile, ca: KeyPair, plan: SeedPlan) -> Outcome:
    existing = fetch_certificate(vault, name)
    if existing is None:
        return outcome_of(issue_and_import(vault, name, profile, ca, plan), "created")
    reason = stale_reason(x509.load_der_x509_certificate(existing.cer), profile, ca.certificate)
    if not reason and not plan.rotate:
        return outcome_of(existing, "kept")
    return outcome_of(issue_and_import(vault, name, profile, ca, plan), "rotated", reason)


def issue_and_import(vault: VaultClients, name: str, profile: LeafProfile, ca: KeyPair,
                     plan: SeedPlan) -> KeyVaultCertificate:
    leaf = issue_leaf(ca, profile, plan.certificate_duration, plan.algorithm)
    return import_pair(vault, name, leaf, {"role": name.removeprefix(plan.prefix)})


def stale_reason(leaf: x509.Certificate, profile: LeafProfile, ca_cert: x509.Certificate) -> str:
    """Why a leaf in the vault must be replaced, or "" when it can stay."""
    try:
        leaf.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return "not signed by the current CA"
    if needs_renewal(leaf, RENEW_BEFORE):
        return f"expires within {RENEW_BEFORE.days} days"
    if names_of(leaf) != expected_names(profile):
        return "subject or SANs differ from the expected ones"
    if usages_of(leaf) != expected_usages(profile):
        return "extended key usages differ from the expected ones"
    return ""


def names_of(certificate: x509.Certificate) -> tuple:
    common_names = tuple(a.value for a in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME))
    try:
        sans = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return common_names, set(), set(), set()
    return (common_names, set(sans.get_values_for_type(x509.DNSName)),
            {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)},
            set(sans.get_values_for_type(x509.UniformResourceIdentifier)))


def expected_names(profile: LeafProfile) -> tuple:
    return (profile.common_name,), set(profile.dns_names), set(profile.ip_addresses), set(profile.uris)


def usages_of(certificate: x509.Certificate) -> set:
    try:
        return set(certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        return set()


def expected_usages(profile: LeafProfile) -> set:
    return {oid for oid, wanted in ((ExtendedKeyUsageOID.SERVER_AUTH, profile.server),
                                    (ExtendedKeyUsageOID.CLIENT_AUTH, profile.client)) if wanted}


def fetch_certificate(vault: VaultClients, name: str) -> KeyVaultCertificate | None:
    try:
        return vault.certificates.get_certificate(name)
    except ResourceNotFoundError:
        return None


def import_pair(vault: VaultClients, name: str, pair: KeyPair, tags: dict[str, str]) -> KeyVaultCertificate:
    """Key + certificate as one PEM (key first, a single certificate: never a chain), exportable."""
    return vault.certificates.import_certificate(
        name, pair.key_pem + pair.cert_pem, policy=policy_for(pair.private_key),
        tags={"created-by": "temporal-mtls-operator-keyvault-certs", **tags})


def policy_for(key) -> CertificatePolicy:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        curves = {"secp256r1": KeyCurveName.p_256, "secp384r1": KeyCurveName.p_384, "secp521r1": KeyCurveName.p_521}
        return CertificatePolicy(content_type=CertificateContentType.pem, exportable=True, key_type=KeyType.ec,
                                 key_curve_name=curves[key.curve.name])
    assert isinstance(key, rsa.RSAPrivateKey)
    return CertificatePolicy(content_type=CertificateContentType.pem, exportable=True, key_type=KeyType.rsa,
                             key_size=key.key_size)


def pem_of_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def outcome_of(certificate: KeyVaultCertificate, action: str, reason: str = "") -> Outcome:
    cert = x509.load_der_x509_certificate(certificate.cer)
    thumbprint = certificate.properties.x509_thumbprint or cert.fingerprint(hashes.SHA1())
    return Outcome(certificate.name, action, certificate.properties.version, thumbprint.hex().upper(),
                   not_after(cert), reason)


def not_after(certificate: x509.Certificate) -> str:
    return certificate.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
