"""Desired objects of a TemporalCluster (pure: model + certificates -> dicts to apply)."""

from __future__ import annotations

import base64

from ..models.cluster import TemporalClusterSpec
from ..render import CONFIG_DIR, DATA_DIR, METRICS_PORT, SERVICES, TLS_DIRS, render_config, render_dynamic_config
from ..render.config import config_key, configured_services, start_arguments
from ..sources.base import ClusterIdentity, TLSMaterial
from . import authorization as policy, health_probe, rollout
from .common import labels, meta, versioned
from .secret_digest import stamped
from .security import SERVER_USER, hardened

from .rollout import MOUNTED_ROLES


def tls_secret(cluster: ClusterIdentity, role: str, material: TLSMaterial) -> dict:
    # Annotations record where the material came from (e.g. the Key Vault version): the next sync compares it.
    return stamped({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {**meta(cluster, cluster.tls_secret(role), f"{role}-tls"), "annotations": dict(material.origin)},
            "data": {"tls.crt": base64.b64encode(material.cert_pem).decode(),
                     "tls.key": base64.b64encode(material.key_pem).decode(),
                     "ca.crt": base64.b64encode(material.ca_pem).decode()}})


def config_map(cluster: ClusterIdentity, spec: TemporalClusterSpec) -> dict:
    """One key per separately run service (PostgreSQL), or config.yaml for the one-process server."""
    services = SERVICES if spec.persistence.postgresql else (None,)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(cluster, f"{cluster.name}-config", "config"),
            "data": {**{config_key(s): render_config(cluster, spec, s) for s in services},
                     "dynamic.yaml": render_dynamic_config(scaled=bool(spec.persistence.postgresql))}}


def data_claim(cluster: ClusterIdentity, spec: TemporalClusterSpec) -> dict:
    sqlite = spec.persistence.sqlite
    claim_spec = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": sqlite.storage_size}}}
    if sqlite.storage_class_name:
        claim_spec["storageClassName"] = sqlite.storage_class_name
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": meta(cluster, f"{cluster.name}-data", "data"), "spec": claim_spec}


def frontend_service(cluster: ClusterIdentity) -> dict:
    frontend = SERVICES["frontend"]
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta(cluster, cluster.frontend_service, "frontend"),
            "spec": {"selector": labels(cluster, "server"), "ports": [
                {"name": "grpc", "port": frontend["grpc"], "targetPort": "grpc"},
                {"name": "http", "port": frontend["http"], "targetPort": "http"},
                {"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics"}]}}


def server_deployment(cluster: ClusterIdentity, spec: TemporalClusterSpec, materials: dict[str, TLSMaterial],
                      config: dict) -> dict:
    """One pod with every Temporal service: SQLite allows one writer, so Recreate, never two pods."""
    annotations = rollout.pod_annotations(spec, materials, config)
    ports = [{"name": "grpc", "containerPort": SERVICES["frontend"]["grpc"]},
             {"name": "http", "containerPort": SERVICES["frontend"]["http"]},
             {"name": "metrics", "containerPort": METRICS_PORT}]
    ports += [{"name": f"{svc[:6]}-grpc", "containerPort": p["grpc"]} for svc, p in configured_services(spec).items()
              if svc != "frontend"]
    tls_volumes = [{"name": f"{role}-tls", "secret": {"secretName": cluster.tls_secret(role), "defaultMode": 0o440}}
                   for role in MOUNTED_ROLES]
    tls_mounts = [{"name": f"{role}-tls", "mountPath": TLS_DIRS[key], "readOnly": True}
                  for role, key in MOUNTED_ROLES.items()]
    # Every second: a restart (a CA rotation rolls the one pod) is back in the Service sooner than clients give up.
    # Started and alive: the port is open; Ready: the frontend (whose health is the one process's) says SERVING.
    probe = {"tcpSocket": {"port": "grpc"}, "periodSeconds": 1, "failureThreshold": 3}
    container = {
        "name": "temporal", "image": spec.server_image, "terminationMessagePolicy": "FallbackToLogsOnError",
        "command": ["temporal-server", "--config-file", f"{CONFIG_DIR}/config.yaml", "--allow-no-auth",
                    *start_arguments(spec)],
        "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}, *policy.env(spec),
                *rollout.env(spec)],
        "ports": ports,
        "startupProbe": {**probe, "failureThreshold": 180},
        "readinessProbe": health_probe.readiness_probe(cluster),
        "livenessProbe": {**probe, "periodSeconds": 10},
        "volumeMounts": [{"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
                         {"name": "data", "mountPath": DATA_DIR}, {"name": "tmp", "mountPath": "/tmp"}, *tls_mounts,
                         health_probe.mount(), *policy.mounts(spec)],
        "securityContext": hardened(),
    }
    selector = labels(cluster, "server")
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": versioned(meta(cluster, f"{cluster.name}-server", "server"), spec),
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
                                {"name": "tmp", "emptyDir": {}}, *tls_volumes, health_probe.volume(),
                                *policy.volumes(cluster, spec)],
                },
            },
        },
    }


def cluster_objects(cluster: ClusterIdentity, spec: TemporalClusterSpec, materials: dict[str, TLSMaterial],
                    mounted: list[dict] = (), versions: dict[str, str] | None = None) -> list[dict]:
    """Everything the cluster needs, in apply order (what a pod mounts, e.g. ``mounted`` the policy, before the
    pod). ``versions``: the Temporal version per server Deployment suffix (upgrade.py), default spec.version."""
    config = config_map(cluster, spec)
    secrets = [tls_secret(cluster, role, m) for role, m in materials.items()]
    if spec.persistence.postgresql:
        from .services import service_objects  # it builds on this module's helpers
        return [*secrets, config, *mounted, *service_objects(cluster, spec, materials, config, versions)]
    server = spec.at_version((versions or {}).get("server", spec.version))
    return [*secrets, config, *mounted, data_claim(cluster, spec), frontend_service(cluster),
            server_deployment(cluster, server, materials, config)]
