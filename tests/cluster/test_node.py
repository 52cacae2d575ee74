"""The local node runs pods from their real manifests: mounts, env, probes, Services, claims."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request

import pytest
import yaml

from conftest import wait_for
from localkube.control_plane import ControlPlane, ControlPlaneError, free_port, listener
from localkube.toolchain import path_of

pytestmark = pytest.mark.cluster

PYTHON_IMAGE = "python:3.11-slim"


def apply(kubectl, namespace: str, *documents: dict) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(documents))


def web_deployment(name: str, *, volumes: list, mounts: list, readiness_path: str = "/",
                   extra_env: list | None = None) -> dict:
    """A python http.server serving /srv/web (where tests mount what it should serve)."""
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {
            "replicas": 1, "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 5,
                    "containers": [{
                        "name": "web", "image": PYTHON_IMAGE,
                        "command": ["python", "-m", "http.server", "8080", "--directory", "/srv/web"],
                        "ports": [{"name": "http", "containerPort": 8080}],
                        "env": extra_env or [],
                        "readinessProbe": {"httpGet": {"path": readiness_path, "port": "http"}, "periodSeconds": 1},
                        "volumeMounts": mounts,
                    }],
                    "volumes": volumes,
                },
            },
        },
    }


def service(name: str, node_port: int | None = None) -> dict:
    port = {"name": "http", "port": 80, "targetPort": "http"}
    if node_port:
        port["nodePort"] = node_port
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"type": "NodePort" if node_port else "ClusterIP", "selector": {"app": name}, "ports": [port]}}


def run_pod(kubectl, namespace: str, name: str, code: str, timeout: float = 60) -> str:
    """Run a one-shot Python pod to completion and return its log."""
    kubectl("run", name, "-n", namespace, f"--image={PYTHON_IMAGE}", "--restart=Never", "--command", "--",
            "python", "-c", code)
    phase = wait_for(lambda: (p := kubectl("get", "pod", name, "-n", namespace, "-o", "jsonpath={.status.phase}").stdout)
                     in ("Succeeded", "Failed") and p, timeout, what=f"pod {name} to finish")
    log = kubectl("logs", name, "-n", namespace).stdout
    assert phase == "Succeeded", f"pod {name} failed: {log}"
    return log


def http_get(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.read().decode()
    except OSError:
        return ""


def pods(kubectl, namespace: str, selector: str) -> list[dict]:
    return json.loads(kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "json").stdout)["items"]


def test_secret_served_by_service_name_and_node_port_updates_live_and_survives_rollout(
        kubectl, namespace, node_port_url):
    apply(kubectl, namespace,
          {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "content"},
           "stringData": {"index.html": "version one"}},
          web_deployment("web", volumes=[{"name": "content", "secret": {"secretName": "content"}}],
                         mounts=[{"name": "content", "mountPath": "/srv/web", "readOnly": True}]),
          service("web", node_port=30800))
    kubectl("rollout", "status", "deployment/web", "-n", namespace, "--timeout=90s")

    by_name = run_pod(kubectl, namespace, "client-1", (
        "import urllib.request as u\n"
        f"for host in ('web', 'web.{namespace}', 'web.{namespace}.svc', 'web.{namespace}.svc.cluster.local'):\n"
        "    print(host, u.urlopen(f'http://{host}/index.html', timeout=5).read().decode())\n"))
    assert by_name.count("version one") == 4, by_name
    wait_for(lambda: http_get(f"{node_port_url}/index.html") == "version one", 30, what="the NodePort mapping")

    (before,) = pods(kubectl, namespace, "app=web")
    kubectl("patch", "secret", "content", "-n", namespace, "-p", json.dumps({"stringData": {"index.html": "version two"}}))
    wait_for(lambda: http_get(f"{node_port_url}/index.html") == "version two", 30, what="the updated Secret")
    (after,) = pods(kubectl, namespace, "app=web")
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    assert after["status"]["containerStatuses"][0]["restartCount"] == 0

    kubectl("rollout", "restart", "deployment/web", "-n", namespace)
    kubectl("rollout", "status", "deployment/web", "-n", namespace, "--timeout=90s")
    wait_for(lambda: [p for p in pods(kubectl, namespace, "app=web") if p["metadata"]["uid"] != before["metadata"]["uid"]]
             and len(pods(kubectl, namespace, "app=web")) == 1, 60, what="the old pod to go")
    assert http_get(f"{node_port_url}/index.html") == "version two"
    assert "version two" in run_pod(kubectl, namespace, "client-2",
                                    "import urllib.request as u; print(u.urlopen('http://web/index.html').read().decode())")


def test_two_pods_listen_on_the_same_port_at_once(kubectl, namespace):
    for name in ("left", "right"):
        apply(kubectl, namespace,
              {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"index.html": name}},
              web_deployment(name, volumes=[{"name": "c", "configMap": {"name": name}}],
                             mounts=[{"name": "c", "mountPath": "/srv/web"}]),
              service(name))
    for name in ("left", "right"):
        kubectl("rollout", "status", f"deployment/{name}", "-n", namespace, "--timeout=90s")
    ips = {p["status"]["podIP"] for name in ("left", "right") for p in pods(kubectl, namespace, f"app={name}")}
    assert len(ips) == 2
    log = run_pod(kubectl, namespace, "client", "import urllib.request as u\n"
                  "print(u.urlopen('http://left/').read().decode(), u.urlopen('http://right/').read().decode())")
    assert log.split() == ["left", "right"]


def test_claim_data_survives_a_rollout(kubectl, namespace):
    counter = ("import functools, pathlib, http.server\n"
               "f = pathlib.Path('/data/starts'); f.write_text(f.read_text() + 'x' if f.exists() else 'x')\n"
               "pathlib.Path('/srv/web').mkdir(exist_ok=True)\n"
               "pathlib.Path('/srv/web/index.html').write_text(f.read_text())\n"
               "http.server.test(functools.partial(http.server.SimpleHTTPRequestHandler, directory='/srv/web'),"
               " port=8080, bind='0.0.0.0')\n")
    deployment = web_deployment("db", volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
                                               {"name": "web", "emptyDir": {}}],
                                mounts=[{"name": "data", "mountPath": "/data"}, {"name": "web", "mountPath": "/srv/web"}])
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["command"] = ["python", "-c", counter]
    deployment["spec"]["strategy"] = {"type": "Recreate"}
    apply(kubectl, namespace,
          {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
           "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}},
          deployment, service("db"))
    kubectl("rollout", "status", "deployment/db", "-n", namespace, "--timeout=90s")
    assert kubectl("get", "pvc", "data", "-n", namespace, "-o", "jsonpath={.status.phase}").stdout == "Bound"
    kubectl("rollout", "restart", "deployment/db", "-n", namespace)
    kubectl("rollout", "status", "deployment/db", "-n", namespace, "--timeout=90s")
    read = "import urllib.request as u; print(u.urlopen('http://db/').read().decode())"
    assert wait_for(lambda: run_pod(kubectl, namespace, f"reader-{time.monotonic_ns()}", read).strip() == "xx",
                    60, interval=1, what="the second start to see the first one's file")


def test_readiness_gates_rollout(kubectl, namespace):
    apply(kubectl, namespace,
          {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "gate"}, "data": {"index.html": "up"}},
          web_deployment("gated", volumes=[{"name": "c", "configMap": {"name": "gate"}}],
                         mounts=[{"name": "c", "mountPath": "/srv/web"}], readiness_path="/ready"))
    wait_for(lambda: [p for p in pods(kubectl, namespace, "app=gated") if p["status"].get("phase") == "Running"],
             60, what="the pod to run")
    blocked = kubectl("rollout", "status", "deployment/gated", "-n", namespace, "--timeout=4s", check=False)
    assert blocked.returncode != 0
    (pod,) = pods(kubectl, namespace, "app=gated")
    assert pod["status"]["containerStatuses"][0]["ready"] is False
    kubectl("patch", "configmap", "gate", "-n", namespace, "-p", json.dumps({"data": {"ready": "yes"}}))
    kubectl("rollout", "status", "deployment/gated", "-n", namespace, "--timeout=60s")
    assert kubectl("get", "deployment", "gated", "-n", namespace,
                   "-o", "jsonpath={.status.availableReplicas}").stdout == "1"


def test_unknown_image_gets_a_clear_status_and_the_node_keeps_running(kubectl, namespace):
    kubectl("run", "nowhere", "-n", namespace, "--image=registry.invalid/nowhere:1", "--restart=Never")
    state = wait_for(lambda: (json.loads(kubectl("get", "pod", "nowhere", "-n", namespace, "-o", "json").stdout)
                              ["status"].get("containerStatuses") or [{}])[0].get("state", {}).get("waiting", {})
                     .get("reason") in ("ErrImagePull", "ImagePullBackOff")
                     and json.loads(kubectl("get", "pod", "nowhere", "-n", namespace, "-o", "json").stdout)
                     ["status"]["containerStatuses"][0]["state"]["waiting"], 30, what="a pull error")
    assert "registry.invalid/nowhere:1" in state["message"] and "image map" in state["message"]
    assert run_pod(kubectl, namespace, "after", "print('still running pods')").strip() == "still running pods"


def test_environment_from_secrets_config_maps_and_the_downward_api(kubectl, namespace):
    apply(kubectl, namespace,
          {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"token": "t0k"}},
          {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"MODE": "fast"}},
          {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "env", "labels": {"tier": "web"}},
           "spec": {"restartPolicy": "Never", "containers": [{
               "name": "main", "image": PYTHON_IMAGE, "workingDir": "/tmp",
               "command": ["python", "-c", "import os, json; print(json.dumps({k: os.environ[k] for k in "
                           "['TOKEN', 'CFG_MODE', 'POD_NAME', 'POD_NAMESPACE', 'POD_IP', 'GREETING']}), os.getcwd())"],
               "envFrom": [{"configMapRef": {"name": "c"}, "prefix": "CFG_"}],
               "env": [
                   {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "token"}}},
                   {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                   {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                   {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                   {"name": "GREETING", "value": "hi $(POD_NAME)"},
               ]}]}})
    wait_for(lambda: kubectl("get", "pod", "env", "-n", namespace, "-o", "jsonpath={.status.phase}").stdout == "Succeeded",
             60, what="the env pod")
    values, cwd = kubectl("logs", "env", "-n", namespace).stdout.rsplit(" ", 1)
    env = json.loads(values)
    pod_ip = kubectl("get", "pod", "env", "-n", namespace, "-o", "jsonpath={.status.podIP}").stdout
    assert env == {"TOKEN": "t0k", "CFG_MODE": "fast", "POD_NAME": "env", "POD_NAMESPACE": namespace,
                   "POD_IP": pod_ip, "GREETING": "hi env"}
    assert cwd.strip() == "/tmp"


def test_liveness_failure_restarts_the_container(kubectl, namespace):
    apply(kubectl, namespace, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "flaky"}, "spec": {
        "containers": [{"name": "main", "image": PYTHON_IMAGE,
                        "command": ["python", "-c", "import time; time.sleep(3600)"],
                        "livenessProbe": {"tcpSocket": {"port": 9999}, "periodSeconds": 1, "failureThreshold": 2}}]}})
    restarts = wait_for(lambda: int(kubectl("get", "pod", "flaky", "-n", namespace, "-o",
                                            "jsonpath={.status.containerStatuses[0].restartCount}").stdout or 0) >= 1,
                        60, what="a liveness restart")
    assert restarts


def test_deleting_a_namespace_ends_its_processes(kubectl, api_client):
    from kubernetes import client as k8s
    name = f"ephemeral-{os.getpid()}-{time.monotonic_ns() % 100000}"
    k8s.CoreV1Api(api_client).create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    wait_for(lambda: kubectl("get", "sa", "default", "-n", name, check=False).returncode == 0, 30, what="the SA")
    kubectl("run", "sleeper", "-n", name, f"--image={PYTHON_IMAGE}", "--command", "--", "python", "-c",
            "import time; time.sleep(3600)")
    pid_text = wait_for(lambda: kubectl("get", "pod", "sleeper", "-n", name, "-o",
                                        "jsonpath={.status.containerStatuses[0].containerID}").stdout, 60,
                        what="the sleeper to start")
    pid = int(pid_text.removeprefix("localkube://"))
    assert os.path.exists(f"/proc/{pid}")
    kubectl("delete", "namespace", name, "--wait=true", "--timeout=90s")
    wait_for(lambda: not os.path.exists(f"/proc/{pid}") or _is_zombie(pid), 30, what="the process to end")


def _is_zombie(pid: int) -> bool:
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


# -- a private cluster: a node with a refresh delay, published ports, and `down --all` ----------

VOLUME_REFRESH_DELAY = 5.0
# Prints the mounted file with the time whenever it changes: the pod's own view, to the millisecond.
WATCHER = ("import time\n"
           "last = None\n"
           "while True:\n"
           "    value = open('/etc/watched/value').read()\n"
           "    if value != last:\n"
           "        print(time.time(), value, flush=True)\n"
           "        last = value\n"
           "    time.sleep(0.05)\n")


@pytest.fixture(scope="module")
def private_cluster(tmp_path_factory):
    """Started with a kubelet-like refresh delay; stopped by `localkube down --all`, which must leave nothing."""
    root = tmp_path_factory.mktemp("state")  # a state root of its own: down --all must not reach the session cluster
    cluster = ControlPlane(root / "private", {30800: ("127.0.0.1", free_port())},
                           volume_refresh_delay=VOLUME_REFRESH_DELAY)
    pod_pids: list[int] = []
    try:
        cluster.up()
        yield cluster, pod_pids
    finally:
        down = subprocess.run([sys.executable, "-m", "localkube", "down", "--all"], capture_output=True, text=True,
                              env={**os.environ, "LOCALKUBE_STATE_ROOT": str(root)}, timeout=180)
    assert down.returncode == 0 and down.stdout.splitlines() == ["cluster private stopped"], down.stdout + down.stderr
    assert cluster.running() == {} and cluster.pod_processes() == []
    assert not [pid for pid in pod_pids if os.path.exists(f"/proc/{pid}") and not _is_zombie(pid)]


def private_kubectl(cluster: ControlPlane, *args: str, input: str | None = None) -> str:
    return subprocess.run([str(path_of("kubectl")), f"--kubeconfig={cluster.kubeconfig}", *args], input=input,
                          capture_output=True, text=True, check=True, timeout=120).stdout


def test_a_mounted_secret_takes_an_update_only_after_the_nodes_refresh_delay(private_cluster):
    cluster, pod_pids = private_cluster

    def kubectl(*args: str, input: str | None = None) -> str:
        return private_kubectl(cluster, *args, input=input)

    def changes() -> list[tuple[float, str]]:
        return [(float(t), v) for t, v in (line.split(" ", 1) for line in kubectl("logs", "watcher").splitlines())]

    wait_for(lambda: "default" in kubectl("get", "sa", "-o", "name"), 30, what="the default service account")
    kubectl("apply", "-f", "-", input=yaml.safe_dump_all([
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "watched"}, "stringData": {"value": "one"}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "watcher"}, "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": PYTHON_IMAGE, "command": ["python", "-c", WATCHER],
                            "volumeMounts": [{"name": "s", "mountPath": "/etc/watched", "readOnly": True}]}],
            "volumes": [{"name": "s", "secret": {"secretName": "watched"}}]}}]))
    wait_for(lambda: kubectl("get", "pod", "watcher", "-o", "jsonpath={.status.phase}") == "Running" and changes(),
             60, interval=0.5, what="the watcher to read its first mount (immediate, as with a kubelet)")
    assert [v for _, v in changes()] == ["one"]
    pod_pids.append(int(kubectl("get", "pod", "watcher", "-o", "jsonpath={.status.containerStatuses[0].containerID}")
                        .removeprefix("localkube://")))

    before = time.time()
    kubectl("patch", "secret", "watched", "-p", json.dumps({"stringData": {"value": "two"}}))
    after = time.time()  # the update happened between before and after
    seen = wait_for(lambda: next((t for t, v in changes() if v == "two"), None), VOLUME_REFRESH_DELAY + 30,
                    interval=0.5, what="the update in the mounted file")
    assert seen - before >= VOLUME_REFRESH_DELAY, f"visible {seen - before:.1f}s after the update"
    assert seen - after <= VOLUME_REFRESH_DELAY + 3, f"visible {seen - after:.1f}s after the update"


def test_published_host_ports_are_checked_before_a_start(private_cluster):
    cluster, _ = private_cluster
    private_kubectl(cluster, "apply", "-f", "-", input=yaml.safe_dump(service("published", node_port=30800)))
    (address, port), node = cluster.port_mappings[30800], cluster.running()["localkube-node"]
    wait_for(lambda: (listener(port) or (0,))[0] == node, 30, what="the node to publish NodePort 30800")
    cluster.up(timeout=30)  # held by this cluster's own node (make demo again): fine
    other = ControlPlane(cluster.state_dir.parent / "other", cluster.port_mappings)
    with pytest.raises(ControlPlaneError, match=re.escape(
            f"{address}:{port} is taken; the local cluster publishes NodePort 30800 there (kind-config.yaml "
            f"extraPortMappings): stop that local cluster (python -m localkube --dir {cluster.state_dir} down, "
            "or make down) and run again")):
        other.up()
    assert not other.state_dir.exists()
