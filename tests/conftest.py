"""Fixtures shared by every test layer: one local cluster per session, one namespace per test."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from localkube.control_plane import DEFAULT_SYNC_FREQUENCY, ControlPlane, free_port
from localkube.guard import assert_local_test_cluster
from localkube.paths import state_root
from localkube.toolchain import path_of


def go_duration_seconds(text: str) -> float:
    """A Go duration such as the kubelet's syncFrequency ("10s", "1m", "1m30s", "500ms") in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r}")
    return sum(float(n) * units[u] for n, u in parts)


# How late a changed Secret may reach a mounted volume: the kubelet resyncs each pod every syncFrequency, jittered by
# up to half of it. A wait for a pod to see new certificates adds this to its own budget.
VOLUME_REFRESH = 1.5 * go_duration_seconds(DEFAULT_SYNC_FREQUENCY)


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.2, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy; return that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what() if callable(what) else what}")
        time.sleep(interval)


@pytest.fixture(scope="session")
def local_cluster() -> ControlPlane:
    """A private control plane for this test session, torn down (no process left) at the end."""
    from localkube import images_build
    missing = [r for r in images_build.image_refs().values() if not images_build.inspect(r)]
    if missing:  # the node imports them when it starts; without them every pod of ours fails to pull
        pytest.fail(f"images not built: {missing} (make images; make test builds them first)")
    # NodePorts of kind-config.yaml (the starter's 30800, the vault emulator's 30843 and 30880, the Web UI's 30808
    # and its codec server's 30888) on free host ports.
    # The kubelet's syncFrequency is LOCALKUBE_KUBELET_SYNC_FREQUENCY (10s unless set; the kubelet's default is 1m).
    cluster = ControlPlane(state_root() / f"pytest-{os.getpid()}-{uuid.uuid4().hex[:6]}",
                           {port: ("127.0.0.1", free_port()) for port in (30800, 30843, 30880, 30808, 30888)})
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

    def run(*args: str, input: str | None = None, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        result = subprocess.run([binary, f"--kubeconfig={kubeconfig}", *args], input=input,
                                capture_output=True, text=True, timeout=timeout)
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


# -- the operator and Temporal clusters ----------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]
OPERATOR_NAMESPACE = "temporal-mtls-system"


@pytest.fixture(scope="session")
def helm(kubeconfig: Path):
    binary = str(path_of("helm"))

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([binary, f"--kubeconfig={kubeconfig}", *args], capture_output=True, text=True,
                                timeout=300)
        if check and result.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    return run


@pytest.fixture(scope="session")
def operator(helm, kubectl) -> str:
    """The operator installed from its chart, running as a pod on the local node."""
    helm("upgrade", "--install", "tmo", str(REPO / "charts" / "temporal-mtls-operator"), "-n", OPERATOR_NAMESPACE,
         "--create-namespace", "-f", str(REPO / "examples" / "operator-values-lowkey-vault.yaml"),
         "--wait", "--timeout=180s")
    return OPERATOR_NAMESPACE


def operator_logs(kubectl, namespace: str = OPERATOR_NAMESPACE, release: str = "tmo", tail: int = -1) -> str:
    """The logs of every operator pod of a release (the chart runs a leader and a standby; ``tail`` lines each)."""
    return kubectl("logs", "-n", namespace, "-l", f"app.kubernetes.io/instance={release}", f"--tail={tail}",
                   "--max-log-requests=10", check=False).stdout


def operator_leader(kubectl, namespace: str = OPERATOR_NAMESPACE, release: str = "tmo") -> dict:
    """The operator pod holding the release's leader-election Lease (waits for one to hold it)."""
    def holder():
        lease = kubectl("get", "lease", f"{release}-leader", "-n", namespace, "-o",
                        "jsonpath={.spec.holderIdentity}", check=False).stdout.strip()
        found = lease and kubectl("get", "pod", lease, "-n", namespace, "-o", "json", check=False)
        return found and found.returncode == 0 and json.loads(found.stdout)
    return wait_for(holder, 60, interval=0.5, what=f"a holder of Lease {namespace}/{release}-leader")


@pytest.fixture(scope="session")
def node_exec(local_cluster: ControlPlane):
    """Run a host command inside the node's network namespace, where pod and Service IPs answer."""
    node_ns = local_cluster.netns

    def run(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", node_ns, *args], capture_output=True, text=True,
                              timeout=timeout, env={**os.environ, **(env or {})})

    # node_exec.spawn: the same, in the background (the caller reads its output and ends it).
    run.spawn = lambda *args: subprocess.Popen(["ip", "netns", "exec", node_ns, *args], stdout=subprocess.PIPE,
                                               stderr=subprocess.PIPE, text=True)
    return run


WRITE_RACES = (": write: broken pipe", ": write: connection reset by peer")


def past_write_races(attempt, attempts: int = 30) -> subprocess.CompletedProcess:
    """A refused TLS 1.3 client (the Temporal CLI) run until its error is the server's alert: the alert may meet the
    client mid-write, which then reports the closed connection (a broken pipe or a reset) and not the alert. Returns
    the first run that is not such a race (or not refused at all), else the last one."""
    for _ in range(attempts):
        refused = attempt()
        first = (refused.stderr.splitlines() or [""])[0]
        if refused.returncode != 1 or not first.endswith(WRITE_RACES):
            return refused
    return refused


def condition(obj: dict, kind: str) -> dict:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == kind), {})


