"""Shared by the benchmarks: poll for a condition; print a metric table and write bench/results/<name>.json."""

from __future__ import annotations

import json
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


def report(name: str, result: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    width = max(len(k) for k in result) + 2
    print(f"\n{'metric':<{width}}{'value':>10}")
    for key, value in result.items():
        if isinstance(value, (int, float, str)):
            print(f"{key:<{width}}{value:>10.3f}" if isinstance(value, float) else f"{key:<{width}}{value:>10}")
    print(f"written to {path}")
