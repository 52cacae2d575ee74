"""TemporalNamespace: a Temporal namespace registered in a TemporalCluster of the same namespace."""

from __future__ import annotations

import enum

from pydantic import Field, field_validator

from .cluster import Model, parse_duration
from .authorization import MAX_FILTERS_PER_NAMESPACE, NamespaceCertificateFilter  # noqa: I001 (after cluster)


class DeletionPolicy(str, enum.Enum):
    RETAIN = "Retain"  # deleting the resource leaves the Temporal namespace (and its workflows) alone
    DELETE = "Delete"  # deleting the resource deletes the Temporal namespace


class ClusterRef(Model):
    name: str


class TemporalNamespaceSpec(Model):
    cluster_ref: ClusterRef
    name: str | None = Field(default=None, description="Temporal namespace name; defaults to metadata.name")
    description: str = ""
    owner_email: str = ""
    retention: str = "72h"
    deletion_policy: DeletionPolicy = DeletionPolicy.RETAIN
    # Certificates the operator does not issue (Key Vault, cert-manager, your CA), granted a role here.
    client_certificate_filters: tuple[NamespaceCertificateFilter, ...] = Field(
        default=(), max_length=MAX_FILTERS_PER_NAMESPACE)

    @field_validator("retention")
    @classmethod
    def at_least_a_day(cls, value: str) -> str:
        if parse_duration(value).total_seconds() < 86400:
            raise ValueError(f"retention {value!r} is shorter than Temporal's minimum of 24h")
        return value
