"""The operator at scale: 500 TemporalClusterClients of one cluster, then 20 TemporalClusters (SQLite).

    .venv/bin/python bench/scale.py [--clients 500] [--clusters 20] [--idle 60]

Starts a private local cluster and installs the operator chart. For each phase it prints and records: time from
`kubectl create` until every resource is Ready, API requests per resource, the operator's RSS before and after,
and the operator's CPU over ``--idle`` seconds once they settled (its Python process in the operator container,
read in /proc).

API requests are counted by the API server (`apiserver_request_total`): GET, POST, PATCH, APPLY and PUT on the
kinds the operator touches, minus the benchmark's own creates, minus the rate of the same requests in a quiet
window before the phase (controllers, the kubelet). Watches and lists are left out (the benchmark polls with
lists; the operator's watches and the kubelet's watches of mounted Secrets and ConfigMaps are long-lived). The
apiserver's count also holds what the kubelet and controllers do for the server pods the phase creates, so the
operator's own count of its reconciles' requests (``temporal_mtls_kube_requests_total``, without kopf's finalizer
and status patches) is printed too. Other clusters on the machine share its 2 cores: figures are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
import uuid
from collections import Counter
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from localkube.control_plane import ControlPlane
from localkube.paths import REPO_ROOT, state_root
from localkube.toolchain import path_of
from report import operator_pid, poll, report, rss_kib

OPERATOR_NAMESPACE = "temporal-mtls-system"
VERBS = {"GET", "POST", "PATCH", "APPLY", "PUT"}
RESOURCES = {"temporalclusterclients", "temporalclusters", "temporalnamespaces", "secrets", "configmaps", "services",
             "persistentvolumeclaims", "deployments", "events"}
TICKS = os.sysconf("SC_CLK_TCK")


class Bench:
    def __init__(self, cluster: ControlPlane) -> None:
        self.cluster = cluster
        self.kubectl = [str(path_of("kubectl")), f"--kubeconfig={cluster.kubeconfig}"]

    def leader(self) -> dict:
        """The operator pod holding the leader-election Lease (the chart runs a leader and a standby)."""
        name = self.k("get", "lease", "tmo-leader", "-n", OPERATOR_NAMESPACE, "-o", "jsonpath={.spec.holderIdentity}")
        return json.loads(self.k("get", "pod", name.strip(), "-n", OPERATOR_NAMESPACE, "-o", "json"))

    def operator_requests(self) -> float:
        """The operator's own count of its reconciles' API requests (temporal_mtls_kube_requests_total)."""
        pod = self.leader()
        text = subprocess.run(["ip", "netns", "exec", self.cluster.netns, "curl", "-sS", "--max-time", "10",
                               f"http://{pod['status']['podIP']}:8081/metrics"], check=True, capture_output=True,
                              text=True).stdout
        return sum(s.value for f in text_string_to_metric_families(text) if f.name == "temporal_mtls_kube_requests"
                   for s in f.samples if s.name.endswith("_total"))

    def k(self, *args: str, input: str | None = None) -> str:
        return subprocess.run([*self.kubectl, *args], check=True, capture_output=True, text=True,
                              input=input).stdout

    def requests(self) -> Counter:
        """(resource, verb) -> apiserver_request_total, for the operator's kinds and verbs."""
        counts: Counter = Counter()
        for family in text_string_to_metric_families(self.k("get", "--raw", "/metrics")):
            if family.name != "apiserver_request":
                continue
            for sample in family.samples:
                labels = sample.labels
                if sample.name.endswith("_total") and labels.get("resource") in RESOURCES \
                        and labels.get("verb") in VERBS:
                    counts[(labels["resource"], labels["verb"])] += sample.value
        return counts

    def operator_pid(self) -> int:
        return operator_pid(self.cluster, self.leader()["status"]["containerStatuses"][0]["containerID"])

    def ready(self, plural: str, namespace: str) -> int:
        items = json.loads(self.k("get", plural, "-n", namespace, "-o", "json"))["items"]
        return sum(any(c["type"] == "Ready" and c["status"] == "True"
                       for c in (i.get("status") or {}).get("conditions") or []) for i in items)

    def namespace(self, name: str) -> None:
        self.k("create", "namespace", name)
        poll(lambda: subprocess.run([*self.kubectl, "get", "sa", "default", "-n", name],
                                    capture_output=True).returncode == 0)


