"""Scaled Temporal services on PostgreSQL (pure): per service a Deployment, a Service and a PodDisruptionBudget.

Every pod runs ``temporal-server start --service <name>`` from its service's rendered config, which names
(and the pod mounts) only the TLS Secrets that service loads: history and matching never hold the frontend's key;
membership broadcasts the pod IP (downward API) and runs over the internode mTLS, whose client
verifies the internode certificate's DNS name (``client.serverName``), not the IP it dials.
"""

from __future__ import annotations

from ..models.cluster import SERVICE_NAMES, TemporalClusterSpec
from ..render import CONFIG_DIR, METRICS_PORT, SERVICES, TLS_DIRS
from ..render.config import (INTERNAL_FRONTEND_PORTS, POSTGRES_CA_DIR, POSTGRES_PASSWORD_ENV, SERVICE_TLS, config_key,
                             start_arguments)
from ..sources.base import ClusterIdentity, TLSMaterial
from . import authorization as policy, health_probe, rollout
from .common import labels, meta, versioned
from .rollout import MOUNTED_ROLES
from .schema import postgres_ca_volume
from .security import SERVER_USER, hardened


# Starts alone on a new cluster: each Temporal process inserts the cluster metadata row when the database has none,
# and of concurrent first starts all but one exit on the duplicate key (a restart per loser).
FIRST_SERVICE = "history"


def deployment_name(cluster: ClusterIdentity, service: str) -> str:
    return f"{cluster.name}-{service}"


def deployment_names(cluster: ClusterIdentity, spec: TemporalClusterSpec) -> list[str]:
    """The server Deployments whose rollout makes the cluster Ready."""
    if spec.persistence.postgresql:
        return [deployment_name(cluster, service) for service in SERVICE_NAMES]
    return [f"{cluster.name}-server"]


