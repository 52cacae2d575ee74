"""mkdocs hooks: plot the last benchmark run and add the benchmark page, built from bench/results/*.json.

The plots are generated at each build (bench/plot.py, a few seconds) into bench/results/ next to their JSON and
copied into the site; the build fails when a JSON bench/plot.py knows has no plot. A benchmark without a JSON gets
a note on the page instead of a plot.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT / "bench"))

import plot  # noqa: E402  (bench/plot.py)

BENCHES = {
    "rotation": ("Rotation under load", "bench/rotation.py",
                 "Workflow starts at a steady rate (start to result, through the starter) while the frontend and "
                 "internode leaves and then both CAs rotate; each rotation counts as done when the server presents "
                 "the new leaf (a CA: phase `Completed` and a leaf from the new CA). On our server build, which "
                 "reloads CA bundles: no server pod restarts."),
    "rotation-stock": ("Rotation under load, stock temporalio/server", "bench/rotation.py --server stock",
                       "The same rotations on the stock image (authorization off), whose CA rotations roll the "
                       "server pod twice: Temporal builds a client's root pool once."),
    "cluster_ready": ("TemporalCluster apply to Ready", "bench/cluster_ready.py",
                      "`kubectl apply` of `examples/cluster.yaml` (SQLite) and `examples/cluster-postgres.yaml` "
                      "(PostgreSQL: schema Job, then six server pods) to `Ready`, split into the operator's share "
                      "(until the first server Deployment exists; PostgreSQL: after the schema Job) and the servers' "
                      "start, and the operator pod's RSS afterwards."),
    "upgrade": ("Temporal upgrade under load", "bench/upgrade.py",
                "1.31.4 to 1.32.2 on PostgreSQL (2 frontend, 2 history, 1 matching, 1 worker pod) while workflow "
                "starts run at a steady rate, each waiting for its workflow's result: the schema Job, then history, "
                "matching, frontend and worker one after another (shaded per step). Done when status.version says "
                "1.32.2."),
    "scale": ("Scale", "bench/scale.py",
              "500 TemporalClusterClients of one cluster, then TemporalClusters (SQLite), each set created at once: "
              "resources Ready over time, the operator's RSS, its idle CPU and API requests once settled. Targets: "
              "500 clients Ready in 30 s, RSS at most 150 MB, idle CPU under 2 % of a core."),
}
OTHER_BENCHES = {
    "bench/pod_start.py": "create-to-Ready latency of 10 pods created at once on the local cluster's real node "
                          "(kubelet, containerd), `python:3.11-slim` vs the worker image, beside the agent node's "
                          "figures before it was removed.",
    "bench/workflows.py": "workflow start-to-completion latency through the starter (sequential, `wait=true`) and "
                          "starts per second with concurrent clients, all over mTLS.",
    "bench/keyvault.py": "Key Vault requests per certificate per sync (nothing changed; every leaf changed), and the "
                         "time from a vault import (`make keyvault-certs KEYVAULT_ARGS=--rotate`) to the frontend "
                         "presenting the new certificate.",
    "bench/codec.py": "the payload codec's encode+decode time per payload (100 B, 10 KiB, 1 MiB; with and without "
                      "zlib) and stored bytes per plain byte (host only).",
    "bench/frontend_health.py": "for a replaced frontend pod, the time from its port taking TCP to Temporal's health "
                                "check saying SERVING and to the pod's Ready, and the CPU of one readiness-probe call "
                                "(`--grpc-health-probe PATH` compares grpc_health_probe).",
    "bench/authz.py": "what authorization costs: StartWorkflowExecution latency with it on and off in the same run, "
                      "and how long a change of permissions takes to reach the server.",
}
def _figures(data: dict) -> str:
    rows = [(k, v) for k, v in data.items() if isinstance(v, (int, float, str)) and k != "measured"]
    for key, value in data.items():
        if isinstance(value, dict) and key not in ("measured", "phase_times"):
            rows += [(f"{key}.{k}", v) for k, v in value.items() if isinstance(v, (int, float, str))]
    if not rows:
        return ""
    lines = ["| figure | value |", "|---|---:|"]
    lines += [f"| `{k}` | {round(v, 3) if isinstance(v, float) else v} |" for k, v in rows]
    return "\n".join(lines) + "\n"


def page(results: Path = RESULTS) -> str:
    out = ["# Benchmarks\n\n",
           "The figures of the last `make bench` run, from `bench/results/*.json` (committed with the code that "
           "measured them: the history is in git log). `make bench` runs every benchmark and then `bench/plot.py`; "
           "`make docs` draws the plots again from the JSON. The machine and date of each run are under its plot. "
           "Benchmarks run on whatever machine you have: compare runs of one machine, not across machines.\n\n"]
    for name, (title, script, what) in BENCHES.items():
        source = results / f"{name}.json"
        out.append(f"## {title}\n\n`{script}`: {what}\n\n")
        if not source.exists():
            out.append(f'!!! note "Not measured yet"\n    There is no `bench/results/{name}.json`: run '
                       f"`.venv/bin/python {script}` (or `make bench`), then `make docs`.\n\n")
            continue
        data = json.loads(source.read_text())
        out.append(f"![{title}]({name}.png)\n\nMeasured {plot.measured_text(data, source)}.\n\n")
        out.append(f"<details><summary>Figures</summary>\n\n{_figures(data)}\n</details>\n\n")
    out.append("## Other benchmarks\n\n`make bench` also runs these; they print a table and write "
               "`bench/results/<name>.json` (no plot):\n\n")
    out += [f"- `{script}`: {what}\n" for script, what in OTHER_BENCHES.items()]
    out.append("\n`bench/rotation.py` takes `--server ours|stock`, `--rate`, `--kubelet-sync-frequency` (the "
               "kubelet's syncFrequency, how soon a changed Secret reaches a mounted volume; default "
               "`LOCALKUBE_KUBELET_SYNC_FREQUENCY` or 10s, the kubelet's own 1m) and `--logs DIR`; `bench/keyvault.py` "
               "and `bench/authz.py` take `--kubelet-sync-frequency` too; `bench/cluster_ready.py` `--runs` and "
               "`--topology sqlite,postgresql`; `bench/scale.py` `--clients`, `--clusters`, `--idle`, `--settle` (it "
               "reads the operator container's Python process in `/proc`).\n\n")
    others = sorted(p for p in results.glob("*.json") if p.stem not in BENCHES)
    if others:
        out.append("## Other results\n\n")
        for source in others:
            data = json.loads(source.read_text())
            out.append(f"### {source.stem}\n\nMeasured {plot.measured_text(data, source)}.\n\n{_figures(data)}\n")
    return "".join(out)


def on_files(files, config):
    written = plot.plot_all(RESULTS)
    for name in BENCHES:
        if (RESULTS / f"{name}.json").exists() and not (RESULTS / f"{name}.png").exists():
            raise PluginError(f"bench/results/{name}.json has no plot {name}.png (bench/plot.py)")
    files.append(File.generated(config, "benchmarks.md", content=page()))
    for name, path in written.items():
        files.append(File.generated(config, path.name, abs_src_path=str(path)))
    return files
