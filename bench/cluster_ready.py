"""TemporalCluster apply -> Ready on the local cluster, split into operator and server shares,
and the operator's memory; SQLite (one pod) beside PostgreSQL (schema Job, then 2 frontend, 2 history,
1 matching, 1 worker pods).

    .venv/bin/python bench/cluster_ready.py [--runs 3] [--topology sqlite,postgresql]

Starts a private local cluster, installs the operator chart, then for each run and topology applies
examples/cluster.yaml (or examples/postgres.yaml, waited for and not counted, then
examples/cluster-postgres.yaml) in a fresh namespace. The operator's share ends when the first server
Deployment exists (for PostgreSQL: after the schema Job succeeded). Prints a table, writes
bench/results/cluster_ready.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time
import uuid
from pathlib import Path

from localkube.control_plane import ControlPlane
from localkube.paths import REPO_ROOT, state_root
from localkube.toolchain import path_of
from report import measured, operator_pid, poll, rss_kib

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--topology", default="sqlite,postgresql")
    args = parser.parse_args()
    topologies = args.topology.split(",")
    cluster = ControlPlane(state_root() / f"bench-{os.getpid()}-{uuid.uuid4().hex[:4]}")
    runs: dict[str, list[dict]] = {t: [] for t in topologies}
    try:
        cluster.up()
        kubectl = [str(path_of("kubectl")), f"--kubeconfig={cluster.kubeconfig}"]

        def k(*a: str) -> str:
            return subprocess.run([*kubectl, *a], check=True, capture_output=True, text=True).stdout

        subprocess.run([str(path_of("helm")), f"--kubeconfig={cluster.kubeconfig}", "upgrade", "--install", "tmo",
                        str(REPO_ROOT / "charts" / "temporal-mtls-operator"), "-n", "temporal-mtls-system",
                        "--create-namespace", "--wait"], check=True, capture_output=True)
        for run in range(args.runs):
            for topology in topologies:
                runs[topology].append(one_run(k, kubectl, f"bench-{topology[:2]}-{run}", topology))
        leader = k("get", "lease", "tmo-leader", "-n", "temporal-mtls-system", "-o", "jsonpath={.spec.holderIdentity}")
        pod = json.loads(k("get", "pod", leader.strip(), "-n", "temporal-mtls-system", "-o", "json"))  # not the standby
        rss = rss_kib(operator_pid(cluster, pod["status"]["containerStatuses"][0]["containerID"]))
    finally:
        cluster.down()
    result = {**summary(runs.get("sqlite") or next(iter(runs.values()))),
              **{t: summary(r) for t, r in runs.items() if t != "sqlite"}, "operator_rss_mib": round(rss / 1024, 1),
              "measured": measured()}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cluster_ready.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'topology':<12}{'run':<6}{'operator s':>12}{'server s':>12}{'total s':>12}")
    for topology, topology_runs in runs.items():
        for index, r in enumerate(topology_runs):
            print(f"{topology:<12}{index:<6}{r['operator_seconds']:>12.2f}{r['server_seconds']:>12.2f}"
                  f"{r['total_seconds']:>12.2f}")
        t = summary(topology_runs)
        print(f"{topology:<12}{'median':<6}{t['median_operator_seconds']:>12.2f}{t['median_server_seconds']:>12.2f}"
              f"{t['median_total_seconds']:>12.2f}")
    print(f"operator RSS after {sum(len(r) for r in runs.values())} clusters: {result['operator_rss_mib']} MiB")
    print(f"written to {RESULTS / 'cluster_ready.json'}")


def summary(runs: list[dict]) -> dict:
    return {"runs": runs, "clusters": len(runs),
            "median_operator_seconds": statistics.median(r["operator_seconds"] for r in runs),
            "median_server_seconds": statistics.median(r["server_seconds"] for r in runs),
            "median_total_seconds": statistics.median(r["total_seconds"] for r in runs)}


def one_run(k, kubectl: list[str], namespace: str, topology: str) -> dict:
    k("create", "namespace", namespace)
    poll(lambda: subprocess.run([*kubectl, "get", "sa", "default", "-n", namespace], capture_output=True)
         .returncode == 0)
    if topology == "postgresql":
        k("apply", "-n", namespace, "-f", str(REPO_ROOT / "examples" / "postgres.yaml"))
        poll(lambda: k("get", "pod", "postgres-0", "-n", namespace, "--ignore-not-found", "-o",
                       "jsonpath={.status.containerStatuses[0].ready}") == "true", interval=0.2)
    example, first_deployment = {"sqlite": ("cluster.yaml", "demo-server"),
                                 "postgresql": ("cluster-postgres.yaml", "demo-frontend")}[topology]
    started = time.monotonic()
    k("apply", "-n", namespace, "-f", str(REPO_ROOT / "examples" / example))

    def deployment_created():
        return subprocess.run([*kubectl, "get", "deployment", first_deployment, "-n", namespace],
                              capture_output=True).returncode == 0

    poll(deployment_created)
    objects_applied = time.monotonic() - started

    def ready():
        body = json.loads(k("get", "temporalcluster", "demo", "-n", namespace, "-o", "json"))
        return any(c["type"] == "Ready" and c["status"] == "True"
                   for c in (body.get("status") or {}).get("conditions") or [])

    poll(ready, interval=0.2)
    total = time.monotonic() - started
    return {"operator_seconds": objects_applied, "server_seconds": total - objects_applied, "total_seconds": total}


if __name__ == "__main__":
    main()
