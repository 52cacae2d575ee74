"""Shared by the benchmarks: poll for a condition; find the operator's process; print a metric table and write
bench/results/<name>.json."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def poll(predicate, timeout: float = 300.0, interval: float = 0.1):
    """``predicate``'s first truthy value; TimeoutError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError("condition not reached")


def operator_pid(cluster, container_id: str) -> int:
    """The operator's Python process among its container's host PIDs (``cluster``: a localkube ControlPlane,
    ``container_id``: the pod status' ``containerID``); else the container's largest process by RSS."""
    pids = cluster.container_processes(container_id)
    if not pids:
        raise RuntimeError(f"no process runs in the operator's container {container_id}")
    for pid in pids:
        if "temporal_mtls_operator" in _read(f"/proc/{pid}/cmdline"):
            return pid
    return max(pids, key=rss_kib)


def rss_kib(pid: int) -> int:
    """VmRSS of a process in KiB (0 for a kernel thread or a process that is gone)."""
    return next((int(line.split()[1]) for line in _read(f"/proc/{pid}/status").splitlines()
                 if line.startswith("VmRSS:")), 0)


def measured() -> dict:
    """Where and when a result was measured (bench/plot.py and the docs' benchmark page show it)."""
    cpu_model = next((line.split(":", 1)[1].strip() for line in _read("/proc/cpuinfo").splitlines()
                      if line.startswith("model name")), platform.processor() or "unknown")
    mem_kib = next((int(line.split()[1]) for line in _read("/proc/meminfo").splitlines()
                    if line.startswith("MemTotal:")), 0)
    commit = subprocess.run(["git", "-C", str(RESULTS.parent), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    return {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "machine": f"{os.cpu_count()} x {cpu_model}, {mem_kib / 1024 / 1024:.1f} GiB, {platform.system()} "
                       f"{platform.release()}",
            "load_average_1m": round(os.getloadavg()[0], 2), "commit": commit}


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def report(name: str, result: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    result = {**result, "measured": result.get("measured") or measured()}
    path.write_text(json.dumps(result, indent=2) + "\n")
    width = max(len(k) for k in result) + 2
    print(f"\n{'metric':<{width}}{'value':>10}")
    for key, value in result.items():
        if isinstance(value, (int, float, str)):
            print(f"{key:<{width}}{value:>10.3f}" if isinstance(value, float) else f"{key:<{width}}{value:>10}")
    print(f"written to {path}")
