"""Judge certificate material from outside (Key Vault, a user's Secret) before Temporal gets it.

Each broken rule raises ``ValidationFailure`` with a stable ``rule`` (a condition reason) and a message
naming the certificate; messages never contain key bytes. Chains are checked at least as strictly as
Go's verifier, which Temporal uses: signatures, validity of every CA, CA:true, keyCertSign, pathLen,
and extended key usages nested through the CAs.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import Criticality, ExtensionPolicy, PolicyBuilder, Store, VerificationError

from .bundle import (ParsedBundle, ValidationFailure, certificates_pem, order_chain, pkcs8_pem, subject_label,
                     unique_certificates)
from .inspect import private_key_matches

__all__ = ["Material", "Requirement", "ValidationFailure", "validate_ca_bundle", "validate_leaf"]

_SUPPORTED_CURVES = {"secp256r1", "secp384r1"}
_MIN_RSA_BITS = 2048
_PURPOSES = (("server_auth", ExtendedKeyUsageOID.SERVER_AUTH, "serverAuth", "MissingServerAuth"),
             ("client_auth", ExtendedKeyUsageOID.CLIENT_AUTH, "clientAuth", "MissingClientAuth"))


@dataclass(frozen=True)
class Requirement:
    """What Temporal relies on for a role: usages, and the DNS names peers dial (the leaf's SANs must cover them)."""
    server_auth: bool
    client_auth: bool
    dns_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class Material:
    cert_pem: bytes  # leaf, then the intermediates up to (not including) the trust anchor
    key_pem: bytes = field(repr=False)  # PKCS#8
    ca_pem: bytes  # the trust bundle, normalised
    leaf: x509.Certificate


# -- helpers -------------------------------------------------------------------------------------


def _now(now: dt.datetime | None) -> dt.datetime:
    return now or dt.datetime.now(dt.timezone.utc)


def _time(value: dt.datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _failure(rule: str, name: str | None, what: str, problem: str) -> ValidationFailure:
    return ValidationFailure(rule, f"{name}: {what} {problem}" if name else f"{what} {problem}")


def _extension(certificate: x509.Certificate, extension_type, name: str | None):
    try:
        return certificate.extensions.get_extension_for_class(extension_type).value
    except x509.ExtensionNotFound:
        return None
    except ValueError:  # duplicate or undecodable extensions surface only when read
        raise _failure("Malformed", name, f"certificate {subject_label(certificate)}",
                       "has unreadable extensions") from None


def _key_description(key) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return f"EC {key.curve.name}"
    if isinstance(key, rsa.RSAPrivateKey):
        return f"RSA {key.key_size}-bit"
    return type(key).__name__.removesuffix("PrivateKey")


def _dns_covers(pattern: str, host: str) -> bool:
    pattern, host = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if pattern.startswith("*."):
        label, _, rest = host.partition(".")
        return bool(label) and rest == pattern[2:]  # a wildcard stands for exactly one label
    return pattern == host


# -- single rules --------------------------------------------------------------------------------


def _require_current(certificate: x509.Certificate, what: str, name: str | None, now: dt.datetime,
                     expired_rule: str) -> None:
    if now < certificate.not_valid_before_utc:
        raise _failure("NotYetValid", name, what, f"is not valid before {_time(certificate.not_valid_before_utc)} "
                                                  f"(now {_time(now)})")
    if now > certificate.not_valid_after_utc:
        raise _failure(expired_rule, name, what, f"expired at {_time(certificate.not_valid_after_utc)} "
                                                 f"(now {_time(now)})")


def _require_ca(certificate: x509.Certificate, what: str, name: str | None) -> None:
    constraints = _extension(certificate, x509.BasicConstraints, name)
    if not (constraints and constraints.ca):
        raise _failure("NotACA", name, what, "is not a CA: basicConstraints CA:true is missing")
    usage = _extension(certificate, x509.KeyUsage, name)
    if usage is not None and not usage.key_cert_sign:
        raise _failure("NotACA", name, what, "is not a CA: its keyUsage lacks keyCertSign")


def _require_purposes(certificate: x509.Certificate, requirement: Requirement, what: str, name: str | None) -> None:
    usages = _extension(certificate, x509.ExtendedKeyUsage, name)
    if usages is None or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in usages:
        return  # no extendedKeyUsage means any usage, as Go's crypto/tls treats it
    for attribute, oid, label, rule in _PURPOSES:
        if getattr(requirement, attribute) and oid not in usages:
            raise _failure(rule, name, what, f"has extendedKeyUsage without {label}, which this role needs")


def _require_supported_key(key, what: str, name: str | None) -> None:
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name in _SUPPORTED_CURVES:
        return
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size >= _MIN_RSA_BITS:
        return
    raise _failure("UnsupportedKey", name, what, f"has a key of type {_key_description(key)}; supported are EC P-256, "
                                                 f"EC P-384 and RSA of {_MIN_RSA_BITS} bits or more")


def _require_dns_names(leaf: x509.Certificate, dns_names: tuple[str, ...], what: str, name: str | None) -> None:
    sans = _extension(leaf, x509.SubjectAlternativeName, name)
    patterns = sans.get_values_for_type(x509.DNSName) if sans else []
    missing = [host for host in dns_names if not any(_dns_covers(p, host) for p in patterns)]
    if missing:
        raise _failure("MissingDNSName", name, what, f"does not cover {', '.join(missing)} "
                                                     f"(its DNS names: {', '.join(patterns) or 'none'})")


def _pick_leaf(bundle: ParsedBundle, name: str) -> x509.Certificate:
    if not bundle.certificates:
        raise ValidationFailure("Malformed", f"{name}: contains no certificate")
    presumed = f"certificate {subject_label((order_chain(bundle.certificates) or bundle.certificates)[0])}"
    if bundle.private_key is None:
        raise _failure("NoPrivateKey", name, presumed,
                       "comes without its private key (a Key Vault certificate needs an exportable key)")
    matching = [c for c in bundle.certificates if private_key_matches(c, bundle.private_key)]
    if not matching:
        raise _failure("KeyMismatch", name, presumed, "does not belong to the private key given with it "
                                                      "(nor does any other certificate there)")
    return max(matching, key=lambda c: c.not_valid_after_utc)  # a renewal that kept its key: the newest


def _verified_chain(leaf: x509.Certificate, intermediates: list[x509.Certificate],
                    trust: list[x509.Certificate], now: dt.datetime) -> list[x509.Certificate]:
    """cryptography's path builder: signatures, validity, CA:true and pathLen on every link. Extension
    rules beyond those are ours (above), so the web-PKI profile does not reject private-CA certificates."""
    ca_policy = ExtensionPolicy.permit_all().require_present(x509.BasicConstraints, Criticality.AGNOSTIC, None)
    verifier = (PolicyBuilder().store(Store(trust)).time(now)
                .extension_policies(ca_policy=ca_policy, ee_policy=ExtensionPolicy.permit_all())
                .build_client_verifier())
    return verifier.verify(leaf, intermediates).chain


# -- public --------------------------------------------------------------------------------------


def validate_ca_bundle(certificates, *, name: str | None = None, now: dt.datetime | None = None) -> bytes:
    """Normalised PEM of a trust bundle whose every (deduplicated) certificate is a CA valid now."""
    unique = unique_certificates(certificates)
    if not unique:
        raise ValidationFailure("EmptyTrustBundle", f"{name + ': ' if name else ''}the trust bundle holds no "
                                                    "CA certificate")
    now = _now(now)
    for ca in unique:
        what = f"trust bundle certificate {subject_label(ca)}"
        _require_ca(ca, what, name)
        _require_current(ca, what, name, now, "CAExpired")
    return certificates_pem(unique)


def validate_leaf(bundle: ParsedBundle, trust: list[x509.Certificate], requirement: Requirement, *,
                  name: str, now: dt.datetime | None = None) -> Material:
    """The leaf (the certificate the key belongs to) checked for ``requirement`` and chained to ``trust``
    through the intermediates in ``bundle``; ``name`` is the source's name for it, used in messages;
    ``now`` (an aware datetime) defaults to the current time."""
    now = _now(now)
    leaf = _pick_leaf(bundle, name)
    what = f"certificate {subject_label(leaf)}"
    _require_supported_key(bundle.private_key, what, name)
    _require_current(leaf, what, name, now, "Expired")
    _require_purposes(leaf, requirement, what, name)
    usage = _extension(leaf, x509.KeyUsage, name)
    if usage is not None and not usage.digital_signature:
        raise _failure("MissingDigitalSignature", name, what, "has keyUsage without digitalSignature, which TLS needs")
    _require_dns_names(leaf, requirement.dns_names, what, name)

    ca_pem = validate_ca_bundle(trust, name=name, now=now)
    intermediates = order_chain(bundle.certificates, leaf)[1:]
    for ca in intermediates:
        ca_what = f"intermediate certificate {subject_label(ca)}"
        _require_ca(ca, ca_what, name)
        _require_current(ca, ca_what, name, now, "CAExpired")
    try:
        chain = _verified_chain(leaf, intermediates, unique_certificates(trust), now)
    except VerificationError as error:
        anchors = ", ".join(subject_label(c) for c in trust)
        raise _failure("Untrusted", name, what, f"does not chain to the trust bundle ({anchors}) through the "
                                                f"certificates given with it: {error}") from None
    for ca in chain[1:]:  # Go requires each CA's extendedKeyUsage, when present, to allow the leaf's purpose
        _require_purposes(ca, requirement, f"CA certificate {subject_label(ca)}", name)
    return Material(cert_pem=certificates_pem([leaf, *chain[1:-1]]), key_pem=pkcs8_pem(bundle.private_key),
                    ca_pem=ca_pem, leaf=leaf)
