"""The control plane's PKI: leaves chain to their CA and carry the right usages and names."""

from __future__ import annotations

import ipaddress

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from localkube.pki import issue, new_ca


def test_leaf_is_signed_by_its_ca_and_names_its_sans():
    ca = new_ca("ca")
    leaf = issue(ca, "kube-apiserver", server=True, dns_names=("localhost",), ip_addresses=("127.0.0.1",))
    leaf.cert.verify_directly_issued_by(ca.cert)
    sans = leaf.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    usages = leaf.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_client_cert_carries_groups_as_organizations():
    leaf = issue(new_ca("ca"), "localkube-admin", organizations=("system:masters",), client=True)
    assert leaf.cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:masters"
    assert list(leaf.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH]


def test_ca_is_a_ca():
    ca = new_ca("ca")
    assert ca.cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
