"""Handlers under timing faults: reconciles of one object never overlap, and namespace handlers never block
the event loop. The Kubernetes API and the certificate source are stand-ins that only inject delays; the
real ones run in the cluster tests."""

from __future__ import annotations

import asyncio
import threading
import time

import kopf

from temporal_mtls_operator import temporal
from temporal_mtls_operator.handlers import cluster as cluster_handler
from temporal_mtls_operator.handlers import namespace as namespace_handler
from temporal_mtls_operator.handlers import rotation as rotation_handler
from temporal_mtls_operator.sources import SourceError


class SlowSource:
    """Counts how many reconciles are inside the source at once."""

    def __init__(self) -> None:
        self.inside, self.most, self.lock = 0, 0, threading.Lock()

    def materials(self, cluster, mtls, rotation=None):
        with self.lock:
            self.inside += 1
            self.most = max(self.most, self.inside)
        time.sleep(0.2)
        with self.lock:
            self.inside -= 1
        raise SourceError("stop after the source", "Injected")


class NoRotations:
    def __init__(self, *args) -> None:
        pass

    def prepare(self) -> frozenset:
        return frozenset()


class NoObjects:
    def get(self, *args):
        return None


def body(uid: str) -> dict:
    return {"metadata": {"name": f"c-{uid}", "namespace": "apps", "uid": uid, "generation": 1}, "spec": {}}


def reconcile_concurrently(monkeypatch, uids: list[str]) -> int:
    source = SlowSource()
    monkeypatch.setattr(cluster_handler, "sources", lambda: type("S", (), {"for_spec": lambda self, m: source})())
    monkeypatch.setattr(cluster_handler, "kube", lambda: NoObjects())
    monkeypatch.setattr(cluster_handler, "CARotations", NoRotations)
    monkeypatch.setattr(kopf, "warn", lambda *a, **k: None)

    def one(uid: str) -> None:
        try:
            cluster_handler.reconcile(body(uid), kopf.Patch())
        except kopf.TemporaryError:
            pass

    threads = [threading.Thread(target=one, args=(uid,)) for uid in uids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return source.most


def test_reconciles_of_one_cluster_run_one_at_a_time(monkeypatch):
    # A change handler, the drift timer and a rollout event of the same cluster, all at once.
    assert reconcile_concurrently(monkeypatch, ["same", "same", "same"]) == 1


def test_reconciles_of_different_clusters_still_run_side_by_side(monkeypatch):
    assert reconcile_concurrently(monkeypatch, ["a", "b", "c"]) == 3


def test_a_namespace_reconcile_leaves_the_event_loop_free_while_it_reads_the_api(monkeypatch):
    class SlowAPI:
        def get(self, *args):
            time.sleep(0.5)  # a slow API server
            return None

    monkeypatch.setattr(namespace_handler, "kube", lambda: SlowAPI())
    ns = {"metadata": {"name": "default", "namespace": "apps", "uid": "n", "generation": 1},
          "spec": {"clusterRef": {"name": "demo"}}}

    async def run() -> int:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        task = asyncio.create_task(ticker())
        patch = kopf.Patch()
        await namespace_handler.reconcile(ns, patch)
        task.cancel()
        assert patch.status["conditions"][0]["reason"] == "ClusterNotReady"
        return ticks

    assert asyncio.run(run()) >= 20  # the loop kept running during the half-second read


def test_one_temporal_connection_per_frontend_until_its_certificates_change(monkeypatch):
    connects = []

    async def connect(endpoint):
        connects.append(endpoint)
        return object()

    monkeypatch.setattr(temporal, "connect", connect)
    monkeypatch.setattr(temporal, "_clients", {})
    endpoint = temporal.Endpoint("demo-frontend.apps.svc:7233", "demo-frontend.apps.svc", b"ca", b"cert", b"key")
    renewed = temporal.Endpoint(endpoint.address, endpoint.server_name, b"ca", b"new cert", b"new key")

    async def run():
        first = await temporal.client_for(endpoint)
        assert await temporal.client_for(endpoint) is first
        assert await temporal.client_for(renewed) is not first

    asyncio.run(run())
    assert connects == [endpoint, renewed]


class OneObject:
    """The object as the API has it now, and what was asked of the API."""

    def __init__(self, obj: dict) -> None:
        self.obj, self.gets, self.patches = obj, 0, []

    def get(self, *args):
        self.gets += 1
        return self.obj

    def patch_status(self, api_version, kind, namespace, name, status):
        self.patches.append(status)
        self.obj = {**self.obj, "status": {**self.obj.get("status", {}), **status}}


def test_a_pass_queued_behind_a_leaf_rotation_does_not_reissue_again():
    annotated = {"metadata": {"name": "demo", "namespace": "apps", "uid": "u",
                              "annotations": {"temporal-mtls.dev/rotate": "1"}}, "status": {}}
    api = OneObject(annotated)
    # The first pass re-issues and records it at once; the second got its body (the event) before that record.
    assert rotation_handler.pending_leaf_rotation(api, "TemporalCluster", annotated) == "1"
    rotation_handler.record_leaf_rotation(api, "TemporalCluster", annotated["metadata"], "1")
    assert api.patches[0]["leafRotation"]["handled"] == "1"
    assert rotation_handler.pending_leaf_rotation(api, "TemporalCluster", annotated) is None
    # A new value is acted on; a body without a pending value costs no read.
    api.obj["metadata"]["annotations"]["temporal-mtls.dev/rotate"] = "2"
    assert rotation_handler.pending_leaf_rotation(api, "TemporalCluster", api.obj) == "2"
    gets = api.gets
    assert rotation_handler.pending_leaf_rotation(api, "TemporalCluster", {**annotated, "metadata": {
        **annotated["metadata"], "annotations": {}}}) is None and api.gets == gets
