"""TemporalCluster: the typed spec (the CRD schema in crds/ validates the same shape first)."""

from __future__ import annotations

import datetime as dt
import re

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from ..certs import KeyAlgorithm

DEFAULT_VERSION = "1.31.4"
# Our server build (server/): the stock server plus the certificate claim mapper; temporalio/server otherwise.
AUTHORIZING_IMAGE = "ghcr.io/temporal-mtls-operator/temporal-server"
STOCK_IMAGE = "temporalio/server"
_STOCK_IMAGE = re.compile(r"(^|/)temporalio/server([:@]|$)")
_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(text: str) -> dt.timedelta:
    """Go-style durations as Kubernetes and Temporal write them: 8760h, 30m, 1h30m, 90s."""
    match = _DURATION.match(text or "")
    if not text or not match:
        raise ValueError(f"invalid duration {text!r} (use hours, minutes, seconds such as 2160h or 1m30s)")
    hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    return dt.timedelta(hours=hours, minutes=minutes, seconds=seconds)


class Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class SQLite(Model):
    storage_size: str = "1Gi"
    storage_class_name: str | None = None


class SecretKeyRef(Model):
    name: str
    key: str


class PostgreSQLTLS(Model):
    """TLS to PostgreSQL: the server's certificate is verified against the CA and the host name (verify-full)."""
    enabled: bool = False
    ca_secret_ref: SecretKeyRef | None = None  # the CA bundle (PEM) in a Secret of the cluster's namespace
    sslmode: Literal["verify-full"] = "verify-full"

    @model_validator(mode="after")
    def ca_when_enabled(self) -> "PostgreSQLTLS":
        if self.enabled and not self.ca_secret_ref:
            raise ValueError("persistence.postgresql.tls.caSecretRef is required when tls.enabled (sslmode verify-full)")
        return self


class PostgreSQL(Model):
    host: str
    port: int = Field(default=5432, ge=1, le=65535)
    database: str = "temporal"
    visibility_database: str = "temporal_visibility"
    user: str
    password_secret_ref: SecretKeyRef  # only ever an env secretKeyRef: never rendered into a ConfigMap
    tls: PostgreSQLTLS = PostgreSQLTLS()
    schema_image: str | None = None  # runs temporal-sql-tool; default temporalio/admin-tools:<version>

    @model_validator(mode="after")
    def two_databases(self) -> "PostgreSQL":
        if self.database == self.visibility_database:
            raise ValueError("persistence.postgresql: database and visibilityDatabase must differ")
        return self


class Persistence(Model):
    sqlite: SQLite | None = None
    postgresql: PostgreSQL | None = None

    @model_validator(mode="after")
    def one_store(self) -> "Persistence":
        if self.sqlite and self.postgresql:
            raise ValueError("persistence: set either sqlite or postgresql, not both")
        return self

    @property
    def kind(self) -> str:
        return "postgresql" if self.postgresql else "sqlite"


class SelfSigned(Model):
    pass


class RoleNames(Model):
    """One name per certificate role of a cluster (Key Vault certificate names or Secret names)."""
    internode: str
    frontend: str
    system_worker: str
    operator_client: str

    def by_role(self) -> dict[str, str]:
        """Keyed like ``sources.base.leaf_profiles``: internode, frontend, system-worker, operator-client."""
        return {field.replace("_", "-"): getattr(self, field) for field in type(self).model_fields}


class TrustBundles(Model):
    """Key Vault certificates (public part only) whose certificates each trust domain trusts."""
    internode: tuple[str, ...] = Field(min_length=1)
    frontend: tuple[str, ...] = Field(min_length=1)


