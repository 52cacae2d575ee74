"""TemporalNamespace: registered over mTLS once its TemporalCluster is Ready."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import kopf
from pydantic import ValidationError

from ..api import API_VERSION, GROUP, NAMESPACES, VERSION
from ..models.cluster import parse_duration
from ..models.namespace import DeletionPolicy, TemporalNamespaceSpec
from ..status import Condition, merge_conditions
from .. import metrics

if TYPE_CHECKING:
    from .. import temporal


def _temporal():
    """temporalio (~25 MB) is loaded with the first TemporalNamespace, not by an operator that serves none."""
    from .. import temporal
    return temporal
from .cluster import kube, validation_message


DELETE_RETRIES = 6


def _set(patch: kopf.Patch, body: dict, condition: Condition, **fields) -> None:
    generation = body["metadata"].get("generation", 0)
    patch.status["observedGeneration"] = generation
    patch.status["conditions"] = merge_conditions((body.get("status") or {}).get("conditions"), [condition], generation)
    for key, value in fields.items():
        patch.status[key] = value


def _endpoint(body: dict, spec: TemporalNamespaceSpec) -> temporal.Endpoint | str:
    """The cluster's endpoint, or why it cannot be used yet."""
    namespace = body["metadata"]["namespace"]
    cluster = kube().get(API_VERSION, "TemporalCluster", namespace, spec.cluster_ref.name)
    if cluster is None:
        return f"TemporalCluster {spec.cluster_ref.name!r} does not exist in namespace {namespace}"
    status = cluster.get("status") or {}
    ready = next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), None)
    if not ready or ready["status"] != "True":
        return f"TemporalCluster {spec.cluster_ref.name!r} is not Ready yet"
    secret_name, address, server_name = (status.get(k) for k in ("operatorClientSecret", "frontendAddress",
                                                                  "tlsServerName"))
    if not (secret_name and address and server_name):
        return f"TemporalCluster {spec.cluster_ref.name!r} has not published its frontend yet"
    secret = kube().get("v1", "Secret", namespace, secret_name)
    try:
        return _temporal().Endpoint.from_secret(address, server_name, secret or {})
    except KeyError:
        return f"the operator's client certificate Secret {secret_name!r} is missing or incomplete"


async def reconcile(body: dict, patch: kopf.Patch) -> None:
    with metrics.reconcile("TemporalNamespace"):
        await _reconcile(body, patch)


async def _reconcile(body: dict, patch: kopf.Patch) -> None:
    try:
        spec = TemporalNamespaceSpec.model_validate(body.get("spec") or {})
    except ValidationError as error:
        message = validation_message(error)
        _set(patch, body, Condition("Ready", False, "InvalidSpec", message))
        kopf.warn(body, reason="InvalidSpec", message=message)
        return
    endpoint = await asyncio.to_thread(_endpoint, body, spec)  # the Kubernetes client blocks: not on the loop
    if isinstance(endpoint, str):
        # Not an error: the timer retries quietly while the condition says why.
        _set(patch, body, Condition("Ready", False, "ClusterNotReady", endpoint))
        return
    name = spec.name or body["metadata"]["name"]
    try:
        client = await _temporal().client_for(endpoint)
        observed = await _temporal().ensure_namespace(client, name, spec.description, spec.owner_email,
                                                   int(parse_duration(spec.retention).total_seconds()))
    except Exception as error:  # RPC and connection errors become a condition, never a crash
        message = f"{type(error).__name__}: {error}"
        _set(patch, body, Condition("Ready", False, "TemporalUnavailable", message))
        raise kopf.TemporaryError(message, delay=15)
    _set(patch, body, Condition("Ready", True, "Registered", f"namespace {name} exists in Temporal"),
         namespaceId=observed["id"], temporalNamespace=name, retentionSeconds=observed["retentionSeconds"])


@kopf.on.resume(GROUP, VERSION, NAMESPACES)
@kopf.on.create(GROUP, VERSION, NAMESPACES)
@kopf.on.update(GROUP, VERSION, NAMESPACES, field="spec")
async def namespace_changed(body, patch, **_):
    await reconcile(body, patch)


@kopf.timer(GROUP, VERSION, NAMESPACES, interval=10, initial_delay=5)
async def namespace_resync(body, patch, **_):
    await reconcile(body, patch)


@kopf.on.delete(GROUP, VERSION, NAMESPACES, retries=DELETE_RETRIES)
async def namespace_deleted(body, retry, **_):
    """Bounded retries: a Temporal that stays away never holds the resource's finalizer forever."""
    try:
        spec = TemporalNamespaceSpec.model_validate(body.get("spec") or {})
    except ValidationError:
        return
    if spec.deletion_policy is not DeletionPolicy.DELETE:
        return
    endpoint = await asyncio.to_thread(_endpoint, body, spec)
    if isinstance(endpoint, str):
        kopf.warn(body, reason="NamespaceNotDeleted", message=f"Temporal namespace left in place: {endpoint}")
        return
    try:
        await _temporal().delete_namespace(await _temporal().client_for(endpoint), spec.name or body["metadata"]["name"])
    except Exception as error:  # RPC and connection errors: retried, then given up with an Event
        message = f"{type(error).__name__}: {error}"
        if retry + 1 >= DELETE_RETRIES:
            kopf.warn(body, reason="NamespaceNotDeleted", message=f"Temporal namespace left in place: {message}")
            return
        raise kopf.TemporaryError(message, delay=10)
