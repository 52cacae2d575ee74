"""TemporalCluster: certificates -> config -> server Deployment -> status."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time

import kopf
from pydantic import ValidationError

from .. import certs, metrics, rotation, upkeep
from ..diagnosis import Problem
from ..api import API_VERSION, CLUSTERS, GROUP, MANAGED_BY, VERSION
from ..builders.cluster import cluster_objects
from ..builders.schema import job_name
from ..builders.services import deployment_names, first_start
from ..builders.ui import ui_name, ui_objects
from ..kube import Kube, KubeError, OwnershipConflict
from ..models.cluster import TemporalClusterSpec, name_problem, parse_duration
from ..render import SERVICES
from ..sources import ClusterIdentity, RotationRequest, SourceError, Sources, TLSMaterial
from ..sources.base import leaf_profiles
from ..status import Condition, merge_conditions
from ..upgrade import progress as upgrade_progress, rollout_state
from .authorization import policy_step
from .pods import missing_reference, pod_problem
from .rotation import CARotations, on_rotate_annotation, pending_leaf_rotation, record_leaf_rotation
from .schema import schema_gate
from .ui import remove_ui
from .serial import one_at_a_time
from .upgrade import progressing, refused, upgrade_plan, upgrade_record

logger = logging.getLogger(__name__)
UPKEEP = upkeep.Upkeep()
LEAF_ROLES = ("internode", "frontend", "system-worker", "operator-client")
KEY_VAULT_CHECK_SECONDS = 5  # how often a Key Vault cluster's daemon asks its sync schedule (in memory)
CHECK_SECONDS = 20  # how often each cluster's daemon asks UPKEEP (in memory) whether a reconcile is due
_kube: Kube | None = None
_sources: Sources | None = None
_announced: dict[str, tuple[str, str]] = {}  # cluster uid -> (reason, subject) of the last Warning about its pods


def kube() -> Kube:
    global _kube
    if _kube is None:
        _kube = Kube()
    return _kube


def sources() -> Sources:
    global _sources
    if _sources is None:
        _sources = Sources(kube())
    return _sources


def validation_message(error: ValidationError) -> str:
    """One line per problem, with the spec path in camelCase; never echoes input values."""
    return "; ".join(f"spec.{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in error.errors(
        include_input=False, include_url=False))


def reconcile(body: dict, patch: kopf.Patch, *, announce: bool = True) -> None:
    """``announce=False`` (timer, rollout events): post a Warning only when Ready's reason changes."""
    with metrics.reconcile("TemporalCluster"), one_at_a_time(body["metadata"]["uid"]), \
            failures_as_conditions(body, patch):
        _reconcile(body, patch, announce)


class NamespaceTerminating(kopf.TemporaryError):
    """The API refused a write because the namespace is being deleted: nothing there needs reconciling."""


@contextlib.contextmanager
def failures_as_conditions(body: dict, patch: kopf.Patch):
    """Whatever escapes a reconcile still ends in a Ready=False condition and a retry with backoff."""
    try:
        yield
    except (kopf.TemporaryError, kopf.PermanentError):
        raise
    except Exception as error:
        reason = "APIError" if isinstance(error, KubeError) else "InternalError"
        message = f"{type(error).__name__}: {error}"[:500]
        if isinstance(error, KubeError) and error.status == 403 and not error.namespace_terminating:
            reason = "Forbidden"  # RBAC: say so, not just "an API error"
            message = (f"the operator's service account may not do this: {error} (an operator chart older than the "
                       "operator image?)")[:500]
        generation = body["metadata"].get("generation", 0)
        patch.status["observedGeneration"] = generation
        patch.status["conditions"] = merge_conditions((body.get("status") or {}).get("conditions"),
                                                      [Condition("Ready", False, reason, message)], generation)
        where = f'{body["metadata"].get("namespace")}/{body["metadata"]["name"]}'
        if isinstance(error, KubeError) and error.namespace_terminating:
            logger.info("reconcile of %s stopped: its namespace is being deleted", where)
            raise NamespaceTerminating(message, delay=30) from None
        logger.exception("reconcile of %s failed", where)
        raise kopf.TemporaryError(message, delay=30) from None


