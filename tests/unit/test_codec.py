"""The payload codec: AES-256-GCM per payload, key id in the metadata, rotation, tampering, compression."""

from __future__ import annotations

import asyncio
import os

import pytest
from cryptography.exceptions import InvalidTag
from temporalio.api.common.v1 import Payload
from temporalio.converter import DataConverter

from temporal_mtls_codec import ENCODING, KEY_ID_METADATA, EncryptionCodec, KeyUnavailable, SecretKeyProvider
from temporal_mtls_codec.keyvault import KeyVaultKeyProvider, envelope


def keys_dir(tmp_path, *ids: str, active: str | None = None):
    for key_id in ids:
        (tmp_path / f"{key_id}.key").write_bytes(os.urandom(32))
    (tmp_path / "active").write_text(active or ids[-1])
    return SecretKeyProvider(tmp_path)


def converter(provider, **options) -> DataConverter:
    return DataConverter(payload_codec=EncryptionCodec(provider, **options))


def run(coroutine):
    return asyncio.run(coroutine)


def test_round_trip_hides_the_plain_text_and_names_the_key(tmp_path):
    data = converter(keys_dir(tmp_path, "k1"))
    [payload] = run(data.encode(["Hello World!"]))
    assert payload.metadata["encoding"] == ENCODING
    assert payload.metadata[KEY_ID_METADATA] == b"k1"
    assert b"Hello" not in payload.SerializeToString() and b"json/plain" not in payload.SerializeToString()
    assert run(data.decode([payload], [str])) == ["Hello World!"]


def test_every_payload_gets_its_own_nonce(tmp_path):
    data = converter(keys_dir(tmp_path, "k1"))
    first, second = run(data.encode(["same", "same"]))
    assert first.data[:12] != second.data[:12] and first.data != second.data


def test_rotation_new_key_encrypts_old_keys_still_decrypt(tmp_path):
    provider = keys_dir(tmp_path, "k1")
    data = converter(provider)
    [old] = run(data.encode(["before"]))
    (tmp_path / "k2.key").write_bytes(os.urandom(32))
    (tmp_path / "active").write_text("k2")
    [new] = run(data.encode(["after"]))
    assert (old.metadata[KEY_ID_METADATA], new.metadata[KEY_ID_METADATA]) == (b"k1", b"k2")
    assert run(data.decode([old, new], [str, str])) == ["before", "after"]


def test_a_relabelled_or_tampered_payload_does_not_decrypt(tmp_path):
    provider = keys_dir(tmp_path, "k1", "k2", active="k1")
    codec = EncryptionCodec(provider)
    [payload] = run(codec.encode([Payload(metadata={"encoding": b"json/plain"}, data=b'"x"')]))
    relabelled = Payload(metadata={**payload.metadata, KEY_ID_METADATA: b"k2"}, data=payload.data)
    with pytest.raises(InvalidTag):
        run(codec.decode([relabelled]))
    flipped = Payload(metadata=payload.metadata, data=payload.data[:-1] + bytes([payload.data[-1] ^ 1]))
    with pytest.raises(InvalidTag):
        run(codec.decode([flipped]))


def test_unknown_or_malformed_key_ids_are_refused(tmp_path):
    provider = keys_dir(tmp_path, "k1")
    codec = EncryptionCodec(provider)
    [payload] = run(codec.encode([Payload(metadata={"encoding": b"json/plain"}, data=b'"x"')]))
    for key_id in (b"gone", b"../k1", b""):
        with pytest.raises(KeyUnavailable):
            run(codec.decode([Payload(metadata={**payload.metadata, KEY_ID_METADATA: key_id}, data=payload.data)]))
    (tmp_path / "short.key").write_bytes(b"x" * 16)
    with pytest.raises(KeyUnavailable, match="not 32 bytes"):
        provider.get("short")


