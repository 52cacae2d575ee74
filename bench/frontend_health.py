"""A replaced frontend pod: when its gRPC port takes TCP connections, when Temporal's health check over mTLS says
SERVING, and when the pod turns Ready; and the CPU one health-probe call costs.

    .venv/bin/python bench/frontend_health.py [--restarts 3] [--topology sqlite,postgresql] [--calls 30]
                                              [--grpc-health-probe PATH]

Starts a private local cluster and the operator chart; per topology applies examples/cluster.yaml (SQLite, one
pod) or examples/postgres.yaml + examples/cluster-postgres.yaml (2 frontend pods), then deletes a frontend pod
``--restarts`` times (and on PostgreSQL restarts every Deployment at once, as a CA rotation rolls them,
timing both new frontend pods). Inside the node's network namespace a poller dials the new pod's IP every 50 ms: TCP
connect, then the readiness probe's own command (``temporal operator cluster health`` with the system-worker
certificate, builders/health_probe.py) until it exits 0. The pod's Ready comes from a watch. Then it runs that
command ``--calls`` times against a serving pod and reports CPU (user+sys of the child) and wall time per call,
and the same for grpc_health_probe when a binary is given. Prints a table, writes bench/results/frontend_health.json.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from report import poll, report

from localkube.control_plane import ControlPlane
from localkube.paths import REPO_ROOT, state_root
from localkube.toolchain import path_of
from temporal_mtls_operator.builders import health_probe
from temporal_mtls_operator.render import TLS_DIRS
from temporal_mtls_operator.sources.base import ClusterIdentity

HEALTH_SERVICE = "temporal.api.workflowservice.v1.WorkflowService"


def probe_command(name: str, namespace: str, address: str, cert_dir: Path) -> list[str]:
    """The pod's readiness command with host paths: the cached CLI, the saved system-worker Secret, the pod IP."""
    command = health_probe.command(ClusterIdentity(name, namespace, "bench"))
    command = [str(path_of("temporal")) if a == health_probe.BINARY else
               a.replace(TLS_DIRS["system_worker"], str(cert_dir)) for a in command]
    command[command.index("--address") + 1] = address
    return command


def grpc_health_probe_command(binary: str, name: str, namespace: str, address: str, cert_dir: Path) -> list[str]:
    return [binary, "-addr", address, "-tls", "-tls-ca-cert", str(cert_dir / "ca.crt"),
            "-tls-client-cert", str(cert_dir / "tls.crt"), "-tls-client-key", str(cert_dir / "tls.key"),
            "-tls-server-name", f"{name}-frontend.{namespace}.svc", "-service", HEALTH_SERVICE,
            "-connect-timeout", "3s", "-rpc-timeout", "3s"]


# -- inside the node's network namespace ------------------------------------------------------------------------

def poll_pod(ip: str, command: list[str], timeout: float) -> dict:
    """Wall-clock times of the first TCP accept and the first SERVING (exit 0) of ``command``."""
    result: dict = {"tcp": None, "serving": None, "failed_checks": 0}
    deadline = time.time() + timeout
    while time.time() < deadline and result["serving"] is None:
        if result["tcp"] is None:
            try:
                with socket.create_connection((ip, 7233), timeout=0.2):
                    result["tcp"] = time.time()
            except OSError:
                time.sleep(0.05)
                continue
        if subprocess.run(command, capture_output=True, timeout=10).returncode == 0:
            result["serving"] = time.time()
        else:
            result["failed_checks"] += 1
            time.sleep(0.05)
    return result


def cpu_per_call(command: list[str], calls: int) -> dict:
    before, started = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
    failures = sum(subprocess.run(command, capture_output=True, timeout=10).returncode != 0 for _ in range(calls))
    after, wall = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic() - started
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"calls": calls, "failures": failures, "cpu_ms_per_call": round(1000 * cpu / calls, 1),
            "wall_ms_per_call": round(1000 * wall / calls, 1), "max_rss_mib": round(after.ru_maxrss / 1024, 1)}


# -- on the host ------------------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--restarts", type=int, default=3)
    parser.add_argument("--topology", default="sqlite,postgresql")
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--grpc-health-probe", help="a grpc_health_probe binary to compare the CPU of one call")
    args = parser.parse_args()
    cluster = ControlPlane(state_root() / f"bench-health-{os.getpid()}-{uuid.uuid4().hex[:4]}")
    results: dict = {}
    try:
        cluster.up()
        node_ns = cluster.netns
        kubectl = [str(path_of("kubectl")), f"--kubeconfig={cluster.kubeconfig}"]

        def k(*a: str, input: str | None = None) -> str:
            return subprocess.run([*kubectl, *a], check=True, capture_output=True, text=True, input=input).stdout

        def in_node(*a: str) -> dict:
            out = subprocess.run(["ip", "netns", "exec", node_ns, sys.executable, __file__, *a], check=True,
                                 capture_output=True, text=True, cwd=Path(__file__).parent).stdout
            return json.loads(out)

        subprocess.run([str(path_of("helm")), f"--kubeconfig={cluster.kubeconfig}", "upgrade", "--install", "tmo",
                        str(REPO_ROOT / "charts" / "temporal-mtls-operator"), "-n", "temporal-mtls-system",
                        "--create-namespace", "--wait"], check=True, capture_output=True)
        for topology in args.topology.split(","):
            results[topology] = one_topology(k, in_node, topology, args)
    finally:
        cluster.down()
    flat = {f"{t}_{key}": value for t, r in results.items() for key, value in r.items() if key != "restarts"}
    print(f"{'topology':<12}{'restart':<10}{'TCP->SERVING s':>16}{'TCP->Ready s':>14}{'SERVING->Ready s':>18}"
          f"{'failed checks':>15}")
    for topology, r in results.items():
        for index, one in enumerate(r["restarts"]):
            print(f"{topology:<12}{one['kind'] + str(index):<10}{one['tcp_to_serving_s']:>16.2f}{one['tcp_to_ready_s']:>14.2f}"
                  f"{one['serving_to_ready_s']:>18.2f}{one['failed_checks']:>15}")
    report("frontend_health", {**flat, "runs": results})