class Pass:
    """One reconcile of one TemporalCluster: what its steps read, and how they report (status, Events)."""

    def __init__(self, body: dict, patch: kopf.Patch, announce: bool) -> None:
        self.body, self.patch, self.announce = body, patch, announce
        self.meta, self.status = body["metadata"], body.get("status") or {}
        self.cluster = ClusterIdentity(self.meta["name"], self.meta["namespace"], self.meta["uid"])

    def previous(self, kind: str) -> str | None:
        return next((c.get("reason") for c in self.status.get("conditions") or [] if c.get("type") == kind), None)

    def warn(self, reason: str, message: str, condition: str = "Ready") -> None:
        """``announce=False`` (timer, rollout events): post a Warning only when the condition's reason changes."""
        if self.announce or reason != self.previous(condition):
            kopf.warn(self.body, reason=reason, message=message)

    def announce_problem(self, problem: Problem) -> None:
        """One Warning Event per cause (reason and subject), however many passes still see it."""
        key, known = (problem.reason, problem.subject), _announced.get(self.cluster.uid)
        if (known != key) if known is not None else (self.previous("Degraded") != problem.reason):
            kopf.warn(self.body, reason=problem.reason, message=problem.message)
        _announced[self.cluster.uid] = key

    def set_status(self, conditions: list[Condition], **fields) -> None:
        generation = self.meta.get("generation", 0)
        self.patch.status["observedGeneration"] = generation
        self.patch.status["conditions"] = merge_conditions(self.status.get("conditions"), conditions, generation)
        for key, value in fields.items():
            self.patch.status[key] = value


class Stop(Exception):
    """A step has said in status why the reconcile ends here, with nothing to retry until something changes."""


def _reconcile(body: dict, patch: kopf.Patch, announce: bool) -> None:
    run = Pass(body, patch, announce)
    try:
        spec = _parse(run)
        upgrade = _upgrade(run, spec)
        rotate_leaves, ca_rotations, materials = _certificates(run, spec)
        _references(run, spec)
        policy, authorization = policy_step(kube(), run.cluster, spec, materials["operator-client"].cert_pem)
        objects = cluster_objects(run.cluster, spec, materials, policy, upgrade.versions)
        # A refused version gets no schema Job: the servers stay on the running version's schema.
        schema = _apply(run, spec.at_version(upgrade.running) if upgrade.refused else spec,
                        objects + ui_objects(run.cluster, spec))
    except Stop:
        return
    leaf_rotation = record_leaf_rotation(kube(), "TemporalCluster", run.meta, rotate_leaves) if rotate_leaves else None
    problem = _pods(run, spec) or _refusal(run, upgrade)
    if schema and not schema.ready:
        _wait_for_schema(run, spec, schema, problem, upgrade)
    _report(run, spec, materials, ca_rotations, schema, leaf_rotation, authorization, problem, upgrade)


def _parse(run: Pass) -> TemporalClusterSpec:
    try:
        spec = TemporalClusterSpec.model_validate(run.body.get("spec") or {})
    except ValidationError as error:
        message = validation_message(error)
        run.set_status([Condition("Ready", False, "InvalidSpec", message),
                        Condition("Degraded", True, "InvalidSpec", message)])
        run.warn(reason="InvalidSpec", message=message)
        raise Stop from None  # nothing to retry until the spec changes
    _check_name(run, spec)
    return spec


def _check_name(run: Pass, spec: TemporalClusterSpec) -> None:
    """Names the operator derives from the cluster's (certificate CNs, Services, Jobs) must fit their limits; the CRD
    refuses most such names already (CEL on metadata.name), this catches the rest (and objects made before)."""
    message = name_problem(run.meta["name"], spec)
    if message:
        run.set_status([Condition("Ready", False, "InvalidSpec", message),
                        Condition("Degraded", True, "InvalidSpec", message)])
        run.warn(reason="InvalidSpec", message=message)
        raise Stop


