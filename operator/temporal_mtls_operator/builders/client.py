"""The Secret an app mounts: its certificate, the frontend CA, and a Temporal connection profile."""

from __future__ import annotations

import base64

from ..api import MANAGED_BY
from .secret_digest import stamped
from ..sources.base import TLSMaterial


def profile_toml(address: str, server_name: str, namespace: str, mount_path: str) -> str:
    """Temporal's environment-configuration file (TEMPORAL_CONFIG_FILE), profile "default"."""
    return (f'[profile.default]\naddress = "{address}"\nnamespace = "{namespace}"\n\n'
            f'[profile.default.tls]\nserver_name = "{server_name}"\n'
            f'server_ca_cert_path = "{mount_path}/ca.crt"\n'
            f'client_cert_path = "{mount_path}/tls.crt"\nclient_key_path = "{mount_path}/tls.key"\n')


def client_secret(name: str, namespace: str, owner: dict, cluster_name: str, material: TLSMaterial,
                  profile: str) -> dict:
    return stamped({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": name, "namespace": namespace, "ownerReferences": [owner],
                         "annotations": dict(material.origin),
                         "labels": {"app.kubernetes.io/name": "temporal", "app.kubernetes.io/instance": cluster_name,
                                    "app.kubernetes.io/component": "client-certificate",
                                    "app.kubernetes.io/managed-by": MANAGED_BY}},
            "data": {"tls.crt": base64.b64encode(material.cert_pem).decode(),
                     "tls.key": base64.b64encode(material.key_pem).decode(),
                     "ca.crt": base64.b64encode(material.ca_pem).decode(),
                     "temporal.toml": base64.b64encode(profile.encode()).decode()}})
