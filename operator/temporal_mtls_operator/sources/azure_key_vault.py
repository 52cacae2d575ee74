"""Certificates from Azure Key Vault: the public certificate first, the secret (key) only when it changed.

Per sync and certificate one request when nothing changed (get_certificate: compare the version
with the one recorded on the Secret the operator owns), two when it did (plus get_secret). Between
syncs (syncInterval with jitter) the Secrets the operator already published are served as they are.
Anything that fails is a SourceError with a condition reason; published Secrets are never touched then.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

from azure.core.exceptions import (ClientAuthenticationError, HttpResponseError, ResourceNotFoundError,
                                   ServiceRequestError, ServiceResponseError)
from azure.identity import CredentialUnavailableError
from cryptography import x509

from .. import metrics
from ..builders.secret_digest import DATA_DIGEST, changed_by_others
from ..certs.bundle import ParsedBundle, parse_keyvault_secret, parse_pem
from ..certs.inspect import CertificateError
from ..certs.validate import Requirement, ValidationFailure, validate_ca_bundle, validate_leaf
from ..keyvault import VaultClients, VaultSettings, open_clients
from ..kube import Kube
from ..models.cluster import MTLS, AzureKeyVault
from .base import (CLIENT_REQUIREMENT, NO_ROTATION, ClientRequest, ClusterIdentity, RotationRequest, SourceError,
                   TLSMaterial, requirements)
from .schedule import SyncSchedule
from .self_signed import secret_data

NAME = "temporal-mtls.dev/keyvault-certificate"
VERSION = "temporal-mtls.dev/keyvault-version"
THUMBPRINT = "temporal-mtls.dev/keyvault-thumbprint"


class AzureKeyVaultSource:
    """One per operator: keeps vault clients (connections, tokens) and each resource's sync schedule."""

    def __init__(self, kube: Kube, schedule: SyncSchedule | None = None, credential=None) -> None:
        self.kube, self.schedule, self.credential = kube, schedule or SyncSchedule(), credential
        self._clients: dict[VaultSettings, VaultClients] = {}

    # -- the CertificateSource interface --------------------------------------------------------

    def forget_read(self, namespace: str, *names: str) -> None:
        """Nothing to forget: every reconcile reads its Secrets afresh."""

    # rotation: the vault or issuer rotates; the handlers sync at once for a rotate annotation.
    def materials(self, cluster: ClusterIdentity, mtls: MTLS,
                  rotation: RotationRequest = NO_ROTATION) -> dict[str, TLSMaterial]:
        vault = mtls.source.azure_key_vault
        names = vault.certificates.by_role()
        published = {role: self._published(cluster.namespace, cluster.tls_secret(role)) for role in names}
        key = ("TemporalCluster", cluster.uid)
        if not self.schedule.due(key):
            self._raise_last_failure(key)
            if all(published[role] and published[role].origin.get(NAME) == names[role] for role in names):
                return published  # between syncs: no request to the vault

        def fetch(clients: VaultClients) -> dict[str, TLSMaterial]:
            trust = {domain: self._trust(clients, vault.ca_certificates.model_dump()[domain])
                     for domain in ("internode", "frontend")}
            return {role: self._leaf(clients, names[role], trust[domain], requirement, published[role])
                    for role, (domain, requirement) in requirements(cluster, mtls).items()}

        return self._sync(key, vault, cluster.namespace, fetch)

    def client_material(self, cluster: ClusterIdentity, mtls: MTLS, request: ClientRequest,
                        rotation: RotationRequest = NO_ROTATION) -> TLSMaterial:
        vault = mtls.source.azure_key_vault
        name = request.key_vault_certificate
        if not name:
            raise SourceError(f"TemporalCluster {cluster.name} takes certificates from Azure Key Vault: set "
                              "spec.keyVaultCertificate to the app's certificate name in that vault", "InvalidSpec")
        published = self._published(request.namespace, request.secret_name)
        key = ("TemporalClusterClient", request.namespace, request.secret_name)
        if not self.schedule.due(key):
            self._raise_last_failure(key)
            if published and published.origin.get(NAME) == name:
                return published

        def fetch(clients: VaultClients) -> TLSMaterial:
            trust = self._trust(clients, vault.ca_certificates.frontend)
            return self._leaf(clients, name, trust, CLIENT_REQUIREMENT, published)

        return self._sync(key, vault, request.namespace, fetch)

    # -- steps ---------------------------------------------------------------------------------

    def _raise_last_failure(self, key) -> None:
        """Between syncs the last failure stands (no request, no flapping status) until a sync succeeds."""
        error = self.schedule.last_error(key)
        if error is not None:
            raise error

    def _sync(self, key, vault: AzureKeyVault, namespace: str, fetch):
        interval = vault.interval.total_seconds()
        try:
            with metrics.keyvault_sync():
                result = fetch(self._clients_for(vault, namespace))
        except SourceError as error:
            self.schedule.failed(key, interval, error.retry_after, error)
            raise
        self.schedule.synced(key, interval)
        return result

    def _trust(self, clients: VaultClients, names: tuple[str, ...]) -> list[x509.Certificate]:
        certificates = [x509.load_der_x509_certificate(self._call(clients.certificates.get_certificate, name).cer)
                        for name in names]
        try:
            return parse_pem(validate_ca_bundle(certificates)).certificates
        except ValidationFailure as failure:
            raise SourceError(f"Key Vault CA certificates {', '.join(names)}: {failure}", failure.rule) from None

    def _leaf(self, clients: VaultClients, name: str, trust: list[x509.Certificate], requirement: Requirement,
              published: TLSMaterial | None) -> TLSMaterial:
        certificate = self._call(clients.certificates.get_certificate, name)
        version = certificate.properties.version
        if published and published.origin.get(NAME) == name and published.origin.get(VERSION) == version:
            bundle = parse_pem(published.cert_pem + published.key_pem)  # unchanged: re-check against today's trust
        else:
            secret = self._call(clients.secrets.get_secret, name, version)
            try:
                bundle = parse_keyvault_secret(secret.value or "", secret.properties.content_type)
            except CertificateError as error:
                raise SourceError(f"Key Vault certificate {name} (version {version}): {error}",
                                  getattr(error, "rule", "Malformed")) from None
            if bundle.private_key is None:
                raise SourceError(f"Key Vault certificate {name} (version {version}) has no private key in its "
                                  "secret: create it with an exportable key (policy exportable: true)",
                                  "NoPrivateKey")
        material = self._validated(bundle, trust, requirement, name)
        thumbprint = (certificate.properties.x509_thumbprint or b"").hex().upper()
        return TLSMaterial(material.cert_pem, material.key_pem, material.ca_pem,
                           {NAME: name, VERSION: version, THUMBPRINT: thumbprint})

    @staticmethod
    def _validated(bundle: ParsedBundle, trust, requirement: Requirement, name: str):
        try:
            return validate_leaf(bundle, trust, requirement, name=name)
        except ValidationFailure as failure:
            raise SourceError(f"Key Vault certificate {name}: {failure}", failure.rule) from None

    @staticmethod
    def _call(method, *args):
        """One vault request; every failure becomes a SourceError with a reason and a safe message."""
        name = args[0]
        try:
            return method(*args)
        except ResourceNotFoundError:
            raise SourceError(f"Key Vault has no certificate named {name}", "CertificateNotFound") from None
        except CredentialUnavailableError as error:
            raise SourceError(f"no Azure credential is available to the operator: {_first_line(error)}",
                              "CredentialUnavailable") from None
        except ClientAuthenticationError as error:
            status = getattr(error, "status_code", None)
            raise SourceError(f"Key Vault refused the operator's credential for {name}"
                              f"{f' (HTTP {status})' if status else ''}: {_first_line(error)}",
                              "VaultUnauthorized") from None
        except HttpResponseError as error:
            status = error.status_code
            if status == 429:
                retry_after = _retry_after(error)
                raise SourceError(f"Key Vault is throttling requests (HTTP 429); retrying after {retry_after:.0f}s",
                                  "VaultThrottled", retry_after) from None
            reason = {401: "VaultUnauthorized", 403: "VaultForbidden"}.get(status, "VaultError")
            raise SourceError(f"Key Vault answered HTTP {status} for {name}: {_first_line(error)}", reason) from None
        except (ServiceRequestError, ServiceResponseError) as error:
            raise SourceError(f"Key Vault is unreachable: {_first_line(error)}", "VaultUnreachable") from None
        except Exception as error:  # credential chains raise their own types (CredentialUnavailableError, ...)
            raise SourceError(f"Key Vault request for {name} failed: {type(error).__name__}: {_first_line(error)}",
                              "VaultError") from None

    def _published(self, namespace: str, secret_name: str) -> TLSMaterial | None:
        """What the operator published last time, if it came from Key Vault."""
        secret = self.kube.get("v1", "Secret", namespace, secret_name)
        data = secret_data(secret)
        origin = ((secret or {}).get("metadata") or {}).get("annotations") or {}
        if not (origin.get(NAME) and data.get("tls.crt") and data.get("tls.key") and data.get("ca.crt")):
            return None
        if DATA_DIGEST in origin and changed_by_others(secret):
            return None  # edited by hand since: fetch from the vault again, never re-publish the edit
        return TLSMaterial(data["tls.crt"], data["tls.key"], data["ca.crt"],
                           {k: origin[k] for k in (NAME, VERSION, THUMBPRINT) if k in origin})

    def _clients_for(self, vault: AzureKeyVault, namespace: str) -> VaultClients:
        settings = VaultSettings(vault.vault_url, vault.api_version, vault.verify_challenge_resource,
                                 self._ca_bundle(vault, namespace), vault.client_id)
        if settings not in self._clients:
            try:
                self._clients[settings] = open_clients(settings, self.credential)
            except Exception as error:  # e.g. AZURE_CLIENT_CERTIFICATE_PATH unreadable or not a certificate and key
                raise SourceError(f"the operator's Azure credential cannot be set up: {type(error).__name__}: "
                                  f"{_first_line(error)} (check the operator's AZURE_* environment and the files it "
                                  "names)", "CredentialUnavailable") from None
        return self._clients[settings]

    def _ca_bundle(self, vault: AzureKeyVault, namespace: str) -> str | None:
        """The vault's TLS trust from a Secret, as the file path the SDK's transport wants."""
        if not vault.tls_ca_secret:
            return None
        pem = secret_data(self.kube.get("v1", "Secret", namespace, vault.tls_ca_secret)).get("ca.crt")
        if not pem:
            raise SourceError(f"Secret {vault.tls_ca_secret} (azureKeyVault.tlsCASecret) is missing or has no "
                              "ca.crt", "VaultTLSConfigInvalid")
        path = Path(tempfile.gettempdir()) / "temporal-mtls-operator" / f"vault-ca-{hashlib.sha256(pem).hexdigest()[:16]}.pem"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(pem)
        return str(path)

    @property
    def requests(self) -> int:
        """Vault requests so far, over every client (benchmarks and metrics)."""
        return sum(c.requests.total for c in self._clients.values())


def _retry_after(error: HttpResponseError) -> float:
    headers = getattr(error.response, "headers", None) or {}
    try:
        return max(float(headers.get("Retry-After", "")), 1.0)
    except ValueError:
        return 30.0


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:300] if text else type(error).__name__
