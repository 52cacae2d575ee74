"""Temporal upgrades (pure): one minor version at a time, the schema first, then one service after another.

Temporal guarantees compatibility only between consecutive minor versions (its upgrade guide: update the schema
with the new version's tool, then the servers; never skip a minor). The services roll callee before caller:
history (which the others call) first, then matching, the frontend, and the worker service last, each only once
the one before runs the new version everywhere, so no service calls a peer older than itself for longer than one
rollout. Where an upgrade stands is read from the server Deployments themselves (the version label each carries
and its rollout), so an operator that restarts mid-upgrade carries on where it was.
"""

from __future__ import annotations

from dataclasses import dataclass

from .api import VERSION_LABEL

ORDER = ("history", "matching", "frontend", "worker")  # PostgreSQL; SQLite has the one "server"


def parse(version: str) -> tuple[int, int, int]:
    major, minor, patch = (int(part) for part in version.split("."))  # the CRD's pattern: digits.digits.digits
    return major, minor, patch


def transition_problem(running: str, target: str) -> str | None:
    """Why the servers running ``running`` cannot move to ``target`` (one minor at a time, never down), or None."""
    (major, minor, patch), (to_major, to_minor, to_patch) = parse(running), parse(target)
    if (to_major, to_minor, to_patch) < (major, minor, patch):
        return (f"spec.version {target} is older than the running {running}: Temporal cannot be downgraded "
                f"(its schema and data are {running}'s); set spec.version back to {running} or later")
    if to_major != major or to_minor > minor + 1:
        return (f"spec.version {target} skips a minor version: the servers run {running}, and Temporal upgrades one "
                f"minor at a time; set {major}.{minor + 1}.x first, then {target} once that upgrade completed")
    return None


@dataclass(frozen=True)
class Deployed:
    """One server Deployment as observed: the Temporal version its pod template runs, and whether every replica
    runs that template and is available."""
    version: str | None
    settled: bool


@dataclass(frozen=True)
class Plan:
    versions: dict[str, str]  # service (Deployment suffix) -> the version to apply to it now
    running: str | None  # the version every server ran before (status.version), None on a new cluster
    target: str
    step: str | None  # the service now rolling to the target during an upgrade; None: no upgrade underway
    refused: str | None = None  # why spec.version is not applied (the servers stay as they are)

    @property
    def upgrading(self) -> bool:
        """A service still has to move from the running version to the target."""
        return self.running is not None and self.running != self.target and self.refused is None and bool(self.step)

    @property
    def done(self) -> bool:
        """Every service runs the target and is rolled out: status.version may say so."""
        return self.refused is None and self.step is None


def plan(target: str, recorded: str | None, deployed: dict[str, Deployed], order: tuple[str, ...]) -> Plan:
    """Which version each service gets now. ``recorded`` is status.version; without it (a cluster the operator made
    before it recorded versions) the oldest version a rolled-out Deployment carries stands in (one whose pods never
    ran, say an image that does not exist, runs nothing)."""
    ran = sorted((d.version for d in deployed.values() if d.version and d.settled), key=parse)
    running = recorded or (ran[0] if ran else None)
    current = {service: (deployed[service].version if service in deployed and deployed[service].version
                         else running or target) for service in order}
    problem = transition_problem(running, target) if running else None
    # Back to the running version mid-upgrade: not below what a service already runs on every pod (its data may
    # be in the newer format). A version whose pods never ran (a typo) may be corrected.
    if not problem and ran and parse(target) < parse(ran[-1]):
        problem = (f"spec.version {target} is older than {ran[-1]}, which a service already runs on every pod: "
                   f"Temporal cannot be downgraded; set spec.version {ran[-1]} or later")
    if problem:
        return Plan(current, running, target, None, problem)
    versions, step = {}, None
    for service in order:
        if step is not None:  # an earlier service is still on its way: this one keeps what it runs
            versions[service] = current[service]
            continue
        versions[service] = target
        rolling = service in deployed and not deployed[service].settled
        if current[service] != target or (rolling and running != target):
            step = service
    return Plan(versions, running, target, step)


def progress(plan: Plan) -> str:
    """The Progressing message during an upgrade, e.g. "1.31.4 to 1.32.2: history done; matching rolling out"."""
    order = list(plan.versions)
    done = order[:order.index(plan.step)] if plan.step else order
    parts = [f"{', '.join(done)} done" if done else "", f"{plan.step} rolling out" if plan.step else ""]
    return f"{plan.running} to {plan.target}: " + "; ".join(p for p in parts if p)


def deployed(deployment: dict | None) -> Deployed | None:
    """What a server Deployment runs: its version label, else (made before the label) its image's version tag."""
    if not deployment:
        return None
    meta, spec = deployment.get("metadata") or {}, deployment.get("spec") or {}
    version = (meta.get("labels") or {}).get(VERSION_LABEL)
    if not version:
        containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or [{}]
        tag = (containers[0].get("image") or "").rsplit(":", 1)[-1]
        version = tag if tag.count(".") == 2 and tag.replace(".", "").isdigit() else None
    available, rolling = rollout_state(deployment)
    return Deployed(version, available and not rolling)


def rollout_state(deployment: dict) -> tuple[bool, bool]:
    """(every replica available, the rollout not yet complete: a newer generation, or old or extra pods left)."""
    meta, spec, status = deployment.get("metadata") or {}, deployment.get("spec") or {}, deployment.get("status") or {}
    replicas = spec.get("replicas", 1)
    current = (status.get("observedGeneration") == meta.get("generation")
               and status.get("updatedReplicas", 0) == replicas and status.get("replicas", 0) == replicas)
    return status.get("availableReplicas", 0) >= replicas, not current
