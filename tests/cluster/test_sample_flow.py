"""The original sample's flow, typed as a user types it, from a stopped state (issue 23, item 1):

    make keyvault-certs
    make temporal-cluster-mtls
    make start-worker
    curl 'localhost:8000/workflow/start'
    make keyvault-certs KEYVAULT_ARGS=--rotate     # the new leaf reaches the running server
    make down

Private, so a user's own `make demo` is never touched and never in the way: LOCALKUBE_STATE_ROOT points into the
test's temporary directory (so `.localkube/default` of the checkout is not used, and `make down` stops only what this
test started), and every command runs in a network namespace of its own (`nsenter --net`, nothing else changes), so
localhost:8000, :8443, :8480, :8080 and :8888 are the test's even while a demo holds them on the host. The tools and
images are brought up to date first, outside that namespace (it has no route out): the targets then find them so.

Heavy (a cluster, the vault emulator, Temporal, the apps: a few minutes); runs in `make test`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from localkube.control_plane import ControlPlane
from localkube.guard import assert_local_test_cluster
from localkube.paths import REPO_ROOT
from localkube.toolchain import path_of

from conftest import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.keyvault]


@pytest.fixture
def private_state_root(tmp_path: Path):
    prepared = subprocess.run(["make", "--no-print-directory", "tools", "images"], cwd=REPO_ROOT, capture_output=True,
                              text=True, timeout=3600)
    assert prepared.returncode == 0, prepared.stdout[-2000:] + prepared.stderr[-2000:]
    root = tmp_path / "localkube"
    root.mkdir()
    yield root
    # make down is part of the flow; this only makes sure nothing outlives a failed test
    leftover = ControlPlane(root / "default")
    if leftover.running():
        leftover.down()


@pytest.fixture
def private_network():
    """A network namespace held by a sleeping process; commands enter it with nsenter --net."""
    holder = subprocess.Popen(["unshare", "--net", "sleep", "infinity"])
    try:
        enter = ["nsenter", f"--net=/proc/{holder.pid}/ns/net"]
        wait_for(lambda: os.readlink(f"/proc/{holder.pid}/ns/net") != os.readlink("/proc/self/ns/net"), 10,
                 what="the network namespace")
        subprocess.run([*enter, "ip", "link", "set", "lo", "up"], check=True)
        yield enter
    finally:
        holder.kill()
        holder.wait(10)


def test_the_sample_flow_works_as_typed_from_a_stopped_state(private_state_root: Path, private_network: list[str]):
    env = {k: v for k, v in os.environ.items() if k not in ("LOCALKUBE_NAME", "KUBECONFIG", "MAKEFLAGS")}
    env["LOCALKUBE_STATE_ROOT"] = str(private_state_root)
    cluster = ControlPlane(private_state_root / "default")
    timings: dict[str, float] = {}

    def typed(*command: str, timeout: float = 1800) -> subprocess.CompletedProcess:
        started = time.monotonic()
        done = subprocess.run([*private_network, *command], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                              timeout=timeout)
        timings[" ".join(command)] = round(time.monotonic() - started, 1)
        return done

    def kubectl(*args: str) -> str:
        return subprocess.run([*private_network, str(path_of("kubectl")), f"--kubeconfig={cluster.kubeconfig}",
                               *args], check=True, capture_output=True, text=True, timeout=60).stdout

    assert not cluster.running(), "a stopped state"
    problems = []  # a failed first step is reported at the end: the later steps still tell what else works
    try:
        # 1. Key Vault first, as the sample does (there: a real vault; here: the emulator in the local cluster)
        first = typed("make", "keyvault-certs")
        if first.returncode != 0:
            problems.append(f"make keyvault-certs from a stopped state failed:\n{first.stdout[-2000:]}\n"
                            f"{first.stderr[-2000:]}")

        # 2. the cluster, the operator and a TemporalCluster with mTLS
        made = typed("make", "temporal-cluster-mtls")
        assert made.returncode == 0, f"make temporal-cluster-mtls:\n{made.stdout[-2000:]}\n{made.stderr[-2000:]}"
        assert assert_local_test_cluster(cluster.kubeconfig, cluster.pki_dir / "serving-ca.crt")
        assert _condition(json.loads(kubectl("get", "temporalcluster", "demo", "-o", "json")), "Ready") == "True"

        # 3. the worker and the starter
        worker = typed("make", "start-worker")
        assert worker.returncode == 0, f"make start-worker:\n{worker.stdout[-2000:]}\n{worker.stderr[-2000:]}"

        # 4. a workflow, through the starter's NodePort on localhost:8000
        started = typed("curl", "-sS", "--max-time", "90", "localhost:8000/workflow/start")
        assert started.returncode == 0, started.stderr
        workflow_id = json.loads(started.stdout)["workflowId"]
        finished = wait_for(lambda: _completed(private_network, workflow_id), 120, interval=1,
                            what="the workflow to complete")
        assert finished["result"] == "Hello World!", finished

        # 5. new leaf versions in the vault reach the running server without a restart
        client_dir = private_state_root / "operator-client"
        client_dir.mkdir()
        secret = json.loads(kubectl("get", "secret", "demo-operator-client-tls", "-o", "json"))["data"]
        for key in ("tls.crt", "tls.key", "ca.crt"):
            (client_dir / key).write_bytes(base64.b64decode(secret[key]))
        before = _served_frontend_sha256(kubectl, cluster, client_dir)
        assert before, "the frontend presents a certificate"
        pods = _server_pods(kubectl)
        rotated = typed("make", "keyvault-certs", "KEYVAULT_ARGS=--rotate")
        assert rotated.returncode == 0, f"make keyvault-certs KEYVAULT_ARGS=--rotate:\n{rotated.stdout[-2000:]}\n{rotated.stderr[-2000:]}"
        # the sync interval of examples/cluster-keyvault.yaml (30 s), then Temporal's refreshInterval (1m)
        served = wait_for(lambda: (s := _served_frontend_sha256(kubectl, cluster, client_dir)) != before and s, 240, interval=2,
                          what="the server to present the rotated frontend leaf")
        published = json.loads(kubectl("get", "temporalcluster", "demo", "-o", "json"))["status"]["certificates"]
        assert served.lower() in json.dumps(published).lower().replace(":", ""), (served, published["frontend"])
        assert _server_pods(kubectl) == pods, "a new leaf is reloaded in place: no pod restarted"
        again = typed("curl", "-sS", "--max-time", "90", "localhost:8000/workflow/start?wait=true")
        assert again.returncode == 0 and json.loads(again.stdout)["result"] == "Hello World!", again.stdout + again.stderr
    finally:
        # 6. and everything stops again
        down = typed("make", "down", timeout=300)
        print("timings (s):", json.dumps(timings, indent=1))
    assert down.returncode == 0, down.stderr
    assert cluster.running() == {}
    assert cluster.node.leftovers() == []  # make down: no process, cgroup, netns or mount of the node left
    assert not problems, "\n".join(problems)


def _condition(body: dict, kind: str) -> str | None:
    return next((c["status"] for c in (body.get("status") or {}).get("conditions") or [] if c["type"] == kind), None)


def _completed(private_network: list[str], workflow_id: str):
    shown = subprocess.run([*private_network, "curl", "-sS", "--max-time", "30", f"localhost:8000/workflow/{workflow_id}"],
                           capture_output=True, text=True)
    if shown.returncode != 0:
        return None
    answer = json.loads(shown.stdout or "{}")
    return answer if "result" in answer and answer["result"] is not None else None


def _server_pods(kubectl) -> dict[str, int]:
    pods = json.loads(kubectl("get", "pods", "-l", "app.kubernetes.io/component=server", "-o", "json"))["items"]
    if not pods:
        pods = [p for p in json.loads(kubectl("get", "pods", "-o", "json"))["items"]
                if p["metadata"]["name"].startswith("demo-server")]
    return {p["metadata"]["uid"]: sum(s.get("restartCount", 0) for s in p["status"].get("containerStatuses") or [])
            for p in pods}


def _served_frontend_sha256(kubectl, cluster: ControlPlane, client: Path) -> str:
    """SHA-256 (hex) of the leaf the frontend presents through its Service to a TLS client in the node (the
    operator's client certificate; openssl verifies the chain and the host name)."""
    address = kubectl("get", "service", "demo-frontend", "-o", "jsonpath={.spec.clusterIP}").strip()
    shown = subprocess.run(["ip", "netns", "exec", cluster.netns, "openssl", "s_client", "-connect", f"{address}:7233",
                            "-servername", "demo-frontend.default.svc", "-verify_hostname", "demo-frontend.default.svc",
                            "-CAfile", str(client / "ca.crt"), "-cert", str(client / "tls.crt"), "-key",
                            str(client / "tls.key"), "-verify_return_error"], input="", capture_output=True, text=True,
                           timeout=30).stdout
    pem = shown[shown.find("-----BEGIN CERTIFICATE-----"):shown.find("-----END CERTIFICATE-----") + 25]
    if not pem.startswith("-----BEGIN"):
        return ""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding
    der = x509.load_pem_x509_certificate(pem.encode()).public_bytes(Encoding.DER)
    return hashlib.sha256(der).hexdigest()
