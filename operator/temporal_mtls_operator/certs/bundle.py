"""Read certificate material as external sources deliver it: PEM as humans and tools write it, PKCS#12
from Azure Key Vault. Normalise it (chain order, PKCS#8, LF-only PEM). Messages never contain key bytes."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from .inspect import CertificateError

PKCS12 = "application/x-pkcs12"
PEM_FILE = "application/x-pem-file"

_KEY_LABELS = {"PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY"}  # PKCS#8, SEC1, PKCS#1
_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.S)
_BEGIN = re.compile(r"-----BEGIN [A-Z0-9 ]+-----")
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


class ValidationFailure(CertificateError):
    """Certificate material breaks a rule. ``rule`` is a stable CamelCase word (a Kubernetes condition
    reason); the message names the certificate and the problem, never key bytes."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rule={self.rule!r}, message={str(self)!r})"


def malformed(message: str) -> ValidationFailure:
    return ValidationFailure("Malformed", message)


@dataclass(frozen=True)
class ParsedBundle:
    certificates: list[x509.Certificate]  # in the order found
    private_key: object | None = field(default=None, repr=False)  # a cryptography private key


# -- PEM ---------------------------------------------------------------------------------------


def parse_pem(data: bytes | str) -> ParsedBundle:
    """Certificates and at most one unencrypted private key from PEM text; text outside blocks is ignored."""
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    if not text.strip():
        return ParsedBundle([])  # no material at all is for the caller to judge, not malformed
    blocks = _BLOCK.findall(text)
    if len(blocks) != len(_BEGIN.findall(text)):
        raise malformed("expected PEM text: a BEGIN line has no matching END line")
    if not blocks:
        raise malformed("expected PEM text (BEGIN CERTIFICATE / BEGIN PRIVATE KEY blocks); found none")
    key_blocks = [(label, body) for label, body in blocks if label in _KEY_LABELS or "ENCRYPTED" in label]
    if len(key_blocks) > 1:
        raise ValidationFailure("MultipleKeys", f"found {len(key_blocks)} private keys; expected exactly one")
    keys = [_private_key(label, body) for label, body in key_blocks]
    certificates = [_certificate(body, index) for index, (label, body) in enumerate(blocks, 1)
                    if label in ("CERTIFICATE", "X509 CERTIFICATE")]
    if not certificates and not keys:
        raise malformed("expected PEM certificates or a private key; found only other PEM blocks ("
                        + ", ".join(sorted({label for label, _ in blocks})) + ")")
    return ParsedBundle(certificates, keys[0] if keys else None)


def _headers_and_base64(body: str) -> tuple[str, str]:
    """Split RFC 1421 headers (``Proc-Type: ...``) from the base64 text; indentation and CR/LF are dropped."""
    lines = [line.strip() for line in body.splitlines()]
    headers = "\n".join(line for line in lines if ":" in line)
    return headers, "".join("".join(line.split()) for line in lines if ":" not in line)


def _canonical(label: str, b64: str) -> bytes:
    wrapped = "\n".join(b64[i:i + 64] for i in range(0, len(b64), 64))
    return f"-----BEGIN {label}-----\n{wrapped}\n-----END {label}-----\n".encode()


def _certificate(body: str, index: int) -> x509.Certificate:
    _, b64 = _headers_and_base64(body)
    try:
        if not _BASE64.fullmatch(b64):
            raise ValueError
        return x509.load_pem_x509_certificate(_canonical("CERTIFICATE", b64))
    except ValueError:
        raise malformed(f"expected PEM text: block {index} (CERTIFICATE) is not a valid X.509 certificate") from None


