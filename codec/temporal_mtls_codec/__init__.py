"""Payload encryption at rest for Temporal: an AES-256-GCM PayloadCodec, its key providers and a codec server."""

from .keys import DataKey, KeyProvider, KeyUnavailable, SecretKeyProvider

__all__ = ["ENCODING", "KEY_ID_METADATA", "DataKey", "EncryptionCodec", "KeyProvider", "KeyUnavailable",
           "SecretKeyProvider"]


def __getattr__(name: str):
    """The codec (and with it temporalio, ~25 MB) loads on first use: the operator imports only the key layout."""
    if name in ("ENCODING", "KEY_ID_METADATA", "EncryptionCodec"):
        from . import codec
        return getattr(codec, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
