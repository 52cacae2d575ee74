"""AES-256-GCM per payload: a random 96-bit nonce, the key id in the metadata, optional zlib before encryption."""

from __future__ import annotations

import os
import zlib
from collections.abc import Sequence

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

from .keys import KeyProvider

ENCODING = b"binary/encrypted"
KEY_ID_METADATA = "encryption-key-id"
COMPRESSION_METADATA = "encryption-compression"
NONCE_BYTES = 12


class EncryptionCodec(PayloadCodec):
    """Encrypts the whole serialized payload (its metadata too) with the provider's active key.

    The key id and compression flag are authenticated (GCM associated data): a payload relabelled
    with another key id or compression fails to decrypt instead of decoding to garbage.
    """

    def __init__(self, keys: KeyProvider, *, compress: bool = False) -> None:
        self.keys = keys
        self.compress = compress

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        key = self.keys.active()
        return [self._encrypt(key.key_id, key.material, payload) for payload in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._decrypt(payload) if payload.metadata.get("encoding") == ENCODING else payload
                for payload in payloads]

    def _encrypt(self, key_id: str, material: bytes, payload: Payload) -> Payload:
        plain = payload.SerializeToString()
        compression = b"zlib" if self.compress else b""
        if compression:
            plain = zlib.compress(plain)
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(material).encrypt(nonce, plain, _associated_data(key_id.encode(), compression))
        metadata = {"encoding": ENCODING, KEY_ID_METADATA: key_id.encode()}
        if compression:
            metadata[COMPRESSION_METADATA] = compression
        return Payload(metadata=metadata, data=nonce + sealed)

    def _decrypt(self, payload: Payload) -> Payload:
        key_id = payload.metadata.get(KEY_ID_METADATA, b"")
        compression = payload.metadata.get(COMPRESSION_METADATA, b"")
        material = self.keys.get(key_id.decode())
        nonce, sealed = payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:]
        plain = AESGCM(material).decrypt(nonce, sealed, _associated_data(key_id, compression))
        if compression == b"zlib":
            plain = zlib.decompress(plain)
        elif compression:
            raise ValueError(f"unknown payload compression {compression.decode(errors='replace')!r}")
        decoded = Payload()
        decoded.ParseFromString(plain)
        return decoded


def _associated_data(key_id: bytes, compression: bytes) -> bytes:
    return b"temporal-mtls-codec/v1\0" + key_id + b"\0" + compression
