"""The Secret holding an app's payload data keys (or their Key Vault envelopes) and its codec settings."""

from __future__ import annotations

import base64

from ..api import MANAGED_BY
from .secret_digest import stamped


def payload_keys_secret(name: str, namespace: str, owner: dict, cluster_name: str, data: dict[str, bytes]) -> dict:
    return stamped({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": namespace, "ownerReferences": [owner],
                         "labels": {"app.kubernetes.io/name": "temporal", "app.kubernetes.io/instance": cluster_name,
                                    "app.kubernetes.io/component": "payload-keys",
                                    "app.kubernetes.io/managed-by": MANAGED_BY}},
            "data": {key: base64.b64encode(value).decode() for key, value in sorted(data.items())}})
