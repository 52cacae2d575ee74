"""Pure certificate logic on `cryptography`: issuance, parsing, inspection, validation. No I/O here."""

from .bundle import (ParsedBundle, certificates_pem, order_chain, parse_keyvault_secret, parse_pem, parse_pkcs12,
                     pkcs8_pem)
from .issue import KeyAlgorithm, KeyPair, LeafProfile, issue_ca, issue_leaf
from .inspect import (
    CertificateInfo,
    describe,
    load_certificates,
    load_private_key,
    needs_renewal,
    private_key_matches,
    sha256_fingerprint,
    to_pem,
)
from .validate import Material, Requirement, ValidationFailure, validate_ca_bundle, validate_leaf

__all__ = [
    "CertificateInfo", "KeyAlgorithm", "KeyPair", "LeafProfile", "Material", "ParsedBundle", "Requirement",
    "ValidationFailure", "certificates_pem", "describe", "issue_ca", "issue_leaf", "load_certificates",
    "load_private_key", "needs_renewal", "order_chain", "parse_keyvault_secret", "parse_pem", "parse_pkcs12",
    "pkcs8_pem", "private_key_matches", "sha256_fingerprint", "to_pem", "validate_ca_bundle", "validate_leaf",
]