def _upgrade(run: Pass, spec: TemporalClusterSpec):
    """Where a version change stands (handlers/upgrade.py): the version each server Deployment gets now."""
    return upgrade_plan(kube(), run.cluster, spec, run.status)


def _refusal(run: Pass, upgrade) -> Problem | None:
    """A spec.version the running servers cannot move to: Degraded says why, one Warning per refused version."""
    if not upgrade.refused:
        return None
    problem = Problem("UpgradeRefused", upgrade.refused, "", subject=upgrade.target)
    run.announce_problem(problem)
    return problem


def _references(run: Pass, spec: TemporalClusterSpec) -> None:
    """A Secret the spec names that is missing (or lacks its key): said before any pod waits for it."""
    problem = missing_reference(kube(), run.cluster, spec)
    if problem is None:
        return
    available, _ = _servers_rollout(run.cluster, spec)
    run.set_status([Condition("Ready", available, "ServerAvailable" if available else problem.reason,
                              "" if available else problem.message),
                    Condition("PersistenceReady", False, problem.reason, problem.message),
                    Condition("Degraded", True, problem.reason, problem.message)])
    run.announce_problem(problem)
    metrics.not_ready("TemporalCluster", run.cluster.namespace, run.cluster.name)
    raise Stop  # the upkeep daemon looks again (every 20 s while not Ready)


def _pods(run: Pass, spec: TemporalClusterSpec) -> Problem | None:
    """Why one of the cluster's pods (server, schema Job, UI) does not run, announced once; None: they all do."""
    problem = pod_problem(kube(), run.cluster, job_name(run.cluster, spec) if spec.persistence.postgresql else None)
    if problem:
        run.announce_problem(problem)
    else:
        _announced.pop(run.cluster.uid, None)
    return problem


def _certificates(run: Pass, spec: TemporalClusterSpec) -> tuple[str | None, CARotations | None,
                                                                   dict[str, TLSMaterial]]:
    """(the rotate annotation to handle, the staged CA rotations, every role's material) from the source."""
    cluster = run.cluster
    rotate_leaves = pending_leaf_rotation(kube(), "TemporalCluster", run.body)
    if rotate_leaves and spec.mtls.source.kind == "azureKeyVault":
        sources().key_vault.schedule.expedite(("TemporalCluster", cluster.uid))  # the vault rotates: sync at once
    # Staged CA rotation needs the operator's own CAs; with other sources the vault or issuer rotates CAs.
    ca_rotations = (CARotations(kube(), sources().for_spec(spec.mtls), cluster, spec)
                    if spec.mtls.source.kind == "selfSigned" else None)
    try:
        new_ca_signs = ca_rotations.prepare() if ca_rotations else frozenset()
        materials = sources().for_spec(spec.mtls).materials(
            cluster, spec.mtls, RotationRequest(reissue_leaves=bool(rotate_leaves), new_ca_signs=new_ca_signs))
    except SourceError as error:
        # The Secrets published before stay as they are, so a running server keeps serving.
        available, _ = _servers_rollout(cluster, spec)
        run.set_status([Condition("Ready", available, "ServerAvailable" if available else "CertificatesUnavailable",
                                  "serving with the certificates published before" if available else str(error)),
                        Condition("CertificatesReady", False, error.reason, str(error)),
                        Condition("Degraded", True, error.reason, str(error))])
        run.warn(reason=error.reason, message=str(error), condition="CertificatesReady")
        metrics.not_ready("TemporalCluster", cluster.namespace, cluster.name)
        raise kopf.TemporaryError(str(error), delay=error.retry_after or 30)
    return rotate_leaves, ca_rotations, materials


