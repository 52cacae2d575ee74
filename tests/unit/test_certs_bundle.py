"""Reading certificate material as people and tools write it: PEM variants, PKCS#12, Key Vault secret values,
chain order. Failures carry the exact rule and never key bytes."""

from __future__ import annotations

import base64
import datetime as dt
import random
import shutil
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from temporal_mtls_operator import certs
from temporal_mtls_operator.certs import (ValidationFailure, certificates_pem, order_chain, parse_keyvault_secret,
                                          parse_pem, parse_pkcs12, pkcs8_pem)
from temporal_mtls_operator.certs.inspect import CertificateError, private_key_matches

from .test_certs_validate import assert_fails

DAY = dt.timedelta(days=1)


@pytest.fixture(scope="module")
def pki():
    """root -> intermediate -> leaf, plus the leaf's key; an unrelated CA beside them."""
    root = certs.issue_ca("Root CA", 365 * DAY)
    intermediate = _intermediate(root, "Issuing CA")
    leaf = certs.issue_leaf(intermediate, certs.LeafProfile("demo", ("demo.ns.svc",), server=True), 30 * DAY)
    return {"root": root, "intermediate": intermediate, "leaf": leaf, "other": certs.issue_ca("Other CA", DAY)}


def _intermediate(parent: certs.KeyPair, cn: str) -> certs.KeyPair:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(parent.certificate.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - DAY).not_valid_after(now + 90 * DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(parent.private_key.public_key()),
                           critical=False)
            .sign(parent.private_key, hashes.SHA256()))
    return certs.KeyPair(cert.public_bytes(serialization.Encoding.PEM), pkcs8_pem(key))


def names(certificates) -> list[str]:
    return [c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value for c in certificates]


