"""Pod start latency on the local cluster's real node: create -> Ready for N pods created at once.

    .venv/bin/python bench/pod_start.py [--pods 10]

Two images, both real OCI images in the node's containerd (imported before the kubelet starts, so nothing is
pulled): python:3.11-slim (small: Debian's python3) and the worker image that `make images` builds (the project's
Python with temporalio; left out when it is not built). Each pod runs `python -c "sleep"` with no probe, so Ready is
the container running. Starts a private local cluster, prints a table next to the figures of the agent node this
replaced (AGENT_NODE_BEFORE), writes bench/results/pod_start.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import uuid

from kubernetes import client, config, watch

from localkube import images_build
from localkube.control_plane import ControlPlane
from localkube.paths import state_root
from report import RESULTS, measured, poll

PYTHON_SLIM = "docker.io/library/python:3.11-slim"
METRICS = ("pods", "ready", "wall_seconds", "p50_seconds", "p90_seconds", "max_seconds", "mean_seconds")
# The agent node this replaced, measured on this machine with its last code and bench (commit 9d94a31, --pods 10,
# 2026-12-07): "process" = python:3.11-slim mapped to the project's virtualenv, "image" = the worker image under runc.
AGENT_NODE_BEFORE = {
    "commit": "9d94a31",
    "process_pods": 10,
    "process_ready": 10,
    "process_wall_seconds": 1.199,
    "process_p50_seconds": 0.943,
    "process_p90_seconds": 1.121,
    "process_max_seconds": 1.14,
    "process_mean_seconds": 0.936,
    "image_pods": 10,
    "image_ready": 10,
    "image_wall_seconds": 1.044,
    "image_p50_seconds": 0.936,
    "image_p90_seconds": 0.987,
    "image_max_seconds": 0.991,
    "image_mean_seconds": 0.941,
}


def measure(api: client.ApiClient, namespace: str, count: int, image: str) -> dict[str, float]:
    core = client.CoreV1Api(api)
    created: dict[str, float] = {}
    ready: dict[str, float] = {}
    started = time.monotonic()
    for index in range(count):
        name = f"p{index:02d}"
        created[name] = time.monotonic()
        core.create_namespaced_pod(namespace, client.V1Pod(
            metadata=client.V1ObjectMeta(name=name),
            spec=client.V1PodSpec(
                restart_policy="Never",
                termination_grace_period_seconds=1,  # python as PID 1 ignores SIGTERM: cleanup would wait 30 s
                containers=[client.V1Container(name="main", image=image,
                                               command=["python", "-c", "import time; time.sleep(3600)"])])))
    stream = watch.Watch()
    for event in stream.stream(core.list_namespaced_pod, namespace, timeout_seconds=300):
        pod = event["object"]
        conditions = {c.type: c.status for c in pod.status.conditions or []}
        if conditions.get("Ready") == "True" and pod.metadata.name not in ready:
            ready[pod.metadata.name] = time.monotonic()
            if len(ready) == count:
                stream.stop()
    if len(ready) < count:
        raise RuntimeError(f"{image}: {len(ready)} of {count} pods Ready after 300 s; "
                           f"waiting: {waiting(core, namespace)}")
    latencies = sorted(ready[n] - created[n] for n in ready)
    return {
        "pods": count, "ready": len(ready), "wall_seconds": max(ready.values()) - started,
        "p50_seconds": statistics.median(latencies), "p90_seconds": latencies[int(0.9 * (len(latencies) - 1))],
        "max_seconds": latencies[-1], "mean_seconds": statistics.fmean(latencies),
    }


def waiting(core: client.CoreV1Api, namespace: str) -> dict[str, str]:
    """Why the pods that are not Ready wait (ErrImagePull, ContainerCreating, ...), for the error message."""
    reasons = {}
    for pod in core.list_namespaced_pod(namespace).items:
        for status in pod.status.container_statuses or []:
            if status.state.waiting:
                reasons[pod.metadata.name] = f"{status.state.waiting.reason}: {status.state.waiting.message or ''}"
        reasons.setdefault(pod.metadata.name, pod.status.phase)
    return reasons


def one_column(api: client.ApiClient, namespace: str, count: int, image: str) -> dict:
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    # The service-account controller must have made the namespace's default account before pods can be created.
    poll(lambda: any(a.metadata.name == "default" for a in core.list_namespaced_service_account(namespace).items),
         timeout=60, interval=0.2)
    try:
        return measure(api, namespace, count, image)
    finally:
        core.delete_namespace(namespace)
        # Its pods stop before the next column starts, so the two do not share the node.
        poll(lambda: not core.list_namespaced_pod(namespace).items, timeout=120, interval=0.5)


def cell(value) -> str:
    if value is None:
        return f"{'n/a':>18}"
    return f"{value:>18.3f}" if isinstance(value, float) else f"{value:>18}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=10, help="pods created at once per image")
    args = parser.parse_args()
    images = {"python_slim": PYTHON_SLIM}
    worker = images_build.image_refs()["worker"]
    if images_build.inspect(worker):
        images["worker"] = worker
    else:
        print(f"{worker} is not built (make images): only python:3.11-slim")
    cluster = ControlPlane(state_root() / f"bench-{os.getpid()}-{uuid.uuid4().hex[:4]}")
    columns: dict[str, dict] = {}
    try:
        cluster.up()
        api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
        for column, image in images.items():
            columns[column] = one_column(api, f"bench-{column.replace('_', '-')}", args.pods, image)
    finally:
        cluster.down()

    before = AGENT_NODE_BEFORE
    print(f"\ncreate -> Ready, {args.pods} pods at once per image")
    header = {"python_slim": "python-slim", "worker": "worker"}
    print(f"{'metric':<14}" + "".join(f"{'real ' + header[c]:>18}" for c in columns)
          + f"{'agent process':>18}{'agent image':>18}")
    for metric in METRICS:
        print(f"{metric:<14}" + "".join(cell(c[metric]) for c in columns.values())
              + cell(before[f"process_{metric}"]) + cell(before[f"image_{metric}"]))
    print(f"real: python-slim = {PYTHON_SLIM}" + (f", worker = {images['worker']}" if "worker" in images else ""))
    print(f"agent node (before, commit {before['commit']}): process = python:3.11-slim mapped to the project's "
          f"virtualenv, image = the worker image under runc")

    real_node = {}
    for column, figures in columns.items():
        real_node[f"{column}_image"] = images[column]
        real_node.update({f"{column}_{metric}": value for metric, value in figures.items()})
    run = measured()
    result = {"pods": args.pods, "real_node": real_node, "agent_node_before": before, "machine": run["machine"],
              "measured": run}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "pod_start.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {RESULTS / 'pod_start.json'}")


if __name__ == "__main__":
    main()
