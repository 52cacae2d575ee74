"""Rotation end to end on one TemporalCluster shared by the module (operator-managed CAs, refreshInterval 5s), with
the hello-world apps starting workflows at 2/s through all of it (bench/rotation.py's driver): on-demand leaf
rotation without a restart, a staged frontend CA rotation during which an old-CA client's open connection is closed
at the removal, an internode CA rotation whose operator pod is killed after the new CA exists, and not one failed
workflow start through them. The cluster runs our server build, which reloads CA bundles: not one server restart.

Order matters (one cluster): leaves first, then the frontend CA, then the internode CA, then the count.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import select
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from conftest import REPO, VOLUME_REFRESH, TemporalAccess, condition, operator_logs, past_write_races, wait_for
from localkube.toolchain import path_of
from support.rotation_load import Load, Rotations, window
from temporal_mtls_operator import certs

pytestmark = pytest.mark.cluster

NAME = "demo"
CHART = str(REPO / "charts" / "temporal-hello-world")
ALERT = re.compile(r"SSL routines:\w+:(?P<text>[^:]+):\S+:\d+:SSL alert number (?P<number>\d+)")


@pytest.fixture(scope="module")
def rotating(kubectl, node_exec, operator, tmp_path_factory) -> TemporalAccess:
    namespace = f"rotation-{uuid.uuid4().hex[:5]}"
    kubectl("create", "namespace", namespace)
    try:
        wait_for(lambda: kubectl("get", "serviceaccount", "default", "-n", namespace, check=False).returncode == 0,
                 30, what=f"the default service account in {namespace}")
        kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump({
            "apiVersion": "temporal-mtls.dev/v1alpha1", "kind": "TemporalCluster", "metadata": {"name": NAME},
            # The test's own old-CA and new-CA client certificates may read (authorization is on: by their CN).
            "spec": {"mtls": {"refreshInterval": "5s"}, "authorization": {"systemClients": [
                {"commonName": "old-ca-client", "role": "reader"}, {"commonName": "new-ca-client", "role": "reader"}]}}}))
        wait_for(lambda: condition(get_cluster(kubectl, namespace), "Ready").get("status") == "True", 180,
                 interval=0.5, what=f"TemporalCluster {NAME} to become Ready")
        access = TemporalAccess(kubectl, node_exec, namespace, NAME, tmp_path_factory.mktemp("rotation"))
        wait_for(lambda: access.cli("operator", "namespace", "describe", "--namespace", "temporal-system")
                 .returncode == 0, 60, interval=0.5, what="the CLI to connect through the Service")
        yield access
    finally:
        kubectl("delete", "namespace", namespace, "--wait=false", check=False)


WINDOWS: list[tuple[str, float, float]] = []  # (rotation, began, ended): what the last test counts


@pytest.fixture(scope="module")
def apps_under_load(rotating, kubectl, helm, node_port_url) -> Load:
    """The hello-world worker and starter on the cluster, and workflow starts through the starter at 2/s (each
    waiting for its result) from the first rotation of the module to the last."""
    ns = rotating.namespace
    kubectl("apply", "-n", ns, "-f", str(REPO / "examples" / "namespace.yaml"))
    wait_for(lambda: condition(json.loads(kubectl("get", "temporalnamespace", "default", "-n", ns, "-o", "json")
                                          .stdout), "Ready").get("status") == "True", 90, interval=1,
             what="the default namespace")
    wait_for(lambda: not [s for s in json.loads(kubectl("get", "services", "-A", "-o", "json").stdout)["items"]
                          for p in s["spec"].get("ports", []) if p.get("nodePort") == 30800],
             90, interval=1, what="NodePort 30800 to be free")
    helm("install", "hello", CHART, "-n", ns, "--set", f"cluster={NAME}", "--wait", "--timeout=180s")
    load = Load(node_port_url, 2.0, prefix="r")
    try:
        wait_for(lambda: one_workflow(node_port_url, "before"), 90, interval=1, what="a workflow through the starter")
        load.start()
        yield load
    finally:
        load.stop()
        helm("uninstall", "hello", "-n", ns, "--wait", check=False)


def one_workflow(url: str, name: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/workflow/start?name={name}&wait=true", timeout=60) as answer:
            return json.loads(answer.read()).get("result") == f"Hello {name}!"
    except (OSError, ValueError):
        return False


def rotations(rotating: TemporalAccess) -> Rotations:
    return Rotations(lambda *a: rotating.kubectl(*a).stdout, lambda *a: rotating.node_exec(*a).stdout,
                     rotating.namespace, NAME)


def get_cluster(kubectl, namespace: str) -> dict:
    return json.loads(kubectl("get", "temporalcluster", NAME, "-n", namespace, "-o", "json").stdout)


def secret(kubectl, namespace: str, name: str) -> dict[str, bytes]:
    found = kubectl("get", "secret", name, "-n", namespace, "-o", "json", check=False)
    if found.returncode != 0:
        return {}
    return {k: base64.b64decode(v) for k, v in (json.loads(found.stdout).get("data") or {}).items()}


def cert(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def server_pod(kubectl, namespace: str) -> dict:
    pods = json.loads(kubectl("get", "pods", "-n", namespace, "-l", "app.kubernetes.io/component=server", "-o",
                              "json").stdout)["items"]
    return pods[0] if len(pods) == 1 else {}


def served_leaf(node_exec, access: TemporalAccess, ca_file: Path, client_dir: Path) -> tuple[x509.Certificate, str]:
    """The frontend's certificate as openssl receives it (verified against ``ca_file``), and s_client's output."""
    shown = node_exec("openssl", "s_client", "-connect", access.address, "-servername", access.server_name,
                      "-CAfile", str(ca_file), "-showcerts", "-cert", str(client_dir / "tls.crt"),
                      "-key", str(client_dir / "tls.key"), timeout=30)
    found = re.search(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", shown.stdout, re.S)
    return (cert(found.group(0).encode()) if found else None), shown.stdout + shown.stderr


def write_pair(directory: Path, pair: certs.KeyPair) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tls.crt").write_bytes(pair.cert_pem)
    (directory / "tls.key").write_bytes(pair.key_pem)
    return directory


def cli_ok(access: TemporalAccess, client_dir: Path) -> subprocess.CompletedProcess:
    return access.cli("operator", "namespace", "describe", "--namespace", "temporal-system", cert_dir=client_dir)


def restart_count(pod: dict) -> int:
    return pod["status"]["containerStatuses"][0]["restartCount"]


# -- leaves ----------------------------------------------------------------------------------------------------------

def test_rotate_annotation_reissues_leaves_served_by_the_same_pod(rotating, apps_under_load, kubectl, node_exec,
                                                                  tmp_path):
    access, ns, began = rotating, rotating.namespace, time.time()
    pod = server_pod(kubectl, ns)
    roles = ("internode", "frontend", "system-worker", "operator-client")
    before = {role: secret(kubectl, ns, f"{NAME}-{role}-tls") for role in roles}
    ca_file = access.cert_dir / "operator" / "ca.crt"
    first, said = served_leaf(node_exec, access, ca_file, access.cert_dir / "operator")
    assert first is not None and first == cert(before["frontend"]["tls.crt"]), said

    kubectl("annotate", "temporalcluster", NAME, "-n", ns, "temporal-mtls.dev/rotate=first")
    handled = wait_for(lambda: (get_cluster(kubectl, ns).get("status") or {}).get("leafRotation", {})
                       .get("handled") == "first" and get_cluster(kubectl, ns)["status"]["leafRotation"], 60,
                       interval=0.5, what=lambda: "the rotate annotation to be handled; operator log: " + operator_logs(
                           kubectl, tail=30))
    assert handled["reissuedAt"]
    after = {role: secret(kubectl, ns, f"{NAME}-{role}-tls") for role in roles}
    assert all(after[role]["tls.crt"] != before[role]["tls.crt"] for role in roles)  # every leaf, same CAs
    assert all(after[role]["ca.crt"] == before[role]["ca.crt"] for role in roles)

    # Temporal reloads the leaf files (refreshInterval 5s) and presents the new frontend leaf: same pod, no restart.
    wait_for(lambda: served_leaf(node_exec, access, ca_file, access.cert_dir / "operator")[0]
             == cert(after["frontend"]["tls.crt"]), 60 + VOLUME_REFRESH, interval=1,
             what="the frontend to serve the new leaf")
    now = server_pod(kubectl, ns)
    assert now["metadata"]["uid"] == pod["metadata"]["uid"] and restart_count(now) == 0

    # The same value again is a no-op; a client's own annotation re-issues only its certificate.
    kubectl("annotate", "--overwrite", "temporalcluster", NAME, "-n", ns, "temporal-mtls.dev/rotate=first")
    kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump({
        "apiVersion": "temporal-mtls.dev/v1alpha1", "kind": "TemporalClusterClient", "metadata": {"name": "app"},
        "spec": {"clusterRef": {"name": NAME}}}))
    issued = wait_for(lambda: secret(kubectl, ns, "app-temporal-client").get("tls.crt"), 60, interval=0.5,
                      what="the app's certificate")
    kubectl("annotate", "temporalclusterclient", "app", "-n", ns, "temporal-mtls.dev/rotate=1")
    wait_for(lambda: secret(kubectl, ns, "app-temporal-client").get("tls.crt") != issued, 60, interval=0.5,
             what="the app's certificate to be re-issued")
    client = json.loads(kubectl("get", "temporalclusterclient", "app", "-n", ns, "-o", "json").stdout)
    assert client["status"]["leafRotation"]["handled"] == "1"
    assert secret(kubectl, ns, f"{NAME}-frontend-tls")["tls.crt"] == after["frontend"]["tls.crt"]
    WINDOWS.append(("leaves", began, time.time()))


# -- the frontend CA, with the apps running through it ---------------------------------------------------------------

# The HTTP/2 preface, an empty SETTINGS frame, then garbage longer than a frame header: the server closes.
GRPC_PROBE = (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
              + b"garbage, not an HTTP/2 frame\n")
UNKNOWN_CA = ("tlsv1 alert unknown ca", 48)


def s_client(node_exec, access: TemporalAccess, ca_file: Path, client_dir: Path, work: Path,
             stdin: bytes = b"") -> tuple[int, str]:
    """openssl s_client -brief to the server pod (as the security matrix does: the Service's proxy would hold the
    connection open) with a client certificate, verifying the server; (exit code, stderr)."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "in").write_bytes(stdin)
    pod_ip = server_pod(access.kubectl, access.namespace)["status"]["podIP"]
    command = ["openssl", "s_client", "-brief", "-connect", f"{pod_ip}:7233", "-servername", access.server_name,
               "-verify_hostname", access.server_name, "-verify_return_error", "-CAfile", str(ca_file), "-ign_eof",
               "-alpn", "h2", "-cert", str(client_dir / "tls.crt"), "-key", str(client_dir / "tls.key")]
    done = node_exec("sh", "-c", 'i=$1; shift; exec "$@" <"$i" >/dev/null', "sh", str(work / "in"), *command,
                     timeout=20)
    return done.returncode, done.stderr


