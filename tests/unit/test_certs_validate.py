"""Validation of certificate material from outside: each rule, with the exact reason and no key bytes in messages."""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from temporal_mtls_operator import certs
from temporal_mtls_operator.certs import Requirement, ValidationFailure, parse_pem, validate_ca_bundle, validate_leaf

DAY = dt.timedelta(days=1)
NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
SERVER, CLIENT = ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH
HOST = "demo-frontend.ns.svc"
BOTH = Requirement(server_auth=True, client_auth=True, dns_names=(HOST,))


@dataclass
class Pair:
    cert: x509.Certificate
    key: object

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return certs.pkcs8_pem(self.key)


def build(cn: str, issuer: Pair | None = None, *, key=None, ca: bool = False, path_length: int | None = None,
          eku=(SERVER, CLIENT), key_usage: dict | None = None, dns=(HOST,),
          not_before=NOW - DAY, not_after=NOW + 30 * DAY) -> Pair:
    """A certificate shaped as tests need it; ``eku=None`` / ``key_usage={}`` leave the extension out."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    signer = issuer or Pair(None, key)
    builder = (x509.CertificateBuilder().subject_name(subject)
               .issuer_name(issuer.cert.subject if issuer else subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(not_before).not_valid_after(not_after)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.key.public_key()),
                              critical=False))
    if key_usage != {}:
        usage = dict(digital_signature=not ca, content_commitment=False, key_encipherment=False,
                     data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca, encipher_only=False,
                     decipher_only=False) | (key_usage or {})
        builder = builder.add_extension(x509.KeyUsage(**usage), critical=True)
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    if dns:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]), critical=False)
    return Pair(builder.sign(signer.key, hashes.SHA256()), key)


def make_ca(cn: str = "Root CA", issuer: Pair | None = None, *, eku=None, **options) -> Pair:
    return build(cn, issuer, ca=True, eku=eku, dns=(), **options)


def validate(leaf: Pair, *others: Pair, trust: list[Pair], requirement: Requirement = BOTH, key=None):
    pem = leaf.pem + b"".join(o.pem for o in others) + certs.pkcs8_pem(key or leaf.key)
    return validate_leaf(parse_pem(pem), [t.cert for t in trust], requirement, name="kv-frontend")


def _secret_bytes(key) -> bytes:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        value = key.private_numbers().private_value
    elif isinstance(key, rsa.RSAPrivateKey):
        value = key.private_numbers().d
    else:
        return key.private_bytes_raw()
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def secret_fragments(*keys) -> list[str]:
    """Pieces of each key's private value, in hex and in base64 at every byte alignment a PEM could give it."""
    pieces = []
    for key in keys:
        secret = _secret_bytes(key)
        pieces.append(secret.hex()[:24])
        for shift in range(3):
            text = base64.b64encode(secret[shift:]).decode()[:-4]  # the tail depends on what follows
            pieces += [text[i:i + 12] for i in range(0, len(text) - 12, 12)]
    return pieces


def assert_fails(rule: str, call, *keys, mentions: tuple[str, ...] = ()) -> ValidationFailure:
    with pytest.raises(ValidationFailure) as info:
        call()
    failure = info.value
    message = f"{failure} {failure!r}"
    assert failure.rule == rule, message
    assert "-----BEGIN" not in message and not any(piece in message for piece in secret_fragments(*keys))
    for word in mentions:
        assert word in str(failure)
    return failure


# -- accepted material -------------------------------------------------------------------------------


def test_a_leaf_from_the_operators_own_issuer_passes_and_is_normalised():
    ca = certs.issue_ca("frontend CA", 365 * DAY)
    leaf = certs.issue_leaf(ca, certs.LeafProfile("demo-frontend", (HOST,), server=True, client=True), 30 * DAY)
    material = validate_leaf(parse_pem(leaf.key_pem + leaf.cert_pem), [ca.certificate], BOTH, name="kv-frontend")
    assert (material.cert_pem, material.key_pem, material.ca_pem) == (leaf.cert_pem, leaf.key_pem, ca.cert_pem)
    assert material.leaf == leaf.certificate
    assert not any(piece in repr(material) for piece in secret_fragments(leaf.private_key))


@pytest.mark.parametrize("algorithm", [certs.KeyAlgorithm.ECDSA_P384, certs.KeyAlgorithm.RSA_2048])
def test_ec_p384_and_rsa_keys_are_supported(algorithm):
    ca = certs.issue_ca("ca", 365 * DAY, certs.KeyAlgorithm.RSA_2048)
    leaf = certs.issue_leaf(ca, certs.LeafProfile("demo", (HOST,), server=True, client=True), 30 * DAY, algorithm)
    material = validate_leaf(parse_pem(leaf.cert_pem + leaf.key_pem), [ca.certificate], BOTH, name="kv")
    assert material.key_pem.startswith(b"-----BEGIN PRIVATE KEY-----\n")


