"""Certificate rotation under load: workflow starts through the starter at a fixed rate while, in turn, the
frontend leaves, the internode leaves, the frontend CA and the internode CA rotate.

    .venv/bin/python bench/rotation.py [--rate 5] [--settle 10] [--volume-refresh-delay 0]

Runs `make demo SOURCE=selfSigned`'s stack on a private local cluster (operator, example cluster, hello-world
chart), starts `/workflow/start?wait=true` calls at --rate per second (each in its own thread), and per rotation
reports: failed starts, p50/p99/max start-to-result latency of the starts issued while it ran (from the trigger
to --settle seconds after it completed), how long the rotation took, and server pod restarts (new pods or
container restarts). Prints a table, writes bench/results/rotation.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import threading
import time
import urllib.request
import uuid
from pathlib import Path

from localkube.control_plane import ControlPlane, free_port
from localkube.demo import STARTER_NODE_PORT, run_demo
from localkube.paths import state_root
from localkube.toolchain import path_of
from report import poll, report


class Load(threading.Thread):
    """Fixed-rate workflow starts; each result is (issued at, ok, seconds to the result)."""

    def __init__(self, base: str, rate: float) -> None:
        super().__init__(daemon=True)
        self.base, self.interval, self.results, self.halt = base, 1.0 / rate, [], threading.Event()
        self.lock, self.errors = threading.Lock(), []

    def one(self, index: int) -> None:
        issued = time.time()
        began = time.monotonic()
        try:
            with urllib.request.urlopen(f"{self.base}/workflow/start?name=w{index}&wait=true", timeout=120) as answer:
                ok = json.loads(answer.read()).get("result") == f"Hello w{index}!"
            error = "" if ok else "wrong result"
        except (OSError, ValueError) as failure:
            ok, error = False, (getattr(failure, "read", lambda: b"")() or str(failure).encode())[:300].decode(
                errors="replace")
        with self.lock:
            self.results.append((issued, ok, time.monotonic() - began))
            if error:
                self.errors.append((issued, error))

    def run(self) -> None:
        index, next_at = 0, time.monotonic()
        while not self.halt.is_set():
            index += 1
            threading.Thread(target=self.one, args=(index,), daemon=True).start()
            next_at += self.interval
            self.halt.wait(max(0.0, next_at - time.monotonic()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=5.0, help="workflow starts per second")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds of load counted after a rotation")
    parser.add_argument("--volume-refresh-delay", type=float, default=0.0,
                        help="seconds before a mounted Secret changes in a pod (a real kubelet: 60-120)")
    parser.add_argument("--logs", help="follow every pod's log into this directory")
    args = parser.parse_args()
    port = free_port()
    cluster = ControlPlane(state_root() / f"bench-{os.getpid()}-{uuid.uuid4().hex[:4]}",
                           {STARTER_NODE_PORT: ("127.0.0.1", port)}, volume_refresh_delay=args.volume_refresh_delay)
    base = f"http://127.0.0.1:{port}"
    result: dict = {"rate_per_second": args.rate, "volume_refresh_delay_seconds": args.volume_refresh_delay}
    windows = []  # (rotation, trigger time, end of its settle time, duration, server restarts)
    load = Load(base, args.rate)
    follow = None
    try:
        run_demo(cluster, source="selfSigned")
        kubectl = [str(path_of("kubectl")), f"--kubeconfig={cluster.kubeconfig}", "-n", "default"]
        if args.logs:
            follow = FollowLogs(kubectl[:-2], Path(args.logs))
            follow.start()

        def get(*what: str) -> dict:
            return json.loads(subprocess.run([*kubectl, "get", *what, "-o", "json"], capture_output=True, text=True,
                                             check=True).stdout)

        def server_pods() -> dict[str, int]:
            pods = get("pods", "-l", "app.kubernetes.io/component=server")["items"]
            return {p["metadata"]["uid"]: sum(c["restartCount"] for c in p["status"].get("containerStatuses", []))
                    for p in pods}

        def frontend_leaf() -> str:
            return get("secret", "demo-frontend-tls")["data"]["tls.crt"]

        poll(lambda: _ok(base), 120, 1)
        load.start()
        time.sleep(args.settle)
        rotations = [("frontend_leaf", "temporal-mtls.dev/rotate=frontend-leaf"),
                     ("internode_leaf", "temporal-mtls.dev/rotate=internode-leaf"),
                     ("frontend_ca", "temporal-mtls.dev/rotate-ca-frontend=bench"),
                     ("internode_ca", "temporal-mtls.dev/rotate-ca-internode=bench")]
        for name, annotation in rotations:
            pods_before, leaf_before = server_pods(), frontend_leaf()
            seen = dict(pods_before)  # every server pod that ran during the rotation (a roll replaces the pod)

            def done_and_seen(check) -> bool:
                seen.update(server_pods())
                return check()

            began_wall, began = time.time(), time.monotonic()
            subprocess.run([*kubectl, "annotate", "--overwrite", "temporalcluster", "demo", annotation], check=True,
                           capture_output=True)
            key, value = annotation.split("=")
            if name.endswith("_leaf"):
                # A leaf rotation re-issues all four leaves; done when status says so (the server reloads in place).
                poll(lambda: done_and_seen(lambda: (get("temporalcluster", "demo").get("status") or {})
                                           .get("leafRotation", {}).get("handled") == value
                                           and frontend_leaf() != leaf_before), 300, 0.5)
            else:
                domain = key.rsplit("-", 1)[-1]
                poll(lambda: done_and_seen(lambda: ((get("temporalcluster", "demo").get("status") or {})
                                                    .get("caRotation") or {}).get(domain, {}).get("phase")
                                           == "Completed"), 900, 1)
            duration = time.monotonic() - began
            time.sleep(args.settle)
            seen.update(server_pods())
            # New pods (rollouts) plus container restarts of the pods that were there before.
            restarts = len(set(seen) - set(pods_before)) + sum(
                max(0, seen[uid] - pods_before[uid]) for uid in pods_before)
            windows.append((name, began_wall, time.time(), duration, restarts))
        load.halt.set()
        poll(lambda: threading.active_count() <= 2, 130, 0.5)  # the starts still in flight get their answer
        result["phase_times"] = (get("temporalcluster", "demo").get("status") or {}).get("caRotation")
    finally:
        if follow:
            follow.stop()
        cluster.down()
    for name, began_wall, ended_wall, duration, restarts in windows:
        window = [r for r in load.results if began_wall <= r[0] <= ended_wall]
        latencies = sorted(r[2] for r in window if r[1]) or [float("nan")]
        result.update({f"{name}_starts": len(window), f"{name}_failed": sum(1 for r in window if not r[1]),
                       f"{name}_p50_seconds": statistics.median(latencies),
                       f"{name}_p99_seconds": latencies[int(0.99 * (len(latencies) - 1))],
                       f"{name}_max_seconds": latencies[-1], f"{name}_duration_seconds": duration,
                       f"{name}_server_restarts": restarts})
    report("rotation", result)
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


def _ok(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/workflow/start?name=warm&wait=true", timeout=60) as answer:
            return json.loads(answer.read()).get("result") == "Hello warm!"
    except (OSError, ValueError):
        return False


if __name__ == "__main__":
    main()