def assert_accepted(node_exec, access, ca_file: Path, client_dir: Path, work: Path) -> None:
    code, stderr = s_client(node_exec, access, ca_file, client_dir, work, GRPC_PROBE)
    assert "Verification: OK" in stderr and "alert" not in stderr, stderr
    described = cli_ok(access, client_dir)
    assert described.returncode == 0 and "Registered" in described.stdout, described.stderr


def ca_rotation(kubectl, namespace: str, domain: str) -> dict:
    return ((get_cluster(kubectl, namespace).get("status") or {}).get("caRotation") or {}).get(domain) or {}


def app_restarts(kubectl, namespace: str) -> dict[str, int]:
    pods = json.loads(kubectl("get", "pods", "-n", namespace, "-l", "app.kubernetes.io/instance=hello", "-o",
                              "json").stdout)["items"]
    return {p["metadata"]["name"]: restart_count(p) for p in pods}


RELOAD_INTERVAL = 2.0  # server/tlsreload's DefaultInterval: bundles read again, connections checked


class HeldConnection:
    """tests/support/held_connection.py run in the node's namespace: up when constructed, then waits to be ended."""

    def __init__(self, node_exec, host: str, server_name: str, client_dir: Path) -> None:
        script = REPO / "tests" / "support" / "held_connection.py"
        self.process = node_exec.spawn(sys.executable, str(script), host, "7233", server_name,
                                       str(client_dir / "tls.crt"), str(client_dir / "tls.key"))
        opened = self._line(timeout=20)
        assert opened.get("event") == "open", (opened, self._stderr())

    def _line(self, timeout: float) -> dict:
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        return json.loads(self.process.stdout.readline() or "{}") if ready else {}

    def _stderr(self) -> str:
        self.process.kill()
        return self.process.communicate(timeout=10)[1]

    def closed(self, timeout: float) -> dict:
        ended = self._line(timeout)
        assert ended.get("event") == "closed", ("the old-CA connection is still open", ended, self._stderr())
        self.process.wait(timeout=10)
        return ended