@pytest.mark.parametrize("order", [
    pytest.param(("leaf", "intermediate", "root"), id="leaf-first"),
    pytest.param(("root", "intermediate", "leaf"), id="root-first"),
    pytest.param(("intermediate", "root", "leaf", "intermediate"), id="shuffled-with-duplicate"),
])
def test_an_intermediate_in_any_order_ends_up_after_the_leaf_and_the_root_is_left_out(order):
    root = make_ca()
    intermediate = make_ca("Issuing CA", root)
    leaf = build("demo-frontend", intermediate)
    parts = {"leaf": leaf, "intermediate": intermediate, "root": root}
    bundle = parse_pem(b"".join(parts[p].pem for p in order) + leaf.key_pem)
    material = validate_leaf(bundle, [root.cert], BOTH, name="kv-frontend")
    assert material.cert_pem == leaf.pem + intermediate.pem
    assert material.ca_pem == root.pem


def test_absent_extended_key_usage_allows_every_usage_and_any_usage_counts_too():
    ca = make_ca()
    validate(build("no-eku", ca, eku=None), trust=[ca])
    validate(build("any", ca, eku=(ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,)), trust=[ca])


@pytest.mark.parametrize("pattern, host, covered", [
    ("*.ns.svc", "demo-frontend.ns.svc", True),
    ("*.NS.svc", "demo-frontend.ns.svc.", True),
    ("*.ns.svc", "a.demo-frontend.ns.svc", False),  # one label only
    ("*.ns.svc", "ns.svc", False),
    ("demo-frontend.ns.svc", "demo-frontend.ns.svc", True),
])
def test_a_wildcard_san_covers_exactly_one_label(pattern, host, covered):
    ca = make_ca()
    leaf = build("wild", ca, dns=(pattern,))
    requirement = Requirement(server_auth=True, client_auth=False, dns_names=(host,))
    if covered:
        validate(leaf, trust=[ca], requirement=requirement)
    else:
        assert_fails("MissingDNSName", lambda: validate(leaf, trust=[ca], requirement=requirement), leaf.key,
                     mentions=(host, pattern))


# -- the leaf and its key ----------------------------------------------------------------------------


def test_no_private_key():
    ca = make_ca()
    leaf = build("demo-frontend", ca)
    assert_fails("NoPrivateKey", lambda: validate_leaf(parse_pem(leaf.pem), [ca.cert], BOTH, name="kv-frontend"),
                 mentions=("kv-frontend", "'demo-frontend'", "exportable"))


def test_no_certificate():
    key = ec.generate_private_key(ec.SECP256R1())
    assert_fails("Malformed", lambda: validate_leaf(parse_pem(certs.pkcs8_pem(key)), [make_ca().cert], BOTH,
                                                    name="kv-frontend"), key, mentions=("kv-frontend",))


def test_a_key_that_belongs_to_another_certificate():
    ca = make_ca()
    leaf, stranger = build("demo-frontend", ca), ec.generate_private_key(ec.SECP256R1())
    assert_fails("KeyMismatch", lambda: validate(leaf, ca, trust=[ca], key=stranger), stranger, leaf.key,
                 mentions=("kv-frontend", "'demo-frontend'"))


@pytest.mark.parametrize("key, described", [
    pytest.param(lambda: ec.generate_private_key(ec.SECP521R1()), "EC secp521r1", id="p521"),
    pytest.param(lambda: rsa.generate_private_key(public_exponent=65537, key_size=1024), "RSA 1024-bit", id="rsa1024"),
    pytest.param(lambda: ed25519.Ed25519PrivateKey.generate(), "Ed25519", id="ed25519"),
])
def test_unsupported_key_types(key, described):
    ca = make_ca()
    leaf = build("demo-frontend", ca, key=key())
    assert_fails("UnsupportedKey", lambda: validate(leaf, trust=[ca]), leaf.key, mentions=(described,))


def test_expired_leaf():
    ca = make_ca(not_before=NOW - 400 * DAY)
    leaf = build("demo-frontend", ca, not_before=NOW - 100 * DAY, not_after=NOW - DAY)
    assert_fails("Expired", lambda: validate(leaf, trust=[ca]), leaf.key, mentions=("'demo-frontend'", "expired"))


def test_leaf_not_yet_valid():
    ca = make_ca()
    leaf = build("demo-frontend", ca, not_before=NOW + DAY)
    assert_fails("NotYetValid", lambda: validate(leaf, trust=[ca]), leaf.key, mentions=("'demo-frontend'",))


def test_validity_is_judged_at_the_given_time():
    ca = make_ca()
    leaf = build("demo-frontend", ca)
    bundle = parse_pem(leaf.pem + leaf.key_pem)
    assert_fails("Expired", lambda: validate_leaf(bundle, [ca.cert], BOTH, name="kv", now=NOW + 31 * DAY))


@pytest.mark.parametrize("eku, requirement, rule", [
    ((SERVER,), BOTH, "MissingClientAuth"),
    ((CLIENT,), Requirement(server_auth=True, client_auth=False), "MissingServerAuth"),
])
def test_a_leaf_without_a_usage_its_role_needs(eku, requirement, rule):
    ca = make_ca()
    leaf = build("demo-frontend", ca, eku=eku)
    assert_fails(rule, lambda: validate(leaf, trust=[ca], requirement=requirement), leaf.key,
                 mentions=("kv-frontend", "'demo-frontend'"))


