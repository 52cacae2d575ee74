"""The Temporal Web UI of a cluster (pure): its client certificate request, Deployment and Service.

The UI is one more client of the frontend: a TemporalClusterClient ``<cluster>-ui`` (owned by the
cluster) gets it a certificate from the frontend CA, like any app. The pod mounts only that Secret
(its key, its certificate, the frontend CA certificate): never a CA key.
"""

from __future__ import annotations

from ..api import API_VERSION
from ..models import TemporalClusterSpec
from ..render import SERVICES
from ..sources.base import ClusterIdentity
from .common import labels

UI_PORT = 8080
CERT_DIR = "/etc/temporal/ui-client"


def ui_name(cluster: ClusterIdentity) -> str:
    return f"{cluster.name}-ui"


def ui_client_secret(cluster: ClusterIdentity) -> str:
    return f"{ui_name(cluster)}-temporal-client"


def _meta(cluster: ClusterIdentity, name: str) -> dict:
    return {"name": name, "namespace": cluster.namespace, "labels": labels(cluster, "ui"),
            "ownerReferences": [cluster.owner_reference()]}


def ui_objects(cluster: ClusterIdentity, spec: TemporalClusterSpec) -> list[dict]:
    """Nothing without spec.ui; else the client certificate request, the Deployment, the Service."""
    if spec.ui is None:
        return []
    return [ui_client(cluster, spec), ui_deployment(cluster, spec), ui_service(cluster, spec)]


def ui_object_refs(cluster: ClusterIdentity) -> list[tuple[str, str, str]]:
    """(apiVersion, kind, name) of what ui_objects makes, in the order to delete them when spec.ui goes."""
    return [("apps/v1", "Deployment", ui_name(cluster)), ("v1", "Service", ui_name(cluster)),
            (API_VERSION, "TemporalClusterClient", ui_name(cluster))]


def ui_client(cluster: ClusterIdentity, spec: TemporalClusterSpec) -> dict:
    client_spec: dict = {"clusterRef": {"name": cluster.name}, "secretName": ui_client_secret(cluster),
                         "commonName": ui_name(cluster), "mountPath": CERT_DIR,
                         # It lists namespaces and reads workflows; it cannot start, signal, terminate or reset.
                         "permissions": {"system": "reader", "namespaces": []}}
    if spec.ui.key_vault_certificate:
        client_spec["keyVaultCertificate"] = spec.ui.key_vault_certificate
    return {"apiVersion": API_VERSION, "kind": "TemporalClusterClient", "metadata": _meta(cluster, ui_name(cluster)),
            "spec": client_spec}


def ui_environment(cluster: ClusterIdentity, spec: TemporalClusterSpec) -> list[dict]:
    """The variables the UI image's config template (config/docker.yaml) reads."""
    ui = spec.ui
    values = {
        "TEMPORAL_ADDRESS": f"{cluster.frontend_service}.{cluster.namespace}.svc:{SERVICES['frontend']['grpc']}",
        "TEMPORAL_TLS_CA": f"{CERT_DIR}/ca.crt", "TEMPORAL_TLS_CERT": f"{CERT_DIR}/tls.crt",
        "TEMPORAL_TLS_KEY": f"{CERT_DIR}/tls.key",
        "TEMPORAL_TLS_SERVER_NAME": cluster.frontend_server_name,  # what the frontend's certificate names
        "TEMPORAL_TLS_ENABLE_HOST_VERIFICATION": "true",
        "TEMPORAL_UI_PORT": str(UI_PORT), "TEMPORAL_DEFAULT_NAMESPACE": "default",
        "TEMPORAL_DISABLE_NEWS_FETCH": "true", "TEMPORAL_NOTIFY_ON_NEW_VERSION": "false",
    }
    if ui.codec_endpoint:
        values["TEMPORAL_CODEC_ENDPOINT"] = ui.codec_endpoint
        values["TEMPORAL_CODEC_INCLUDE_CREDENTIALS"] = "true" if ui.codec_include_credentials else "false"
    if ui.public_url:
        values["TEMPORAL_CORS_ORIGINS"] = ui.public_url
    return [{"name": k, "value": v} for k, v in values.items()]


def ui_deployment(cluster: ClusterIdentity, spec: TemporalClusterSpec) -> dict:
    selector = labels(cluster, "ui")
    container = {
        "name": "ui", "image": spec.ui.ui_image, "env": ui_environment(cluster, spec),
        "ports": [{"name": "http", "containerPort": UI_PORT}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 2},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10, "failureThreshold": 3},
        "resources": {"requests": {"cpu": "20m", "memory": "48Mi"}, "limits": {"memory": "256Mi"}},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "client-certificate", "mountPath": CERT_DIR, "readOnly": True},
                         {"name": "tmp", "mountPath": "/tmp"}],
    }
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(cluster, ui_name(cluster)),
            "spec": {"replicas": spec.ui.replicas, "selector": {"matchLabels": selector},
                     "template": {"metadata": {"labels": selector}, "spec": {
                         "automountServiceAccountToken": False,
                         "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000,
                                             "fsGroup": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
                         "containers": [container],
                         "volumes": [{"name": "client-certificate",
                                      "secret": {"secretName": ui_client_secret(cluster), "defaultMode": 0o440}},
                                     {"name": "tmp", "emptyDir": {}}]}}}}


def ui_service(cluster: ClusterIdentity, spec: TemporalClusterSpec) -> dict:
    port: dict = {"name": "http", "port": UI_PORT, "targetPort": "http"}
    if spec.ui.node_port is not None:
        port["nodePort"] = spec.ui.node_port
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(cluster, ui_name(cluster)),
            "spec": {"type": spec.ui.service_type, "selector": labels(cluster, "ui"), "ports": [port]}}
