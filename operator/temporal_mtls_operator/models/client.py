"""TemporalClusterClient: a client certificate (and connection profile) for an app."""

from __future__ import annotations

from pydantic import Field

from .cluster import Model
from .authorization import NamespaceGrant, NamespaceRole, Permissions  # noqa: I001 (after cluster, which it builds on)
from .encryption import Encryption
from .namespace import ClusterRef


class TemporalClusterClientSpec(Model):
    cluster_ref: ClusterRef
    temporal_namespace: str = Field(default="default", description="Namespace written into the profile")
    secret_name: str | None = None  # defaults to <metadata.name>-temporal-client
    common_name: str | None = None  # defaults to <metadata.name>
    mount_path: str = "/etc/temporal/client"  # where the app mounts the Secret (paths in temporal.toml)
    key_vault_certificate: str | None = None  # the app's certificate in the cluster's vault (azureKeyVault source)
    encryption: Encryption | None = None  # payload encryption at rest (keys in <name>-payload-keys)
    permissions: Permissions | None = None  # omitted: writer on temporal_namespace (what today's apps need)

    def granted(self) -> Permissions:
        """What the certificate may do: spec.permissions, or writer on its own Temporal namespace."""
        return self.permissions or Permissions(
            namespaces=(NamespaceGrant(name=self.temporal_namespace, role=NamespaceRole.WRITER),))
