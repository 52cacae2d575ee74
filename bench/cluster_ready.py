"""TemporalCluster apply -> Ready on the local cluster, split into operator and server shares,
and the operator's memory.

    .venv/bin/python bench/cluster_ready.py [--runs 3]

Starts a private local cluster, installs the operator chart, then for each run applies
examples/cluster.yaml in a fresh namespace. Prints a table, writes bench/results/cluster_ready.json.
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
from report import poll

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    cluster = ControlPlane(state_root() / f"bench-{os.getpid()}-{uuid.uuid4().hex[:4]}")
    runs = []
    try:
        cluster.up()
        kubectl = [str(path_of("kubectl")), f"--kubeconfig={cluster.kubeconfig}"]

        def k(*a: str) -> str:
            return subprocess.run([*kubectl, *a], check=True, capture_output=True, text=True).stdout

        subprocess.run([str(path_of("helm")), f"--kubeconfig={cluster.kubeconfig}", "upgrade", "--install", "tmo",
                        str(REPO_ROOT / "charts" / "temporal-mtls-operator"), "-n", "temporal-mtls-system",
                        "--create-namespace", "--wait"], check=True, capture_output=True)
        for run in range(args.runs):
            namespace = f"bench-{run}"
            k("create", "namespace", namespace)
            poll(lambda: subprocess.run([*kubectl, "get", "sa", "default", "-n", namespace], capture_output=True)
                 .returncode == 0)
            started = time.monotonic()
            k("apply", "-n", namespace, "-f", str(REPO_ROOT / "examples" / "cluster.yaml"))

            def deployment_created():
                return subprocess.run([*kubectl, "get", "deployment", "demo-server", "-n", namespace],
                                      capture_output=True).returncode == 0

            poll(deployment_created)
            objects_applied = time.monotonic() - started

            def ready():
                body = json.loads(k("get", "temporalcluster", "demo", "-n", namespace, "-o", "json"))
                return any(c["type"] == "Ready" and c["status"] == "True"
                           for c in (body.get("status") or {}).get("conditions") or [])

            poll(ready, interval=0.2)
            total = time.monotonic() - started
            runs.append({"operator_seconds": objects_applied, "server_seconds": total - objects_applied,
                         "total_seconds": total})
        pod = json.loads(k("get", "pods", "-n", "temporal-mtls-system", "-o", "json"))["items"][0]
        pid = int(pod["status"]["containerStatuses"][0]["containerID"].removeprefix("localkube://"))
        rss_kib = int(next(line.split()[1] for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                           if line.startswith("VmRSS:")))
    finally:
        cluster.down()
    result = {"runs": runs, "clusters": len(runs),
              "median_operator_seconds": statistics.median(r["operator_seconds"] for r in runs),
              "median_server_seconds": statistics.median(r["server_seconds"] for r in runs),
              "median_total_seconds": statistics.median(r["total_seconds"] for r in runs),
              "operator_rss_mib": round(rss_kib / 1024, 1)}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cluster_ready.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'run':<6}{'operator s':>12}{'server s':>12}{'total s':>12}")
    for index, r in enumerate(runs):
        print(f"{index:<6}{r['operator_seconds']:>12.2f}{r['server_seconds']:>12.2f}{r['total_seconds']:>12.2f}")
    print(f"{'median':<6}{result['median_operator_seconds']:>12.2f}{result['median_server_seconds']:>12.2f}"
          f"{result['median_total_seconds']:>12.2f}")
    print(f"operator RSS after {len(runs)} clusters: {result['operator_rss_mib']} MiB")
    print(f"written to {RESULTS / 'cluster_ready.json'}")


if __name__ == "__main__":
    main()
