"""Envelope encryption of payload data keys against the Lowkey Vault emulator, with the real Azure SDK and
DefaultAzureCredential (managed identity at the emulator's token endpoint): wrap with a vault RSA key,
unwrap on use, rotation of the vault key, and a vault outage while keys are cached."""

from __future__ import annotations

import asyncio
import json
import os
import uuid

import pytest
from azure.identity import DefaultAzureCredential
from azure.keyvault.keys import KeyClient
from temporalio.converter import DataConverter

from temporal_mtls_codec import KEY_ID_METADATA, EncryptionCodec, KeyUnavailable
from temporal_mtls_codec.keyvault import KeyVaultKeyProvider, VaultOptions, parse_envelope, wrap_new_data_key

# Lowkey Vault (unlike Key Vault) also wants "encrypt"/"decrypt" on a key that wraps/unwraps.
KEY_OPERATIONS = ["wrapKey", "unwrapKey", "encrypt", "decrypt"]


@pytest.fixture
def credential(host_vault, monkeypatch):
    for name in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_FEDERATED_TOKEN_FILE", "IMDS_ENDPOINT", "MSI_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in host_vault.env().items():
        monkeypatch.setenv(name, value)
    return DefaultAzureCredential(exclude_interactive_browser_credential=True)


@pytest.fixture
def options(host_vault) -> VaultOptions:
    return VaultOptions(api_version="7.6", verify_challenge_resource=False, ca_bundle_path=host_vault.ca_file)


@pytest.fixture
def vault_key(host_vault, credential, options) -> str:
    name = f"payloads-{uuid.uuid4().hex[:8]}"
    with KeyClient(host_vault.url, credential, **options.client_kwargs()) as keys:
        keys.create_rsa_key(name, size=2048, key_operations=KEY_OPERATIONS)
    return name


def store(directory, key_id: str, wrapped: bytes) -> None:
    """What the operator writes into the app's Secret (and the kubelet mounts): the envelope, never the key."""
    (directory / f"{key_id}.wrapped").write_bytes(wrapped)
    (directory / "active").write_text(key_id)


def test_the_stored_envelope_unwraps_only_through_the_vault_and_encrypts_payloads(
        host_vault, credential, options, vault_key, tmp_path):
    data_key = os.urandom(32)
    wrapped = wrap_new_data_key(host_vault.url, vault_key, data_key, credential, options)
    kid, algorithm, blob = parse_envelope(wrapped)
    assert kid.startswith(f"{host_vault.url}/keys/{vault_key}/") and len(kid.rsplit("/", 1)[1]) == 32  # versioned
    assert algorithm == "RSA-OAEP-256" and len(blob) == 256 and data_key not in wrapped and data_key not in blob
    store(tmp_path, "d1", wrapped)
    provider = KeyVaultKeyProvider(tmp_path, credential, options)
    assert provider.get("d1") == data_key  # the emulator's RSA-OAEP-256 matches the SDK's local wrap
    converter = DataConverter(payload_codec=EncryptionCodec(provider))
    [payload] = asyncio.run(converter.encode(["Hello World!"]))
    assert payload.metadata[KEY_ID_METADATA] == b"d1" and b"Hello" not in payload.data
    assert asyncio.run(converter.decode([payload], [str])) == ["Hello World!"]


def test_after_a_vault_key_rotation_new_keys_wrap_with_the_new_version_and_old_payloads_still_decrypt(
        host_vault, credential, options, vault_key, tmp_path):
    store(tmp_path, "d1", wrap_new_data_key(host_vault.url, vault_key, os.urandom(32), credential, options))
    converter = DataConverter(payload_codec=EncryptionCodec(KeyVaultKeyProvider(tmp_path, credential, options)))
    [before] = asyncio.run(converter.encode(["before"]))
    with KeyClient(host_vault.url, credential, **options.client_kwargs()) as keys:
        rotated = keys.create_rsa_key(vault_key, size=2048, key_operations=KEY_OPERATIONS)  # a new version
    store(tmp_path, "d2", wrap_new_data_key(host_vault.url, vault_key, os.urandom(32), credential, options))
    assert parse_envelope((tmp_path / "d2.wrapped").read_bytes())[0] == rotated.id
    assert parse_envelope((tmp_path / "d1.wrapped").read_bytes())[0] != rotated.id
    fresh = DataConverter(payload_codec=EncryptionCodec(KeyVaultKeyProvider(tmp_path, credential, options)))
    [after] = asyncio.run(fresh.encode(["after"]))
    assert (before.metadata[KEY_ID_METADATA], after.metadata[KEY_ID_METADATA]) == (b"d1", b"d2")
    assert asyncio.run(fresh.decode([before, after], [str, str])) == ["before", "after"]


def test_a_stopped_vault_leaves_cached_keys_working_and_says_it_is_unreachable(
        host_vault, credential, options, vault_key, tmp_path):
    store(tmp_path, "cold", wrap_new_data_key(host_vault.url, vault_key, os.urandom(32), credential, options))
    store(tmp_path, "warm", wrap_new_data_key(host_vault.url, vault_key, os.urandom(32), credential, options))
    provider = KeyVaultKeyProvider(tmp_path, credential, options, ttl=0.0, retry_after=0.0)  # every use asks
    converter = DataConverter(payload_codec=EncryptionCodec(provider))
    [payload] = asyncio.run(converter.encode(["Hello World!"]))
    assert provider.status.reachable is True
    assert "temporal_codec_key_vault_reachable 1" in provider.status.metrics()
    host_vault.stop()
    try:
        assert asyncio.run(converter.decode([payload], [str])) == ["Hello World!"]  # the cached key
        assert provider.status.reachable is False
        assert provider.status.last_error.startswith("ServiceRequestError")  # connection refused, not auth
        assert "temporal_codec_key_vault_reachable 0" in provider.status.metrics()
        assert provider.status.unwraps["stale"] >= 1
        with pytest.raises(KeyUnavailable, match="cannot unwrap key 'cold'"):
            provider.get("cold")  # never unwrapped: nothing cached to fall back on
    finally:
        host_vault.start()  # the session's other tests need it (its data survive the restart)
    assert asyncio.run(converter.decode([payload], [str])) == ["Hello World!"]
    assert provider.status.reachable is True and len(provider.get("cold")) == 32
    assert json.loads((tmp_path / "warm.wrapped").read_bytes())["alg"] == "RSA-OAEP-256"