def one_topology(k, in_node, topology: str, args) -> dict:
    namespace, name = f"health-{topology[:2]}-{uuid.uuid4().hex[:4]}", "demo"
    k("create", "namespace", namespace)
    postgres = topology == "postgresql"
    if postgres:
        k("apply", "-n", namespace, "-f", str(REPO_ROOT / "examples" / "postgres.yaml"))
        poll(lambda: k("get", "pod", "postgres-0", "-n", namespace, "-o",
                       "jsonpath={.status.containerStatuses[0].ready}") == "true", 120, 0.5)
    k("apply", "-n", namespace, "-f", str(REPO_ROOT / "examples" / ("cluster-postgres.yaml" if postgres else
                                                                         "cluster.yaml")))
    poll(lambda: any(c["type"] == "Ready" and c["status"] == "True" for c in (json.loads(k(
        "get", "temporalcluster", name, "-n", namespace, "-o", "json")).get("status") or {}).get("conditions", [])),
         300, 1)
    component = "frontend" if postgres else "server"
    selector = f"app.kubernetes.io/component={component}"
    with tempfile.TemporaryDirectory() as tmp:
        cert_dir = Path(tmp)
        data = json.loads(k("get", "secret", f"{name}-system-worker-tls", "-n", namespace, "-o", "json"))["data"]
        for key in ("tls.crt", "tls.key", "ca.crt"):
            (cert_dir / key).write_bytes(base64.b64decode(data[key]))
        restarts = []
        for _ in range(args.restarts):
            victim = sorted(p["metadata"]["name"] for p in ready_pods(k, namespace, selector))[0]
            restarts += new_frontend_pods(k, in_node, namespace, name, selector, cert_dir, lambda: k(
                "delete", "pod", victim, "-n", namespace, "--wait=false"), 1, "delete")
        if postgres:
            # Every Deployment rolls at once, as a CA rotation rolls them: new pods may meet only leaving peers.
            restarts += new_frontend_pods(k, in_node, namespace, name, selector, cert_dir, lambda: k(
                "rollout", "restart", "deployment", "-n", namespace), 2, "roll-all")
        ip = ready_pods(k, namespace, selector)[0]["status"]["podIP"]
        cpu = {"cli": in_node("cpu", str(args.calls), *probe_command(name, namespace, f"{ip}:7233", cert_dir))}
        if args.grpc_health_probe:
            cpu["grpc_health_probe"] = in_node("cpu", str(args.calls), *grpc_health_probe_command(
                args.grpc_health_probe, name, namespace, f"{ip}:7233", cert_dir))
    k("delete", "namespace", namespace, "--wait=false")
    lag = [r["tcp_to_serving_s"] for r in restarts]
    return {"restarts": restarts, "median_tcp_to_serving_s": statistics.median(lag), "max_tcp_to_serving_s": max(lag),
            "median_serving_to_ready_s": statistics.median(r["serving_to_ready_s"] for r in restarts),
            **{f"{tool}_{key}": value for tool, figures in cpu.items() for key, value in figures.items()}}


def ready_pods(k, namespace: str, selector: str) -> list[dict]:
    pods = json.loads(k("get", "pods", "-n", namespace, "-l", selector, "-o", "json"))["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp") and any(
        c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))]


def new_frontend_pods(k, in_node, namespace: str, name: str, selector: str, cert_dir: Path, trigger, count: int,
                      kind: str) -> list[dict]:
    """Run ``trigger``, then time each of the next ``count`` new frontend pods: TCP, SERVING, Ready."""
    seen = {p["metadata"]["name"] for p in json.loads(k("get", "pods", "-n", namespace, "-l", selector, "-o",
                                                          "json"))["items"]}
    trigger()
    measured = []
    for _ in range(count):
        new = poll(lambda: next((p for p in json.loads(k("get", "pods", "-n", namespace, "-l", selector, "-o", "json")
                                                       )["items"] if p["metadata"]["name"] not in seen
                                 and p["status"].get("podIP")), None), 180, 0.1)
        pod, ip = new["metadata"]["name"], new["status"]["podIP"]
        seen.add(pod)
        ready_at: list[float] = []

        def watch_ready() -> None:
            ready_at.append(poll(lambda: any(p["metadata"]["name"] == pod for p in ready_pods(k, namespace, selector))
                                 and time.time(), 180, 0.25))

        watcher = threading.Thread(target=watch_ready, daemon=True)
        watcher.start()
        at = in_node("pod", ip, "180", *probe_command(name, namespace, f"{ip}:7233", cert_dir))
        watcher.join(200)
        assert at["tcp"] and at["serving"] and ready_at, (at, ready_at)
        measured.append({"kind": kind, "pod": pod, "tcp_to_serving_s": round(at["serving"] - at["tcp"], 2),
                         "tcp_to_ready_s": round(ready_at[0] - at["tcp"], 2),
                         "serving_to_ready_s": round(ready_at[0] - at["serving"], 2),
                         "failed_checks": at["failed_checks"]})
    return measured


if __name__ == "__main__":
    if sys.argv[1:2] == ["pod"]:
        print(json.dumps(poll_pod(sys.argv[2], sys.argv[4:], float(sys.argv[3]))))
    elif sys.argv[1:2] == ["cpu"]:
        print(json.dumps(cpu_per_call(sys.argv[3:], int(sys.argv[2]))))
    else:
        main()