class TemporalAccess:
    """How a test reaches one TemporalCluster: its frontend VIP, server name, client cert files."""

    def __init__(self, kubectl, node_exec, namespace: str, name: str, cert_dir: Path) -> None:
        self.kubectl, self.node_exec, self.namespace, self.name = kubectl, node_exec, namespace, name
        self.cert_dir = cert_dir
        self.server_name = f"{name}-frontend.{namespace}.svc"
        self.address = self.kubectl("get", "svc", f"{name}-frontend", "-n", namespace, "-o",
                                    "jsonpath={.spec.clusterIP}").stdout + ":7233"
        self.save_secret(f"{name}-operator-client-tls", cert_dir / "operator")

    def get(self) -> dict:
        return json.loads(self.kubectl("get", "temporalcluster", self.name, "-n", self.namespace, "-o", "json").stdout)

    def save_secret(self, secret: str, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        data = json.loads(self.kubectl("get", "secret", secret, "-n", self.namespace, "-o", "json").stdout)["data"]
        for key in ("tls.crt", "tls.key", "ca.crt"):
            if key in data:
                (directory / key).write_bytes(base64.b64decode(data[key]))
        return directory

    def env(self, cert_dir: Path | None = None) -> dict[str, str]:
        """Temporal's environment configuration for a client using ``cert_dir`` (default: the operator's)."""
        cert_dir = cert_dir or self.cert_dir / "operator"
        env = {"TEMPORAL_ADDRESS": self.address, "TEMPORAL_TLS_SERVER_NAME": self.server_name,
               "TEMPORAL_TLS_SERVER_CA_CERT_PATH": str(self.cert_dir / "operator" / "ca.crt")}
        if (cert_dir / "tls.crt").exists():
            env.update(TEMPORAL_TLS_CLIENT_CERT_PATH=str(cert_dir / "tls.crt"),
                       TEMPORAL_TLS_CLIENT_KEY_PATH=str(cert_dir / "tls.key"))
        else:
            env["TEMPORAL_TLS"] = "true"
        return env

    def cli(self, *args: str, cert_dir: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        """The Temporal CLI as an independent mTLS client."""
        return self.node_exec(str(path_of("temporal")), *args, "--command-timeout", "15s",
                              env=self.env(cert_dir), timeout=timeout)


@pytest.fixture
def temporal_cluster(kubectl, node_exec, namespace, operator, tmp_path):
    """Apply a TemporalCluster (examples/cluster.yaml unless a spec is given) and wait until Ready."""

    def create(spec: dict | None = None, name: str = "demo", timeout: float = 180) -> TemporalAccess:
        if spec is None:
            manifest = (REPO / "examples" / "cluster.yaml").read_text()
        else:
            manifest = yaml.safe_dump({"apiVersion": "temporal-mtls.dev/v1alpha1", "kind": "TemporalCluster",
                                       "metadata": {"name": name}, "spec": spec})
        kubectl("apply", "-n", namespace, "-f", "-", input=manifest)
        wait_for(lambda: condition(json.loads(kubectl("get", "temporalcluster", name, "-n", namespace, "-o",
                                                      "json").stdout), "Ready").get("status") == "True",
                 timeout, interval=1, what=f"TemporalCluster {name} to become Ready")
        return TemporalAccess(kubectl, node_exec, namespace, name, tmp_path / name)

    return create
