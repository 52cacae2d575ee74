"""Plots of the last benchmark run: reads bench/results/*.json and writes a PNG next to each JSON it knows.

    .venv/bin/python bench/plot.py [--results DIR]

- rotation.json, rotation-stock.json (bench/rotation.py on our server build and on temporalio/server): every
  start's latency over time (``starts``: [[seconds, latency seconds, ok], ...]) through each rotation
  (``windows``: [[rotation, from, to], ...]), with the CA rotations' phases marked.
- cluster_ready.json (bench/cluster_ready.py): apply-to-Ready per run and topology, split into the operator's
  share and the servers' start.
- upgrade.json (bench/upgrade.py): every start's latency through a Temporal upgrade, each step (schema Job,
  history, matching, frontend, worker) shaded.
- scale.json (bench/scale.py): resources Ready over time and the operator's RSS, for the clients and the
  clusters phase (needs the ``series`` bench/scale.py writes since it recorded them; older JSON: a bar chart).

Each plot's title carries the machine and date from the JSON's ``measured`` (bench/report.py). Prints one line per
plot written and one per known benchmark without a JSON.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RESULTS = Path(__file__).parent / "results"
ROTATIONS = ("frontend_leaf", "internode_leaf", "frontend_ca", "internode_ca")
CA_PHASES = ("TrustingNewCA", "ReissuingLeaves", "RemovingOldCA", "Completed")


def measured_text(data: dict, path: Path) -> str:
    m = data.get("measured") or {}
    when = m.get("date") or dt.datetime.fromtimestamp(path.stat().st_mtime, dt.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ") + " (file time)"
    machine = m.get("machine") or "machine not recorded"
    load = f", load {m['load_average_1m']}" if "load_average_1m" in m else ""
    commit = f", commit {m['commit']}" if m.get("commit") else ""
    return f"{when}; {machine}{load}{commit}"


def _finish(fig, path: Path, title: str, data: dict, source: Path) -> Path:
    fig.suptitle(f"{title}\n{measured_text(data, source)}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _stamp(text: str) -> float:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc).timestamp()


def _scatter_starts(ax, starts: list) -> None:
    """Each start's latency at its issue time ([[seconds, latency, ok], ...]); failed ones as red crosses."""
    ok = [(t, lat) for t, lat, good in starts if good]
    bad = [(t, lat) for t, lat, good in starts if not good]
    ax.scatter([t for t, _ in ok], [lat for _, lat in ok], s=4, label="start to result")
    if bad:
        ax.scatter([t for t, _ in bad], [lat for _, lat in bad], s=12, c="red", marker="x", label="failed")


def plot_rotation(data: dict, source: Path) -> Path:
    out = source.with_suffix(".png")
    fig, ax = plt.subplots(figsize=(11, 4.5))
    _scatter_starts(ax, data["starts"])
    for index, (name, began, ended) in enumerate(data.get("windows") or []):
        ax.axvspan(began, ended, alpha=0.08 + 0.06 * (index % 2), color="C1")
        ax.text(began, ax.get_ylim()[1] * 0.95, name.replace("_", " "), fontsize=7, va="top")
    ax.set_yscale("log")
    bottom = ax.get_ylim()[0]
    for domain, state in (data.get("phase_times") or {}).items():
        for phase, when in ((state or {}).get("phaseTimes") or {}).items():
            ax.axvline(_stamp(when) - data["started_at"], ls=":", lw=0.8, color="k")
            ax.text(_stamp(when) - data["started_at"], bottom, f"{domain} {phase}", rotation=90, fontsize=6,
                    va="bottom")
    ax.set_xlabel("seconds since the load started")
    ax.set_ylabel("latency, s")
    ax.legend(loc="upper left", fontsize=7)
    restarts = ", ".join(f"{r.replace('_', ' ')} {data.get(f'{r}_server_restarts', '?')}" for r in ROTATIONS)
    return _finish(fig, out, f"Workflow start latency through each rotation ({data.get('rate_per_second')}/s, "
                             f"{data.get('server_image', '?')}); server restarts: {restarts}", data, source)


def plot_cluster_ready(data: dict, source: Path) -> Path:
    out = source.with_suffix(".png")
    topologies = {"sqlite": data.get("runs") or []}
    topologies.update({k: v["runs"] for k, v in data.items() if isinstance(v, dict) and "runs" in v})
    labels, operator, server = [], [], []
    for topology, runs in topologies.items():
        for index, run in enumerate(runs):
            labels.append(f"{topology}\nrun {index + 1}")
            operator.append(run["operator_seconds"])
            server.append(run["server_seconds"])
    fig, ax = plt.subplots(figsize=(max(8, 1.2 * len(labels) + 3), 5))
    ax.bar(labels, operator, label="operator: apply to the first server Deployment (PostgreSQL: incl. the schema Job)")
    ax.bar(labels, server, bottom=operator, label="server start: to Ready")
    for i, (a, b) in enumerate(zip(operator, server)):
        ax.text(i, a + b, f"{a + b:.1f} s", ha="center", va="bottom", fontsize=8)
        ax.text(i, a / 2, f"{a:.1f} s", ha="center", va="center", fontsize=7, color="white")
    ax.set_ylim(0, max((a + b for a, b in zip(operator, server)), default=1) * 1.15)
    ax.set_ylabel("seconds from kubectl apply")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=1)
    rss = data.get("operator_rss_mib")
    return _finish(fig, out, f"TemporalCluster apply to Ready (operator RSS afterwards: {rss} MiB)", data, source)