def stamp(text: str) -> float:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc).timestamp()


def assert_same_server_pod(kubectl, namespace: str, before: dict) -> None:
    now = server_pod(kubectl, namespace)
    assert (now["metadata"]["uid"], restart_count(now)) == (before["metadata"]["uid"], restart_count(before)), \
        now.get("status")


def test_frontend_ca_rotation_overlaps_old_and_new_then_refuses_the_old_ca(rotating, apps_under_load, kubectl,
                                                                           node_exec, node_port_url, tmp_path):
    access, ns = rotating, rotating.namespace
    restarts, server = app_restarts(kubectl, ns), server_pod(kubectl, ns)

    old_ca = certs.KeyPair(*(secret(kubectl, ns, f"{NAME}-frontend-ca")[k] for k in ("tls.crt", "tls.key")))
    old_client = write_pair(tmp_path / "old-client", certs.issue_leaf(
        old_ca, certs.LeafProfile("old-ca-client", client=True), dt.timedelta(hours=2)))
    old_ca_file = tmp_path / "old-ca.crt"
    old_ca_file.write_bytes(old_ca.cert_pem)

    # A client whose Secret name is taken by someone else's Secret: the rotation cannot put the new CA there.
    kubectl("create", "secret", "generic", "taken", "-n", ns, "--from-literal=password=not-a-certificate")
    kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump({
        "apiVersion": "temporal-mtls.dev/v1alpha1", "kind": "TemporalClusterClient", "metadata": {"name": "blocked"},
        "spec": {"clusterRef": {"name": NAME}, "secretName": "taken"}}))

    began, began_wall = time.monotonic(), time.time()
    kubectl("annotate", "temporalcluster", NAME, "-n", ns, "temporal-mtls.dev/rotate-ca-frontend=1")

    # Phase (a) holds: the server rolled out trusting both CAs, every other client Secret carries the new CA.
    held = wait_for(lambda: (s := ca_rotation(kubectl, ns, "frontend")).get("message")
                    == "waiting for Secret taken to trust the new CA (ca.crt)" and s, 240 + VOLUME_REFRESH, interval=1,
                    what=lambda: f"the rotation to hold on Secret taken: {ca_rotation(kubectl, ns, 'frontend')}")
    assert held["phase"] == "TrustingNewCA"
    rotating_condition = condition(get_cluster(kubectl, ns), "CARotation")
    assert (rotating_condition["status"], rotating_condition["reason"]) == ("True", "Waiting")
    assert "frontend: TrustingNewCA, waiting for Secret taken" in rotating_condition["message"]
    next_data = secret(kubectl, ns, f"{NAME}-frontend-ca-next")
    new_ca = certs.KeyPair(next_data["tls.crt"], next_data["tls.key"])
    assert held["newCA"] == certs.sha256_fingerprint(new_ca.certificate)
    assert held["oldCA"] == certs.sha256_fingerprint(old_ca.certificate)
    bundle = secret(kubectl, ns, "app-temporal-client")["ca.crt"]
    assert bundle == old_ca.cert_pem + new_ca.cert_pem
    assert secret(kubectl, ns, f"{NAME}-frontend-tls")["ca.crt"] == bundle
    # Leaves still come from the old CA in phase (a).
    cert(secret(kubectl, ns, "app-temporal-client")["tls.crt"]).verify_directly_issued_by(old_ca.certificate)

    # The overlap: an old-CA and a new-CA client certificate are both accepted (openssl and the Temporal CLI).
    new_client = write_pair(tmp_path / "new-client", certs.issue_leaf(
        new_ca, certs.LeafProfile("new-ca-client", client=True), dt.timedelta(hours=2)))
    wait_for(lambda: cli_ok(access, old_client).returncode == 0, 60 + VOLUME_REFRESH, interval=1,
             what="the rolled-out server")
    assert_accepted(node_exec, access, old_ca_file, old_client, tmp_path / "overlap-old")
    assert_accepted(node_exec, access, old_ca_file, new_client, tmp_path / "overlap-new")

    # An old-CA client connected before the removal (HTTP/2 up, keepalive answered), held through it.
    held_connection = HeldConnection(node_exec, server["status"]["podIP"], access.server_name, old_client)

    # Free the blocked Secret: the rotation goes on through (b) and (c) to the end.
    kubectl("delete", "temporalclusterclient", "blocked", "-n", ns)
    kubectl("delete", "secret", "taken", "-n", ns)
    done = wait_for(lambda: (s := ca_rotation(kubectl, ns, "frontend")).get("phase") == "Completed" and s,
                    300 + 3 * VOLUME_REFRESH,
                    interval=1, what=lambda: f"the rotation to complete: {ca_rotation(kubectl, ns, 'frontend')}")
    completed_seen, duration = time.time(), time.monotonic() - began

    # Our server build closed that connection when its bundle dropped the old CA (no GOAWAY: not gRPC's idle or age
    # limit; its call still open), within one reload interval (2 s) of the pods refusing the old CA, which Completed
    # waited for.
    closed = held_connection.closed(timeout=10)
    removal = stamp(done["phaseTimes"]["RemovingOldCA"])
    assert (closed["goaway"], closed["call_ended"]) == (None, None), closed
    assert closed["at"] >= removal - 1, closed  # phaseTimes has whole seconds
    assert closed["at"] <= completed_seen + RELOAD_INTERVAL, (closed, completed_seen)
    print(f"old-CA connection closed {closed['at'] - removal:.1f} s after RemovingOldCA began, "
          f"held {closed['held_seconds']} s")
    assert set(done["phaseTimes"]) == {"TrustingNewCA", "ReissuingLeaves", "RemovingOldCA", "Completed"}
    assert done["trigger"] == "annotation" and done["requested"] == "1" and done["message"] == ""

    # (d): exactly one new CA, promoted; the old one kept as -ca-previous; no second copy of the new key.
    assert secret(kubectl, ns, f"{NAME}-frontend-ca")["tls.crt"] == new_ca.cert_pem
    assert secret(kubectl, ns, f"{NAME}-frontend-ca-previous")["tls.crt"] == old_ca.cert_pem
    assert secret(kubectl, ns, f"{NAME}-frontend-ca-next") == {}
    for name in (f"{NAME}-frontend-tls", f"{NAME}-system-worker-tls", f"{NAME}-operator-client-tls",
                 "app-temporal-client", "hello-temporal-client"):
        data = secret(kubectl, ns, name)
        assert data["ca.crt"] == new_ca.cert_pem, name  # the old CA is out of every bundle
        cert(data["tls.crt"]).verify_directly_issued_by(new_ca.certificate)

    # The server presents a new-CA leaf, and refuses the old-CA client certificate with its own TLS alert.
    new_ca_file = tmp_path / "new-ca.crt"
    new_ca_file.write_bytes(new_ca.cert_pem)
    served = wait_for(lambda: served_leaf(node_exec, access, new_ca_file, new_client)[0], 60, interval=1,
                      what="the frontend's certificate")
    served.verify_directly_issued_by(new_ca.certificate)
    code, stderr = s_client(node_exec, access, new_ca_file, old_client, tmp_path / "refused")
    assert code != 0 and [(m["text"], int(m["number"])) for m in ALERT.finditer(stderr)] == [UNKNOWN_CA], stderr
    assert "Verification: OK" in stderr, stderr  # we verified the new-CA server first; then it refused us
    access.save_secret(f"{NAME}-operator-client-tls", access.cert_dir / "operator")  # the new CA to verify with
    refused = past_write_races(lambda: access.node_exec(
        str(path_of("temporal")), "operator", "namespace", "describe", "--namespace", "temporal-system",
        "--command-timeout", "15s", timeout=60,
        env={**access.env(old_client), "TEMPORAL_CLI_DISABLE_CONNECT_DIAGNOSIS": "1"}))
    # Go presents only a certificate from a CA the server lists: the old-CA one is not even sent.
    assert refused.returncode == 1 and "remote error: tls: certificate required" in refused.stderr, refused.stderr
    assert_accepted(node_exec, access, new_ca_file, new_client, tmp_path / "after-new")

    # The apps kept completing workflows, without a restart; the printer columns show the rotation.
    wait_for(lambda: one_workflow(node_port_url, "after"), 90, interval=1, what="a workflow after the rotation")
    print(f"frontend CA rotation: {duration:.0f} s")
    WINDOWS.append(("frontend_ca", began_wall, time.time()))
    assert app_restarts(kubectl, ns) == restarts
    assert_same_server_pod(kubectl, ns, server)  # our build reloads CA bundles: not one restart
    listed = kubectl("get", "temporalcluster", NAME, "-n", ns).stdout
    header, row = listed.splitlines()[:2]
    assert "FRONTEND CA ROTATION" in header and "FRONTEND CA EXPIRES" in header and "INTERNODE CA EXPIRES" in header
    assert "Completed" in row and new_ca.certificate.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ") in row


