"""What every builder stamps on its objects: the app.kubernetes.io labels, metadata with the owner, digests."""

from __future__ import annotations

import hashlib

from ..api import MANAGED_BY, VERSION_LABEL
from ..sources.base import ClusterIdentity


def labels(cluster: ClusterIdentity, component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "temporal", "app.kubernetes.io/instance": cluster.name,
            "app.kubernetes.io/component": component, "app.kubernetes.io/managed-by": MANAGED_BY}


def meta(cluster: ClusterIdentity, name: str, component: str) -> dict:
    return {"name": name, "namespace": cluster.namespace, "labels": labels(cluster, component),
            "ownerReferences": [cluster.owner_reference()]}


def versioned(metadata: dict, spec) -> dict:
    """A server Deployment's metadata with the Temporal version its template runs (not on the pods: no roll)."""
    return {**metadata, "labels": {**metadata["labels"], VERSION_LABEL: spec.version}}


def digest(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()[:16]
