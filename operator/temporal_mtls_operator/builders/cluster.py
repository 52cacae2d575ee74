"""Desired objects of a TemporalCluster (pure: model + certificates -> dicts to apply)."""

from __future__ import annotations

import base64
import hashlib

from ..api import CONFIG_CHECKSUM, LEAF_CHECKSUM, MANAGED_BY, TRUST_CHECKSUM
from ..models.cluster import TemporalClusterSpec, parse_duration
from ..render import CONFIG_DIR, DATA_DIR, METRICS_PORT, SERVICES, TLS_DIRS, render_config, render_dynamic_config
from ..render.config import config_key
from ..sources.base import ClusterIdentity, TLSMaterial
from . import health_probe
from .secret_digest import stamped
from .security import SERVER_USER, hardened

MOUNTED_ROLES = {"internode": "internode", "frontend": "frontend", "system-worker": "system_worker"}


def labels(cluster: ClusterIdentity, component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "temporal", "app.kubernetes.io/instance": cluster.name,
            "app.kubernetes.io/component": component, "app.kubernetes.io/managed-by": MANAGED_BY}


def _meta(cluster: ClusterIdentity, name: str, component: str) -> dict:
    return {"name": name, "namespace": cluster.namespace, "labels": labels(cluster, component),
            "ownerReferences": [cluster.owner_reference()]}


def _digest(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()[:16]


def tls_secret(cluster: ClusterIdentity, role: str, material: TLSMaterial) -> dict:
    # Annotations record where the material came from (e.g. the Key Vault version): the next sync compares it.
    return stamped({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {**_meta(cluster, cluster.tls_secret(role), f"{role}-tls"), "annotations": dict(material.origin)},
            "data": {"tls.crt": base64.b64encode(material.cert_pem).decode(),
                     "tls.key": base64.b64encode(material.key_pem).decode(),
                     "ca.crt": base64.b64encode(material.ca_pem).decode()}})


def config_map(cluster: ClusterIdentity, spec: TemporalClusterSpec) -> dict:
    """One key per separately run service (PostgreSQL), or config.yaml for the one-process server."""
    services = SERVICES if spec.persistence.postgresql else (None,)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(cluster, f"{cluster.name}-config", "config"),
            "data": {**{config_key(s): render_config(cluster, spec, s) for s in services},
                     "dynamic.yaml": render_dynamic_config(scaled=bool(spec.persistence.postgresql))}}


def data_claim(cluster: ClusterIdentity, spec: TemporalClusterSpec) -> dict:
    sqlite = spec.persistence.sqlite
    claim_spec = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": sqlite.storage_size}}}
    if sqlite.storage_class_name:
        claim_spec["storageClassName"] = sqlite.storage_class_name
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": _meta(cluster, f"{cluster.name}-data", "data"), "spec": claim_spec}


def frontend_service(cluster: ClusterIdentity) -> dict:
    frontend = SERVICES["frontend"]
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(cluster, cluster.frontend_service, "frontend"),
            "spec": {"selector": labels(cluster, "server"), "ports": [
                {"name": "grpc", "port": frontend["grpc"], "targetPort": "grpc"},
                {"name": "http", "port": frontend["http"], "targetPort": "http"},
                {"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics"}]}}


def server_deployment(cluster: ClusterIdentity, spec: TemporalClusterSpec, materials: dict[str, TLSMaterial],
                      config: dict) -> dict:
    """One pod with every Temporal service: SQLite allows one writer, so Recreate, never two pods."""
    trust = _digest(*(materials[r].ca_pem for r in sorted(MOUNTED_ROLES)))
    annotations = {CONFIG_CHECKSUM: _digest(*(config["data"][k] for k in sorted(config["data"]))),
                   # Temporal never reloads CA bundles (refreshInterval reloads leaves only): roll on change.
                   TRUST_CHECKSUM: trust}
    if parse_duration(spec.mtls.refresh_interval).total_seconds() == 0:
        # Without refreshInterval even a renewed leaf needs a restart.
        annotations[LEAF_CHECKSUM] = _digest(*(materials[r].cert_pem for r in sorted(MOUNTED_ROLES)))
    ports = [{"name": "grpc", "containerPort": SERVICES["frontend"]["grpc"]},
             {"name": "http", "containerPort": SERVICES["frontend"]["http"]},
             {"name": "metrics", "containerPort": METRICS_PORT}]
    ports += [{"name": f"{svc[:6]}-grpc", "containerPort": p["grpc"]} for svc, p in SERVICES.items() if svc != "frontend"]
    tls_volumes = [{"name": f"{role}-tls", "secret": {"secretName": cluster.tls_secret(role), "defaultMode": 0o440}}
                   for role in MOUNTED_ROLES]
    tls_mounts = [{"name": f"{role}-tls", "mountPath": TLS_DIRS[key], "readOnly": True}
                  for role, key in MOUNTED_ROLES.items()]
    # Every second: a restart (a CA rotation rolls the one pod) is back in the Service sooner than clients give up.
    # Started and alive: the port is open; Ready: the frontend (whose health is the one process's) says SERVING.
    probe = {"tcpSocket": {"port": "grpc"}, "periodSeconds": 1, "failureThreshold": 3}
    container = {
        "name": "temporal", "image": spec.server_image,
        "command": ["temporal-server", "--config-file", f"{CONFIG_DIR}/config.yaml", "--allow-no-auth", "start"],
        "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
        "ports": ports,
        "startupProbe": {**probe, "failureThreshold": 180},
        "readinessProbe": health_probe.readiness_probe(cluster),
        "livenessProbe": {**probe, "periodSeconds": 10},
        "volumeMounts": [{"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
                         {"name": "data", "mountPath": DATA_DIR}, {"name": "tmp", "mountPath": "/tmp"}, *tls_mounts,
                         health_probe.mount()],
        "securityContext": hardened(),
    }
    selector = labels(cluster, "server")
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(cluster, f"{cluster.name}-server", "server"),
        "spec": {
            "replicas": 1, "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": selector, "annotations": annotations},
                "spec": {
                    "automountServiceAccountToken": False, "enableServiceLinks": False,
                    "securityContext": {"fsGroup": SERVER_USER, "seccompProfile": {"type": "RuntimeDefault"}},
                    "terminationGracePeriodSeconds": 30,
                    "initContainers": [health_probe.init_container(spec)],
                    "containers": [container],
                    "volumes": [{"name": "config", "configMap": {"name": config["metadata"]["name"]}},
                                {"name": "data", "persistentVolumeClaim": {"claimName": f"{cluster.name}-data"}},
                                {"name": "tmp", "emptyDir": {}}, *tls_volumes, health_probe.volume()],
                },
            },
        },
    }


def cluster_objects(cluster: ClusterIdentity, spec: TemporalClusterSpec, materials: dict[str, TLSMaterial]) -> list[dict]:
    """Everything the cluster needs, in apply order (what a pod mounts before the pod)."""
    config = config_map(cluster, spec)
    secrets = [tls_secret(cluster, role, m) for role, m in materials.items()]
    if spec.persistence.postgresql:
        from .services import service_objects  # it builds on this module's helpers
        return [*secrets, config, *service_objects(cluster, spec, materials, config)]
    return [*secrets, config, data_claim(cluster, spec), frontend_service(cluster),
            server_deployment(cluster, spec, materials, config)]