# -- the internode CA, with the operator pod killed between its new CA and the re-issued leaves --------------------

def operator_pods(kubectl, namespace: str) -> list:
    return json.loads(kubectl("get", "pods", "-n", namespace, "-l", "app.kubernetes.io/name=temporal-mtls-operator",
                              "-o", "json").stdout)["items"]


def test_a_ca_rotation_whose_operator_is_killed_mid_way_completes_with_exactly_one_new_ca(rotating, apps_under_load,
                                                                                       kubectl, operator):
    access, ns, began = rotating, rotating.namespace, time.time()
    server = server_pod(kubectl, ns)
    old = secret(kubectl, ns, f"{NAME}-internode-ca")["tls.crt"]
    old_leaf = secret(kubectl, ns, f"{NAME}-internode-tls")["tls.crt"]
    kubectl("annotate", "temporalcluster", NAME, "-n", ns, "temporal-mtls.dev/rotate-ca-internode=1")
    # TrustingNewCA holds until the server pod takes the new bundle (seconds): kill the operator pod there.
    wait_for(lambda: ca_rotation(kubectl, ns, "internode").get("phase") == "TrustingNewCA", 60, interval=0.1,
             what=lambda: f"the rotation to start: {ca_rotation(kubectl, ns, 'internode')}")
    killed = operator_pods(kubectl, operator)
    kubectl("delete", "pod", "-n", operator, "--grace-period=0", "--force", "--wait=false",
            *(p["metadata"]["name"] for p in killed))
    made = secret(kubectl, ns, f"{NAME}-internode-ca-next")["tls.crt"]
    state = ca_rotation(kubectl, ns, "internode")
    # Killed after the new CA exists (and, unless the dying pod got one step further, before any leaf came from it).
    assert state["newCA"] == certs.sha256_fingerprint(cert(made)), state
    if state["phase"] == "TrustingNewCA":
        assert secret(kubectl, ns, f"{NAME}-internode-tls")["tls.crt"] == old_leaf
    print(f"operator killed in {state['phase']}")
    wait_for(lambda: {p["metadata"]["uid"] for p in operator_pods(kubectl, operator)
                      if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))}
             - {p["metadata"]["uid"] for p in killed}, 120, interval=0.5, what="a new operator pod")

    done = wait_for(lambda: (s := ca_rotation(kubectl, ns, "internode")).get("phase") == "Completed" and s,
                    300 + 3 * VOLUME_REFRESH,
                    interval=1, what=lambda: f"the rotation to complete: {ca_rotation(kubectl, ns, 'internode')}")
    assert done["trigger"] == "annotation" and done["requested"] == "1"
    new = cert(made)
    assert done["newCA"] == certs.sha256_fingerprint(new)
    assert secret(kubectl, ns, f"{NAME}-internode-ca")["tls.crt"] == made  # exactly the CA made before the kill
    assert secret(kubectl, ns, f"{NAME}-internode-ca-previous")["tls.crt"] == old
    leaf = secret(kubectl, ns, f"{NAME}-internode-tls")
    assert leaf["ca.crt"] == made
    cert(leaf["tls.crt"]).verify_directly_issued_by(new)
    # The internode port presents the new CA's leaf (phase (c) waited for exactly that).
    assert rotations(access).serves_leaf_of("internode", made)
    wait_for(lambda: condition(get_cluster(kubectl, ns), "Ready").get("status") == "True", 120, interval=1,
             what="Ready after the internode rotation")
    assert wait_for(lambda: cli_ok(access, access.cert_dir / "operator").returncode == 0, 60 + VOLUME_REFRESH,
                    interval=1, what="the frontend over the rotated internode CA")
    assert_same_server_pod(kubectl, ns, server)  # our build reloads CA bundles: not one restart
    WINDOWS.append(("internode_ca", began, time.time()))


