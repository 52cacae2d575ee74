"""Several clusters run side by side on free ports, and `down` leaves no process behind."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid

import pytest

from localkube.control_plane import ControlPlane
from localkube.guard import assert_local_test_cluster
from localkube.paths import state_root
from localkube.toolchain import path_of

from conftest import wait_for

pytestmark = pytest.mark.cluster


def test_a_second_cluster_runs_beside_the_first_and_stops_without_leftovers(local_cluster, kubectl):
    second = ControlPlane(state_root() / f"pytest-second-{uuid.uuid4().hex[:6]}")
    try:
        second.up()
        ports = [json.loads((c.state_dir / "ports.json").read_text()) for c in (local_cluster, second)]
        assert not set(ports[0].values()) & set(ports[1].values())
        assert assert_local_test_cluster(second.kubeconfig, second.pki_dir / "serving-ca.crt") == second.context
        assert set(second.running()) == {"etcd", "kube-apiserver", "kube-controller-manager",
                                         "kube-scheduler", "localkube-node"}
        pod_pid = _start_a_pod(second)
        pids = [*second.running().values(), pod_pid]
    finally:
        killed = second.down()
    assert killed == [], f"ignored SIGTERM: {killed}"
    assert second.running() == {} and second.pod_processes() == []
    assert not [pid for pid in pids if os.path.exists(f"/proc/{pid}")]
    # the first cluster is untouched
    assert kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"
    shutil.rmtree(second.state_dir)


def _start_a_pod(cluster: ControlPlane) -> int:
    """Run a sleeping pod on the cluster's node; return its process id."""
    kubectl = [str(path_of("kubectl")), f"--kubeconfig={cluster.kubeconfig}"]
    subprocess.run([*kubectl, "run", "sleeper", "--image=python:3.11-slim", "--command", "--",
                    "python", "-c", "import time; time.sleep(3600)"], check=True, capture_output=True)
    container_id = wait_for(lambda: subprocess.run(
        [*kubectl, "get", "pod", "sleeper", "-o", "jsonpath={.status.containerStatuses[0].containerID}"],
        capture_output=True, text=True).stdout, 60, what="the pod to start")
    pid = int(container_id.removeprefix("localkube://"))
    assert pid in cluster.pod_processes()
    return pid