def test_compression_is_optional_and_authenticated(tmp_path):
    provider = keys_dir(tmp_path, "k1")
    big = "Hello World! " * 500
    [plain] = run(converter(provider).encode([big]))
    [packed] = run(converter(provider, compress=True).encode([big]))
    assert len(packed.data) < len(plain.data) // 10
    assert run(converter(provider).decode([packed], [str])) == [big]  # any reader decodes it
    stripped = Payload(metadata={k: v for k, v in packed.metadata.items() if k != "encryption-compression"},
                       data=packed.data)
    with pytest.raises(InvalidTag):
        run(EncryptionCodec(provider).decode([stripped]))


def test_payloads_that_are_not_encrypted_pass_through(tmp_path):
    codec = EncryptionCodec(keys_dir(tmp_path, "k1"))
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'"x"')
    assert run(codec.decode([plain])) == [plain]


def test_data_keys_never_show_in_reprs(tmp_path):
    provider = keys_dir(tmp_path, "k1")
    key = provider.active()
    assert key.material.hex() not in repr(key) and str(key.material) not in repr(key)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_key_vault_provider_caches_with_a_ttl_and_serves_stale_keys_while_the_vault_is_down(tmp_path):
    """The vault's part is a function here; tests/keyvault runs the same provider against the emulator."""
    material, calls, down = os.urandom(32), [], []

    def unwrap(kid, alg, wrapped):
        calls.append(kid)
        if down:
            raise ConnectionError("vault down")
        return material

    (tmp_path / "d1.wrapped").write_bytes(envelope("https://v/keys/kek/1", b"wrapped"))
    (tmp_path / "active").write_text("d1")
    clock = Clock()
    provider = KeyVaultKeyProvider(tmp_path, object(), ttl=60, retry_after=10, clock=clock, unwrap=unwrap)
    assert provider.active().material == material and provider.status.reachable is True
    clock.now = 59
    provider.get("d1")
    assert len(calls) == 1  # cached
    down.append(True)
    clock.now = 61
    assert provider.get("d1") == material  # stale, but the worker keeps running
    assert provider.status.reachable is False and provider.status.last_error.startswith("ConnectionError")
    clock.now = 65
    provider.get("d1")
    assert len(calls) == 2  # within retry_after: no second wait on a dead vault
    assert "temporal_codec_key_vault_reachable 0" in provider.status.metrics()
    assert material.hex() not in provider.status.metrics() + repr(provider.status)
    down.clear()
    clock.now = 80
    provider.get("d1")
    assert provider.status.reachable is True and len(calls) == 3


def test_key_vault_provider_without_a_cached_key_reports_the_outage(tmp_path):
    def unwrap(*_):
        raise ConnectionError("vault down")

    (tmp_path / "d1.wrapped").write_bytes(envelope("https://v/keys/kek/1", b"wrapped"))
    (tmp_path / "broken.wrapped").write_bytes(b"{not json")
    provider = KeyVaultKeyProvider(tmp_path, object(), unwrap=unwrap)
    with pytest.raises(KeyUnavailable, match="cannot unwrap"):
        provider.get("d1")
    with pytest.raises(KeyUnavailable, match="malformed wrapped key"):
        provider.get("broken")
    assert provider.status.unwraps["error"] == 1


def test_the_apps_converter_encrypts_failure_messages_too(tmp_path, monkeypatch):
    from temporalio.api.failure.v1 import Failure
    from temporalio.exceptions import ApplicationError

    from temporal_mtls_codec import config

    keys_dir(tmp_path, "k1")
    (tmp_path / "codec.json").write_text('{"source": "secret", "compress": false}')
    monkeypatch.setenv(config.CODEC_DIR_ENV, str(tmp_path))
    config.codec_from_env.cache_clear()
    try:
        converter = config.data_converter()
        failure = Failure()
        run(converter.encode_failure(ApplicationError("card 4111 declined"), failure))
        assert "4111" not in str(failure) and failure.encoded_attributes.metadata["encoding"] == ENCODING
        assert "4111" in str(run(converter.decode_failure(failure)))
    finally:
        config.codec_from_env.cache_clear()