def _apply(run: Pass, spec: TemporalClusterSpec, objects: list[dict]):
    """Server-side apply in order; a PostgreSQL cluster's Deployments wait for their schema (returned: its gate)."""
    if spec.persistence.postgresql:
        objects = _first_start(run.cluster, spec, objects)
    schema = None
    try:
        for obj in objects:
            if obj["kind"] == "Deployment" and spec.persistence.postgresql:
                # No server pod before its schema: a new version rolls only after its update Job succeeded.
                schema = schema or schema_gate(kube(), run.cluster, spec, run.status)
                if not schema.ready:
                    continue
            kube().apply(obj)
        if spec.ui is None and run.status.get("ui"):
            remove_ui(kube(), run.cluster)  # status.ui records that the operator made them
    except OwnershipConflict as error:
        run.set_status([Condition("Ready", False, "OwnershipConflict", str(error)),
                        Condition("ConfigReady", False, "OwnershipConflict", str(error)),
                        Condition("Degraded", True, "OwnershipConflict", str(error))])
        run.warn(reason="OwnershipConflict", message=str(error))
        raise Stop from None  # the timer looks again; the other object is never touched
    except KubeError as error:
        run.set_status([Condition("Ready", False, "ApplyFailed", str(error)),
                        Condition("ConfigReady", False, "ApplyFailed", str(error))])
        raise kopf.TemporaryError(str(error), delay=10)
    return schema


def _wait_for_schema(run: Pass, spec: TemporalClusterSpec, schema, problem: Problem | None, upgrade) -> None:
    """During an update Job (version bump) the servers of the previous version keep serving. A pod that cannot run
    (the Job's: its image, its Secret, no node for it) says more than the Job's own state."""
    serving, _ = _servers_rollout(run.cluster, spec)
    reason, message = (problem.reason, problem.message) if problem else (schema.reason, schema.message)
    failing = problem is not None or schema.reason in ("SchemaJobFailing", "SchemaJobFailed")
    moving = (progressing(None, f"{upgrade.running} to {upgrade.target}: {schema.message}")
              if upgrade.upgrading else Condition("Progressing", True, schema.reason, schema.message))
    _announce_step(run, moving)
    run.set_status([Condition("Ready", serving, "ServerAvailable" if serving else reason, message),
                    Condition("PersistenceReady", False, reason, message), moving,
                    Condition("Degraded", failing, reason if failing else "AsExpected", message if failing else "")],
                   **({"upgrade": upgrade_record(upgrade, run.status.get("upgrade"), "schema")}
                      if upgrade.upgrading else {}))
    if failing and not problem:
        run.warn(reason=schema.reason, message=schema.message, condition="PersistenceReady")
    raise kopf.TemporaryError(schema.message, delay=5)  # poll the Job until it ends


def _announce_step(run: Pass, condition: Condition) -> None:
    """A Normal Event as an upgrade enters each step (schema, then each service)."""
    if condition.reason.startswith("Upgrading") and condition.reason != run.previous("Progressing"):
        # kopf.event, not kopf.info: the operator posts only warnings of its own log (settings.posting.level).
        kopf.event(run.body, type="Normal", reason=condition.reason, message=condition.message)


