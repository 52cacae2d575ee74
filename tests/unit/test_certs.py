"""Certificate module: chains, usages, lifetimes, inspection."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from temporal_mtls_operator import certs
from temporal_mtls_operator.certs.inspect import CertificateError

DAY = dt.timedelta(days=1)


def usages(pair: certs.KeyPair) -> set:
    return set(pair.certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def test_internode_leaf_serves_and_dials_and_chains_to_its_ca():
    ca = certs.issue_ca("internode CA", 3650 * DAY)
    leaf = certs.issue_leaf(ca, certs.LeafProfile("demo-internode", ("demo-internode.ns.svc",), server=True,
                                                  client=True), 90 * DAY)
    leaf.certificate.verify_directly_issued_by(ca.certificate)
    assert usages(leaf) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert certs.describe(leaf.certificate).dns_names == ("demo-internode.ns.svc",)
    assert isinstance(leaf.private_key, ec.EllipticCurvePrivateKey)
    assert leaf.key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8


def test_ca_is_limited_to_signing_leaves():
    ca = certs.issue_ca("ca", DAY).certificate
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca and constraints.path_length == 0
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign


def test_a_leaf_never_outlives_its_ca():
    ca = certs.issue_ca("short CA", 2 * DAY)
    leaf = certs.issue_leaf(ca, certs.LeafProfile("x", client=True), 90 * DAY)
    assert leaf.certificate.not_valid_after_utc == ca.certificate.not_valid_after_utc


def test_rsa_is_an_option():
    ca = certs.issue_ca("rsa CA", DAY, certs.KeyAlgorithm.RSA_2048)
    leaf = certs.issue_leaf(ca, certs.LeafProfile("x", server=True), DAY, certs.KeyAlgorithm.RSA_2048)
    assert isinstance(leaf.private_key, rsa.RSAPrivateKey)
    assert leaf.certificate.extensions.get_extension_for_class(x509.KeyUsage).value.key_encipherment


def test_key_matching_renewal_and_fingerprints():
    ca = certs.issue_ca("ca", 10 * DAY)
    leaf = certs.issue_leaf(ca, certs.LeafProfile("x", client=True), 5 * DAY)
    other = certs.issue_leaf(ca, certs.LeafProfile("y", client=True), 5 * DAY)
    assert certs.private_key_matches(leaf.certificate, leaf.private_key)
    assert not certs.private_key_matches(leaf.certificate, other.private_key)
    assert not certs.needs_renewal(leaf.certificate, 2 * DAY)
    assert certs.needs_renewal(leaf.certificate, 6 * DAY)
    info = certs.describe(leaf.certificate)
    assert len(info.sha256.split(":")) == 32 and info.as_status()["sha256Fingerprint"] == info.sha256


def test_malformed_material_is_a_clear_error_without_the_bytes():
    with pytest.raises(CertificateError, match="not a PEM certificate"):
        certs.load_certificates(b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    secret_looking = b"-----BEGIN PRIVATE KEY-----\nMIIsecretsecret\n-----END PRIVATE KEY-----\n"
    with pytest.raises(CertificateError) as error:
        certs.load_private_key(secret_looking)
    assert "secretsecret" not in str(error.value)
