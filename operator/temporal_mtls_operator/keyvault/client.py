"""Key Vault clients from settings: the switches emulators and sovereign clouds need, nothing else.

No SDK retries by default, on purpose: the SDK would sleep out a 429's Retry-After inside the
call; a throttled or failing vault is reported and retried by the operator's own schedule instead.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.keyvault.certificates import CertificateClient
from azure.keyvault.secrets import SecretClient

from .. import metrics


@dataclass(frozen=True)
class VaultSettings:
    vault_url: str
    api_version: str | None = None  # None: the SDK's default (emulators may need "7.6")
    verify_challenge_resource: bool = True  # False only for emulators on hosts outside *.vault.azure.net
    ca_bundle_path: str | None = None  # PEM file that verifies the vault's TLS (None: system trust)
    client_id: str | None = None  # user-assigned managed identity / workload identity client id
    retry_total: int = 0
    timeout_seconds: float = 10.0


class RequestCounter(SansIOHTTPPolicy):
    """Counts requests by (HTTP method, response status or the exception's name); thread-safe. Each one also goes
    to the operator's metrics (by operation, e.g. get_certificate, and outcome, e.g. 200, 429)."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def on_response(self, request, response) -> None:
        self._count(request.http_request, str(response.http_response.status_code))

    def on_exception(self, request) -> None:
        import sys
        self._count(request.http_request, type(sys.exc_info()[1]).__name__)

    def _count(self, http_request, outcome: str) -> None:
        with self._lock:
            self.counts[(http_request.method, outcome)] += 1
        metrics.keyvault_request(http_request.method, http_request.url, outcome)

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self.counts.values())


@dataclass
class VaultClients:
    certificates: CertificateClient
    secrets: SecretClient
    requests: RequestCounter = field(default_factory=RequestCounter)

    def close(self) -> None:
        self.certificates.close()
        self.secrets.close()


def default_credential(client_id: str | None = None):
    """DefaultAzureCredential: environment, AKS Workload Identity, then managed identity (IDENTITY_ENDPOINT)."""
    from azure.identity import DefaultAzureCredential
    return DefaultAzureCredential(managed_identity_client_id=client_id, workload_identity_client_id=client_id,
                                  exclude_interactive_browser_credential=True,
                                  exclude_visual_studio_code_credential=True)


def open_clients(settings: VaultSettings, credential=None) -> VaultClients:
    counter = RequestCounter()
    options: dict = {"verify_challenge_resource": settings.verify_challenge_resource,
                     "retry_total": settings.retry_total, "per_call_policies": [counter],
                     "connection_timeout": settings.timeout_seconds, "read_timeout": settings.timeout_seconds}
    if settings.api_version:
        options["api_version"] = settings.api_version
    if settings.ca_bundle_path:
        options["connection_verify"] = settings.ca_bundle_path
    credential = credential or default_credential(settings.client_id)
    return VaultClients(CertificateClient(settings.vault_url, credential, **options),
                        SecretClient(settings.vault_url, credential, **options), counter)