def _report(run: Pass, spec: TemporalClusterSpec, materials: dict[str, TLSMaterial], ca_rotations, schema,
            leaf_rotation, authorization: Condition, problem: Problem | None, upgrade) -> None:
    """Observe the rollout, advance a CA rotation by what it observes, and write every condition."""
    cluster = run.cluster
    available, progressing = _servers_rollout(cluster, spec)
    certificates = {role: certificate_status(m) for role, m in materials.items()}
    certificates.update({f"{domain}-ca": certs.describe(certs.load_certificates(materials[domain].ca_pem)[0])
                         .as_status() for domain in ("internode", "frontend")})
    ca_rotation = ca_rotations.advance(materials, available and not progressing) if ca_rotations else {}
    metrics.certificates_changed("leaf", run.status.get("certificates"), certificates)
    metrics.cluster_observed(cluster.namespace, cluster.name, spec.mtls.source.kind, materials,
                             {role: d for role, (d, _) in leaf_profiles(cluster, spec.mtls).items()}, ca_rotation)
    rotating, rotation_reason, rotation_message = rotation.summary(ca_rotation)
    moving = _progress(upgrade, available, progressing)
    _announce_step(run, moving)
    expiring = expiring_cas(materials, 2 * spec.mtls.renew_window)
    if expiring and run.previous("CAExpiring") != "CAExpiresSoon":
        kopf.warn(run.body, reason="CAExpiresSoon", message=expiring)
    conditions = [
        Condition("CAExpiring", bool(expiring), "CAExpiresSoon" if expiring else "CAValid", expiring),
        Condition("Ready", available and not progressing, "ServerAvailable" if available and not progressing
                  else problem.reason if problem else "ServerProgressing",
                  "" if available and not progressing else problem.message if problem
                  else "" if available else "waiting for the Temporal server to become ready"),
        Condition("CertificatesReady", True, "Issued" if spec.mtls.source.kind == "selfSigned" else "Synced",
                  f"source: {spec.mtls.source.kind}"),
        Condition("ConfigReady", True, "Rendered"),
        Condition("PersistenceReady", True, schema.reason if schema else "SQLite", schema.message if schema else ""),
        moving,
        Condition("Degraded", bool(problem), problem.reason if problem else "AsExpected",
                  problem.message if problem else ""),
        Condition("CARotation", rotating, rotation_reason, rotation_message),
        authorization,
    ]
    # status.caRotation is written by CARotations itself, at once (see handlers/rotation.py).
    handled = {"leafRotation": leaf_rotation} if leaf_rotation else {}
    if schema and not upgrade.refused:
        handled["persistence"] = {"schemaJob": job_name(cluster, spec), "schemaReady": True}
    record = upgrade_record(upgrade, run.status.get("upgrade"), upgrade.step)
    if record:
        handled["upgrade"] = record
    if upgrade.done and available and not progressing:
        handled["version"] = spec.version  # what every server pod runs
    UPKEEP.reconciled(cluster.uid, owned_versions(cluster.namespace, cluster.name))
    run.set_status(conditions, **handled,
                   frontendAddress=f"{cluster.frontend_server_name}:{SERVICES['frontend']['grpc']}",
                   tlsServerName=cluster.frontend_server_name,
                   operatorClientSecret=cluster.tls_secret("operator-client"),
                   certificates=certificates, ui={"name": ui_name(cluster)} if spec.ui else None)


def _progress(upgrade, available: bool, rolling: bool) -> Condition:
    """Progressing: an upgrade's step, a refused version, or the rollout."""
    if upgrade.refused:
        return refused(upgrade)
    if upgrade.upgrading:
        return progressing(upgrade.step, upgrade_progress(upgrade))
    return Condition("Progressing", rolling or not available, "RollingOut" if rolling else
                     ("Starting" if not available else "RolloutComplete"))


def _first_start(cluster: ClusterIdentity, spec: TemporalClusterSpec, objects: list[dict]) -> list[dict]:
    """A new cluster's server Deployments as builders/services.first_start stages them, in their place."""
    names = deployment_names(cluster, spec)
    servers = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] in names]
    observed = {name: kube().get("apps/v1", "Deployment", cluster.namespace, name) for name in names}
    now = {d["metadata"]["name"]: d for d in first_start(cluster, servers, observed)}
    return [now.get(o["metadata"]["name"], o) for o in objects
            if not (o["kind"] == "Deployment" and o["metadata"]["name"] in names) or o["metadata"]["name"] in now]


def _servers_rollout(cluster: ClusterIdentity, spec: TemporalClusterSpec) -> tuple[bool, bool]:
    """(every server Deployment available, any of them still rolling out)."""
    states = [rollout_state(kube().get("apps/v1", "Deployment", cluster.namespace, name) or {})
              for name in deployment_names(cluster, spec)]
    return all(a for a, _ in states), any(p for _, p in states)


