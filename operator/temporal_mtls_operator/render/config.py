"""Render Temporal's server config for a TemporalCluster (pure: spec in, text out)."""

from __future__ import annotations

from types import SimpleNamespace

import jinja2

from ..models.cluster import TemporalClusterSpec
from ..sources.base import ClusterIdentity

CONFIG_DIR = "/etc/temporal/config"
DATA_DIR = "/var/lib/temporal"
POSTGRES_PASSWORD_ENV = "TEMPORAL_POSTGRES_PASSWORD"  # set from the Secret by secretKeyRef, expanded by Temporal
POSTGRES_CA_DIR = "/etc/temporal/postgres-tls"
POSTGRES_CA_FILE = f"{POSTGRES_CA_DIR}/ca.crt"
TLS_DIRS = {"internode": "/etc/temporal/tls/internode", "frontend": "/etc/temporal/tls/frontend",
            "system_worker": "/etc/temporal/tls/system-worker"}
# The TLS sections (TLS_DIRS keys) each separately run service loads. Every service loads the frontend client
# config at start (common/resource/fx.go), from systemWorker when present; history's parent-close-policy
# client and the worker's system workflows call the frontend with it; matching never does; only the frontend
# serves the frontend endpoint (frontend.server). A one-process (SQLite) server loads all three.
SERVICE_TLS = {"frontend": ("internode", "frontend", "system_worker"), "history": ("internode", "system_worker"),
               "matching": ("internode",), "worker": ("internode", "system_worker")}
METRICS_PORT = 9090  # Temporal's Prometheus listener (one per server process)
SERVICES = {
    "frontend": {"grpc": 7233, "membership": 6933, "http": 7243},
    "history": {"grpc": 7234, "membership": 6934, "http": None},
    "matching": {"grpc": 7235, "membership": 6935, "http": None},
    "worker": {"grpc": 7239, "membership": 6939, "http": None},
}
# With authorization on, Temporal's system workers call the internal frontend (internode mTLS, where the server
# grants itself system admin) instead of needing an admin certificate for the public one; the frontend pods run it.
INTERNAL_FRONTEND = "internal-frontend"
INTERNAL_FRONTEND_PORTS = {"grpc": 7236, "membership": 6936, "http": None}


def configured_services(spec: TemporalClusterSpec) -> dict[str, dict]:
    """Every service the config names (Temporal routes system workers to the internal frontend once it is named)."""
    return {**SERVICES, **({INTERNAL_FRONTEND: INTERNAL_FRONTEND_PORTS} if spec.authorization.enabled else {})}


def start_arguments(spec: TemporalClusterSpec, service: str | None = None) -> list[str]:
    """``start`` and its --service flags: one service (and the frontend's internal twin), or all of them."""
    names = [service] if service else list(SERVICES)
    if spec.authorization.enabled and (service in (None, "frontend")):
        names.insert(names.index("frontend") + 1, INTERNAL_FRONTEND)
    return ["start", *(arg for name in names for arg in ("--service", name))]

_templates = jinja2.Environment(loader=jinja2.PackageLoader("temporal_mtls_operator.render", "templates"),
                                undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)


def config_key(service: str | None = None) -> str:
    """The ConfigMap key of one service's config (separate services) or of the one-process server's."""
    return f"config-{service}.yaml" if service else "config.yaml"


def render_config(cluster: ClusterIdentity, spec: TemporalClusterSpec, service: str | None = None) -> str:
    """The config of ``service`` alone (its TLS sections only), or of one process running every service."""
    return _templates.get_template("temporal.yaml.j2").render(
        roles=SERVICE_TLS[service] if service else tuple(TLS_DIRS),
        name=cluster.name, namespace=cluster.namespace, log_level=spec.log_level,
        num_history_shards=spec.num_history_shards, data_dir=DATA_DIR, config_dir=CONFIG_DIR,
        refresh_interval=spec.mtls.refresh_interval, renew_before=spec.mtls.renew_before,
        tls=SimpleNamespace(**TLS_DIRS), require_client_auth=spec.mtls.frontend.require_client_auth,
        internode_server_name=cluster.internode_server_name, frontend_server_name=cluster.frontend_server_name,
        services={k: SimpleNamespace(**v) for k, v in configured_services(spec).items()}, metrics_port=METRICS_PORT,
        postgresql=spec.persistence.postgresql, password_env=POSTGRES_PASSWORD_ENV, postgres_ca_file=POSTGRES_CA_FILE,
        # One pod (SQLite) reaches its own frontend locally; separate services go through the frontend Service.
        frontend_host=cluster.frontend_server_name if spec.persistence.postgresql else "127.0.0.1",
    )


def render_dynamic_config(scaled: bool = False) -> str:
    """Dynamic config; ``scaled``: the services run as separate Deployments (PostgreSQL)."""
    return _templates.get_template("dynamic.yaml.j2").render(scaled=scaled)
