"""The codec an app uses, from the mounted keys Secret: ``TEMPORAL_CODEC_DIR`` set means payloads are encrypted."""

from __future__ import annotations

import dataclasses
import json
import os
from functools import lru_cache
from pathlib import Path

import temporalio.converter

from .codec import EncryptionCodec
from .keys import KeyProvider, SecretKeyProvider
from .keyvault import KeyVaultKeyProvider, VaultOptions

CODEC_DIR_ENV = "TEMPORAL_CODEC_DIR"
SETTINGS_FILE = "codec.json"


def provider_from_dir(directory: str | Path) -> tuple[KeyProvider, dict]:
    """(key provider, settings) as the operator wrote them into the keys Secret (codec.json)."""
    directory = Path(directory)
    settings = json.loads((directory / SETTINGS_FILE).read_text())
    if settings.get("source") == "azureKeyVault":
        vault = settings.get("vault") or {}
        ca = vault.get("caBundle")
        options = VaultOptions(vault.get("apiVersion"), vault.get("verifyChallengeResource", True),
                               str(directory / ca) if ca else None, vault.get("clientId"))
        return KeyVaultKeyProvider(directory, options=options, ttl=float(vault.get("cacheTTLSeconds", 300))), settings
    return SecretKeyProvider(directory), settings


@lru_cache(maxsize=1)
def codec_from_env() -> EncryptionCodec | None:
    """One codec per process (its unwrapped-key cache outlives reconnects); None without TEMPORAL_CODEC_DIR."""
    directory = os.environ.get(CODEC_DIR_ENV)
    if not directory:
        return None
    provider, settings = provider_from_dir(directory)
    return EncryptionCodec(provider, compress=bool(settings.get("compress")))


def data_converter() -> temporalio.converter.DataConverter:
    """The default converter, plus (with TEMPORAL_CODEC_DIR) the codec; failure messages and stack traces are
    moved into an encoded payload too, so the server stores no plain-text error text either."""
    codec = codec_from_env()
    default = temporalio.converter.DataConverter.default
    if not codec:
        return default
    encoded_failures = temporalio.converter.DefaultFailureConverterWithEncodedAttributes
    return dataclasses.replace(default, payload_codec=codec, failure_converter_class=encoded_failures)
