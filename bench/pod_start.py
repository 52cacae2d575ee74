"""Pod start latency on the local node: create -> Ready for N pods created at once.

    .venv/bin/python bench/pod_start.py [--pods 20]

Starts a private local cluster, prints a table, writes bench/results/pod_start.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid

from kubernetes import client, config, watch

from localkube.control_plane import ControlPlane
from localkube.paths import state_root
from report import report

def measure(api: client.ApiClient, namespace: str, count: int) -> dict[str, float]:
    core = client.CoreV1Api(api)
    created: dict[str, float] = {}
    ready: dict[str, float] = {}
    started = time.monotonic()
    for index in range(count):
        name = f"p{index:02d}"
        created[name] = time.monotonic()
        core.create_namespaced_pod(namespace, client.V1Pod(
            metadata=client.V1ObjectMeta(name=name),
            spec=client.V1PodSpec(restart_policy="Never", containers=[client.V1Container(
                name="main", image="python:3.11-slim", command=["python", "-c", "import time; time.sleep(3600)"])])))
    stream = watch.Watch()
    for event in stream.stream(core.list_namespaced_pod, namespace, timeout_seconds=300):
        pod = event["object"]
        conditions = {c.type: c.status for c in pod.status.conditions or []}
        if conditions.get("Ready") == "True" and pod.metadata.name not in ready:
            ready[pod.metadata.name] = time.monotonic()
            if len(ready) == count:
                stream.stop()
    latencies = sorted(ready[n] - created[n] for n in ready)
    return {
        "pods": count, "ready": len(ready), "wall_seconds": max(ready.values()) - started,
        "p50_seconds": statistics.median(latencies), "p90_seconds": latencies[int(0.9 * (len(latencies) - 1))],
        "max_seconds": latencies[-1], "mean_seconds": statistics.fmean(latencies),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=20)
    args = parser.parse_args()
    cluster = ControlPlane(state_root() / f"bench-{os.getpid()}-{uuid.uuid4().hex[:4]}")
    try:
        cluster.up()
        api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
        client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="bench")))
        while True:  # the service-account controller must have made the namespace's default account
            try:
                client.CoreV1Api(api).read_namespaced_service_account("default", "bench")
                break
            except client.ApiException:
                time.sleep(0.2)
        result = measure(api, "bench", args.pods)
    finally:
        cluster.down()
    report("pod_start", result)

if __name__ == "__main__":
    main()
