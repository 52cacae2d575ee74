"""Read certificates: PEM parsing, fingerprints, expiry, key/leaf matching, renewal decisions."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization


class CertificateError(ValueError):
    """Malformed or inconsistent certificate material (the message never contains key bytes)."""


@dataclass(frozen=True)
class CertificateInfo:
    """What status reports about a certificate: nothing secret."""
    subject: str
    serial: str
    not_before: str
    not_after: str
    sha256: str
    dns_names: tuple[str, ...]
    uris: tuple[str, ...] = ()

    def as_status(self) -> dict:
        return {"subject": self.subject, "serialNumber": self.serial, "notBefore": self.not_before,
                "notAfter": self.not_after, "sha256Fingerprint": self.sha256}


def load_certificates(pem: bytes) -> list[x509.Certificate]:
    try:
        certificates = x509.load_pem_x509_certificates(pem)
    except ValueError as error:
        raise CertificateError(f"not a PEM certificate: {error}") from None
    if not certificates:
        raise CertificateError("no certificate in PEM data")
    return certificates


def load_private_key(pem: bytes):
    try:
        return serialization.load_pem_private_key(pem, None)
    except (ValueError, TypeError):
        raise CertificateError("the private key is not an unencrypted PEM key") from None


def to_pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def sha256_fingerprint(certificate: x509.Certificate) -> str:
    return certificate.fingerprint(hashes.SHA256()).hex(":").upper()


def _time(value: dt.datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def describe(certificate: x509.Certificate) -> CertificateInfo:
    try:
        sans = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns, uris = tuple(sans.get_values_for_type(x509.DNSName)), tuple(sans.get_values_for_type(
            x509.UniformResourceIdentifier))
    except x509.ExtensionNotFound:
        dns, uris = (), ()
    return CertificateInfo(subject=certificate.subject.rfc4514_string(), serial=format(certificate.serial_number, "x"),
                           not_before=_time(certificate.not_valid_before_utc),
                           not_after=_time(certificate.not_valid_after_utc),
                           sha256=sha256_fingerprint(certificate), dns_names=dns, uris=uris)


def private_key_matches(certificate: x509.Certificate, key) -> bool:
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return certificate.public_key().public_bytes(*fmt) == key.public_key().public_bytes(*fmt)


def needs_renewal(certificate: x509.Certificate, renew_before: dt.timedelta, *,
                  now: dt.datetime | None = None) -> bool:
    current = now or dt.datetime.now(dt.timezone.utc)
    return certificate.not_valid_after_utc - renew_before <= current