def service_deployment(cluster: ClusterIdentity, spec: TemporalClusterSpec, service: str,
                       materials: dict[str, TLSMaterial], config: dict) -> dict:
    """``spec.version`` is this service's: during an upgrade the services run two versions (upgrade.py)."""
    ports = SERVICES[service]
    pg = spec.persistence.postgresql
    container_ports = [{"name": "grpc", "containerPort": ports["grpc"]},
                       {"name": "membership", "containerPort": ports["membership"]},
                       {"name": "metrics", "containerPort": METRICS_PORT}]
    if ports["http"]:
        container_ports.append({"name": "http", "containerPort": ports["http"]})
    # Only the Secrets whose sections this service's config names (Temporal loads those at start).
    roles = {role: key for role, key in MOUNTED_ROLES.items() if key in SERVICE_TLS[service]}
    volumes = [{"name": "config", "configMap": {"name": config["metadata"]["name"]}}, {"name": "tmp", "emptyDir": {}},
               *({"name": f"{role}-tls", "secret": {"secretName": cluster.tls_secret(role), "defaultMode": 0o440}}
                 for role in roles)]
    mounts = [{"name": "config", "mountPath": CONFIG_DIR, "readOnly": True}, {"name": "tmp", "mountPath": "/tmp"},
              *({"name": f"{role}-tls", "mountPath": TLS_DIRS[key], "readOnly": True} for role, key in roles.items())]
    if pg.tls.enabled:
        volumes.append(postgres_ca_volume(spec))
        mounts.append({"name": "postgres-ca", "mountPath": POSTGRES_CA_DIR, "readOnly": True})
    probe = {"tcpSocket": {"port": "grpc"}, "periodSeconds": 2, "failureThreshold": 3}
    init_containers = []
    if service == "frontend":
        # Ready once Temporal's health check says SERVING, not when the port opens (builders/health_probe.py).
        init_containers.append(health_probe.init_container(spec))
        volumes += [health_probe.volume(), *policy.volumes(cluster, spec)]
        mounts += [health_probe.mount(), *policy.mounts(spec)]
        container_ports += [{"name": "internal-grpc", "containerPort": INTERNAL_FRONTEND_PORTS["grpc"]}
                            ] if spec.authorization.enabled else []
    container = {
        "name": "temporal", "image": spec.server_image, "terminationMessagePolicy": "FallbackToLogsOnError",
        "command": ["temporal-server", "--config-file", f"{CONFIG_DIR}/{config_key(service)}", "--allow-no-auth",
                    *start_arguments(spec, service)],
        "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": POSTGRES_PASSWORD_ENV, "valueFrom": {"secretKeyRef": pg.password_secret_ref.model_dump()}},
                *(policy.env(spec) if service == "frontend" else ()), *rollout.env(spec)],
        "ports": container_ports,
        "startupProbe": {**probe, "failureThreshold": 90},
        "readinessProbe": health_probe.readiness_probe(cluster) if init_containers else probe,
        "livenessProbe": {**probe, "periodSeconds": 10},
        "volumeMounts": mounts,
        "securityContext": hardened(),
    }
    resources = spec.services.by_name()[service].resources
    if resources:
        container["resources"] = resources
    selector = labels(cluster, service)
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": versioned(meta(cluster, deployment_name(cluster, service), service), spec),
        "spec": {
            "replicas": spec.services.by_name()[service].replicas,
            # A new pod is ready before an old one goes: the frontend Service never runs dry.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": selector, "annotations": rollout.pod_annotations(spec, materials, config)},
                "spec": {
                    "automountServiceAccountToken": False, "enableServiceLinks": False,
                    "securityContext": {"fsGroup": SERVER_USER, "seccompProfile": {"type": "RuntimeDefault"}},
                    "terminationGracePeriodSeconds": 30,
                    **({"initContainers": init_containers} if init_containers else {}),
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }


def service(cluster: ClusterIdentity, name: str) -> dict:
    """The frontend's Service for clients; the other services get a headless one (their pods' names and IPs)."""
    ports = SERVICES[name]
    spec: dict = {"selector": labels(cluster, name),
                  "ports": [{"name": "grpc", "port": ports["grpc"], "targetPort": "grpc"},
                            {"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics"}]}
    if name == "frontend":
        spec["ports"].append({"name": "http", "port": ports["http"], "targetPort": "http"})
        return {"apiVersion": "v1", "kind": "Service", "metadata": meta(cluster, cluster.frontend_service, name),
                "spec": spec}
    spec.update(clusterIP="None", publishNotReadyAddresses=True)
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta(cluster, f"{cluster.name}-{name}-headless", name),
            "spec": spec}


def disruption_budget(cluster: ClusterIdentity, name: str) -> dict:
    """Voluntary evictions (drains) take one pod of a service at a time."""
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": meta(cluster, deployment_name(cluster, name), name),
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": labels(cluster, name)}}}


def service_objects(cluster: ClusterIdentity, spec: TemporalClusterSpec, materials: dict[str, TLSMaterial],
                    config: dict, versions: dict[str, str] | None = None) -> list[dict]:
    """Services and budgets first, Deployments last (the handler holds those back until the schema is ready);
    ``versions``: the Temporal version of each service's Deployment (default: spec.version for all)."""
    versions = versions or {}
    return [*(service(cluster, name) for name in SERVICE_NAMES),
            *(disruption_budget(cluster, name) for name in SERVICE_NAMES),
            *(service_deployment(cluster, spec.at_version(versions.get(name, spec.version)), name, materials, config)
              for name in SERVICE_NAMES)]


def first_start(cluster: ClusterIdentity, deployments: list[dict], observed: dict[str, dict | None]) -> list[dict]:
    """The server Deployments to apply now: on a new cluster (none of them exists but FIRST_SERVICE's) only that one,
    at one replica, until its pod is available (it has written the cluster metadata by then); afterwards all."""
    first = deployment_name(cluster, FIRST_SERVICE)
    if any(observed.get(d["metadata"]["name"]) for d in deployments if d["metadata"]["name"] != first):
        return deployments
    if ((observed.get(first) or {}).get("status") or {}).get("availableReplicas", 0) >= 1:
        return deployments
    return [{**d, "spec": {**d["spec"], "replicas": 1}} for d in deployments if d["metadata"]["name"] == first]