def plot_scale(data: dict, source: Path) -> Path:
    out = source.with_suffix(".png")
    phases = [p for p in ("clients", "clusters") if f"{p}_all_ready_seconds" in data]
    fig, axes = plt.subplots(1, max(1, len(phases)), figsize=(5.5 * max(1, len(phases)), 4.5), squeeze=False)
    for ax, phase in zip(axes[0], phases):
        series = data.get(f"{phase}_series")
        if series:
            if series[0][0] > 0:  # Ready counts start once the create returned; before it nothing was Ready
                series = [[0, 0, data.get(f"{phase}_operator_rss_before_mib", series[0][2])], *series]
            if f"{phase}_create_seconds" in data:
                ax.axvline(data[f"{phase}_create_seconds"], ls=":", color="k", lw=0.8)
                ax.text(data[f"{phase}_create_seconds"], 0, " kubectl create returned", fontsize=6, rotation=90,
                        va="bottom")
            ax.plot([s[0] for s in series], [s[1] for s in series], marker=".", label="Ready")
            ax.set_xlabel("seconds since the create")
            ax.set_ylabel(f"{phase} Ready")
            twin = ax.twinx()
            twin.plot([s[0] for s in series], [s[2] for s in series], color="C1", label="operator RSS")
            twin.set_ylabel("operator RSS, MiB")
            ax.legend(loc="upper left", fontsize=7)
            twin.legend(loc="lower right", fontsize=7)
        else:
            ax.bar(["half Ready", "all Ready"], [data[f"{phase}_half_ready_seconds"], data[f"{phase}_all_ready_seconds"]])
            ax.set_ylabel("seconds (no time series in this JSON)")
        ax.set_title(f"{data.get(f'{phase}_resources')} {phase}: all Ready in {data[f'{phase}_all_ready_seconds']} s; "
                     f"RSS {data.get(f'{phase}_operator_rss_before_mib')} -> "
                     f"{data.get(f'{phase}_operator_rss_after_mib')} MiB; idle CPU "
                     f"{data.get(f'{phase}_idle_operator_cpu_percent')} %", fontsize=7)
    return _finish(fig, out, "Scale: resources created at once", data, source)


def plot_upgrade(data: dict, source: Path) -> Path:
    out = source.with_suffix(".png")
    fig, ax = plt.subplots(figsize=(11, 4.5))
    _scatter_starts(ax, data["starts"])
    ax.set_yscale("log")
    began, ended = data["window"]
    steps = data.get("steps") or []
    for index, ((reason, at), end) in enumerate(zip(steps, [*(t for _, t in steps[1:]), ended - began])):
        ax.axvspan(began + at, began + end, alpha=0.08 + 0.06 * (index % 2), color="C1")
        ax.text(began + at, ax.get_ylim()[1] * 0.95, reason.removeprefix("Upgrading"), fontsize=7, va="top")
    ax.set_xlabel("seconds since the load started")
    ax.set_ylabel("latency, s")
    ax.legend(loc="upper left", fontsize=7)
    return _finish(fig, out, f"Workflow start latency through a Temporal upgrade {data.get('from')} to "
                             f"{data.get('to')} ({data.get('topology')}, {data.get('rate_per_second')}/s): "
                             f"{data.get('upgrade_failed')} of {data.get('upgrade_starts')} starts failed", data, source)


PLOTTERS = {"rotation": plot_rotation, "rotation-stock": plot_rotation, "cluster_ready": plot_cluster_ready,
            "scale": plot_scale, "upgrade": plot_upgrade}


def plot_all(results: Path = RESULTS) -> dict[str, Path]:
    """name -> PNG written, for every known JSON present."""
    written = {}
    for name, plotter in PLOTTERS.items():
        source = results / f"{name}.json"
        if source.exists():
            written[name] = plotter(json.loads(source.read_text()), source)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    written = plot_all(args.results)
    for name, path in written.items():
        print(f"{name}: {path}")
    for name in PLOTTERS.keys() - written.keys():
        print(f"{name}: no {name}.json in {args.results}; run bench/{name}.py", file=sys.stderr)


if __name__ == "__main__":
    main()
