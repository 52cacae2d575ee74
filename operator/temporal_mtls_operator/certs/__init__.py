"""Pure certificate logic on `cryptography`: issuance, parsing, inspection. No I/O here."""

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

__all__ = [
    "CertificateInfo", "KeyAlgorithm", "KeyPair", "LeafProfile", "describe", "issue_ca", "issue_leaf",
    "load_certificates", "load_private_key", "needs_renewal", "private_key_matches", "sha256_fingerprint",
    "to_pem",
]
