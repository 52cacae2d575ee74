"""A Temporal upgrade under load: 1.31 to 1.32 on the PostgreSQL topology while workflows start at a fixed rate.

    .venv/bin/python bench/upgrade.py [--rate 5] [--settle 10] [--to 1.32.2]

Runs `make demo SOURCE=selfSigned POSTGRES=1`'s stack on a private local cluster (PostgreSQL, the operator, the
example cluster with 2 frontend, 2 history, 1 matching and 1 worker pods, the hello-world worker and starter), starts
`/workflow/start?wait=true` calls at --rate per second (each waits for its workflow's result, so every workflow in
flight when the upgrade begins must complete after it), sets spec.version to --to, and reports: failed starts,
p50/p99/max start-to-result latency during the upgrade, how long it took in all and per step (schema Job, then
each service, from the Progressing reasons), and server pod restarts outside the rollout. Prints a table, writes
bench/results/upgrade.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from localkube.control_plane import ControlPlane, free_port
from localkube.demo import STARTER_NODE_PORT, run_demo
from localkube.paths import state_root
from localkube.toolchain import path_of
from report import poll, report

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support.rotation_load import Load, starter_answers, window  # noqa: E402  (the rotation bench's fixed-rate starts)

SERVICES = ("history", "matching", "frontend", "worker")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=5.0, help="workflow starts per second")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds of load before and after the upgrade")
    parser.add_argument("--to", default="1.32.2", help="the version to upgrade to (the next minor)")
    args = parser.parse_args()
    port = free_port()
    cluster = ControlPlane(state_root() / f"bench-upgrade-{os.getpid()}-{uuid.uuid4().hex[:4]}",
                           {STARTER_NODE_PORT: ("127.0.0.1", port)})
    base = f"http://127.0.0.1:{port}"
    load = Load(base, args.rate, prefix="u")
    result: dict = {"rate_per_second": args.rate, "to": args.to, "topology": "postgresql 2/2/1/1"}
    steps: list[tuple[str, float]] = []  # (Progressing reason, first seen at) during the upgrade
    try:
        run_demo(cluster, source="selfSigned", postgres=True)
        kubectl = [str(path_of("kubectl")), f"--kubeconfig={cluster.kubeconfig}"]

        def get(*what: str) -> dict:
            return json.loads(subprocess.run([*kubectl, "get", *what, "-o", "json"], capture_output=True, text=True,
                                             check=True).stdout)

        result["from"] = poll(lambda: (get("temporalcluster", "demo").get("status") or {}).get("version"), 120, 1)
        pods_before = _pods(get)
        poll(lambda: starter_answers(base), 120, 1)
        load.start()
        time.sleep(args.settle)
        began = time.time()
        subprocess.run([*kubectl, "patch", "temporalcluster", "demo", "--type=merge", "-p",
                        json.dumps({"spec": {"version": args.to}})], check=True, capture_output=True)
        while True:
            status = get("temporalcluster", "demo").get("status") or {}
            reason = next((c["reason"] for c in status.get("conditions") or [] if c["type"] == "Progressing"), "")
            if reason.startswith("Upgrading") and (not steps or steps[-1][0] != reason):
                steps.append((reason, time.time()))
            if status.get("version") == args.to:
                break
            if time.time() - began > 900:
                raise TimeoutError(f"the upgrade did not complete in 900 s: {status.get('upgrade')}")
            time.sleep(0.5)
        ended = time.time()
        time.sleep(args.settle)
        load.stop()
        upgrade = status.get("upgrade") or {}
        pods_after = _pods(get)
        result.update(upgrade_seconds=round(ended - began, 1), recorded=upgrade,
                      steps=[[r, round(t - began, 1)] for r, t in steps],
                      # Every server pod is new (the rollout's); none of them restarted its container.
                      server_restarts_after=sum(pods_after.values()),
                      server_pods_before=len(pods_before), server_pods_after=len(pods_after),
                      pods_replaced=len(set(pods_before) - set(pods_after)))
        for (reason, at), nxt in zip(steps, [*(t for _, t in steps[1:]), ended]):
            result[f"{reason.removeprefix('Upgrading').lower()}_seconds"] = round(nxt - at, 1)
    finally:
        if load.is_alive():
            load.stop()
        cluster.down()
    result.update(window(load, "upgrade", began, ended))
    result.update(window(load, "all", 0, time.time()))
    origin = result["started_at"] = min((r[0] for r in load.results), default=0.0)
    result["window"] = [began - origin, ended - origin]
    result["starts"] = [[issued - origin, seconds, ok] for issued, ok, seconds in sorted(load.results)]
    report("upgrade", result)
    for issued, error in sorted(load.errors)[:20]:
        print(f"a failed start at {time.strftime('%H:%M:%S', time.gmtime(issued))} said: {error}")


def _pods(get) -> dict[str, int]:
    """Server pod uid -> its container's restart count."""
    pods = get("pods", "-l", "app.kubernetes.io/name=temporal")["items"]
    return {p["metadata"]["uid"]: sum(c.get("restartCount", 0) for c in p["status"].get("containerStatuses") or [])
            for p in pods if (p["metadata"].get("labels") or {}).get("app.kubernetes.io/component") in SERVICES}


if __name__ == "__main__":
    main()
