"""What authorization costs: StartWorkflowExecution latency with it on and off in the same run, and how long a change
of permissions takes to reach the server.

    .venv/bin/python bench/authz.py [--starts 300] [--flips 3] [--kubelet-sync-frequency 10s]

Runs on a private local cluster: the operator, TemporalCluster `demo` (authorization on: our server build, the
policy from the operator) and `plain` (authorization off: the stock server), both SQLite, one pod each. From the node's
network, StartWorkflowExecution calls alternate between the two (each through its own mTLS client) and their
latencies are compared. Then a client's permissions are granted and revoked --flips times: the time from the
`kubectl patch` to the first start the server allows (or refuses), which includes the kubelet bringing the changed
ConfigMap into the server pod's volume (--kubelet-sync-frequency, the kubelet's syncFrequency; its own default: 1m).
Prints a table, writes bench/results/authz.json.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import yaml

from localkube.control_plane import DEFAULT_SYNC_FREQUENCY, ControlPlane
from localkube.demo import run_demo
from localkube.paths import state_root
from localkube.toolchain import path_of
from report import report

LOAD = str(Path(__file__).resolve().with_name("authz_load.py"))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=300, help="starts per cluster")
    parser.add_argument("--flips", type=int, default=3, help="grant/revoke pairs timed")
    parser.add_argument("--kubelet-sync-frequency", default=DEFAULT_SYNC_FREQUENCY,
                        help="the kubelet's syncFrequency: how soon a changed ConfigMap reaches a mounted volume "
                             "(LOCALKUBE_KUBELET_SYNC_FREQUENCY)")
    args = parser.parse_args()
    cluster = ControlPlane(state_root() / f"bench-{os.getpid()}-{uuid.uuid4().hex[:4]}", {},
                           sync_frequency=args.kubelet_sync_frequency)
    kubectl = [str(path_of("kubectl")), f"--kubeconfig={cluster.kubeconfig}"]

    def k(*a: str, input: str | None = None) -> str:
        return subprocess.run([*kubectl, *a], input=input, capture_output=True, text=True, check=True).stdout

    result: dict = {"starts_per_cluster": args.starts, "kubelet_sync_frequency": args.kubelet_sync_frequency}
    try:
        run_demo(cluster, apps=False, source="selfSigned")
        node_ns = cluster.netns
        resource = lambda kind, name, spec: {"apiVersion": "temporal-mtls.dev/v1alpha1", "kind": kind,  # noqa: E731
                                             "metadata": {"name": name}, "spec": spec}
        k("apply", "-f", "-", input=yaml.safe_dump_all([
            resource("TemporalCluster", "plain", {"authorization": {"enabled": False}}),
            resource("TemporalNamespace", "plain-default", {"clusterRef": {"name": "plain"}, "name": "default"}),
            resource("TemporalClusterClient", "bench-on", {"clusterRef": {"name": "demo"}}),
            resource("TemporalClusterClient", "bench-off", {"clusterRef": {"name": "plain"}}),
            resource("TemporalClusterClient", "bench-grant", {"clusterRef": {"name": "demo"},
                                                              "permissions": {"namespaces": []}})]))
        k("wait", "--for=condition=Ready", "temporalcluster/plain", "--timeout=300s")
        k("wait", "--for=condition=Ready", "temporalnamespace/plain-default", "temporalclusterclient/bench-on",
          "temporalclusterclient/bench-off", "temporalclusterclient/bench-grant", "--timeout=120s")
        with tempfile.TemporaryDirectory() as files:
            def endpoint(name: str, cluster_name: str) -> dict:
                data = json.loads(k("get", "secret", f"{name}-temporal-client", "-o", "json"))["data"]
                paths = {}
                for key in ("tls.crt", "tls.key", "ca.crt"):
                    paths[key] = Path(files) / f"{name}-{key}"
                    paths[key].write_bytes(base64.b64decode(data[key]))
                address = k("get", "svc", f"{cluster_name}-frontend", "-o", "jsonpath={.spec.clusterIP}")
                return {"name": name, "address": f"{address}:7233", "server_name": f"{cluster_name}-frontend.default.svc",
                        "ca": str(paths["ca.crt"]), "cert": str(paths["tls.crt"]), "key": str(paths["tls.key"])}

            run = lambda *a: subprocess.run(["ip", "netns", "exec", node_ns, sys.executable, LOAD, *a],  # noqa: E731
                                            capture_output=True, text=True, check=True).stdout
            seconds = json.loads(run("latency", json.dumps([endpoint("bench-on", "demo"), endpoint("bench-off", "plain")]),
                                     str(args.starts)).splitlines()[-1])
            for label, name in (("on", "bench-on"), ("off", "bench-off")):
                result[f"start_p50_ms_authorization_{label}"] = statistics.median(seconds[name]) * 1000
                result[f"start_p99_ms_authorization_{label}"] = percentile(seconds[name], 0.99) * 1000
            result["start_p50_ratio_on_to_off"] = (result["start_p50_ms_authorization_on"]
                                                   / result["start_p50_ms_authorization_off"])
            grant = endpoint("bench-grant", "demo")
            flips = {"grant": [], "revoke": []}
            for _ in range(args.flips):
                for what, permissions, want in (("grant", [{"name": "default", "role": "writer"}], "allowed"),
                                                ("revoke", [], "denied")):
                    waiter = subprocess.Popen(["ip", "netns", "exec", node_ns, sys.executable, LOAD, "flip",
                                               json.dumps(grant), want], stdout=subprocess.PIPE, text=True)
                    waiter.stdout.readline()  # connected
                    patched = time.time()
                    k("patch", "temporalclusterclient", "bench-grant", "--type=merge", "-p",
                      json.dumps({"spec": {"permissions": {"namespaces": permissions}}}))
                    flipped = json.loads(waiter.stdout.readline())["flipped"]
                    waiter.wait(30)
                    flips[what].append(flipped - patched)
            for what, values in flips.items():
                result[f"{what}_propagation_median_s"] = statistics.median(values)
                result[f"{what}_propagation_max_s"] = max(values)
            result["propagation_runs"] = flips
    finally:
        cluster.down()
    report("authz", result)


if __name__ == "__main__":
    main()