# -- through all of it ----------------------------------------------------------------------------------------------

def test_no_workflow_start_failed_through_the_rotations(apps_under_load, rotating, kubectl):
    load = apps_under_load
    load.stop()
    for name, began, ended in WINDOWS:
        print(window(load, name, began, ended))
    assert [name for name, _, _ in WINDOWS] == ["leaves", "frontend_ca", "internode_ca"]
    assert len(load.results) >= 2 * (WINDOWS[-1][2] - WINDOWS[0][1]) * 0.9  # the load really ran at 2/s
    # A failure names Temporal's status; the starter's own warnings say when and on which call.
    said = kubectl("logs", "deployment/hello-starter", "-n", rotating.namespace, check=False).stdout
    assert not load.errors, (sorted(load.errors)[:10], [line for line in said.splitlines()
                                                        if "temporal_hello_starter" in line][-20:])


# -- documentation --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind, annotations", [
    ("temporalcluster", ["temporal-mtls.dev/rotate=", "temporal-mtls.dev/rotate-ca-frontend=",
                         "temporal-mtls.dev/rotate-ca-internode="]),
    ("temporalclusterclient", ["temporal-mtls.dev/rotate="])])
def test_kubectl_explain_documents_the_rotate_annotations(kubectl, operator, kind, annotations):
    explained = " ".join(kubectl("explain", kind).stdout.split())  # kubectl wraps long lines
    assert all(a in explained for a in annotations), explained
