"""The project's images (make images) run on the node's containerd from the image, read-only and non-root."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

from conftest import REPO, condition, wait_for
from localkube import images_build

pytestmark = pytest.mark.cluster

REFS = images_build.image_refs()


@pytest.fixture(scope="module", autouse=True)
def images_built():
    missing = [ref for ref in REFS.values() if not images_build.inspect(ref)]
    if missing:
        pytest.fail(f"not in local image storage: {', '.join(missing)} (make images; make test builds them first)")


def get(kubectl, kind: str, name: str, namespace: str) -> dict:
    return json.loads(kubectl("get", kind, name, "-n", namespace, "-o", "json").stdout)


def assert_runs_from_image(local_cluster, pod: dict, module: str | None = None) -> int:
    """The pod's container is a running containerd container whose process lives in the image's root
    filesystem (with /opt/tmo, the image's environment) and is not the project's virtualenv."""
    status = pod["status"]["containerStatuses"][0]
    record = images_build.inspect(status["image"])
    assert record, f"{status['image']} is not in local storage"
    assert status["containerID"].startswith("containerd://"), status
    assert status["imageID"] == f"sha256:{record['Id']}"  # the very image make images built
    assert "running" in status["state"], status
    pid = min(local_cluster.container_processes(status["containerID"]))  # the container's first process
    root = Path(f"/proc/{pid}/root")
    assert os.stat(root).st_dev != os.stat("/").st_dev  # its own root: the overlay of the image's layers
    assert (root / "opt/tmo/bin/python").exists()
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    assert sys.prefix not in " ".join(cmdline) and ".venv" not in " ".join(cmdline), cmdline
    if module:
        assert cmdline[:3] == ["/opt/tmo/bin/python", "-m", module], cmdline
    assert f"Uid:\t{pod['spec']['securityContext']['runAsUser']}\t" in Path(f"/proc/{pid}/status").read_text()
    return pid


PROBE_SCRIPT = """
import http.server, os
print("ids", os.getuid(), os.getgid(), sorted(os.getgroups()), flush=True)
print("home", os.environ["HOME"], "path", os.environ["PATH"], "mode", os.environ["MODE"], flush=True)
print("secret", open("/etc/app/key").read(), flush=True)
try:
    open("/written", "w")
except OSError as error:
    print("root", error.strerror, flush=True)
open("/tmp/scratch", "w").write("ok")
http.server.HTTPServer(("", 8080), http.server.SimpleHTTPRequestHandler).serve_forever()
"""


def test_a_pod_runs_its_image_read_only_as_non_root(kubectl, namespace, local_cluster):
    kubectl("create", "secret", "generic", "app", "-n", namespace, "--from-literal=key=s3cret")
    pod = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "image"},
        "spec": {
            "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 2000},
            "terminationGracePeriodSeconds": 5,
            "containers": [{
                "name": "main", "image": REFS["worker"], "command": ["python", "-c", PROBE_SCRIPT],
                "env": [{"name": "MODE", "value": "from-pod"}],
                "securityContext": {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                                    "capabilities": {"drop": ["ALL"]}},
                "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1},
                "livenessProbe": {"exec": {"command": ["python", "-c", "import os; assert os.getuid() == 1000"]},
                                  "periodSeconds": 1, "failureThreshold": 2},
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"},
                                 {"name": "secret", "mountPath": "/etc/app", "readOnly": True}],
            }],
            "volumes": [{"name": "tmp", "emptyDir": {}},
                        {"name": "secret", "secret": {"secretName": "app", "defaultMode": 0o440}}],
        },
    }
    kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(pod))
    kubectl("wait", "-n", namespace, "--for=condition=Ready", "pod/image", "--timeout=60s")
    current = get(kubectl, "pod", "image", namespace)
    pid = assert_runs_from_image(local_cluster, current)
    log = kubectl("logs", "-n", namespace, "image").stdout
    # fsGroup is a supplementary group (beside the image's own group of uid 1000): it reads the 0440 Secret
    assert re.search(r"^ids 1000 1000 \[(1000, )?2000\]$", log, re.M), log
    assert "secret s3cret" in log
    assert "home /tmp path /opt/tmo/bin:" in log and "mode from-pod" in log  # image env, then the pod's
    assert "root Read-only file system" in log
    wait_for(lambda: Path(f"/proc/{pid}/root/tmp/scratch").exists(), 10, what="the emptyDir write")

    # the exec liveness probe runs inside the container and passes: no restart
    container_id = current["status"]["containerStatuses"][0]["containerID"]
    assert kubectl("exec", "-n", namespace, "image", "--", "python", "-c",
                   "import os; print(os.getuid())").stdout.strip() == "1000"
    assert get(kubectl, "pod", "image", namespace)["status"]["containerStatuses"][0]["restartCount"] == 0

    kubectl("delete", "pod", "image", "-n", namespace, "--wait=true", "--timeout=30s")
    assert local_cluster.container_processes(container_id) == []
    assert not Path(f"/proc/{pid}").exists()


def test_an_image_container_restarts_and_keeps_its_previous_log(kubectl, namespace, local_cluster):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "crash"},
           "spec": {"securityContext": {"runAsUser": 1000},
                    "containers": [{"name": "main", "image": REFS["starter"],
                                    "command": ["python", "-c", "import sys; print('ran once'); sys.exit(3)"]}]}}
    kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(pod))
    status = wait_for(lambda: (s := get(kubectl, "pod", "crash", namespace)["status"].get("containerStatuses"))
                      and s[0]["restartCount"] >= 1 and s[0], 60, interval=0.5, what="a restart")
    terminated = status["lastState"]["terminated"]
    assert terminated["exitCode"] == 3 and terminated["containerID"].startswith("containerd://")
    # Every run printed it; a restart between reading the status and asking for the log may leave the kubelet
    # naming a container its GC just removed ("unable to retrieve container logs"), so ask until it answers.
    previous = wait_for(lambda: (out := kubectl("logs", "-n", namespace, "crash", "--previous").stdout)
                        .startswith("ran once") and out, 30, interval=1, what="the previous run's log")
    assert previous == "ran once\n"
    kubectl("delete", "pod", "crash", "-n", namespace, "--wait=true", "--timeout=30s")
    assert local_cluster.container_processes(terminated["containerID"]) == []


def test_operator_worker_starter_and_helm_test_run_from_their_images(operator, temporal_cluster, kubectl, helm,
                                                                     local_cluster):
    pods = json.loads(kubectl("get", "pods", "-n", operator, "-l", "app.kubernetes.io/name=temporal-mtls-operator",
                              "-o", "json").stdout)["items"]
    running = [p for p in pods if p["metadata"].get("deletionTimestamp") is None]
    assert running, pods
    assert_runs_from_image(local_cluster, running[0], "temporal_mtls_operator")

    temporal = temporal_cluster()
    namespace = temporal.namespace
    kubectl("apply", "-n", namespace, "-f", str(REPO / "examples" / "namespace.yaml"))
    wait_for(lambda: condition(get(kubectl, "temporalnamespace", "default", namespace), "Ready").get("status")
             == "True", 90, interval=1, what="the default namespace")
    # ClusterIP: the NodePort belongs to test_apps; the helm test hook runs from the starter image too.
    helm("install", "hello", str(REPO / "charts" / "temporal-hello-world"), "-n", namespace,
         "--set", "starter.service.type=ClusterIP", "--set", f"testImage={REFS['starter']}",
         "--wait", "--timeout=180s")
    for app, module in (("worker", "temporal_hello_worker"), ("starter", "temporal_hello_starter")):
        pod = json.loads(kubectl("get", "pods", "-n", namespace, "-l", f"app.kubernetes.io/name=temporal-hello-{app}",
                                 "-o", "json").stdout)["items"][0]
        assert_runs_from_image(local_cluster, pod, module)
    tested = helm("test", "hello", "-n", namespace, "--logs")
    assert "Phase:          Succeeded" in tested.stdout and "Hello helm-test!" in tested.stdout
    hook = get(kubectl, "pod", "hello-test-workflow", namespace)["status"]["containerStatuses"][0]
    assert hook["state"]["terminated"]["containerID"].startswith("containerd://")
    assert hook["imageID"] == f"sha256:{images_build.inspect(REFS['starter'])['Id']}"
