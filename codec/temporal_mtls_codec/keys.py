"""Data keys: a KeyProvider gives the active key (encrypts) and any known key by id (decrypts).

The keys live in a mounted Secret directory (``KEYS_DIR``): ``active`` names the key id that encrypts;
``<id>.key`` holds a 32-byte data key (secret source) or ``<id>.wrapped`` a JSON envelope whose data
key a Key Vault key unwraps (azureKeyVault source, see keyvault.py). Old keys stay: they decrypt.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

KEY_BYTES = 32
ACTIVE_FILE = "active"
KEY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")  # also a valid Secret data key with a suffix


class KeyUnavailable(Exception):
    """A key id the provider cannot produce (unknown, malformed, or its wrapping key unreachable)."""


@dataclass(frozen=True)
class DataKey:
    key_id: str
    material: bytes

    def __repr__(self) -> str:  # never print key material
        return f"DataKey({self.key_id!r})"


class KeyProvider(Protocol):
    def active(self) -> DataKey: ...

    def get(self, key_id: str) -> bytes: ...


def read_active_id(directory: Path) -> str:
    try:
        key_id = (directory / ACTIVE_FILE).read_text().strip()
    except OSError as error:
        raise KeyUnavailable(f"no active key id in {directory / ACTIVE_FILE}: {error.strerror}") from None
    if not KEY_ID.match(key_id):
        raise KeyUnavailable(f"malformed active key id in {directory / ACTIVE_FILE}")
    return key_id


class MountedKeys:
    """Keys in a mounted Secret directory: ``active`` names the key that encrypts; ``get`` is the provider's."""

    directory: Path

    def active(self) -> DataKey:
        key_id = read_active_id(self.directory)
        return DataKey(key_id, self.get(key_id))

    def get(self, key_id: str) -> bytes:
        raise NotImplementedError


class SecretKeyProvider(MountedKeys):
    """Plain data keys mounted from a Kubernetes Secret; re-read on every call (the kubelet swaps files)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def get(self, key_id: str) -> bytes:
        if not KEY_ID.match(key_id):
            raise KeyUnavailable("malformed key id")
        try:
            material = (self.directory / f"{key_id}.key").read_bytes()
        except OSError:
            raise KeyUnavailable(f"unknown key id {key_id!r}") from None
        if len(material) != KEY_BYTES:
            raise KeyUnavailable(f"key {key_id!r} is not {KEY_BYTES} bytes")
        return material
