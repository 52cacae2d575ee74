"""The one place that talks to the API server: server-side apply with a stable field manager."""

from __future__ import annotations

import contextlib
import json
import os
from urllib.parse import urlencode

import urllib3
from kubernetes import client, config

from . import leader, metrics
from .api import FIELD_MANAGER

# Which operator process wrote (the API server's audit log shows it): the pod name where the chart sets it.
USER_AGENT = f"temporal-mtls-operator/{os.environ.get('TMO_POD_NAME') or os.uname().nodename}"

_PLURALS = {
    "Secret": "secrets", "ConfigMap": "configmaps", "Service": "services", "ServiceAccount": "serviceaccounts",
    "PersistentVolumeClaim": "persistentvolumeclaims", "Deployment": "deployments", "Event": "events",
    "Pod": "pods", "TemporalCluster": "temporalclusters", "TemporalNamespace": "temporalnamespaces",
    "TemporalClusterClient": "temporalclusterclients", "Job": "jobs", "PodDisruptionBudget": "poddisruptionbudgets",
    "EndpointSlice": "endpointslices",
}


class KubeError(RuntimeError):
    def __init__(self, status: int, message: str, causes: tuple[str, ...] = ()) -> None:
        super().__init__(f"API server answered {status}: {message}")
        self.status, self.causes = status, causes  # causes: the Status details' reasons

    @property
    def namespace_terminating(self) -> bool:
        """Refused because the namespace is being deleted: nothing there needs reconciling any more."""
        return "NamespaceTerminating" in self.causes


class OwnershipConflict(KubeError):
    """An object with the desired name exists but belongs to someone else; it stays as it is."""

    def __init__(self, message: str) -> None:
        RuntimeError.__init__(self, message)
        self.status = 409


def _controller(meta: dict) -> dict | None:
    return next((r for r in meta.get("ownerReferences") or [] if r.get("controller")), None)


def _check_owner(desired: dict, existing: dict) -> None:
    ours, theirs = _controller(desired["metadata"]), _controller(existing["metadata"])
    if ours and (theirs or {}).get("uid") != ours["uid"]:
        owner = f"{theirs['kind']} {theirs['name']}" if theirs else "no controller"
        raise OwnershipConflict(f"{existing['kind']} {existing['metadata']['name']} already exists and belongs to "
                                f"{owner}, not to {ours['kind']} {ours['name']}; the operator leaves it untouched: "
                                "choose another name or delete it")


def path_for(api_version: str, kind: str, namespace: str | None, name: str | None = None) -> str:
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    scope = f"/namespaces/{namespace}" if namespace else ""
    return f"{base}{scope}/{_PLURALS[kind]}" + (f"/{name}" if name else "")


class Kube:
    def __init__(self, api_client: client.ApiClient | None = None) -> None:
        if api_client is None:
            config.load_config()  # kubeconfig, else the in-cluster service account
            api_client = client.ApiClient()
        self._configuration = api_client.configuration
        self._pool = api_client.rest_client.pool_manager

    def _request(self, method: str, path: str, body: dict | None = None, query: dict | None = None,
                 content_type: str = "application/json", accept: str = "application/json") -> dict | None:
        auth = {s["key"]: s["value"] for s in self._configuration.auth_settings().values()
                if s.get("in") == "header" and s.get("value")}
        url = f"{self._configuration.host}{path}" + (f"?{urlencode(query)}" if query else "")
        metrics.kube_request(method)
        # A write goes out only while this process holds the leader-election Lease (leader.py); reads always.
        guard = leader.writing() if method != "GET" else contextlib.nullcontext()
        try:
            with guard:
                response = self._pool.request(method, url,
                                              body=json.dumps(body).encode() if body is not None else None,
                                              headers={"Content-Type": content_type, "Accept": accept,
                                                       "User-Agent": USER_AGENT, **auth}, timeout=30, retries=False)
        except urllib3.exceptions.HTTPError as error:  # refused, reset, timed out: a KubeError like any other
            raise KubeError(0, f"{type(error).__name__}: {error}") from None
        try:
            answer = json.loads(response.data) if response.data else {}
        except ValueError:
            answer = {"message": response.data[:200].decode(errors="replace")}
        if response.status == 404 and method == "GET":
            return None
        if response.status == 409 and method == "POST" and answer.get("reason") == "AlreadyExists":
            return None
        if response.status >= 400:
            causes = tuple(c.get("reason", "") for c in (answer.get("details") or {}).get("causes") or [])
            raise KubeError(response.status, answer.get("message", ""), causes)
        return answer

    def apply(self, obj: dict) -> dict:
        """Server-side apply of an object the operator owns: unchanged content is a no-op.

        An object of that name that another owner (or nobody) controls is never touched: OwnershipConflict.
        The resourceVersion read for that check is a precondition of the apply, so nothing slips in between.
        """
        meta = obj["metadata"]
        path = path_for(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])
        existing = self._request("GET", path)
        if existing is not None:
            _check_owner(obj, existing)
            obj = {**obj, "metadata": {**meta, "resourceVersion": existing["metadata"]["resourceVersion"]}}
        return self._request("PATCH", path, obj, {"fieldManager": FIELD_MANAGER, "force": "true"},
                             "application/apply-patch+yaml")

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict | None:
        return self._request("GET", path_for(api_version, kind, namespace, name))

    def metadata(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict | None:
        """Only the object's metadata (PartialObjectMetadata): a Secret's resourceVersion without its data."""
        answer = self._request("GET", path_for(api_version, kind, namespace, name),
                               accept="application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1")
        return answer and answer.get("metadata")

    def list(self, api_version: str, kind: str, namespace: str, selector: str = "", fields: str = "") -> list[dict]:
        query = {**({"labelSelector": selector} if selector else {}), **({"fieldSelector": fields} if fields else {})}
        query = query or None
        return (self._request("GET", path_for(api_version, kind, namespace), query=query) or {}).get("items") or []

    def delete_owned(self, api_version: str, kind: str, namespace: str, name: str, owner_uid: str,
                     labels: dict[str, str]) -> bool:
        """Delete the object only if it is the one its owner made: controlled by ``owner_uid`` and carrying ``labels``.

        Anything else of that name is left alone (False). The uid read for that check is a precondition of the
        delete, so a same-named object created in between is never the one deleted.
        """
        path = path_for(api_version, kind, namespace, name)
        existing = self._request("GET", path)
        meta = (existing or {}).get("metadata") or {}
        if ((_controller(meta) or {}).get("uid") != owner_uid
                or any((meta.get("labels") or {}).get(key) != value for key, value in labels.items())):
            return False
        try:
            self._request("DELETE", path, {"apiVersion": "v1", "kind": "DeleteOptions",
                                           "propagationPolicy": "Background", "preconditions": {"uid": meta["uid"]}})
        except KubeError as error:
            if error.status == 404:  # gone meanwhile
                return False
            raise
        return True

    def create(self, obj: dict) -> dict | None:
        """Create; None if it already exists (AlreadyExists only: racing reconciles agree on the first one)."""
        meta = obj["metadata"]
        return self._request("POST", path_for(obj["apiVersion"], obj["kind"], meta.get("namespace")), obj)

    def patch_status(self, api_version: str, kind: str, namespace: str, name: str, status: dict) -> None:
        self._request("PATCH", path_for(api_version, kind, namespace, name) + "/status", {"status": status},
                      content_type="application/merge-patch+json")