def rss_mib(pid: int) -> float:
    return round(rss_kib(pid) / 1024, 1)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def phase(bench: Bench, pid: int, namespace: str, plural: str, manifests: list[dict], timeout: float,
          idle: float, settle: float) -> dict:
    rss_before = rss_mib(pid)
    quiet_start, quiet_counts = time.monotonic(), bench.requests()
    time.sleep(15)
    baseline = sum((bench.requests() - quiet_counts).values()) / (time.monotonic() - quiet_start)
    before, own_before = bench.requests(), bench.operator_requests()
    started = time.monotonic()
    bench.k("create", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(manifests))
    created = time.monotonic() - started
    count = len(manifests)
    first_seen: dict[int, float] = {}
    series: list[list[float]] = []  # [seconds since the create, resources Ready, operator RSS MiB] (bench/plot.py)

    def all_ready():
        ready = bench.ready(plural, namespace)
        series.append([round(time.monotonic() - started, 2), ready, rss_mib(pid)])
        for n in (count // 2, count):
            if ready >= n and n not in first_seen:
                first_seen[n] = time.monotonic() - started
        return ready >= count

    poll(all_ready, timeout=timeout, interval=0.5)
    elapsed = time.monotonic() - started
    spent = bench.requests() - before
    reconcile_requests = bench.operator_requests() - own_before
    own = sum(v for (resource, verb), v in spent.items() if resource == plural and verb == "POST")
    requests = sum(spent.values()) - own - baseline * elapsed
    time.sleep(settle)
    idle_before, cpu_before, own_idle = bench.requests(), cpu_seconds(pid), bench.operator_requests()
    idle_started = time.monotonic()
    time.sleep(idle)
    idle_wall = time.monotonic() - idle_started
    idle_cpu = (cpu_seconds(pid) - cpu_before) / idle_wall * 100
    idle_requests = sum((bench.requests() - idle_before).values()) / idle_wall - baseline
    idle_own = (bench.operator_requests() - own_idle) / idle_wall
    return {"resources": count, "half_ready_seconds": round(first_seen[count // 2], 1),
            "all_ready_seconds": round(elapsed, 1),
            "api_requests_per_resource": round(requests / count, 1),
            "reconcile_requests_per_resource": round(reconcile_requests / count, 1),
            "background_requests_per_second": round(baseline, 2),
            "operator_rss_before_mib": rss_before, "operator_rss_after_mib": rss_mib(pid),
            "idle_operator_cpu_percent": round(idle_cpu, 2),
            "idle_api_requests_per_second": round(idle_requests, 2),
            "idle_reconcile_requests_per_second": round(idle_own, 2), "create_seconds": round(created, 1),
            "series": series}


def client(name: str) -> dict:
    return {"apiVersion": "temporal-mtls.dev/v1alpha1", "kind": "TemporalClusterClient", "metadata": {"name": name},
            "spec": {"clusterRef": {"name": "demo"}}}


def temporal_cluster(name: str) -> dict:
    return {"apiVersion": "temporal-mtls.dev/v1alpha1", "kind": "TemporalCluster", "metadata": {"name": name},
            "spec": {}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--clusters", type=int, default=20)
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of idle CPU measurement")
    parser.add_argument("--settle", type=float, default=30.0, help="seconds between Ready and the idle window")
    args = parser.parse_args()
    cluster = ControlPlane(state_root() / f"bench-scale-{os.getpid()}-{uuid.uuid4().hex[:4]}")
    result: dict = {}
    try:
        cluster.up()
        bench = Bench(cluster)
        subprocess.run([str(path_of("helm")), f"--kubeconfig={cluster.kubeconfig}", "upgrade", "--install", "tmo",
                        str(REPO_ROOT / "charts" / "temporal-mtls-operator"), "-n", OPERATOR_NAMESPACE,
                        "--create-namespace", "--wait"], check=True, capture_output=True)
        pid = bench.operator_pid()
        result["operator_rss_start_mib"] = rss_mib(pid)

        bench.namespace("scale-clients")
        bench.k("apply", "-n", "scale-clients", "-f", "-", input=yaml.safe_dump(temporal_cluster("demo")))
        poll(lambda: bench.ready("temporalclusters", "scale-clients") == 1, timeout=300, interval=1)
        clients = phase(bench, pid, "scale-clients", "temporalclusterclients",
                        [client(f"app-{i:03d}") for i in range(args.clients)], 600, args.idle, args.settle)
        result.update({f"clients_{k}": v for k, v in clients.items()})

        if args.clusters:
            bench.namespace("scale-clusters")
            clusters = phase(bench, pid, "scale-clusters", "temporalclusters",
                             [temporal_cluster(f"c{i:02d}") for i in range(args.clusters)], 1200, args.idle,
                             args.settle)
            result.update({f"clusters_{k}": v for k, v in clusters.items()})
    finally:
        cluster.down()
    report("scale", result)


if __name__ == "__main__":
    main()
