"""Operator high availability: the chart's two operator pods, one Lease. The leader is deleted, or frozen
(SIGSTOP), while TemporalClusters are created and an internode CA rotation runs. The standby takes over (the
failover time is printed), no certificate is issued twice, and no Secret is written by the old leader after it lost
the Lease (the API server's audit log names the writing pod in its User-Agent)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from kubernetes import client, watch

from cluster.test_metrics import scrape_address, value
from conftest import OPERATOR_NAMESPACE, condition, operator_leader, wait_for

pytestmark = pytest.mark.cluster

LEASE = "tmo-leader"
# The chart's defaults; TMO_HA_LEASE=15,10,2 (client-go's) measures other values (the release is upgraded for the module).
LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD = map(int, os.environ.get("TMO_HA_LEASE", "12,8,2").split(","))
FAILOVER_BOUND = {"delete": 2 * RETRY_PERIOD + 2.0, "sigstop": LEASE_DURATION + 2 * RETRY_PERIOD + 1}  # s; the docs
RESULTS: list[tuple[str, float, float]] = []


def operator_pods(kubectl) -> list[dict]:
    return [p for p in json.loads(kubectl("get", "pods", "-n", OPERATOR_NAMESPACE, "-l",
                                          "app.kubernetes.io/instance=tmo", "-o", "json").stdout)["items"]
            if not p["metadata"].get("deletionTimestamp")]


def ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions") or [])


def holder(kubectl) -> str:
    return kubectl("get", "lease", LEASE, "-n", OPERATOR_NAMESPACE, "-o", "jsonpath={.spec.holderIdentity}",
                   check=False).stdout.strip()


def leader_metric(node_exec, pod: dict) -> float | None:
    return value(scrape_address(node_exec, pod["status"]["podIP"], 8081), "temporal_mtls_operator_leader")


def two_ready_operators(kubectl) -> tuple[dict, dict]:
    """(leader, standby): both Ready, the Lease held by one of them."""
    def both():
        pods = operator_pods(kubectl)
        name = holder(kubectl)
        if len(pods) == 2 and all(map(ready, pods)) and name in {p["metadata"]["name"] for p in pods}:
            return sorted(pods, key=lambda p: p["metadata"]["name"] != name)
        return None
    return tuple(wait_for(both, 180, interval=1, what=lambda: f"two Ready operator pods, one holding the Lease "
                          f"(holder {holder(kubectl)!r}, pods {[p['metadata']['name'] for p in operator_pods(kubectl)]})"))


def audit_events(local_cluster) -> list[dict]:
    return [json.loads(line) for line in Path(local_cluster.audit_log).read_text().splitlines() if line.strip()]


def stamp(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class SecretHistory:
    """Every version of every Secret in a namespace, from a watch (tls.crt of each)."""

    def __init__(self, api_client, namespace: str) -> None:
        self.core, self.namespace = client.CoreV1Api(api_client), namespace
        self.versions: dict[str, list[bytes]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        version = None
        while not self._stop.is_set():
            try:
                for event in watch.Watch().stream(self.core.list_namespaced_secret, self.namespace, timeout_seconds=5,
                                                  resource_version=version):
                    obj = event["object"]
                    version = obj.metadata.resource_version
                    crt = (obj.data or {}).get("tls.crt")
                    if crt is not None:
                        seen = self.versions.setdefault(obj.metadata.name, [])
                        pem = base64.b64decode(crt)
                        if not seen or seen[-1] != pem:
                            seen.append(pem)
                    if self._stop.is_set():
                        return
            except Exception:  # noqa: BLE001 (expired resourceVersion and the like: list again)
                version = None
                time.sleep(0.2)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def assert_no_certificate_issued_twice(history: SecretHistory) -> dict[str, int]:
    """A leaf Secret holds at most one certificate per issuing CA, a CA Secret never two keys for one subject
    and period: two issuances (one by each operator) would show as two serials from the same issuer."""
    issued = {}
    for name, pems in history.versions.items():
        by_issuer: dict[str, set[int]] = {}
        for pem in pems:
            leaf = x509.load_pem_x509_certificates(pem)[0]
            by_issuer.setdefault(_issuer_key(leaf), set()).add(leaf.serial_number)
        for issuer, serials in by_issuer.items():
            assert len(serials) == 1, f"Secret {name}: {len(serials)} certificates from {issuer}"
        issued[name] = sum(map(len, by_issuer.values()))
    return issued


def _issuer_key(cert: x509.Certificate) -> str:
    """The issuing CA: its subject and key id (two CAs of one cluster share a subject across a rotation)."""
    try:
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier.hex()
    except x509.ExtensionNotFound:
        aki = "self" if cert.issuer == cert.subject else ""
    if cert.issuer == cert.subject:  # a CA certificate: one per key
        aki = cert.public_key().public_bytes(*_spki()).hex()[-40:]
    return f"{cert.issuer.rfc4514_string()} {aki}"


def _spki():
    from cryptography.hazmat.primitives import serialization
    return serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo


def new_cluster(kubectl, namespace: str, name: str) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump({
        "apiVersion": "temporal-mtls.dev/v1alpha1", "kind": "TemporalCluster", "metadata": {"name": name},
        "spec": {}}))


def get(kubectl, namespace: str, name: str) -> dict:
    return json.loads(kubectl("get", "temporalcluster", name, "-n", namespace, "-o", "json").stdout)


def ca_rotation(kubectl, namespace: str, name: str, domain: str) -> dict:
    return ((get(kubectl, namespace, name).get("status") or {}).get("caRotation") or {}).get(domain) or {}


@pytest.fixture(scope="module", autouse=True)
def lease_timing(helm, operator, kubectl):
    if (LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD) == (12, 8, 2):
        yield
        return
    chart = str(Path(__file__).resolve().parents[2] / "charts" / "temporal-mtls-operator")

    def upgrade(*values: str) -> None:
        helm("upgrade", "tmo", chart, "-n", OPERATOR_NAMESPACE, "--reuse-values", *values, "--wait", "--timeout=180s")
        kubectl("rollout", "status", "deployment/tmo", "-n", OPERATOR_NAMESPACE, "--timeout=180s")

    upgrade("--set", f"leaderElection.leaseDurationSeconds={LEASE_DURATION}",
            "--set", f"leaderElection.renewDeadlineSeconds={RENEW_DEADLINE}",
            "--set", f"leaderElection.retryPeriodSeconds={RETRY_PERIOD}")
    try:
        yield
    finally:
        upgrade("--set", "leaderElection.leaseDurationSeconds=12", "--set", "leaderElection.renewDeadlineSeconds=8",
                "--set", "leaderElection.retryPeriodSeconds=2")


def test_chart_runs_a_leader_and_a_ready_standby_that_handles_nothing(kubectl, operator, node_exec, helm):
    lead, standby = two_ready_operators(kubectl)
    assert leader_metric(node_exec, lead) == 1
    assert leader_metric(node_exec, standby) == 0
    logs = kubectl("logs", "-n", OPERATOR_NAMESPACE, standby["metadata"]["name"], "--tail=-1").stdout
    assert "standby: waiting for Lease" in logs
    assert "Handler" not in logs and "reconcile" not in logs.lower(), logs[-2000:]  # no handler has run there
    lease = json.loads(kubectl("get", "lease", LEASE, "-n", OPERATOR_NAMESPACE, "-o", "json").stdout)["spec"]
    assert lease["leaseDurationSeconds"] == LEASE_DURATION
    pdb = json.loads(kubectl("get", "pdb", "tmo", "-n", OPERATOR_NAMESPACE, "-o", "json").stdout)
    assert pdb["spec"]["minAvailable"] == 1
    wait_for(lambda: json.loads(kubectl("get", "pdb", "tmo", "-n", OPERATOR_NAMESPACE, "-o", "json").stdout)
             .get("status", {}).get("currentHealthy") == 2, 60, interval=1, what="the PDB to count two healthy pods")
    terms = lead["spec"]["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert terms[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"


@pytest.mark.parametrize("fault", ["delete", "sigstop"])
def test_the_standby_takes_over_a_lost_leader_mid_rotation_without_double_issuance_or_late_writes(
        fault, kubectl, operator, node_exec, namespace, temporal_cluster, api_client, local_cluster):
    temporal_cluster(name="demo")  # Ready, before the fault
    history = SecretHistory(api_client, namespace)
    old, standby = two_ready_operators(kubectl)
    old_name = old["metadata"]["name"]
    old_ca = base64.b64decode(json.loads(kubectl("get", "secret", "demo-internode-ca", "-n", namespace, "-o",
                                                 "json").stdout)["data"]["tls.crt"])
    frozen: list[int] = []
    try:
        # The load: a CA rotation under way, and new clusters created around the fault.
        kubectl("annotate", "temporalcluster", "demo", "-n", namespace, f"temporal-mtls.dev/rotate-ca-internode={fault}")
        wait_for(lambda: ca_rotation(kubectl, namespace, "demo", "internode").get("phase") == "TrustingNewCA", 60,
                 interval=0.1, what=lambda: f"the rotation to start: {ca_rotation(kubectl, namespace, 'demo', 'internode')}")
        new_cluster(kubectl, namespace, "before")
        time.sleep(0.3)  # the leader is in the middle of it
        began = time.time()
        if fault == "delete":
            kubectl("delete", "pod", old_name, "-n", OPERATOR_NAMESPACE, "--wait=false")
        else:
            frozen = local_cluster.container_processes(old["status"]["containerStatuses"][0]["containerID"])
            for p in frozen:
                os.kill(p, signal.SIGSTOP)
        new_cluster(kubectl, namespace, "during")
        # The standby (or, if it were slower, the Deployment's replacement pod) takes the Lease.
        new_name = wait_for(lambda: (h := holder(kubectl)) not in ("", old_name) and h, 60, interval=0.05,
                            what=lambda: f"another pod to hold the Lease (holder {holder(kubectl)!r})")
        took_over = time.time() - began
        if fault == "sigstop":  # a deleted leader's replacement pod, a standby too, may win the released Lease
            assert new_name == standby["metadata"]["name"]
        if frozen:  # woken up after losing the Lease: it must exit without a write
            time.sleep(1)
            for p in frozen:
                os.kill(p, signal.SIGCONT)
            frozen = []
        new_cluster(kubectl, namespace, "after")

        # Handling resumes: the rotation completes with the one new CA, every cluster becomes Ready.
        done = wait_for(lambda: (s := ca_rotation(kubectl, namespace, "demo", "internode")).get("phase")
                        == "Completed" and s, 300, interval=1,
                        what=lambda: f"the rotation to complete: {ca_rotation(kubectl, namespace, 'demo', 'internode')}")
        for name in ("demo", "before", "during", "after"):
            wait_for(lambda: condition(get(kubectl, namespace, name), "Ready").get("status") == "True", 300,
                     interval=1, what=f"TemporalCluster {name} Ready after the failover")
    finally:
        for p in frozen:
            os.kill(p, signal.SIGCONT)
        history.stop()

    new_ca = base64.b64decode(json.loads(kubectl("get", "secret", "demo-internode-ca", "-n", namespace, "-o",
                                                 "json").stdout)["data"]["tls.crt"])
    assert new_ca != old_ca and done["requested"] == fault
    assert [c for c in history.versions.get("demo-internode-ca-next", []) if c != old_ca] in ([new_ca], []), \
        "more than one new internode CA"
    assert {c for c in history.versions["demo-internode-ca"]} <= {old_ca, new_ca}
    issued = assert_no_certificate_issued_twice(history)

    # Who wrote which Secret when, from the API server's audit log (the User-Agent names the operator pod).
    events = audit_events(local_cluster)
    writes = [e for e in events if e.get("stage") == "ResponseComplete" and e["objectRef"].get("resource") == "secrets"
              and e["objectRef"].get("namespace") == namespace and e["responseStatus"].get("code", 500) < 400]
    old_writes = [e for e in writes if e.get("userAgent", "").startswith(f"temporal-mtls-operator/{old_name}")]
    new_writes = [e for e in writes if e.get("userAgent", "").startswith(f"temporal-mtls-operator/{new_name}")]
    lease_writes = [e for e in events if e.get("stage") == "ResponseComplete"
                    and e["objectRef"].get("resource") == "leases" and e["objectRef"].get("name") == LEASE
                    and e["responseStatus"].get("code", 500) < 400]
    acquired = min(stamp(e["stageTimestamp"]) for e in lease_writes
                   if e.get("userAgent", "").startswith(f"temporal-mtls-operator/{new_name}"))
    old_lease = [stamp(e["stageTimestamp"]) for e in lease_writes
                 if e.get("userAgent", "").startswith(f"temporal-mtls-operator/{old_name}") and stamp(e["stageTimestamp"]) < acquired]
    # Lost: released (delete) or its renew deadline passed (frozen); never later than the standby's acquisition.
    lost = min(acquired, max(old_lease) + (0 if fault == "delete" else RENEW_DEADLINE))
    late = [(e["verb"], e["objectRef"]["name"], e["stageTimestamp"]) for e in old_writes
            if stamp(e["requestReceivedTimestamp"]) >= lost]
    assert not late, f"Secrets written by {old_name} after it lost the Lease: {late}"
    assert new_writes and min(stamp(e["requestReceivedTimestamp"]) for e in new_writes) >= acquired
    first_write = min(stamp(e["requestReceivedTimestamp"]) for e in new_writes) - began

    if fault == "sigstop":  # it woke up, saw the lease gone and exited; its container restarts as a standby
        wait_for(lambda: any(p["metadata"]["name"] == old_name and p["status"]["containerStatuses"][0]["restartCount"]
                             for p in operator_pods(kubectl)), 120, interval=1, what=f"{old_name} to restart")
        previous = kubectl("logs", "-n", OPERATOR_NAMESPACE, old_name, "--previous", check=False).stdout
        said = [line for line in previous.splitlines() if "lost Lease" in line]
        print(f"\n{old_name} after SIGCONT: {said or previous[-600:] or '(no previous log kept)'}")
        assert said or previous == "", previous[-1500:]
    two_ready_operators(kubectl)  # back to a leader and a standby
    RESULTS.append((fault, took_over, first_write))
    print(f"\nfailover ({fault}): Lease taken by {'the standby' if new_name == standby['metadata']['name'] else 'the replacement pod'}"
          f" {new_name} {took_over:.1f}s after the fault, its first Secret write "
          f"{first_write:.1f}s after; {len(old_writes)} Secret writes by the old leader (none after losing the Lease "
          f"at +{lost - began:.1f}s), {len(new_writes)} by the new one; certificates per Secret: {issued}")
    assert took_over < FAILOVER_BOUND[fault], f"failover took {took_over:.1f}s"
