"""Fixtures shared by every test layer: one local cluster per session, one namespace per test."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from localkube.control_plane import ControlPlane, free_port
from localkube.guard import assert_local_test_cluster
from localkube.paths import state_root
from localkube.toolchain import path_of


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.2, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy; return that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


@pytest.fixture(scope="session")
def local_cluster() -> ControlPlane:
    """A private control plane for this test session, torn down (no process left) at the end."""
    # NodePort 30800 (the starter's, as in kind-config.yaml) is published on a free host port.
    cluster = ControlPlane(state_root() / f"pytest-{os.getpid()}-{uuid.uuid4().hex[:6]}",
                           {30800: ("127.0.0.1", free_port())})
    try:
        cluster.up()
        yield cluster
    finally:
        cluster.down()
        leftovers = cluster.running()
        if not leftovers:
            shutil.rmtree(cluster.state_dir, ignore_errors=True)
        assert not leftovers, f"processes left behind: {leftovers}"


@pytest.fixture(scope="session")
def node_port_url(local_cluster: ControlPlane) -> str:
    """Where the host reaches NodePort 30800 of the test cluster."""
    address, port = local_cluster.port_mappings[30800]
    return f"http://{address}:{port}"


@pytest.fixture(scope="session")
def kubeconfig(local_cluster: ControlPlane) -> Path:
    assert_local_test_cluster(local_cluster.kubeconfig, local_cluster.pki_dir / "serving-ca.crt")
    return local_cluster.kubeconfig


@pytest.fixture(scope="session")
def api_client(kubeconfig: Path) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(kubeconfig))


@pytest.fixture(scope="session")
def kubectl(kubeconfig: Path):
    """Run the real kubectl against the test cluster; returns the CompletedProcess."""
    binary = str(path_of("kubectl"))

    def run(*args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([binary, f"--kubeconfig={kubeconfig}", *args], input=input,
                                capture_output=True, text=True, timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    return run


@pytest.fixture
def namespace(request, api_client: client.ApiClient) -> str:
    """A fresh namespace per test (with its default service account), deleted afterwards."""
    core = client.CoreV1Api(api_client)
    stem = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].rstrip("-")
    name = f"{stem}-{uuid.uuid4().hex[:5]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))

    def default_service_account():
        try:
            return core.read_namespaced_service_account("default", name)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    wait_for(default_service_account, 30, what=f"default service account in {name}")
    yield name
    core.delete_namespace(name)
