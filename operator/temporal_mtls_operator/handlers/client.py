"""TemporalClusterClient: issue (and renew) an app's client certificate into a Secret."""

from __future__ import annotations

import asyncio
import time

import kopf
from pydantic import ValidationError

from .. import certs, metrics, rotation, upkeep
from ..api import API_VERSION, CLIENTS, CLUSTERS, GROUP, VERSION
from ..builders.authorization import certificate_match
from ..builders.client import client_secret, profile_toml
from ..models import TemporalClusterClientSpec, TemporalClusterSpec
from ..models.cluster import parse_duration
from ..render import SERVICES
from ..kube import KubeError, OwnershipConflict
from ..sources import ClientRequest, ClusterIdentity, RotationRequest, SourceError
from ..status import Condition, merge_conditions
from .authorization import policy_changed
from .encryption import reconcile_keys, rotation_requested
from .cluster import certificate_status, failures_as_conditions, kube, report_status, sources, validation_message
from .cluster import refresh as cluster_refresh
from .rotation import on_rotate_annotation, pending_leaf_rotation, record_leaf_rotation
from .serial import one_at_a_time


UPKEEP = upkeep.Upkeep()
# The latest view of every TemporalCluster from the watch (filled by cluster_trust, emptied on deletion): a client
# reconcile reads its cluster from here instead of a GET each.
CLUSTERS_SEEN: dict[tuple[str, str], dict] = {}
CHECK_SECONDS = 30  # how often each client's daemon asks UPKEEP (in memory) whether a reconcile is due
KEY_VAULT_CHECK_SECONDS = 5  # how often it asks the Key Vault schedule (in memory) whether a sync is due


def reconcile(body: dict, patch: kopf.Patch) -> None:
    with metrics.reconcile("TemporalClusterClient"), one_at_a_time(body["metadata"]["uid"]), \
            failures_as_conditions(body, patch):
        _reconcile(body, patch)


def _secret_name(body: dict) -> str:
    return (body.get("spec") or {}).get("secretName") or f"{body['metadata']['name']}-temporal-client"


