"""The host_vault fixture is a working Key Vault for the Azure SDK: managed-identity tokens, TLS,
certificate import, and data that survive a restart."""

from __future__ import annotations

import datetime as dt
import time
import uuid

import pytest
from azure.identity import ManagedIdentityCredential
from azure.keyvault.certificates import CertificateClient, CertificateContentType, CertificatePolicy
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from temporal_mtls_operator.certs import issue


@pytest.fixture
def credential(host_vault, monkeypatch):
    """The production credential path: ManagedIdentityCredential against the emulator's token endpoint."""
    for name in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_FEDERATED_TOKEN_FILE", "IMDS_ENDPOINT", "MSI_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in host_vault.env().items():
        monkeypatch.setenv(name, value)
    return ManagedIdentityCredential()


@pytest.fixture
def certificates(host_vault, credential):
    client = CertificateClient(host_vault.url, credential, api_version="7.6", verify_challenge_resource=False,
                               connection_verify=host_vault.ca_file, retry_total=0)
    yield client
    client.close()


def key_and_leaf() -> tuple[bytes, x509.Certificate]:
    """PEM with the PKCS#8 key and the leaf only (the emulator keeps the LAST certificate of a chain)."""
    ca = issue.issue_ca("emulator test CA", dt.timedelta(days=1))
    leaf = issue.issue_leaf(ca, issue.LeafProfile("web.example", dns_names=("web.example",), server=True),
                            dt.timedelta(days=1), issue.KeyAlgorithm.ECDSA_P256)
    return leaf.key_pem + leaf.cert_pem, leaf.certificate


def test_managed_identity_credential_gets_a_token(credential):
    token = credential.get_token("https://vault.azure.net/.default")
    assert token.token.count(".") == 2  # a JWT
    assert token.expires_on > time.time() + 60


def test_sdk_imports_a_pem_and_reads_back_the_same_certificate(certificates):
    pem, leaf = key_and_leaf()
    name = f"web-{uuid.uuid4().hex[:8]}"
    imported = certificates.import_certificate(name, pem, policy=CertificatePolicy(
        content_type=CertificateContentType.pem))
    stored = certificates.get_certificate(name)
    assert stored.cer == leaf.public_bytes(serialization.Encoding.DER)
    assert stored.properties.x509_thumbprint == leaf.fingerprint(hashes.SHA1())
    assert stored.properties.version == imported.properties.version


def test_restart_keeps_the_certificate_version(host_vault, certificates):
    pem, leaf = key_and_leaf()
    name = f"kept-{uuid.uuid4().hex[:8]}"
    version = certificates.import_certificate(name, pem).properties.version
    url = host_vault.url
    host_vault.stop()
    assert not host_vault.running
    host_vault.start()
    assert host_vault.url == url  # same ports, so clients made before the restart still work
    stored = certificates.get_certificate(name)
    assert (stored.properties.version, stored.properties.x509_thumbprint) == (version, leaf.fingerprint(hashes.SHA1()))
