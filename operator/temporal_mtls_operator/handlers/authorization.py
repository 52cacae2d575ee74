"""The cluster's authorization policy: every grant of its clients, namespaces and systemClients in one ConfigMap.

A cluster reconcile builds it as one of its steps; a change of a TemporalClusterClient or TemporalNamespace asks for
a refresh of its cluster's policy alone (coalesced: 500 clients created at once rebuild it a few times, not 500).
"""

from __future__ import annotations

import base64
import logging
import threading
from typing import Callable

import kopf
from pydantic import ValidationError

from ..api import API_VERSION, CLIENTS, GROUP, NAMESPACES, VERSION
from ..builders.authorization import (Grant, certificate_match, client_grant, filter_grant, policy_config_map,
                                      policy_config_map_name)
from ..kube import Kube, KubeError
from ..models import TemporalClusterClientSpec, TemporalClusterSpec, TemporalNamespaceSpec
from ..models.authorization import SystemRole
from ..sources.base import ClusterIdentity
from ..status import Condition

logger = logging.getLogger(__name__)
REFRESH_DELAY = 0.5  # seconds a refresh waits for more changes of the same cluster
RETRY_DELAY = 10


def client_secret_name(name: str, spec: TemporalClusterClientSpec) -> str:
    return spec.secret_name or f"{name}-temporal-client"


def client_match(kube: Kube, cluster: ClusterIdentity, source: str, name: str,
                 spec: TemporalClusterClientSpec) -> dict[str, str] | None:
    """The operator issues selfSigned certificates with the client's identity URI; any other certificate (Key
    Vault) is pinned by the fingerprint of the leaf in its Secret. None: no certificate issued yet."""
    if source == "selfSigned":
        return {"uri": cluster.client_identity(name)}
    secret = kube.get("v1", "Secret", cluster.namespace, client_secret_name(name, spec))
    cert = ((secret or {}).get("data") or {}).get("tls.crt")
    return certificate_match(base64.b64decode(cert), cluster.client_identity(name)) if cert else None


def grants(kube: Kube, cluster: ClusterIdentity, spec: TemporalClusterSpec, operator_cert_pem: bytes) -> list[Grant]:
    """Built in: the operator's own client is a system admin (it registers namespaces). Then systemClients, every
    TemporalClusterClient and every TemporalNamespace filter of this cluster; invalid ones grant nothing (their own
    status says why)."""
    found = [Grant("operator", certificate_match(operator_cert_pem, cluster.operator_identity), SystemRole.ADMIN.value)]
    found += [filter_grant(f"TemporalCluster {cluster.name} systemClients[{i}]", entry, system=entry.role.value)
              for i, entry in enumerate(spec.authorization.system_clients)]
    for body in _referring(kube, "TemporalClusterClient", cluster):
        try:
            client = TemporalClusterClientSpec.model_validate(body.get("spec") or {})
        except ValidationError:
            continue
        name = body["metadata"]["name"]
        match = client_match(kube, cluster, spec.mtls.source.kind, name, client)
        if match:
            found.append(client_grant(f"TemporalClusterClient {cluster.namespace}/{name}", match, client.granted()))
    for body in _referring(kube, "TemporalNamespace", cluster):
        try:
            namespace = TemporalNamespaceSpec.model_validate(body.get("spec") or {})
        except ValidationError:
            continue
        name = body["metadata"]["name"]
        found += [filter_grant(f"TemporalNamespace {cluster.namespace}/{name} clientCertificateFilters[{i}]", entry,
                               namespaces={namespace.name or name: entry.role.value})
                  for i, entry in enumerate(namespace.client_certificate_filters)]
    return found


def _referring(kube: Kube, kind: str, cluster: ClusterIdentity) -> list[dict]:
    return [body for body in kube.list(API_VERSION, kind, cluster.namespace)
            if ((body.get("spec") or {}).get("clusterRef") or {}).get("name") == cluster.name]