def _reconcile(body: dict, patch: kopf.Patch) -> None:
    meta = body["metadata"]
    generation = meta.get("generation", 0)
    previous_reason = next((c.get("reason") for c in (body.get("status") or {}).get("conditions") or []
                            if c.get("type") == "Ready"), None)

    def set_status(condition: Condition, *more: Condition, **fields) -> None:
        patch.status["observedGeneration"] = generation
        patch.status["conditions"] = merge_conditions((body.get("status") or {}).get("conditions"),
                                                      [condition, *more], generation)
        for key, value in fields.items():
            patch.status[key] = value

    try:
        spec = TemporalClusterClientSpec.model_validate(body.get("spec") or {})
    except ValidationError as error:
        set_status(Condition("Ready", False, "InvalidSpec", validation_message(error)))
        kopf.warn(body, reason="InvalidSpec", message=validation_message(error))
        return
    cluster_body = (CLUSTERS_SEEN.get((meta["namespace"], spec.cluster_ref.name))
                    or kube().get(API_VERSION, "TemporalCluster", meta["namespace"], spec.cluster_ref.name))
    if cluster_body is None:
        set_status(Condition("Ready", False, "ClusterNotFound",
                             f"TemporalCluster {spec.cluster_ref.name!r} does not exist in {meta['namespace']}"))
        return
    try:
        cluster_spec = TemporalClusterSpec.model_validate(cluster_body.get("spec") or {})
    except ValidationError:
        set_status(Condition("Ready", False, "ClusterInvalid", f"TemporalCluster {spec.cluster_ref.name!r} is invalid"))
        return
    cluster = ClusterIdentity(cluster_body["metadata"]["name"], meta["namespace"], cluster_body["metadata"]["uid"])
    secret_name = _secret_name(body)
    request = ClientRequest(meta["namespace"], secret_name, spec.common_name or meta["name"],
                            spec.key_vault_certificate, name=meta["name"])
    rotate_leaf = pending_leaf_rotation(kube(), "TemporalClusterClient", body)
    if rotate_leaf and cluster_spec.mtls.source.kind == "azureKeyVault":
        sources().key_vault.schedule.expedite(schedule_key(body))  # the vault rotates: sync at once
    # The cluster's frontend CA rotation decides which CA signs (its status is the rotation's record).
    frontend_rotation = ((cluster_body.get("status") or {}).get("caRotation") or {}).get("frontend")
    new_ca_signs = frozenset({"frontend"}) if rotation.signs_with_new_ca(frontend_rotation) else frozenset()
    try:
        material = sources().for_spec(cluster_spec.mtls).client_material(
            cluster, cluster_spec.mtls, request, RotationRequest(reissue_leaves=bool(rotate_leaf),
                                                                 new_ca_signs=new_ca_signs))
    except SourceError as error:
        set_status(Condition("Ready", False, error.reason, str(error)))
        if error.reason != previous_reason:
            kopf.warn(body, reason=error.reason, message=str(error))
        metrics.not_ready("TemporalClusterClient", meta["namespace"], meta["name"])
        raise kopf.TemporaryError(str(error), delay=error.retry_after or 30)
    address = f"{cluster.frontend_server_name}:{SERVICES['frontend']['grpc']}"
    owner = {"apiVersion": API_VERSION, "kind": "TemporalClusterClient", "name": meta["name"], "uid": meta["uid"],
             "controller": True, "blockOwnerDeletion": True}
    try:
        kube().apply(client_secret(secret_name, meta["namespace"], owner, cluster.name, material,
                                   profile_toml(address, cluster.frontend_server_name, spec.temporal_namespace,
                                                spec.mount_path)))
    except OwnershipConflict as error:
        set_status(Condition("Ready", False, "SecretConflict", str(error)))
        if previous_reason != "SecretConflict":
            kopf.warn(body, reason="SecretConflict", message=str(error))
        return  # nothing to retry until the spec or the other Secret changes (the timer looks again)
    except KubeError as error:
        set_status(Condition("Ready", False, "ApplyFailed", str(error)))
        raise kopf.TemporaryError(str(error), delay=10)
    leaf_rotation = record_leaf_rotation(kube(), "TemporalClusterClient", meta, rotate_leaf) if rotate_leaf else None
    info = certs.describe(certs.load_certificates(material.cert_pem)[0])
    certificate = certificate_status(material)
    metrics.certificates_changed("client", {"client": (body.get("status") or {}).get("certificate")},
                                 {"client": certificate})
    metrics.client_observed(meta["namespace"], meta["name"], cluster.name, cluster_spec.mtls.source.kind, material)
    handled = {"leafRotation": leaf_rotation} if leaf_rotation else {}
    encryption: tuple[Condition, ...] = ()
    if spec.encryption:
        keys_condition, handled["encryption"] = reconcile_keys(kube(), body, spec.encryption, owner, cluster.name)
        encryption = (keys_condition,)
    granted = spec.granted()
    set_status(Condition("Ready", True, "Issued", f"client certificate in Secret {secret_name}"), *encryption,
               **handled, permissions=permissions_status(cluster, cluster_spec, meta["name"], material, granted),
               secretName=secret_name, address=address, serverName=cluster.frontend_server_name,
               notAfter=info.not_after, certificate=certificate)
    UPKEEP.reconciled(meta["uid"], upkeep.frontend_trust(cluster_body))
    if granted != _granted_before.get(meta["uid"]) or cluster_spec.mtls.source.kind != "selfSigned":
        policy_changed((meta["namespace"], cluster.name))  # a new grant, or a new fingerprint to pin
    _granted_before[meta["uid"]] = granted


_granted_before: dict[str, object] = {}  # client uid -> the permissions its cluster's policy was last asked to hold


def forget_grant(uid: str) -> None:
    _granted_before.pop(uid, None)


def permissions_status(cluster: ClusterIdentity, cluster_spec: TemporalClusterSpec, name: str, material,
                       granted) -> dict:
    """What was granted and the identity the server matches it by (nothing is enforced with authorization off)."""
    return {"enforced": cluster_spec.authorization.enabled, "system": granted.system.value,
            "namespaces": [{"name": g.name, "role": g.role.value} for g in granted.namespaces],
            "matchedBy": certificate_match(material.cert_pem, cluster.client_identity(name))}


@kopf.on.resume(GROUP, VERSION, CLIENTS)
@kopf.on.create(GROUP, VERSION, CLIENTS)
@kopf.on.update(GROUP, VERSION, CLIENTS, field="spec")
def client_changed(body, patch, **_):
    sources().key_vault.schedule.expedite(schedule_key(body))
    reconcile(body, patch)


