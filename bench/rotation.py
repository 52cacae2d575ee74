"""Certificate rotation under load: workflow starts through the starter at a fixed rate while, in turn, the
frontend leaves, the internode leaves, the frontend CA and the internode CA rotate.

    .venv/bin/python bench/rotation.py [--rate 5] [--settle 10] [--kubelet-sync-frequency 10s] [--server ours|stock]

Runs `make demo SOURCE=selfSigned`'s stack on a private local cluster (operator, example cluster, hello-world
chart), starts `/workflow/start?wait=true` calls at --rate per second (each in its own thread), and per rotation
reports: failed starts, p50/p99/max start-to-result latency of the starts issued while it ran (from the trigger
to --settle seconds after it completed), how long the rotation took, and server pod restarts (new pods or
container restarts). --server stock runs the cluster on temporalio/server (authorization off), whose CA rotations
roll the pods. Prints a table, writes bench/results/rotation.json (rotation-stock.json), with every start's issue
time, outcome and latency and each rotation's window and phase times, for the plots.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from localkube.control_plane import DEFAULT_SYNC_FREQUENCY, ControlPlane, free_port
from localkube.demo import STARTER_NODE_PORT, run_demo
from localkube.paths import state_root
from localkube.toolchain import path_of
from report import poll, report

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support.rotation_load import ROTATIONS, Load, Rotations, starter_answers, window  # noqa: E402  (shared with the cluster test)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=5.0, help="workflow starts per second")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds of load counted after a rotation")
    parser.add_argument("--kubelet-sync-frequency", default=DEFAULT_SYNC_FREQUENCY,
                        help="the kubelet's syncFrequency: how soon a changed Secret reaches a mounted volume "
                             "(the kubelet's own default: 1m; LOCALKUBE_KUBELET_SYNC_FREQUENCY)")
    parser.add_argument("--logs", help="follow every pod's log into this directory")
    parser.add_argument("--server", choices=("ours", "stock"), default="ours",
                        help="ours: the operator's server build (CA bundles reloaded); stock: temporalio/server")
    args = parser.parse_args()
    port = free_port()
    cluster = ControlPlane(state_root() / f"bench-{os.getpid()}-{uuid.uuid4().hex[:4]}",
                           {STARTER_NODE_PORT: ("127.0.0.1", port)}, sync_frequency=args.kubelet_sync_frequency)
    base = f"http://127.0.0.1:{port}"
    result: dict = {"server": args.server, "rate_per_second": args.rate,
                    "kubelet_sync_frequency": args.kubelet_sync_frequency}
    windows = []  # (rotation, trigger time, end of its settle time)
    load, follow = Load(base, args.rate), None
    try:
        run_demo(cluster, source="selfSigned")
        kubectl = [str(path_of("kubectl")), f"--kubeconfig={cluster.kubeconfig}"]
        node_ns = cluster.netns
        rotations = Rotations(
            lambda *a: subprocess.run([*kubectl, *a], capture_output=True, text=True, check=True).stdout,
            lambda *a: subprocess.run(["ip", "netns", "exec", node_ns, *a], capture_output=True, text=True,
                                      timeout=60).stdout, "default", "demo")
        if args.server == "stock":  # the stock image has no claim mapper: authorization goes with it
            subprocess.run([*kubectl, "patch", "temporalcluster", "demo", "--type=merge", "-p",
                            '{"spec": {"authorization": {"enabled": false}}}'], check=True, capture_output=True)
            poll(lambda: _runs_image(kubectl, "temporalio/server:"), 300, 1)
        result["server_image"] = _server_image(kubectl)
        if args.logs:
            follow = FollowLogs(kubectl, Path(args.logs))
            follow.start()
        poll(lambda: starter_answers(base), 120, 1)
        load.start()
        time.sleep(args.settle)
        for name, annotation, domain in ROTATIONS:
            began = time.time()
            result.update(rotations.rotate(name, annotation, domain, f"bench-{name}"))
            time.sleep(args.settle)
            windows.append((name, began, time.time()))
        load.stop()
        result["phase_times"] = (rotations.get("temporalcluster", "demo").get("status") or {}).get("caRotation")
    finally:
        if follow:
            follow.stop()
        cluster.down()
    for name, began, ended in windows:
        result.update(window(load, name, began, ended))
    # For bench/plot.py: seconds since the load began.
    origin = result["started_at"] = min((r[0] for r in load.results), default=0.0)
    result["windows"] = [[name, began - origin, ended - origin] for name, began, ended in windows]
    result["starts"] = [[issued - origin, seconds, ok] for issued, ok, seconds in sorted(load.results)]
    report("rotation" if args.server == "ours" else "rotation-stock", result)
    for issued, error in sorted(load.errors)[:20]:
        print(f"a failed start at {time.strftime('%H:%M:%S', time.gmtime(issued))} said: {error}")


class FollowLogs(threading.Thread):
    """--logs DIR: follow every pod's log (timestamps) into DIR, including pods a rollout replaces, to line failed
    starts up with what the server, the apps and the operator did at that moment."""

    def __init__(self, kubectl: list[str], directory: Path) -> None:
        super().__init__(daemon=True)
        self.kubectl, self.directory, self.followed, self.halt = kubectl, directory, {}, threading.Event()
        directory.mkdir(parents=True, exist_ok=True)

    def run(self) -> None:
        while not self.halt.wait(1):
            listed = subprocess.run([*self.kubectl, "get", "pods", "-A", "-o", "json"], capture_output=True, text=True)
            for pod in json.loads(listed.stdout or "{}").get("items", []):
                meta = pod["metadata"]
                if meta["uid"] in self.followed or pod["status"].get("phase") not in ("Running", "Succeeded", "Failed"):
                    continue
                out = open(self.directory / f"{meta['namespace']}_{meta['name']}.log", "w")
                self.followed[meta["uid"]] = subprocess.Popen(
                    [*self.kubectl, "logs", "-f", "--timestamps", "--all-containers", "-n", meta["namespace"],
                     meta["name"]], stdout=out, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        self.halt.set()
        for process in self.followed.values():
            process.terminate()


def _server_image(kubectl: list[str]) -> str:
    listed = subprocess.run([*kubectl, "get", "pods", "-l", "app.kubernetes.io/component=server", "-o",
                             "jsonpath={.items[*].spec.containers[0].image}"], capture_output=True, text=True)
    return listed.stdout.strip()


def _runs_image(kubectl: list[str], image: str) -> bool:
    """Only server pods of ``image`` left, and the cluster Ready again."""
    images = _server_image(kubectl).split()
    ready = subprocess.run([*kubectl, "get", "temporalcluster", "demo", "-o",
                            "jsonpath={.status.conditions[?(@.type=='Ready')].status}"], capture_output=True, text=True)
    return bool(images) and all(image in i for i in images) and ready.stdout.strip() == "True"


if __name__ == "__main__":
    main()
