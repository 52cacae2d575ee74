"""Shared by the benchmarks: print a metric table and write it as bench/results/<name>.json."""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


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