CLIENTS_KIND = "TemporalClusterClient"


def schedule_key(body: dict) -> tuple:
    return "TemporalClusterClient", body["metadata"]["namespace"], _secret_name(body)


def rotation_pending(body, **_) -> bool:
    """A rotate annotation (certificate or payload key) has a value not acted on yet."""
    return bool(rotation.leaf_rotation_requested(body.get("metadata", {}).get("annotations"), body.get("status"))) \
        or ((body.get("spec") or {}).get("encryption") is not None and rotation_requested(body))


on_rotate_annotation(CLIENTS, rotation_pending, reconcile)

# cluster uid -> (phase, new CA) of its frontend CA rotation when its clients last followed it
_followed: dict[str, tuple] = {}


@kopf.on.event(GROUP, VERSION, CLUSTERS)
def cluster_frontend_rotation_moved(body, type, **_):
    """A frontend CA rotation moved a phase: the cluster's clients take the new bundle or certificate now, and the
    cluster looks at them again at once, instead of each side waiting for its timer."""
    meta = body["metadata"]
    state = ((body.get("status") or {}).get("caRotation") or {}).get("frontend") or {}
    moved, before = (state.get("phase"), state.get("newCA")), _followed.get(meta["uid"])
    if type == "DELETED":
        _followed.pop(meta["uid"], None)
        return
    _followed[meta["uid"]] = moved
    # Nothing new, or a rotation that ended before this operator started: nothing to follow.
    if moved == before or (before is None and state.get("phase") not in rotation.IN_PROGRESS):
        return
    namespace = meta["namespace"]
    cluster_refresh(namespace, meta["name"])  # promotes the new CA or signs the server's leaves for this phase
    for client in kube().list(API_VERSION, "TemporalClusterClient", namespace):
        if ((client.get("spec") or {}).get("clusterRef") or {}).get("name") != meta["name"]:
            continue
        report_status(reconcile, CLIENTS_KIND, client, "its cluster's frontend CA rotation moved")
    cluster_refresh(namespace, meta["name"])  # sees the clients' new Secrets


@kopf.index(GROUP, VERSION, CLUSTERS)
def cluster_trust(namespace, name, body, **_):
    """What clients depend on in each cluster (frontend CA, its rotation phase, renewBefore), from the watch."""
    CLUSTERS_SEEN[(namespace, name)] = {key: body.get(key) for key in ("metadata", "spec", "status")}
    return {(namespace, name): upkeep.frontend_trust(body)}


@kopf.daemon(GROUP, VERSION, CLIENTS, cancellation_timeout=5)
async def client_upkeep(body, stopped, cluster_trust: kopf.Index, **_):
    """Renewal inside the cluster's renewBefore window, a new frontend CA or rotation phase, retries while not
    Ready, and a slow resync: decided in memory, so a settled client costs no API request."""
    next_check = time.monotonic() + CHECK_SECONDS
    while not stopped:
        # A Key Vault certificate syncs as soon as its syncInterval (with jitter, or a backoff) is up.
        key_vault = bool((body.get("spec") or {}).get("keyVaultCertificate"))
        await stopped.wait(KEY_VAULT_CHECK_SECONDS if key_vault else CHECK_SECONDS)
        if stopped:
            return
        if key_vault and sources().key_vault.schedule.due(schedule_key(body)):
            await asyncio.to_thread(report_status, reconcile, CLIENTS_KIND, dict(body), "Key Vault sync due")
            continue
        if time.monotonic() < next_check:
            continue
        next_check = time.monotonic() + CHECK_SECONDS
        meta, status = body["metadata"], body.get("status") or {}
        cluster = ((body.get("spec") or {}).get("clusterRef") or {}).get("name")
        token = next(iter(cluster_trust.get((meta["namespace"], cluster), ())), ())
        not_after = upkeep.parse_time(status.get("notAfter"))
        renew_before = parse_duration(token[3] if len(token) > 3 and token[3] else "720h").total_seconds()
        if UPKEEP.due(meta["uid"], ready=upkeep.is_ready(body), token=token,
                      renew_at=not_after - renew_before if not_after else None):
            await asyncio.to_thread(report_status, reconcile, CLIENTS_KIND, dict(body), "reconcile due (upkeep)")