def _private_key(label: str, body: str):
    headers, b64 = _headers_and_base64(body)
    if "ENCRYPTED" in label or "ENCRYPTED" in headers:
        raise ValidationFailure("EncryptedKey", "the private key is encrypted; provide it unencrypted "
                                                "(the operator holds no passphrase)")
    try:
        if not _BASE64.fullmatch(b64):
            raise ValueError
        return serialization.load_pem_private_key(_canonical(label, b64), None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # Never include the library's detail: keep the message free of anything derived from the key.
        raise malformed(f"expected PEM text: the {label} block is not a readable private key") from None


# -- PKCS#12 and Key Vault secret values ----------------------------------------------------------


def parse_pkcs12(data: bytes, password: bytes | None = None) -> ParsedBundle:
    """Key, certificate and additional certificates of a PFX; without a password try empty, then none
    (Key Vault exports with an empty password, other tools with none)."""
    for candidate in (password,) if password is not None else (b"", None):
        try:
            key, certificate, additional = pkcs12.load_key_and_certificates(data, candidate)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            continue
        certificates = ([certificate] if certificate else []) + list(additional)
        return ParsedBundle(certificates, key)
    raise malformed("expected a PKCS#12 (PFX) archive: the data is not one, or it needs a password "
                    + ("other than the one given" if password is not None else "(tried empty and none)"))


def parse_keyvault_secret(value: str, content_type: str | None) -> ParsedBundle:
    """A Key Vault certificate's secret value: base64 PFX or PEM text, as its content type says."""
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind == PKCS12:
        return parse_pkcs12(_base64(value, f"expected base64 of a PKCS#12 archive ({PKCS12})"))
    if kind == PEM_FILE:
        return parse_pem(value)
    if "-----BEGIN" in value:  # unknown or missing content type: sniff
        return parse_pem(value)
    said = f"content type {content_type!r} is not recognised" if kind else "no content type"
    try:
        return parse_pkcs12(_base64(value, ""))
    except ValidationFailure:
        raise malformed(f"expected PEM text or base64 of a PKCS#12 archive ({said}); "
                        "the value is neither") from None


def _base64(value: str, message: str) -> bytes:
    try:
        return base64.b64decode("".join(value.split()), validate=True)
    except ValueError:  # binascii.Error included
        raise malformed(message + ": the value is not valid base64") from None


# -- chain order and normalised output ------------------------------------------------------------


def _key_id(certificate: x509.Certificate, extension_type):
    try:
        return certificate.extensions.get_extension_for_class(extension_type).value.key_identifier
    except (x509.ExtensionNotFound, ValueError):  # unreadable extensions are reported by validation, not here
        return None


def _issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Names and key identifiers agree and ``issuer``'s key verifies the signature."""
    if certificate.issuer != issuer.subject:
        return False
    authority, subject = _key_id(certificate, x509.AuthorityKeyIdentifier), _key_id(issuer, x509.SubjectKeyIdentifier)
    if authority and subject and authority != subject:
        return False
    try:
        certificate.verify_directly_issued_by(issuer)
    except Exception:  # InvalidSignature, ValueError, TypeError (unsupported key types): not this issuer
        return False
    return True


def _self_issued(certificate: x509.Certificate) -> bool:
    return _issued_by(certificate, certificate)


def unique_certificates(certificates) -> list[x509.Certificate]:
    """Without duplicates (same DER), first occurrence kept."""
    seen: dict[bytes, x509.Certificate] = {}
    for certificate in certificates:
        seen.setdefault(certificate.public_bytes(serialization.Encoding.DER), certificate)
    return list(seen.values())


def _chain_from(leaf: x509.Certificate, pool: list[x509.Certificate]) -> list[x509.Certificate]:
    chain = [leaf]
    while not _self_issued(chain[-1]):
        issuer = next((c for c in pool if c not in chain and _issued_by(chain[-1], c)), None)
        if issuer is None:
            break  # ends at the last certificate available
        chain.append(issuer)
    return chain


def order_chain(certificates, leaf: x509.Certificate | None = None) -> list[x509.Certificate]:
    """Leaf first, then each issuer up to the root (or the last one present); the rest is dropped.
    Without ``leaf``: the certificate that issues none of the others (the longest chain wins)."""
    pool = unique_certificates(certificates)
    if leaf is None:
        tips = [c for c in pool if not any(o is not c and _issued_by(o, c) for o in pool)]
        if not tips:
            return []
        return max((_chain_from(tip, pool) for tip in tips), key=len)
    return _chain_from(leaf, pool)


def pkcs8_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def certificates_pem(certificates) -> bytes:
    """Concatenated PEM, LF line ends, one trailing newline."""
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


def subject_label(certificate: x509.Certificate) -> str:
    """How messages name a certificate: its CN, else its whole subject."""
    names = certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return repr(str(names[0].value)) if names else (certificate.subject.rfc4514_string() or "(empty subject)")