def policy_step(kube: Kube, cluster: ClusterIdentity, spec: TemporalClusterSpec,
                operator_cert_pem: bytes) -> tuple[list[dict], Condition]:
    """(the policy ConfigMap to apply before the server pods that mount it, the AuthorizationReady condition)."""
    if not spec.authorization.enabled:
        return [], Condition("AuthorizationReady", False, "Disabled",
                             "authorization.enabled is false: every certificate the frontend CA signs is a cluster admin")
    found = grants(kube, cluster, spec, operator_cert_pem)
    return [policy_config_map(cluster, found)], Condition(
        "AuthorizationReady", True, "PolicyApplied",
        f"{len(found)} grants in ConfigMap {policy_config_map_name(cluster)}, reloaded by the server without restarts")


class Coalesced:
    """Runs ``action(key)`` once, ``delay`` seconds after the first request for a key; requests meanwhile join it."""

    def __init__(self, action: Callable[[tuple], bool], delay: float) -> None:
        self._action, self._delay = action, delay
        self._pending: set[tuple] = set()
        self._lock = threading.Lock()

    def __call__(self, key: tuple, delay: float | None = None) -> None:
        with self._lock:
            if key in self._pending:
                return
            self._pending.add(key)
        timer = threading.Timer(self._delay if delay is None else delay, self._run, (key,))
        timer.daemon = True
        timer.start()

    def _run(self, key: tuple) -> None:
        with self._lock:
            self._pending.discard(key)
        try:
            done = self._action(key)
        except Exception:  # noqa: BLE001 (a timer thread has no caller to raise to: log, try again later)
            logger.exception("authorization policy of %s/%s: refresh failed", *key)
            done = False
        if not done:
            self(key, RETRY_DELAY)


def refresh_policy(key: tuple) -> bool:
    """Rebuild one cluster's policy from what is in the API now; False: try again later."""
    from .cluster import kube  # the shared client (handlers.cluster imports this module)
    namespace, name = key
    body = kube().get(API_VERSION, "TemporalCluster", namespace, name)
    if body is None:
        return True  # gone: its ConfigMap goes with it (owner reference)
    try:
        spec = TemporalClusterSpec.model_validate(body.get("spec") or {})
    except ValidationError:
        return True  # its own reconcile reports the spec
    cluster = ClusterIdentity(name, namespace, body["metadata"]["uid"])
    secret = kube().get("v1", "Secret", namespace, cluster.tls_secret("operator-client"))
    operator_cert = ((secret or {}).get("data") or {}).get("tls.crt")
    if not operator_cert:
        return True  # the cluster's first reconcile has not issued it yet, and writes the policy itself
    try:
        for obj in policy_step(kube(), cluster, spec, base64.b64decode(operator_cert))[0]:
            kube().apply(obj)
    except KubeError as error:
        logger.warning("authorization policy of %s/%s: %s", namespace, name, error)
        return False
    return True


policy_changed = Coalesced(refresh_policy, REFRESH_DELAY)


def request_refresh(body: dict) -> None:
    """A client or namespace of a cluster changed: its cluster's policy follows."""
    cluster = ((body.get("spec") or {}).get("clusterRef") or {}).get("name")
    if cluster:
        policy_changed((body["metadata"]["namespace"], cluster))


# Events, not on.delete: that would put a finalizer on every client just for this.
@kopf.on.event(GROUP, VERSION, CLIENTS, when=lambda type, **_: type == "DELETED")
@kopf.on.event(GROUP, VERSION, NAMESPACES, when=lambda type, **_: type == "DELETED")
def grant_removed(body, **_):
    request_refresh(body)


@kopf.on.create(GROUP, VERSION, NAMESPACES)
@kopf.on.update(GROUP, VERSION, NAMESPACES, field="spec.clientCertificateFilters")
def namespace_filters_changed(body, **_):
    request_refresh(body)