def traditional(key) -> bytes:
    """SEC1 for EC keys, PKCS#1 for RSA keys: what `openssl ecparam/genrsa -traditional` write."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


# -- PEM ---------------------------------------------------------------------------------------------


def test_key_and_chain_in_one_pem(pki):
    leaf, intermediate = pki["leaf"], pki["intermediate"]
    bundle = parse_pem(leaf.key_pem + leaf.cert_pem + intermediate.cert_pem)
    assert names(bundle.certificates) == ["demo", "Issuing CA"]
    assert private_key_matches(leaf.certificate, bundle.private_key)


def test_crlf_indentation_blank_lines_and_surrounding_text_are_tolerated(pki):
    leaf = pki["leaf"]
    clean = leaf.cert_pem + leaf.key_pem
    messy = "\r\n\r\n   # pasted from a ticket\r\n" + "".join(
        f"    {line}\r\n" + ("\r\n" if line.startswith("-----END") else "")
        for line in clean.decode().splitlines()) + "\r\n  \t\r\n"
    bundle = parse_pem(messy)  # str input, as a Key Vault secret value arrives
    assert bundle.certificates == [leaf.certificate]
    assert pkcs8_pem(bundle.private_key) == leaf.key_pem


def test_openssl_pkcs12_bag_attributes_are_ignored(pki):
    leaf, intermediate = pki["leaf"], pki["intermediate"]
    text = (b"Bag Attributes\n    localKeyID: 5F 1A 0C 22 \n    friendlyName: demo\n"
            b"subject=CN = demo\nissuer=CN = Issuing CA\n" + leaf.cert_pem
            + b"Bag Attributes: <No Attributes>\nsubject=CN = Issuing CA\nissuer=CN = Root CA\n" + intermediate.cert_pem
            + b"Key Attributes: <No Attributes>\n" + leaf.key_pem)
    bundle = parse_pem(text)
    assert names(bundle.certificates) == ["demo", "Issuing CA"] and bundle.private_key is not None


@pytest.mark.parametrize("make_key, label", [
    pytest.param(lambda: ec.generate_private_key(ec.SECP256R1()), b"EC PRIVATE KEY", id="sec1"),
    pytest.param(lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048), b"RSA PRIVATE KEY",
                 id="pkcs1"),
])
def test_sec1_and_pkcs1_keys_are_read_and_written_back_as_pkcs8(make_key, label):
    key = make_key()
    pem = traditional(key)
    assert pem.startswith(b"-----BEGIN " + label)
    bundle = parse_pem(b"-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n" + pem)
    normalised = pkcs8_pem(bundle.private_key)
    assert normalised.startswith(b"-----BEGIN PRIVATE KEY-----\n") and b"\r" not in normalised
    assert serialization.load_pem_private_key(normalised, None).private_numbers() == key.private_numbers()


def test_an_empty_value_is_no_material_rather_than_malformed():
    assert parse_pem(b" \r\n").certificates == [] and parse_pem("").private_key is None


@pytest.mark.parametrize("encryption", [
    pytest.param(serialization.PrivateFormat.PKCS8, id="pkcs8-encrypted"),
    pytest.param(serialization.PrivateFormat.TraditionalOpenSSL, id="legacy-proc-type"),
])
def test_an_encrypted_key_is_refused(encryption):
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, encryption, serialization.BestAvailableEncryption(b"pw"))
    assert_fails("EncryptedKey", lambda: parse_pem(pem), key)


def test_two_keys_are_refused():
    first, second = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    assert_fails("MultipleKeys", lambda: parse_pem(pkcs8_pem(first) + traditional(second)), first, second)


def test_a_damaged_key_is_malformed_without_echoing_it():
    key = ec.generate_private_key(ec.SECP256R1())
    lines = pkcs8_pem(key).decode().splitlines()
    lines[1] = "!!" + lines[1][2:]
    failure = assert_fails("Malformed", lambda: parse_pem("\n".join(lines)), key)
    assert isinstance(failure, CertificateError) and "PRIVATE KEY" in str(failure)


@pytest.mark.parametrize("text, says", [
    pytest.param("hello, this is not a certificate", "expected PEM", id="no-block"),
    pytest.param("-----BEGIN CERTIFICATE-----\nMIIB\n", "no matching END", id="unterminated"),
    pytest.param("-----BEGIN CERTIFICATE-----\nMIIBnotreallyDER=\n-----END CERTIFICATE-----\n", "block 1",
                 id="not-der"),
    pytest.param("-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----\n", "PUBLIC KEY", id="other-block"),
])
def test_garbage_is_malformed_and_says_what_was_expected(text, says):
    assert says in str(assert_fails("Malformed", lambda: parse_pem(text)))


# -- PKCS#12 and Key Vault secret values -------------------------------------------------------------


def _pfx(pki, encryption=serialization.NoEncryption()) -> bytes:
    leaf = pki["leaf"]
    return pkcs12.serialize_key_and_certificates(b"demo", leaf.private_key, leaf.certificate,
                                                 [pki["intermediate"].certificate], encryption)


def _keyvault_pfx(pki, tmp_path) -> bytes:
    """What Key Vault exports: a PFX with an empty password (cryptography cannot write one; openssl can)."""
    if not shutil.which("openssl"):
        pytest.skip("openssl is needed to write an empty-password PKCS#12")
    source = tmp_path / "in.pem"
    source.write_bytes(pki["leaf"].key_pem + pki["leaf"].cert_pem + pki["intermediate"].cert_pem)
    return subprocess.run(["openssl", "pkcs12", "-export", "-in", str(source), "-passout", "pass:"],
                          check=True, capture_output=True).stdout


def test_pkcs12_with_an_empty_password_as_key_vault_exports_it(pki, tmp_path):
    bundle = parse_pkcs12(_keyvault_pfx(pki, tmp_path))
    assert set(names(bundle.certificates)) == {"demo", "Issuing CA"}
    assert private_key_matches(pki["leaf"].certificate, bundle.private_key)


def test_pkcs12_without_encryption_and_with_a_password(pki):
    plain = parse_pkcs12(_pfx(pki))
    assert names(plain.certificates) == ["demo", "Issuing CA"] and plain.private_key is not None
    protected = _pfx(pki, serialization.BestAvailableEncryption(b"s3cret"))
    assert names(parse_pkcs12(protected, b"s3cret").certificates) == ["demo", "Issuing CA"]
    assert "password" in str(assert_fails("Malformed", lambda: parse_pkcs12(protected), pki["leaf"].private_key))
    assert_fails("Malformed", lambda: parse_pkcs12(protected, b"wrong"), pki["leaf"].private_key)


@pytest.mark.parametrize("content_type", ["application/x-pkcs12", None, "application/octet-stream"])
def test_a_keyvault_pkcs12_secret(pki, content_type):
    value = base64.b64encode(_pfx(pki)).decode()
    bundle = parse_keyvault_secret(value, content_type)
    assert names(bundle.certificates) == ["demo", "Issuing CA"]


@pytest.mark.parametrize("content_type", ["application/x-pem-file", "application/x-pem-file; charset=utf-8", None])
def test_a_keyvault_pem_secret(pki, content_type):
    leaf = pki["leaf"]
    bundle = parse_keyvault_secret((leaf.key_pem + leaf.cert_pem).decode(), content_type)
    assert bundle.certificates == [leaf.certificate] and bundle.private_key is not None


@pytest.mark.parametrize("value, content_type, says", [
    ("not base64 at all!", "application/x-pkcs12", "PKCS#12"),
    (base64.b64encode(b"valid base64, but no PFX").decode(), "application/x-pkcs12", "PKCS#12"),
    ("just words", "application/x-pem-file", "PEM"),
    ("just words", None, "PEM text or base64 of a PKCS#12"),
    ("just words", "text/plain", "'text/plain'"),
])
def test_a_keyvault_secret_that_is_not_what_its_content_type_says(value, content_type, says):
    assert says in str(assert_fails("Malformed", lambda: parse_keyvault_secret(value, content_type)))


def test_a_keyvault_pkcs12_value_is_never_echoed(pki):
    value = base64.b64encode(_pfx(pki))[:-40].decode() + "A" * 40  # a damaged PFX, still base64
    failure = assert_fails("Malformed", lambda: parse_keyvault_secret(value, "application/x-pkcs12"),
                           pki["leaf"].private_key)
    assert value[100:130] not in str(failure)


# -- chain order -------------------------------------------------------------------------------------


@pytest.mark.parametrize("order", [
    pytest.param(("leaf", "intermediate", "root"), id="ordered"),
    pytest.param(("root", "intermediate", "leaf"), id="root-first"),
    pytest.param(("intermediate", "root", "leaf"), id="shuffled"),
    pytest.param(("root", "leaf", "root", "intermediate", "leaf"), id="duplicates"),
    pytest.param(("other", "intermediate", "leaf", "root"), id="unrelated-ca-dropped"),
])
def test_order_chain_goes_leaf_to_root(pki, order):
    chain = order_chain([pki[name].certificate for name in order])
    assert names(chain) == ["demo", "Issuing CA", "Root CA"]


def test_order_chain_ends_at_the_last_certificate_available(pki):
    assert names(order_chain([pki["intermediate"].certificate, pki["leaf"].certificate])) == ["demo", "Issuing CA"]


def test_order_chain_starts_from_the_given_leaf(pki):
    sibling = certs.issue_leaf(pki["intermediate"], certs.LeafProfile("sibling", client=True), DAY)
    pool = [pki["root"].certificate, sibling.certificate, pki["intermediate"].certificate, pki["leaf"].certificate]
    random.Random(7).shuffle(pool)
    assert names(order_chain(pool, leaf=sibling.certificate)) == ["sibling", "Issuing CA", "Root CA"]
    assert order_chain([]) == []


def test_normalised_pem_has_lf_line_ends_and_one_trailing_newline(pki):
    crlf = (pki["leaf"].cert_pem + pki["root"].cert_pem).replace(b"\n", b"\r\n")
    pem = certificates_pem(parse_pem(crlf).certificates)
    assert pem == pki["leaf"].cert_pem + pki["root"].cert_pem
    assert b"\r" not in pem and pem.endswith(b"-----\n")


def test_a_parsed_bundle_never_shows_its_key(pki):
    bundle = parse_pem(pki["leaf"].cert_pem + pki["leaf"].key_pem)
    shown = repr(bundle) + str(bundle)
    assert "private_key" not in shown and "demo" in shown
    with pytest.raises(ValidationFailure) as info:
        parse_pem(pki["leaf"].key_pem * 2)
    assert info.value.rule == "MultipleKeys" and pki["leaf"].key_pem.decode().splitlines()[1] not in repr(info.value)
