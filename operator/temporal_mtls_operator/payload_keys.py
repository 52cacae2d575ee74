"""Payload data keys of an app (pure): what its keys Secret holds next, given what it holds now.

Layout (what temporal_mtls_codec reads from the mounted Secret): ``active`` names the key that encrypts;
``<id>.key`` is a random 32-byte data key (no vault) or ``<id>.wrapped`` its envelope under a Key Vault
key; ``codec.json`` the app's settings; ``vault-ca.crt`` what verifies the vault. Keys are only ever
added: every key that encrypted something stays, so old payloads stay readable after a rotation.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from temporal_mtls_codec.keys import ACTIVE_FILE, KEY_BYTES

from .api import GROUP
from .models.cluster import parse_duration
from .models.encryption import Encryption

ROTATE_ANNOTATION = f"{GROUP}/rotate-payload-key"
SETTINGS_FILE = "codec.json"
VAULT_CA_FILE = "vault-ca.crt"
SUFFIXES = {"secret": ".key", "azureKeyVault": ".wrapped"}


@dataclass(frozen=True)
class KeySet:
    data: dict[str, bytes]
    active: str
    created: bool  # a new data key was made this round

    @property
    def key_ids(self) -> list[str]:
        return sorted(name.rsplit(".", 1)[0] for name in self.data if name.endswith((".key", ".wrapped")))


def new_key_id(now: dt.datetime | None = None) -> str:
    return (now or dt.datetime.now(dt.timezone.utc)).strftime("%Y%m%d%H%M%S") + "-" + secrets.token_hex(3)


def settings(encryption: Encryption, vault_ca: bytes | None) -> bytes:
    document: dict = {"source": encryption.source, "compress": encryption.compress}
    vault = encryption.azure_key_vault
    if vault:
        document["vault"] = {"apiVersion": vault.api_version,
                             "verifyChallengeResource": vault.verify_challenge_resource,
                             "clientId": vault.client_id, "caBundle": VAULT_CA_FILE if vault_ca else None,
                             "cacheTTLSeconds": int(parse_duration(vault.cache_ttl).total_seconds())}
    return json.dumps(document, sort_keys=True).encode()


def next_keys(current: dict[str, bytes], encryption: Encryption, rotate: bool,
              wrap: Callable[[bytes], bytes] | None = None, vault_ca: bytes | None = None,
              now: dt.datetime | None = None) -> KeySet:
    """Keep the active key unless a rotation is asked for, or it is missing or of another source; else add one.

    ``wrap`` turns a data key into its envelope (Key Vault); it may raise: then nothing is to be written.
    """
    suffix = SUFFIXES[encryption.source]
    active = current.get(ACTIVE_FILE, b"").decode().strip()
    data = {name: value for name, value in current.items() if name.endswith((".key", ".wrapped"))}
    created = rotate or not active or f"{active}{suffix}" not in data
    if created:
        material = os.urandom(KEY_BYTES)
        active = new_key_id(now)
        data[f"{active}{suffix}"] = wrap(material) if suffix == ".wrapped" else material
    data[ACTIVE_FILE] = active.encode()
    data[SETTINGS_FILE] = settings(encryption, vault_ca)
    if vault_ca:
        data[VAULT_CA_FILE] = vault_ca
    return KeySet(data, active, created)
