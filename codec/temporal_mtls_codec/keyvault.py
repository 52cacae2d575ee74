"""Envelope encryption with Azure Key Vault: a data key wrapped by a Key Vault RSA key, unwrapped on use.

The apps store only the envelope (``<id>.wrapped``: the vault key's versioned id, the algorithm and the
wrapped bytes). Unwrapped keys are cached for ``ttl`` seconds; when the vault cannot be reached a cached
key keeps working (stale) and ``status`` says the vault is unreachable, so a vault outage does not stop
running workers.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .keys import KEY_BYTES, KEY_ID, KeyUnavailable, MountedKeys, SecretKeyProvider

ALGORITHM = "RSA-OAEP-256"  # Key Vault and Lowkey Vault both implement it (SHA-256, MGF1-SHA-256)


@dataclass(frozen=True)
class VaultOptions:
    """The switches emulators and sovereign clouds need (see the operator's VaultSettings)."""
    api_version: str | None = None
    verify_challenge_resource: bool = True
    ca_bundle_path: str | None = None
    client_id: str | None = None
    timeout_seconds: float = 10.0

    def client_kwargs(self) -> dict:
        options: dict = {"verify_challenge_resource": self.verify_challenge_resource, "retry_total": 0,
                         "connection_timeout": self.timeout_seconds, "read_timeout": self.timeout_seconds}
        if self.api_version:
            options["api_version"] = self.api_version
        if self.ca_bundle_path:
            options["connection_verify"] = self.ca_bundle_path
        return options


def envelope(vault_key_id: str, wrapped: bytes, algorithm: str = ALGORITHM) -> bytes:
    return json.dumps({"kid": vault_key_id, "alg": algorithm,
                       "value": base64.b64encode(wrapped).decode()}, sort_keys=True).encode()


def parse_envelope(raw: bytes) -> tuple[str, str, bytes]:
    try:
        document = json.loads(raw)
        return document["kid"], document["alg"], base64.b64decode(document["value"], validate=True)
    except (ValueError, KeyError, TypeError):
        raise KeyUnavailable("malformed wrapped key") from None


def crypto_client(vault_key_id: str, credential, options: VaultOptions):
    from azure.keyvault.keys.crypto import CryptographyClient
    return CryptographyClient(vault_key_id, credential, **options.client_kwargs())


def wrap_new_data_key(vault_url: str, key_name: str, material: bytes, credential,
                      options: VaultOptions) -> bytes:
    """The envelope of ``material`` under the vault key's current version (what the operator stores)."""
    from azure.keyvault.keys import KeyClient
    with KeyClient(vault_url, credential, **options.client_kwargs()) as keys:
        vault_key = keys.get_key(key_name)
    with crypto_client(vault_key.id, credential, options) as client:
        wrapped = client.wrap_key(_algorithm(ALGORITHM), material)  # locally with the public key when allowed
    return envelope(wrapped.key_id or vault_key.id, wrapped.encrypted_key)


def _algorithm(name: str):
    from azure.keyvault.keys.crypto import KeyWrapAlgorithm
    return KeyWrapAlgorithm(name)


@dataclass(eq=False)  # a prometheus_client collector: registered by identity
class VaultStatus:
    reachable: bool | None = None  # None: never asked yet
    last_error: str | None = None  # the exception's type and first line, never key material
    unwraps: dict[str, int] = field(default_factory=lambda: {"success": 0, "error": 0, "stale": 0})

    def metrics(self) -> str:
        """Prometheus text exposition (the codec server's /metrics)."""
        registry = CollectorRegistry()
        registry.register(self)
        return generate_latest(registry).decode()

    def collect(self):
        """prometheus_client's collector protocol: the current state, read at scrape time."""
        yield GaugeMetricFamily("temporal_codec_key_vault_reachable",
                                "1 if the last unwrap reached Key Vault, 0 if not.", value=0 if self.reachable is False else 1)
        unwraps = CounterMetricFamily("temporal_codec_key_unwraps",
                                      "Data key unwraps by outcome (stale: a cached key served while the vault was "
                                      "unreachable).", labels=["outcome"])
        for outcome, count in sorted(self.unwraps.items()):
            unwraps.add_metric([outcome], count)
        yield unwraps


class KeyVaultKeyProvider(MountedKeys):
    """Reads envelopes from a mounted Secret directory and unwraps them with Key Vault (cached, with a TTL)."""

    def __init__(self, directory: str | Path, credential=None, options: VaultOptions = VaultOptions(), *,
                 ttl: float = 300.0, retry_after: float = 15.0, clock=time.monotonic, unwrap=None) -> None:
        self.directory = Path(directory)
        self.options = options
        self.ttl, self.retry_after, self.clock = ttl, retry_after, clock
        self.status = VaultStatus()
        self._credential = credential
        self._unwrap = unwrap or self._unwrap_with_key_vault
        self._cache: dict[str, tuple[float, bytes]] = {}  # key id -> (unwrapped at, data key)
        self._failed_at: float | None = None
        self._lock = threading.Lock()

    def get(self, key_id: str) -> bytes:
        if not KEY_ID.match(key_id):
            raise KeyUnavailable("malformed key id")
        now = self.clock()
        with self._lock:
            cached = self._cache.get(key_id)
            if cached and now - cached[0] < self.ttl:
                return cached[1]
            if cached and self._failed_at is not None and now - self._failed_at < self.retry_after:
                self.status.unwraps["stale"] += 1  # the vault failed a moment ago: do not wait on it again
                return cached[1]
        try:
            raw = (self.directory / f"{key_id}.wrapped").read_bytes()
        except OSError:
            if (self.directory / f"{key_id}.key").exists():  # written before the app moved to Key Vault
                return SecretKeyProvider(self.directory).get(key_id)
            raise KeyUnavailable(f"unknown key id {key_id!r}") from None
        vault_key_id, algorithm, wrapped = parse_envelope(raw)
        try:
            material = self._unwrap(vault_key_id, algorithm, wrapped)
        except Exception as error:  # the SDK raises many types (transport, HTTP, auth); all mean "not now"
            with self._lock:
                self._failed_at = now
                self.status.reachable = False
                first_line = str(error).splitlines()[0][:200] if str(error) else ""
                self.status.last_error = f"{type(error).__name__}: {first_line}"
                if cached:
                    self.status.unwraps["stale"] += 1
                    return cached[1]
                self.status.unwraps["error"] += 1
            raise KeyUnavailable(f"cannot unwrap key {key_id!r} with Key Vault ({type(error).__name__})") from None
        if len(material) != KEY_BYTES:
            raise KeyUnavailable(f"key {key_id!r} is not {KEY_BYTES} bytes")
        with self._lock:
            self._cache[key_id] = (now, material)
            self._failed_at = None
            self.status.reachable, self.status.last_error = True, None
            self.status.unwraps["success"] += 1
        return material

    def _unwrap_with_key_vault(self, vault_key_id: str, algorithm: str, wrapped: bytes) -> bytes:
        if self._credential is None:
            from azure.identity import DefaultAzureCredential
            client_id = self.options.client_id
            self._credential = DefaultAzureCredential(managed_identity_client_id=client_id,
                                                      workload_identity_client_id=client_id,
                                                      exclude_interactive_browser_credential=True)
        with crypto_client(vault_key_id, self._credential, self.options) as client:
            return client.unwrap_key(_algorithm(algorithm), wrapped).key
