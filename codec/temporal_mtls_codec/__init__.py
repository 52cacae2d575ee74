"""Payload encryption at rest for Temporal: an AES-256-GCM PayloadCodec, its key providers and a codec server."""

from .codec import ENCODING, KEY_ID_METADATA, EncryptionCodec
from .keys import DataKey, KeyProvider, KeyUnavailable, SecretKeyProvider

__all__ = ["ENCODING", "KEY_ID_METADATA", "DataKey", "EncryptionCodec", "KeyProvider", "KeyUnavailable",
           "SecretKeyProvider"]
