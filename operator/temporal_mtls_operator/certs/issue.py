"""Issue CAs and leaf certificates."""

from __future__ import annotations

import datetime as dt
import enum
import ipaddress
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


class KeyAlgorithm(str, enum.Enum):
    ECDSA_P256 = "ECDSA-P256"
    ECDSA_P384 = "ECDSA-P384"
    RSA_2048 = "RSA-2048"
    RSA_4096 = "RSA-4096"

    def generate(self):
        if self is KeyAlgorithm.ECDSA_P256:
            return ec.generate_private_key(ec.SECP256R1())
        if self is KeyAlgorithm.ECDSA_P384:
            return ec.generate_private_key(ec.SECP384R1())
        return rsa.generate_private_key(public_exponent=65537, key_size=int(self.value.split("-")[1]))


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key, both as PEM (the key PKCS#8)."""
    cert_pem: bytes
    key_pem: bytes

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)

    @property
    def private_key(self):
        return serialization.load_pem_private_key(self.key_pem, None)


@dataclass(frozen=True)
class LeafProfile:
    """What a leaf certificate says: who it is, which names it serves, what it may do."""
    common_name: str
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()
    server: bool = False
    client: bool = False
    organization: str = "temporal-mtls-operator"
    uris: tuple[str, ...] = field(default=())


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def issue_ca(common_name: str, duration: dt.timedelta, algorithm: KeyAlgorithm = KeyAlgorithm.ECDSA_P256,
             *, now: dt.datetime | None = None) -> KeyPair:
    """A self-signed root CA that may sign leaves only (pathLen 0)."""
    key = algorithm.generate()
    start = now or _now()
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "temporal-mtls-operator"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start - dt.timedelta(minutes=5)).not_valid_after(start + duration)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _pem_key(key))


def issue_leaf(ca: KeyPair, profile: LeafProfile, duration: dt.timedelta,
               algorithm: KeyAlgorithm = KeyAlgorithm.ECDSA_P256, *, now: dt.datetime | None = None) -> KeyPair:
    """A leaf signed by ``ca``; never outlives its CA."""
    ca_cert, ca_key = ca.certificate, ca.private_key
    key = algorithm.generate()
    start = now or _now()
    not_after = min(start + duration, ca_cert.not_valid_after_utc)
    usages = [oid for oid, wanted in ((ExtendedKeyUsageOID.SERVER_AUTH, profile.server),
                                      (ExtendedKeyUsageOID.CLIENT_AUTH, profile.client)) if wanted]
    is_rsa = isinstance(key, rsa.RSAPrivateKey)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, profile.organization),
                                        x509.NameAttribute(NameOID.COMMON_NAME, profile.common_name)]))
               .issuer_name(ca_cert.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(start - dt.timedelta(minutes=5)).not_valid_after(not_after)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                            key_encipherment=is_rsa, data_encipherment=False, key_agreement=False,
                                            key_cert_sign=False, crl_sign=False, encipher_only=False,
                                            decipher_only=False), critical=True)
               .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False))
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in profile.dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in profile.ip_addresses]
    sans += [x509.UniformResourceIdentifier(u) for u in profile.uris]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _pem_key(key))