def expiring_cas(materials: dict[str, TLSMaterial], window: dt.timedelta) -> str:
    """Which trusted CAs end within ``window`` (twice renewBefore: well before leaves stop renewing), or ""."""
    limit = dt.datetime.now(dt.timezone.utc) + window
    ending = {ca.subject.rfc4514_string(): ca.not_valid_after_utc for m in materials.values()
              for ca in certs.load_certificates(m.ca_pem) if ca.not_valid_after_utc <= limit}
    return "; ".join(f"CA {subject} expires {when:%Y-%m-%dT%H:%M:%SZ}: rotate it (leaves cannot outlive it)"
                     for subject, when in sorted(ending.items()))


def certificate_status(material: TLSMaterial) -> dict:
    """Subject, serial, validity and fingerprint; where it came from (e.g. Key Vault name and version)."""
    info = certs.describe(certs.load_certificates(material.cert_pem)[0]).as_status()
    if material.origin:
        info["source"] = {key.rsplit("/", 1)[-1]: value for key, value in material.origin.items()}
    return info


@kopf.on.resume(GROUP, VERSION, CLUSTERS)
@kopf.on.create(GROUP, VERSION, CLUSTERS)
@kopf.on.update(GROUP, VERSION, CLUSTERS, field="spec")
def cluster_changed(body, patch, **_):
    sources().key_vault.schedule.expedite(("TemporalCluster", body["metadata"]["uid"]))
    reconcile(body, patch)


def rotation_pending(body, **_) -> bool:
    return rotation.rotation_pending(body.get("metadata", {}).get("annotations"), body.get("status"))


on_rotate_annotation(CLUSTERS, rotation_pending, reconcile)


def settled(body: dict) -> bool:
    """Ready, rolled out, no rotation running or asked for, and a source whose changes the operator hears of
    (it may not watch Secrets, so Secrets you bring are polled as before)."""
    status, spec = body.get("status") or {}, body.get("spec") or {}
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    # Degraded (e.g. the Web UI's pod cannot pull its image while the server serves): looked at every 20 s, so the
    # condition clears by itself once the cause is fixed.
    return (upkeep.is_ready(body) and conditions.get("Progressing") == "False" and conditions.get("CARotation") != "True"
            and conditions.get("Degraded") != "True"
            and conditions.get("CertificatesReady") == "True" and not rotation_pending(body) and "secret" not in ((spec.get("mtls") or {}).get("source") or {}))


def renew_at(body: dict) -> float | None:
    """The earliest renewal due: a leaf at notAfter - renewBefore, a CA (its rotation) at notAfter - 2x renewBefore."""
    renew = parse_duration(((body.get("spec") or {}).get("mtls") or {}).get("renewBefore") or "720h").total_seconds()
    times = [t - (2 if name.endswith("-ca") else 1) * renew
             for name, entry in ((body.get("status") or {}).get("certificates") or {}).items()
             if (t := upkeep.parse_time((entry or {}).get("notAfter")))]
    return min(times, default=None)


@kopf.daemon(GROUP, VERSION, CLUSTERS, cancellation_timeout=5)
async def cluster_upkeep(body, stopped, **_):
    """Re-apply (undoing drift), renew certificates in their window, refresh status: every 20 s while the cluster
    is not settled, else when a renewal is due or the slow resync; rollouts arrive through the Deployment watch."""
    next_check = time.monotonic() + CHECK_SECONDS
    while not stopped:
        # Key Vault certificates sync as soon as the syncInterval (with jitter, or a backoff) is up.
        key_vault = from_key_vault(body.get("spec"))
        await stopped.wait(KEY_VAULT_CHECK_SECONDS if key_vault else CHECK_SECONDS)
        if stopped:
            return
        meta = body["metadata"]
        if key_vault and sources().key_vault.schedule.due(("TemporalCluster", meta["uid"])):
            await asyncio.to_thread(report_status, lambda b, p: reconcile(b, p, announce=False), "TemporalCluster",
                                    dict(body), "Key Vault sync due")
            continue
        if time.monotonic() < next_check:
            continue
        next_check = time.monotonic() + CHECK_SECONDS
        ready = settled(body)
        # Drift: a changed resourceVersion of the config, Service or claim (not watched), or of a Secret (watched:
        # this is the fallback should a watch event be missed).
        token = await asyncio.to_thread(owned_versions, meta["namespace"], meta["name"]) if ready else ()
        if UPKEEP.due(meta["uid"], ready=ready, token=token, renew_at=renew_at(body)):
            await asyncio.to_thread(report_status, lambda b, p: reconcile(b, p, announce=False), "TemporalCluster",
                                    dict(body), "reconcile due (upkeep)")