class AzureKeyVault(Model):
    vault_url: str = Field(pattern=r"^https://")
    certificates: RoleNames
    ca_certificates: TrustBundles
    sync_interval: str = "5m"
    api_version: str | None = None
    verify_challenge_resource: bool = True
    # Secret (key ca.crt) in the cluster's namespace verifying the vault's TLS; "CA" stays upper case in the API.
    tls_ca_secret: str | None = Field(default=None, alias="tlsCASecret")
    client_id: str | None = None

    @field_validator("sync_interval")
    @classmethod
    def valid_interval(cls, value: str) -> str:
        if parse_duration(value) < dt.timedelta(seconds=5):
            raise ValueError("azureKeyVault.syncInterval must be at least 5s")
        return value

    @property
    def interval(self) -> dt.timedelta:
        return parse_duration(self.sync_interval)


class CertificateSource(Model):
    self_signed: SelfSigned | None = None
    azure_key_vault: AzureKeyVault | None = None
    secret: RoleNames | None = None  # existing kubernetes.io/tls Secrets (tls.crt, tls.key, ca.crt), read only

    @model_validator(mode="after")
    def one_source(self) -> "CertificateSource":
        chosen = [name for name in ("self_signed", "azure_key_vault", "secret") if getattr(self, name) is not None]
        if len(chosen) > 1:
            raise ValueError(f"mtls.source: set exactly one of selfSigned, azureKeyVault, secret (got {len(chosen)})")
        return self

    @property
    def kind(self) -> str:
        if self.azure_key_vault:
            return "azureKeyVault"
        return "secret" if self.secret else "selfSigned"


class FrontendTLS(Model):
    require_client_auth: bool = True


class MTLS(Model):
    frontend: FrontendTLS = FrontendTLS()
    source: CertificateSource = CertificateSource(self_signed=SelfSigned())
    key_algorithm: KeyAlgorithm = KeyAlgorithm.ECDSA_P256
    ca_duration: str = "87600h"
    certificate_duration: str = "2160h"
    renew_before: str = "720h"
    extra_dns_names: tuple[str, ...] = ()
    refresh_interval: str = "1m"

    @field_validator("ca_duration", "certificate_duration", "renew_before", "refresh_interval")
    @classmethod
    def valid_duration(cls, value: str) -> str:
        parse_duration(value)
        return value

    @model_validator(mode="after")
    def consistent_lifetimes(self) -> "MTLS":
        ca, leaf, renew = (parse_duration(v) for v in (self.ca_duration, self.certificate_duration, self.renew_before))
        if renew >= leaf:
            raise ValueError(f"mtls.renewBefore ({self.renew_before}) must be shorter than "
                             f"mtls.certificateDuration ({self.certificate_duration})")
        if leaf > ca:
            raise ValueError(f"mtls.certificateDuration ({self.certificate_duration}) must not exceed "
                             f"mtls.caDuration ({self.ca_duration})")
        return self

    @property
    def leaf_lifetime(self) -> dt.timedelta:
        return parse_duration(self.certificate_duration)

    @property
    def ca_lifetime(self) -> dt.timedelta:
        return parse_duration(self.ca_duration)

    @property
    def renew_window(self) -> dt.timedelta:
        return parse_duration(self.renew_before)


class ServiceSpec(Model):
    replicas: int = Field(default=1, ge=1, le=50)
    resources: dict[str, dict[str, str | int]] | None = None  # a container's resources (requests, limits)


SERVICE_NAMES = ("frontend", "history", "matching", "worker")


class Services(Model):
    """Per Temporal service: with PostgreSQL each is its own Deployment; SQLite runs them in one pod."""
    frontend: ServiceSpec = ServiceSpec()
    history: ServiceSpec = ServiceSpec()
    matching: ServiceSpec = ServiceSpec()
    worker: ServiceSpec = ServiceSpec()

    def by_name(self) -> dict[str, ServiceSpec]:
        return {name: getattr(self, name) for name in SERVICE_NAMES}


