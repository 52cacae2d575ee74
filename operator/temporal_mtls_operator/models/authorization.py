"""Authorization by certificate identity: roles, certificate filters and what a client is granted."""

from __future__ import annotations

import enum

from pydantic import Field, field_validator, model_validator

from .cluster import Model

MAX_FILTERS_PER_NAMESPACE = 25  # Temporal Cloud's limit, kept so filters move between the two unchanged


class SystemRole(str, enum.Enum):
    """A cluster-wide role (Temporal's authorization.Claims.System)."""
    NONE = "none"
    READER = "reader"
    WRITER = "writer"
    ADMIN = "admin"


class NamespaceRole(str, enum.Enum):
    """A role in one Temporal namespace (Temporal's authorization.Role)."""
    WORKER = "worker"
    READER = "reader"
    WRITER = "writer"
    ADMIN = "admin"


def check_pattern(value: str | None) -> str | None:
    """Temporal Cloud's filter syntax: exact, or one '*' at the very start or the very end; '*' alone is invalid."""
    if value is None:
        return None
    if not value:
        raise ValueError("must not be empty")
    if value == "*":
        raise ValueError("'*' alone would match every certificate")
    if "*" in value[1:-1] or value.count("*") > 1:
        raise ValueError(f"{value!r}: one '*' is allowed, only at the start or the end")
    return value


class CertificateFilter(Model):
    """Which certificates: every field that is set must match (case-insensitive, one '*' at the start or end)."""
    common_name: str | None = None
    organization: str | None = None
    organizational_unit: str | None = None
    subject_alternative_name: str | None = None

    @field_validator("common_name", "organization", "organizational_unit", "subject_alternative_name")
    @classmethod
    def valid_pattern(cls, value: str | None) -> str | None:
        return check_pattern(value)

    @model_validator(mode="after")
    def something_set(self) -> "CertificateFilter":
        if not self.match():
            raise ValueError("a certificate filter needs at least one of commonName, organization, "
                             "organizationalUnit, subjectAlternativeName")
        return self

    def match(self) -> dict[str, str]:
        """The set fields, camelCase, as the server's policy file names them."""
        return self.model_dump(by_alias=True, exclude_none=True, exclude={"role"})


class NamespaceCertificateFilter(CertificateFilter):
    role: NamespaceRole


class SystemClient(CertificateFilter):
    """Certificates granted a cluster-wide role (human admins with certificates from your CA or Key Vault)."""
    role: SystemRole = Field(description="Cluster-wide role")

    @field_validator("role")
    @classmethod
    def grants_something(cls, role: SystemRole) -> SystemRole:
        if role is SystemRole.NONE:
            raise ValueError("role none grants nothing: remove the entry instead")
        return role


class Authorization(Model):
    """TemporalCluster.spec.authorization."""
    enabled: bool = True
    system_clients: tuple[SystemClient, ...] = ()


class NamespaceGrant(Model):
    name: str = Field(min_length=1)
    role: NamespaceRole


class Permissions(Model):
    """TemporalClusterClient.spec.permissions: what its certificate may do."""
    system: SystemRole = SystemRole.NONE
    namespaces: tuple[NamespaceGrant, ...] = ()

    @field_validator("namespaces")
    @classmethod
    def one_grant_per_namespace(cls, grants: tuple[NamespaceGrant, ...]) -> tuple[NamespaceGrant, ...]:
        names = [g.name for g in grants]
        duplicate = next((n for n in names if names.count(n) > 1), None)
        if duplicate:
            raise ValueError(f"namespace {duplicate!r} is listed twice")
        return grants
