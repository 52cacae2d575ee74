"""Workflow latency and throughput through the starter, with mTLS end to end.

    .venv/bin/python bench/workflows.py [--sequential 30] [--seconds 10] [--concurrency 8]

Runs `make demo`'s stack on a private local cluster (operator, example cluster, hello-world
chart), then measures: start-to-completion latency of sequential `/workflow/start?wait=true`
calls, and starts per second with concurrent `/workflow/start` calls for a bounded time.
Prints a table, writes bench/results/workflows.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

from localkube.control_plane import ControlPlane, free_port
from localkube.demo import STARTER_NODE_PORT, run_demo
from localkube.paths import state_root
from report import report

def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=60) as response:
        return json.loads(response.read())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequential", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    port = free_port()
    cluster = ControlPlane(state_root() / f"bench-{os.getpid()}-{uuid.uuid4().hex[:4]}",
                           {STARTER_NODE_PORT: ("127.0.0.1", port)})
    base = f"http://127.0.0.1:{port}"
    try:
        run_demo(cluster)
        latencies = []
        for index in range(args.sequential):
            started = time.monotonic()
            assert get(f"{base}/workflow/start?name=b{index}&wait=true")["result"] == f"Hello b{index}!"
            latencies.append(time.monotonic() - started)
        deadline = time.monotonic() + args.seconds
        counts = []

        def starter() -> int:
            started = 0
            while time.monotonic() < deadline:
                get(f"{base}/workflow/start?name=load")
                started += 1
            return started

        window = time.monotonic()
        with ThreadPoolExecutor(args.concurrency) as pool:
            counts = list(pool.map(lambda _: starter(), range(args.concurrency)))
        elapsed = time.monotonic() - window
    finally:
        cluster.down()
    latencies.sort()
    result = {"sequential_workflows": len(latencies), "p50_seconds": statistics.median(latencies),
              "p90_seconds": latencies[int(0.9 * (len(latencies) - 1))], "max_seconds": latencies[-1],
              "concurrency": args.concurrency, "starts": sum(counts), "starts_per_second": sum(counts) / elapsed}
    report("workflows", result)

if __name__ == "__main__":
    main()