class TemporalClusterSpec(Model):
    version: str = DEFAULT_VERSION
    image: str | None = None
    num_history_shards: int = Field(default=4, ge=1)
    log_level: str = "info"
    persistence: Persistence = Persistence(sqlite=SQLite())
    mtls: MTLS = MTLS()
    services: Services = Services()
    ui: "UI | None" = None  # the Temporal Web UI (models/ui.py)
    authorization: "Authorization" = Field(default_factory=lambda: Authorization())

    @model_validator(mode="after")
    def sqlite_single_pod(self) -> "TemporalClusterSpec":
        scaled = [name for name, svc in self.services.by_name().items() if svc.replicas > 1]
        if self.persistence.kind == "sqlite" and scaled:
            raise ValueError(f"services.{scaled[0]}.replicas > 1 needs persistence.postgresql: SQLite allows one "
                             "writer, so one server pod runs every service")
        return self

    @model_validator(mode="after")
    def authorizing_image(self) -> "TemporalClusterSpec":
        if self.authorization.enabled and self.image and _STOCK_IMAGE.search(self.image):
            raise ValueError("authorization.enabled needs the operator's server build (the stock temporalio/server "
                             "has no certificate claim mapper): remove spec.image, or set authorization.enabled false")
        return self

    def at_version(self, version: str) -> "TemporalClusterSpec":
        """This spec with another Temporal version (the images follow): a service mid-upgrade keeps its own."""
        return self if version == self.version else self.model_copy(update={"version": version})

    @property
    def server_image(self) -> str:
        default = AUTHORIZING_IMAGE if self.authorization.enabled else STOCK_IMAGE
        return self.image or f"{default}:{self.version}"

    @property
    def reloads_ca_bundles(self) -> bool:
        """Our server build (required by authorization, or named by image) reloads CA bundles without a restart."""
        return self.authorization.enabled or self.server_image.startswith(f"{AUTHORIZING_IMAGE}:")

    @property
    def schema_image(self) -> str:
        """Temporal's images ship temporal-sql-tool (and its schema files) in admin-tools, same version."""
        pg = self.persistence.postgresql
        return (pg and pg.schema_image) or f"temporalio/admin-tools:{self.version}"


# What the operator derives from a cluster's name must fit Kubernetes' and X.509's limits (the CRD's CEL rules on
# metadata.name say the same; a name too long would otherwise fail deep in a reconcile).
NAME_LIMIT = 50  # the system worker's certificate CN <name>-system-worker: at most 64 bytes
POSTGRES_NAME_LIMIT = 45  # Service <name>-matching-headless: at most 63 characters (a DNS label)
JOB_NAME_BUDGET = 46  # name + version: the schema Job <name>-schema-<version>-<8 hex digits>, at most 63 characters


def name_problem(name: str, spec: TemporalClusterSpec) -> str | None:
    """Why the operator cannot derive its objects' names from ``name``, saying the limit; None: it can."""
    if len(name.encode()) > NAME_LIMIT:
        return (f"metadata.name is {len(name.encode())} characters; at most {NAME_LIMIT}: the certificate the operator "
                f"issues to the system worker has CN <name>-system-worker, and a CN is at most 64 bytes")
    if spec.persistence.postgresql and len(name) > POSTGRES_NAME_LIMIT:
        return (f"metadata.name is {len(name)} characters; with persistence.postgresql at most {POSTGRES_NAME_LIMIT}: "
                "the Service <name>-matching-headless is a DNS label, at most 63 characters")
    if spec.persistence.postgresql and len(name) + len(spec.version) > JOB_NAME_BUDGET:
        return (f"metadata.name ({len(name)} characters) and spec.version ({len(spec.version)}) together: at most "
                f"{JOB_NAME_BUDGET} with persistence.postgresql: the schema Job <name>-schema-<version>-<digest> is at "
                "most 63 characters")
    return None


from .authorization import Authorization  # noqa: E402 (both build on Model above)
from .ui import UI  # noqa: E402

TemporalClusterSpec.model_rebuild()
