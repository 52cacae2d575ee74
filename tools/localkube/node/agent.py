"""The node agent: a kubelet-shaped process that runs the cluster's pods as local processes.

It registers a Ready Node (the real kube-scheduler binds pods to it), runs each bound pod
(pods.py), serves Services (services.py) and claims (storage.py), and serves container logs
to the API server the way a kubelet does, so `kubectl logs` works.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import logging
import signal
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .. import pki
from ..toolchain import KUBERNETES_VERSION
from .images import ImageMap
from .kubeapi import Kube
from .network import NodeNetwork, enter
from .pods import PodWorker
from .services import ServiceProxy, ServiceTable
from .storage import LocalPathProvisioner
from .volumes import decode_data

log = logging.getLogger("localkube.node")
NODE_NAME = "localkube"


def _micro_now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ApiSources:
    """Volume and environment sources, read from the API (short-lived cache per sync)."""

    def __init__(self, kube: Kube, provisioner: LocalPathProvisioner, refresh_delay: float = 0.0) -> None:
        self.kube, self.provisioner, self.refresh_delay = kube, provisioner, refresh_delay
        self._cache: dict[tuple[str, str, str], tuple[float, dict | None]] = {}
        self._lock = threading.Lock()

    def _get(self, kind: str, namespace: str, name: str) -> dict[str, bytes] | None:
        key = (kind, namespace, name)
        with self._lock:
            cached = self._cache.get(key)
            if cached and time.monotonic() - cached[0] < 0.5:
                return cached[1]
        obj = self.kube.get(f"/api/v1/namespaces/{namespace}/{kind}/{name}")
        data = decode_data(obj) if obj else None
        with self._lock:
            self._cache[key] = (time.monotonic(), data)
        return data

    def secret(self, namespace: str, name: str) -> dict[str, bytes] | None:
        return self._get("secrets", namespace, name)

    def config_map(self, namespace: str, name: str) -> dict[str, bytes] | None:
        return self._get("configmaps", namespace, name)

    def token(self, pod: dict, audience: str | None, expiration_seconds: int) -> str:
        meta = pod["metadata"]
        account = pod["spec"].get("serviceAccountName") or "default"
        request = self.kube.create(
            f"/api/v1/namespaces/{meta['namespace']}/serviceaccounts/{account}/token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {
                "audiences": [audience] if audience else None, "expirationSeconds": max(expiration_seconds, 600),
                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]}}})
        if not request:
            raise RuntimeError(f"token request for service account {account!r} failed")
        return request["status"]["token"]

    def claim_path(self, namespace: str, claim: str) -> Path | None:
        return self.provisioner.claim_path(namespace, claim)


class NodeAgent:
    def __init__(self, state_dir: Path, apiserver_port: int, port_mappings: dict[int, tuple[str, int]],
                 volume_refresh_delay: float = 0.0) -> None:
        self.state_dir = state_dir
        self.node_dir = state_dir / "node"
        self.node_dir.mkdir(parents=True, exist_ok=True)
        self.kube = Kube(state_dir / "kubeconfig")
        self.apiserver_port, self.port_mappings = apiserver_port, port_mappings
        self.network = NodeNetwork(str(state_dir), self.node_dir)
        self.provisioner = LocalPathProvisioner(self.kube, self.node_dir / "volumes")
        self.sources = ApiSources(self.kube, self.provisioner, volume_refresh_delay)
        self.images = ImageMap.load()
        self.proxy = ServiceProxy(self.network)
        self.table = ServiceTable()
        self.workers: dict[str, PodWorker] = {}
        self.stopping = threading.Event()
        self._wake = threading.Event()
        self._node_executor = ThreadPoolExecutor(4, thread_name_prefix="node-ns",
                                                 initializer=enter, initargs=(self.network.node_ns,))

    # -- startup and shutdown ------------------------------------------------------------------
    def run(self) -> None:
        self.network.setup()
        self.proxy.start()
        self.provisioner.ensure_storage_class()
        log_port = self._serve_logs()
        self._register(log_port)
        threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True).start()
        threading.Thread(target=self._watch_pods, name="pod-watch", daemon=True).start()
        log.info("node %s ready (pod network in netns %s)", NODE_NAME, self.network.node_ns)
        while not self.stopping.is_set():
            try:
                self._sync()
            except Exception:
                log.exception("sync failed; retrying")
            self._wake.wait(1.0)
            self._wake.clear()
        self._shutdown()

    def _shutdown(self) -> None:
        log.info("stopping: terminating %d pod(s)", len(self.workers))
        threads = [threading.Thread(target=w.terminate, args=(5.0,)) for w in self.workers.values()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        self.proxy.stop()
        self.network.teardown()

    # -- the sync loop -------------------------------------------------------------------------
    def _sync(self) -> None:
        services = self.kube.items("/api/v1/services")
        slices = self.kube.items("/apis/discovery.k8s.io/v1/endpointslices")
        self.table = ServiceTable.build(services, slices, self.apiserver_port, self.port_mappings)
        self.proxy.update(self.table)
        self.provisioner.sync()
        pods = {p["metadata"]["uid"]: p for p in
                self.kube.items("/api/v1/pods", fieldSelector=f"spec.nodeName={NODE_NAME}")}
        for uid, pod in pods.items():
            worker = self.workers.get(uid)
            if worker is None:
                if pod.get("status", {}).get("phase") in ("Succeeded", "Failed") and pod["metadata"].get("deletionTimestamp") is None:
                    continue  # finished before this agent started
                worker = self._new_worker(pod)
                self.workers[uid] = worker
                worker.start()
            else:
                worker.update(pod)
            if pod["metadata"].get("deletionTimestamp") and not worker.terminating:
                grace = pod["metadata"].get("deletionGracePeriodSeconds",
                                            pod["spec"].get("terminationGracePeriodSeconds", 30))
                worker.terminating = True
                threading.Thread(target=self._finish_deletion, args=(worker, float(grace)), daemon=True).start()
        for uid in set(self.workers) - set(pods):
            worker = self.workers.pop(uid)
            threading.Thread(target=worker.terminate, args=(0.0,), daemon=True).start()

    def _finish_deletion(self, worker: PodWorker, grace: float) -> None:
        worker.terminate(grace)
        meta = worker.pod["metadata"]
        self.kube.delete(f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}",
                         {"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}})
        self.workers.pop(meta["uid"], None)

    def _new_worker(self, pod: dict) -> PodWorker:
        return PodWorker(pod, self.node_dir, self.network, self.sources, self.images,
                         service_env=lambda ns, links: self.table.environment(ns, links),
                         hosts_file=self._write_hosts, network_executor=self._node_executor,
                         report=self._report_status, event=self._event)

    def _write_hosts(self, pod: dict, pod_dir: Path) -> None:
        worker = self.workers.get(pod["metadata"]["uid"])
        content = self.table.hosts(pod["metadata"]["namespace"], worker.pod_ip if worker else "",
                                   pod["spec"].get("hostname") or pod["metadata"]["name"])
        path = pod_dir / "hosts"
        if not path.exists() or path.read_text() != content:
            with open(path, "r+" if path.exists() else "w") as hosts:  # in place: it is bind-mounted
                hosts.write(content)
                hosts.truncate()

    def _report_status(self, pod: dict, status: dict) -> None:
        meta = pod["metadata"]
        try:
            self.kube.merge_patch(f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status",
                                  {"status": status})
        except Exception as error:
            log.warning("status update of %s/%s failed: %s", meta["namespace"], meta["name"], error)

    def _event(self, obj: dict, kind: str, reason: str, message: str) -> None:
        meta = obj["metadata"]
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        try:
            self.kube.create(f"/api/v1/namespaces/{meta['namespace']}/events", {
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
                "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"],
                                   "namespace": meta["namespace"], "uid": meta["uid"]},
                "type": kind, "reason": reason, "message": message, "count": 1,
                "firstTimestamp": stamp, "lastTimestamp": stamp,
                "source": {"component": "localkube-node", "host": NODE_NAME},
            })
        except Exception as error:
            log.warning("event %s for %s failed: %s", reason, meta["name"], error)

    def _watch_pods(self) -> None:
        """Wake the sync loop as soon as a pod bound here changes (the loop also polls)."""
        while not self.stopping.is_set():
            try:
                for _ in self.kube.watch("/api/v1/pods", fieldSelector=f"spec.nodeName={NODE_NAME}"):
                    self._wake.set()
            except Exception:
                self.stopping.wait(1.0)

    # -- the Node object -----------------------------------------------------------------------
    def _register(self, log_port: int) -> None:
        node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE_NAME, "labels": {
            "kubernetes.io/hostname": NODE_NAME, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}}}
        self.kube.create("/api/v1/nodes", node)
        self._log_port = log_port
        self._update_node_status()
        self.kube.create("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", {
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": NODE_NAME, "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": NODE_NAME, "leaseDurationSeconds": 40, "renewTime": _micro_now()}})

    def _update_node_status(self) -> None:
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        resources = {"cpu": "8", "memory": "24Gi", "pods": "110", "ephemeral-storage": "50Gi"}

        def condition(kind: str, status: str, reason: str) -> dict:
            return {"type": kind, "status": status, "reason": reason, "message": reason,
                    "lastHeartbeatTime": stamp, "lastTransitionTime": self._started}

        self.kube.merge_patch(f"/api/v1/nodes/{NODE_NAME}/status", {"status": {
            "capacity": resources, "allocatable": resources,
            "conditions": [condition("Ready", "True", "KubeletReady"),
                           condition("MemoryPressure", "False", "KubeletHasSufficientMemory"),
                           condition("DiskPressure", "False", "KubeletHasNoDiskPressure"),
                           condition("PIDPressure", "False", "KubeletHasSufficientPID")],
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": NODE_NAME}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self._log_port}},
            "nodeInfo": {"machineID": "localkube", "systemUUID": "localkube", "bootID": "localkube",
                         "kernelVersion": "", "osImage": "localkube node", "operatingSystem": "linux",
                         "architecture": "amd64", "containerRuntimeVersion": "localkube://0.1.0",
                         "kubeletVersion": f"v{KUBERNETES_VERSION}", "kubeProxyVersion": ""},
        }})

    _started = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    def _heartbeat(self) -> None:
        while not self.stopping.wait(10.0):
            try:
                self.kube.merge_patch(f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{NODE_NAME}",
                                      {"spec": {"renewTime": _micro_now()}})
                self._update_node_status()
            except Exception as error:
                log.warning("heartbeat failed: %s", error)

    # -- container logs for `kubectl logs` -----------------------------------------------------
    def _serve_logs(self) -> int:
        agent = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                url = urlparse(self.path)
                parts = url.path.strip("/").split("/")
                if len(parts) != 4 or parts[0] != "containerLogs":
                    self.send_error(404)
                    return
                _, namespace, name, container = parts
                query = parse_qs(url.query)
                worker = next((w for w in agent.workers.values() if w.pod["metadata"]["namespace"] == namespace
                               and w.pod["metadata"]["name"] == name), None)
                runner = next((r for r in (worker.runners + worker.init_runners if worker else [])
                               if r.name == container), None)
                if runner is None:
                    self.send_error(404, f"container {container} of pod {namespace}/{name} is not running here")
                    return
                index = runner.restart_count - (1 if query.get("previous") == ["true"] else 0)
                path = worker.pod_dir / "logs" / container / f"{index}.log"
                try:  # held open: a deleted pod's directory goes right after its container exits
                    log = open(path, "rb")
                except FileNotFoundError:
                    log = io.BytesIO()
                with log:
                    data = log.read()
                    if "tailLines" in query:
                        data = b"".join(data.splitlines(keepends=True)[-int(query["tailLines"][0]):])
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain")
                    self.end_headers()
                    self.wfile.write(data)
                    while query.get("follow") == ["true"] and not agent.stopping.is_set():
                        finished = runner.finished.is_set()  # then read once more: its last lines
                        if not finished:
                            time.sleep(0.5)
                        if chunk := log.read():
                            self.wfile.write(chunk)
                            self.wfile.flush()
                        if finished:
                            break

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        pki_dir = self.state_dir / "pki"
        ca = pki.KeyPair(x509.load_pem_x509_certificate((pki_dir / "serving-ca.crt").read_bytes()),
                         serialization.load_pem_private_key((pki_dir / "serving-ca.key").read_bytes(), None))
        cert_path, key_path = pki.issue(ca, NODE_NAME, server=True, ip_addresses=("127.0.0.1",)).write(
            self.node_dir, "kubelet")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_path, key_path)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, name="kubelet-logs", daemon=True).start()
        return server.server_address[1]


def main() -> None:
    parser = argparse.ArgumentParser(prog="localkube.node")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--apiserver-port", type=int, required=True)
    parser.add_argument("--port-mappings", default="{}",
                        help='JSON {"nodePort": ["127.0.0.1", hostPort]} (from kind-config extraPortMappings)')
    parser.add_argument("--volume-refresh-delay", type=float, default=0.0, metavar="SECONDS",
                        help="how long a mounted Secret/ConfigMap/projected/downwardAPI volume waits before taking "
                             "a change (a kubelet: 60-120 s; default %(default)s: the next sync, about a second)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    mappings = {int(k): (v[0], int(v[1])) for k, v in json.loads(args.port_mappings).items()}
    agent = NodeAgent(args.state_dir.resolve(), args.apiserver_port, mappings, args.volume_refresh_delay)
    signal.signal(signal.SIGTERM, lambda *_: agent.stopping.set())
    signal.signal(signal.SIGINT, lambda *_: agent.stopping.set())
    agent.run()


if __name__ == "__main__":
    main()
