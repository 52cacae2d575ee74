"""Pod start latency on the local node: create -> Ready for N pods created at once.

    .venv/bin/python bench/pod_start.py [--pods 20]

Two columns: "process", a mapped image (python:3.11-slim -> the project's virtualenv, a local
process), and "image", a real image from local storage run by runc (the worker image that
`make images` builds; the column is left out when it is not built). Starts a private local cluster,
prints a table, writes bench/results/pod_start.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid

from kubernetes import client, config, watch

from localkube import images_build
from localkube.control_plane import ControlPlane
from localkube.paths import state_root
from report import report

MAPPED_IMAGE = "python:3.11-slim"


def measure(api: client.ApiClient, namespace: str, count: int, image: str = MAPPED_IMAGE) -> dict[str, float]:
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
                name="main", image=image, command=["python", "-c", "import time; time.sleep(3600)"])])))
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
        image = images_build.image_refs()["worker"]
        kinds = {"process": MAPPED_IMAGE}
        if images_build.inspect(image):
            kinds["image"] = image
        else:
            print(f"{image} is not built (make images): only the process column")
        columns = {}
        for kind, ref in kinds.items():
            namespace = f"bench-{kind}"
            client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
            while True:  # the service-account controller must have made the namespace's default account
                try:
                    client.CoreV1Api(api).read_namespaced_service_account("default", namespace)
                    break
                except client.ApiException:
                    time.sleep(0.2)
            columns[kind] = measure(api, namespace, args.pods, ref)
            client.CoreV1Api(api).delete_namespace(namespace)  # its pods stop before the next column starts
            while any(p.metadata.namespace == namespace for p in client.CoreV1Api(api).list_pod_for_all_namespaces().items):
                time.sleep(0.5)
    finally:
        cluster.down()
    print(f"\ncreate -> Ready, {args.pods} pods at once")
    print(f"{'metric':<16}" + "".join(f"{kind:>12}" for kind in columns))
    for metric in columns["process"]:
        print(f"{metric:<16}" + "".join(f"{c[metric]:>12.3f}" if isinstance(c[metric], float) else f"{c[metric]:>12}"
                                        for c in columns.values()))
    report("pod_start", {f"{kind}_{metric}": value for kind, c in columns.items() for metric, value in c.items()})

if __name__ == "__main__":
    main()