def test_a_key_usage_without_digital_signature():
    ca = make_ca()
    leaf = build("demo-frontend", ca, key_usage={"digital_signature": False, "key_agreement": True})
    assert_fails("MissingDigitalSignature", lambda: validate(leaf, trust=[ca]), leaf.key)


def test_a_leaf_without_the_dns_name_peers_dial():
    ca = make_ca()
    leaf = build("demo-frontend", ca, dns=("other.ns.svc",))
    assert_fails("MissingDNSName", lambda: validate(leaf, trust=[ca]), leaf.key,
                 mentions=(HOST, "other.ns.svc", "'demo-frontend'"))


def test_an_undecodable_extension_is_malformed():
    ca = make_ca()
    leaf = build("demo-frontend", ca, eku=())  # an empty extendedKeyUsage: DER that no parser accepts
    assert_fails("Malformed", lambda: validate(leaf, trust=[ca]), leaf.key, mentions=("'demo-frontend'",))


# -- the chain -------------------------------------------------------------------------------------


def test_a_missing_intermediate_is_untrusted():
    root = make_ca()
    leaf = build("demo-frontend", make_ca("Issuing CA", root))
    assert_fails("Untrusted", lambda: validate(leaf, trust=[root]), leaf.key,
                 mentions=("kv-frontend", "'demo-frontend'", "'Root CA'"))


def test_a_forged_issuer_name_is_caught_by_the_signature():
    trusted, impostor = make_ca("Root CA"), make_ca("Root CA")  # same name, different key
    leaf = build("demo-frontend", impostor)
    assert_fails("Untrusted", lambda: validate(leaf, trust=[trusted]), leaf.key, impostor.key)


def test_a_ca_limited_to_signing_leaves_cannot_have_an_intermediate():
    root = make_ca(path_length=0)
    intermediate = make_ca("Issuing CA", root)
    leaf = build("demo-frontend", intermediate)
    assert_fails("Untrusted", lambda: validate(leaf, intermediate, trust=[root]), leaf.key)


def test_an_intermediate_without_ca_true():
    root = make_ca()
    fake = build("Issuing CA", root, dns=())  # CA:false, yet it signs the leaf
    leaf = build("demo-frontend", fake)
    assert_fails("NotACA", lambda: validate(leaf, fake, trust=[root]), leaf.key, mentions=("'Issuing CA'",))


def test_an_expired_intermediate():
    root = make_ca(not_before=NOW - 400 * DAY)
    intermediate = make_ca("Issuing CA", root, not_before=NOW - 300 * DAY, not_after=NOW - DAY)
    leaf = build("demo-frontend", intermediate)
    assert_fails("CAExpired", lambda: validate(leaf, intermediate, trust=[root]), leaf.key,
                 mentions=("'Issuing CA'",))


def test_a_ca_whose_extended_key_usage_excludes_the_role():
    root = make_ca()
    intermediate = make_ca("Server-only CA", root, eku=(SERVER,))  # Go's verifier nests usages through CAs
    leaf = build("demo-frontend", intermediate)
    assert_fails("MissingClientAuth", lambda: validate(leaf, intermediate, trust=[root]), leaf.key,
                 mentions=("'Server-only CA'",))
    validate(leaf, intermediate, trust=[root], requirement=Requirement(server_auth=True, client_auth=False))


# -- the trust bundle --------------------------------------------------------------------------------


def test_an_empty_trust_bundle():
    leaf = build("demo-frontend", make_ca())
    assert_fails("EmptyTrustBundle", lambda: validate(leaf, trust=[]), leaf.key)
    assert_fails("EmptyTrustBundle", lambda: validate_ca_bundle([]))


def test_a_trust_certificate_without_ca_true():
    ca = make_ca()
    not_a_ca = build("Not A CA", ca)
    leaf = build("demo-frontend", ca)
    assert_fails("NotACA", lambda: validate(leaf, trust=[not_a_ca]), leaf.key, mentions=("'Not A CA'", "kv-frontend"))


def test_a_trust_certificate_whose_key_usage_lacks_key_cert_sign():
    ca = make_ca(key_usage={"key_cert_sign": False})
    leaf = build("demo-frontend", ca)
    failure = assert_fails("NotACA", lambda: validate(leaf, trust=[ca]), leaf.key)
    assert "keyCertSign" in str(failure)


def test_an_expired_trust_certificate():
    ca = make_ca(not_before=NOW - 400 * DAY, not_after=NOW - DAY)
    assert_fails("CAExpired", lambda: validate_ca_bundle([ca.cert], name="kv-ca"), ca.key,
                 mentions=("kv-ca", "'Root CA'"))


def test_the_ca_bundle_is_deduplicated_and_normalised():
    first, second = make_ca("first"), make_ca("second")
    assert validate_ca_bundle([first.cert, second.cert, first.cert]) == first.pem + second.pem
