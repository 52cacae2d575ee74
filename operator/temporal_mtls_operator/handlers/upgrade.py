"""Upgrade step of a TemporalCluster's reconcile: which Temporal version each server Deployment gets now, and what
status says about it (the rules are upgrade.py's; this reads the Deployments and writes status.upgrade)."""

from __future__ import annotations

import datetime as dt

from .. import upgrade
from ..builders.services import deployment_name
from ..kube import Kube
from ..models.cluster import TemporalClusterSpec
from ..sources import ClusterIdentity
from ..status import Condition


def services(spec: TemporalClusterSpec) -> tuple[str, ...]:
    """The server Deployments' suffixes in upgrade order: PostgreSQL's four services, or SQLite's one pod."""
    return upgrade.ORDER if spec.persistence.postgresql else ("server",)


def upgrade_plan(kube: Kube, cluster: ClusterIdentity, spec: TemporalClusterSpec, status: dict) -> upgrade.Plan:
    observed = {service: upgrade.deployed(kube.get("apps/v1", "Deployment", cluster.namespace,
                                                   deployment_name(cluster, service)))
                for service in services(spec)}
    return upgrade.plan(spec.version, (status or {}).get("version"),
                        {service: d for service, d in observed.items() if d}, services(spec))


def upgrade_record(plan: upgrade.Plan, previous: dict | None, step: str | None) -> dict | None:
    """status.upgrade: from, to, the step now (schema, a service) and when it started; completedAt once done.
    None: no upgrade has happened (a cluster created at its version)."""
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    previous = previous or {}
    same = previous.get("from") == plan.running and previous.get("to") == plan.target
    if plan.upgrading:
        return {"from": plan.running, "to": plan.target, "step": step or "schema",
                "startedAt": previous["startedAt"] if same and previous.get("startedAt") else now}
    if previous and same and not previous.get("completedAt") and plan.done:
        return {**previous, "step": "Completed", "completedAt": now}
    return previous or None


def progressing(step: str | None, message: str) -> Condition:
    """Progressing during an upgrade: one reason per step (None: the schema Job), the message says what is done."""
    reason = {"schema": "UpgradingSchema", "history": "UpgradingHistory", "matching": "UpgradingMatching",
              "frontend": "UpgradingFrontend", "worker": "UpgradingWorker", "server": "UpgradingServer"}[step or "schema"]
    return Condition("Progressing", True, reason, message)


def refused(plan: upgrade.Plan) -> Condition:
    """spec.version cannot follow the running version (Degraded says so too): the servers stay as they are."""
    return Condition("Progressing", False, "UpgradeRefused", plan.refused)