def owned_versions(namespace: str, name: str) -> tuple:
    """resourceVersions of the cluster's Secrets, ConfigMap, Service and claim (a metadata GET each). Its Secrets
    are also watched (handlers/secrets.py), which repairs a deleted or edited one at once."""
    cluster = ClusterIdentity(name, namespace, "")
    objects = [("v1", "Secret", n) for n in (*(cluster.tls_secret(role) for role in LEAF_ROLES),
                                              *(cluster.ca_secret(domain) for domain in rotation.TRUST_DOMAINS))]
    objects += [("v1", "ConfigMap", f"{name}-config"), ("v1", "Service", cluster.frontend_service),
                ("v1", "PersistentVolumeClaim", f"{name}-data")]
    return tuple((kind, n, (kube().metadata(api, kind, namespace, n) or {}).get("resourceVersion"))
                 for api, kind, n in objects)


@kopf.timer(GROUP, VERSION, CLUSTERS, interval=3, when=lambda status, **_: rotation.awaiting_served_leaf(status))
def cluster_rotation_served_leaf(body, patch, **_):
    """Phase (b) ends once the pod serves the new CA's leaf (refreshInterval after its volume took the Secret):
    look every few seconds while that is all it waits for, not at the drift timer."""
    reconcile(body, patch, announce=False)


def from_key_vault(spec, **_) -> bool:
    return bool((((spec or {}).get("mtls") or {}).get("source") or {}).get("azureKeyVault"))


# An event handler, not on.field: kopf keeps no state (annotations) on Deployments it only observes.
# The Web UI too: its pods are part of what Degraded reports (handlers/pods.py).
SERVER_COMPONENTS = ("server", "frontend", "history", "matching", "worker", "ui")


@kopf.on.event("apps", "v1", "deployments", labels={"app.kubernetes.io/managed-by": MANAGED_BY},
               when=lambda labels, **_: labels.get("app.kubernetes.io/component") in SERVER_COMPONENTS)
def server_rollout_changed(meta, namespace, type, **_):
    """The server's rollout moved: refresh its TemporalCluster's status now, not at the next timer."""
    if type == "DELETED":
        return
    owner = next((r for r in meta.get("ownerReferences") or [] if r.get("kind") == "TemporalCluster"), None)
    if owner:
        refresh(namespace, owner["name"])


def refresh(namespace: str, name: str) -> None:
    """One reconcile of a TemporalCluster outside its own handlers (read fresh), its status written at once."""
    body = kube().get(API_VERSION, "TemporalCluster", namespace, name)
    if body:
        report_status(lambda b, p: reconcile(b, p, announce=False), "TemporalCluster", body)


def report_status(reconcile_fn, kind: str, body: dict, why: str = "") -> bool:
    """Reconcile outside a kopf change handler and write what changed in status ourselves; False when the namespace
    is being deleted (nothing reconciled, nothing to report)."""
    if why:
        logger.info("%s %s/%s: %s", kind, body["metadata"]["namespace"], body["metadata"]["name"], why)
    patch = kopf.Patch()
    try:
        reconcile_fn(body, patch)
    except NamespaceTerminating:
        return False
    except kopf.TemporaryError:
        pass  # the status below says why; the resource's own handlers and daemon retry
    status = body.get("status") or {}
    changed = {key: value for key, value in (patch.get("status") or {}).items() if status.get(key) != value}
    if changed:
        try:
            kube().patch_status(API_VERSION, kind, body["metadata"]["namespace"], body["metadata"]["name"], changed)
        except KubeError as error:
            if error.status != 404:  # deleted meanwhile: nothing to report on
                raise
    return True
