"""The frontend's readiness probe: Temporal's gRPC health check over mTLS, run from an init-copied CLI."""

from __future__ import annotations

import yaml

from temporal_mtls_operator.builders.cluster import cluster_objects
from temporal_mtls_operator.models import TemporalClusterSpec

from .test_builders import CLUSTER, materials
from .test_postgres_builders import POSTGRES, spec as postgres_spec


def pods(spec: TemporalClusterSpec) -> dict[str, dict]:
    objects = cluster_objects(CLUSTER, spec, materials(spec))
    return {o["metadata"]["name"]: o["spec"]["template"]["spec"] for o in objects if o["kind"] == "Deployment"}


def flags(command: list[str]) -> dict[str, str]:
    return {command[i]: command[i + 1] for i in range(len(command) - 1) if command[i].startswith("--")
            and not command[i + 1].startswith("--")}


def assert_frontend_readiness_is_the_health_check(pod: dict, config_text: str) -> None:
    container = pod["containers"][0]
    probe = container["readinessProbe"]
    command = probe["exec"]["command"]
    assert command[:4] == ["/health-probe/temporal", "operator", "cluster", "health"]
    options = flags(command)
    # Temporal's own system-worker client to the frontend: same files, same server name, the pod's own port.
    client = yaml.safe_load(config_text.replace('{{ env "POD_IP" }}', "ip").replace(
        '{{ env "TEMPORAL_POSTGRES_PASSWORD" | quote }}', "x"))["global"]["tls"]["systemWorker"]
    assert options == {"--address": "127.0.0.1:7233", "--tls-cert-path": client["certFile"],
                       "--tls-key-path": client["keyFile"], "--tls-ca-path": client["client"]["rootCaFiles"][0],
                       "--tls-server-name": "demo-frontend.apps.svc", "--command-timeout": "3s"}
    assert {"--disable-config-file", "--disable-config-env"} <= set(command)  # nothing from the pod's env or HOME
    # The CLI gives up before the kubelet would kill it.
    assert probe["timeoutSeconds"] > int(options["--command-timeout"].removesuffix("s"))
    # Every file the probe reads is in a volume the container mounts.
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    for path in (command[0], client["certFile"], client["keyFile"], client["client"]["rootCaFiles"][0]):
        assert path.rsplit("/", 1)[0] in mounts, path
    assert mounts["/health-probe"]["readOnly"] is True
    # Started and alive stay TCP: a long database outage makes the pod unready, it does not kill it.
    assert "tcpSocket" in container["livenessProbe"] and "tcpSocket" in container["startupProbe"]

    init = pod["initContainers"]
    assert [c["name"] for c in init] == ["health-probe"]
    assert init[0]["securityContext"] == container["securityContext"]
    assert init[0]["securityContext"]["readOnlyRootFilesystem"] and init[0]["securityContext"]["runAsNonRoot"]
    assert init[0]["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert init[0]["volumeMounts"] == [{"name": "health-probe", "mountPath": "/health-probe"}]
    assert init[0]["command"][:2] == ["sh", "-c"] and init[0]["command"][-1] == command[0]
    assert {"name": "health-probe", "emptyDir": {}} in pod["volumes"]


def test_the_sqlite_pod_is_ready_when_its_frontend_says_serving():
    spec = TemporalClusterSpec()
    pod = pods(spec)["demo-server"]
    config = next(o for o in cluster_objects(CLUSTER, spec, materials(spec)) if o["kind"] == "ConfigMap")
    assert_frontend_readiness_is_the_health_check(pod, config["data"]["config.yaml"])
    assert pod["containers"][0]["readinessProbe"]["periodSeconds"] == 2
    # admin-tools of the server's version carries the CLI (the schema Job's image).
    assert pod["initContainers"][0]["image"] == "temporalio/admin-tools:1.31.4"


def test_only_the_frontend_pods_of_the_scaled_topology_run_the_health_check():
    spec = postgres_spec()
    deployments = pods(spec)
    config = next(o for o in cluster_objects(CLUSTER, spec, materials(spec)) if o["kind"] == "ConfigMap")
    assert_frontend_readiness_is_the_health_check(deployments["demo-frontend"], config["data"]["config-frontend.yaml"])
    assert deployments["demo-frontend"]["containers"][0]["readinessProbe"]["periodSeconds"] == 2
    for name in ("demo-history", "demo-matching", "demo-worker"):
        assert "initContainers" not in deployments[name]
        assert deployments[name]["containers"][0]["readinessProbe"]["tcpSocket"] == {"port": "grpc"}


def test_the_probe_binary_comes_from_the_schema_image_when_it_is_overridden():
    own = TemporalClusterSpec.model_validate({"persistence": {"postgresql": {**POSTGRES, "schemaImage": "my/tools:1"}}})
    assert pods(own)["demo-frontend"]["initContainers"][0]["image"] == "my/tools:1"
