"""Temporal upgrades: 1.31.4 to 1.32.2 on PostgreSQL, one service after another, with workflows in flight and an
operator killed in the middle; the CRD refusing a skipped minor or a downgrade.

The two versions are our server build against each Temporal release (make tools, make images), the schema Job runs
each version's own temporal-sql-tool (temporalio/admin-tools:<version>).
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time

import pytest

from conftest import OPERATOR_NAMESPACE, condition, operator_leader, wait_for
from cluster.test_postgres import HELLO, example_spec, pods_of, start_postgres

pytestmark = pytest.mark.cluster

OLD, NEW = "1.31.4", "1.32.2"
ORDER = ("history", "matching", "frontend", "worker")
MID_UPGRADE = ("UpgradingMatching", "UpgradingFrontend", "UpgradingWorker")  # history is done, the rest is not


def patch_version(kubectl, namespace: str, version: str, *extra: str, check: bool = True):
    return kubectl("patch", "temporalcluster", "demo", "-n", namespace, "--type=merge", *extra, "-p",
                   json.dumps({"spec": {"version": version}}), check=check)


def test_the_crd_refuses_a_skipped_minor_and_a_downgrade(kubectl, namespace, operator):
    """Server-side dry runs against the real API server: its CEL transition rule, with the message it gives. The
    rule measures from status.version, what the servers run."""
    kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps({
        "apiVersion": "temporal-mtls.dev/v1alpha1", "kind": "TemporalCluster", "metadata": {"name": "demo"},
        "spec": {"version": OLD}}))
    wait_for(lambda: (json.loads(kubectl("get", "temporalcluster", "demo", "-n", namespace, "-o", "json").stdout)
                      .get("status") or {}).get("version") == OLD, 180, interval=1, what="status.version")
    refusal = ("spec.version {to} is refused: the servers run 1.31.4, and Temporal upgrades one minor version at a "
               "time and never down, so it may be a later patch of that minor or a patch of the next one")
    for version in ("1.33.0", "1.31.3", "1.30.9", "2.0.0"):
        result = patch_version(kubectl, namespace, version, "--dry-run=server", check=False)
        assert result.returncode != 0 and refusal.format(to=version) in result.stderr, result.stderr
    for version in ("1.31.5", NEW):
        assert patch_version(kubectl, namespace, version, "--dry-run=server").returncode == 0
    # A second bump is measured from what runs too: 1.32 -> 1.33 is refused while the servers still run 1.31.
    patch_version(kubectl, namespace, NEW)
    result = patch_version(kubectl, namespace, "1.33.0", "--dry-run=server", check=False)
    assert result.returncode != 0 and refusal.format(to="1.33.0") in result.stderr, result.stderr


def operator_pods(kubectl) -> list[str]:
    return kubectl("get", "pods", "-n", OPERATOR_NAMESPACE, "-l", "app.kubernetes.io/name=temporal-mtls-operator",
                   "-o", "jsonpath={.items[*].metadata.name}").stdout.split()


def deployment_times(kubectl, namespace: str) -> dict[str, tuple[dt.datetime, dt.datetime]]:
    """Per service: when its 1.32.2 ReplicaSet was made (the Deployment took the new version), and when the
    Deployment last reported its new ReplicaSet available (the rollout completed)."""
    stamp = lambda text: dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")
    replica_sets = json.loads(kubectl("get", "replicasets", "-n", namespace, "-o", "json").stdout)["items"]
    times = {}
    for service in ORDER:
        new = [r for r in replica_sets if r["metadata"]["name"].startswith(f"demo-{service}-")
               and r["spec"]["template"]["spec"]["containers"][0]["image"].endswith(f":{NEW}")]
        deployment = json.loads(kubectl("get", "deployment", f"demo-{service}", "-n", namespace, "-o",
                                        "json").stdout)
        available = next(c for c in deployment["status"]["conditions"] if c["type"] == "Progressing")
        assert len(new) == 1 and available["reason"] == "NewReplicaSetAvailable", (service, available)
        times[service] = (stamp(new[0]["metadata"]["creationTimestamp"]), stamp(available["lastUpdateTime"]))
    return times


def test_an_upgrade_rolls_one_service_after_another_and_survives_the_operator(
        temporal_cluster, kubectl, node_exec, namespace):
    start_postgres(kubectl, namespace)
    temporal = temporal_cluster({**example_spec(), "version": OLD}, timeout=300)  # 2/2/1/1 pods
    kubectl("apply", "-n", namespace, "-f", "examples/namespace.yaml")
    wait_for(lambda: condition(json.loads(kubectl("get", "temporalnamespace", "default", "-n", namespace,
                                                  "-o", "json").stdout), "Ready").get("status") == "True",
             90, interval=1, what="the default namespace")
    wait_for(lambda: temporal.get()["status"].get("version") == OLD, 60, interval=1, what="status.version")
    # Workflows in flight across the upgrade: started now, completed by a worker only after it.
    before = [f"before-{i}" for i in range(3)]
    for workflow in before:
        wait_for(lambda: node_exec(sys.executable, HELLO, "start", workflow, env=temporal.env()).stdout.strip()
                 == "started", 60, interval=1, what=f"start of {workflow}")

    patch_version(kubectl, namespace, NEW)
    reasons, failures, started, killed, began = [], [], [], False, time.monotonic()
    while (status := temporal.get()["status"]).get("version") != NEW:
        assert time.monotonic() - began < 600, f"the upgrade did not complete: {status.get('upgrade')}"
        progressing = condition(temporal.get(), "Progressing")
        if progressing.get("reason", "").startswith("Upgrading") and progressing["reason"] not in reasons:
            reasons.append(progressing["reason"])
        if progressing.get("reason") in MID_UPGRADE and not killed:
            # Every operator pod at once, in the middle (matching's step, or a later one when matching rolled out
            # between two polls): the new leader carries on from the Deployments. Killed, not
            # deleted gracefully: a kubelet gives a deleted pod its grace period, in which the old leader could
            # finish the upgrade itself.
            killed = operator_pods(kubectl)
            kubectl("delete", "pod", "-n", OPERATOR_NAMESPACE, *killed, "--grace-period=0", "--force", "--wait=false")
        started.append(f"during-{len(started)}")
        result = node_exec(sys.executable, HELLO, "start", started[-1], env=temporal.env(), timeout=60)
        if result.stdout.strip() != "started":
            failures.append((result.returncode, result.stderr[-300:]))
    print(f"upgrade {OLD} to {NEW}: {time.monotonic() - began:.0f} s, {len(started)} starts during it, "
          f"{len(failures)} failed; steps seen: {reasons}; record: {status['upgrade']}")
    assert failures == []
    assert killed, "the upgrade ended before matching's step was seen: the operator was never killed mid-upgrade"
    assert operator_leader(kubectl)["metadata"]["name"] not in killed  # finished by a pod started after the kill
    # The steps in order (a step shorter than one poll may go unseen, never one out of order).
    expected = ["UpgradingSchema", "UpgradingHistory", "UpgradingMatching", "UpgradingFrontend", "UpgradingWorker"]
    assert reasons == [r for r in expected if r in reasons]
    assert status["upgrade"]["from"] == OLD and status["upgrade"]["to"] == NEW
    assert status["upgrade"]["step"] == "Completed" and status["upgrade"]["completedAt"] >= status["upgrade"]["startedAt"]
    assert status["persistence"]["schemaJob"].startswith("demo-schema-1-32-2-")
    events = json.loads(kubectl("get", "events", "-n", namespace, "--field-selector",
                                "involvedObject.kind=TemporalCluster,involvedObject.name=demo", "-o", "json").stdout)
    announced = {e["reason"]: e["message"] for e in events["items"] if e["type"] == "Normal"}
    assert set(expected) <= set(announced), announced  # one Normal Event as each step began
    assert announced["UpgradingFrontend"] == "1.31.4 to 1.32.2: history, matching done; frontend rolling out"

    # Each service took the new version only once the one before had rolled out.
    times = deployment_times(kubectl, namespace)
    for earlier, later in zip(ORDER, ORDER[1:]):
        assert times[later][0] >= times[earlier][1], (earlier, later, times)
    for service in ORDER:  # an old pod may still be terminating (its grace period): it serves no more
        for pod in pods_of(kubectl, namespace, service):
            if not pod["metadata"].get("deletionTimestamp"):
                assert pod["spec"]["containers"][0]["image"] == f"ghcr.io/temporal-mtls-operator/temporal-server:{NEW}"
    wait_for(lambda: condition(temporal.get(), "Ready").get("status") == "True", 60, interval=1, what="Ready")
    assert condition(temporal.get(), "Progressing")["reason"] == "RolloutComplete"

    # Every workflow started before and during the upgrade completes on the upgraded servers.
    finished = node_exec(sys.executable, HELLO, "finish", *before, *started, env=temporal.env(), timeout=240)
    assert finished.stdout.count("Hello rollout!") == len(before) + len(started), finished.stderr[-600:]
    version = temporal.cli("operator", "cluster", "system")
    assert version.returncode == 0 and NEW in version.stdout, version.stdout + version.stderr


@pytest.mark.parametrize("image, authorization", [("ghcr.io/temporal-mtls-operator/temporal-server", True),
                                                  ("temporalio/server", False)], ids=["ours", "stock"])
def test_sqlite_upgrades_its_one_pod_and_keeps_its_workflows(temporal_cluster, kubectl, node_exec, namespace, image,
                                                             authorization):
    """SQLite's one pod (Recreate) takes the new version after the same rule; its data outlives the restart. Our
    server build, and the stock temporalio/server (authorization off)."""
    temporal = temporal_cluster({"version": OLD, "authorization": {"enabled": authorization}})
    kubectl("apply", "-n", namespace, "-f", "examples/namespace.yaml")
    wait_for(lambda: node_exec(sys.executable, HELLO, "start", "before", env=temporal.env()).stdout.strip()
             == "started", 90, interval=1, what="a start before the upgrade")
    patch_version(kubectl, namespace, NEW)
    wait_for(lambda: condition(temporal.get(), "Progressing").get("reason") == "UpgradingServer", 60, interval=0.5,
             what="Progressing UpgradingServer")
    wait_for(lambda: temporal.get()["status"].get("version") == NEW, 180, interval=1, what="status.version 1.32.2")
    status = temporal.get()["status"]
    assert status["upgrade"]["step"] == "Completed" and (status["upgrade"]["from"], status["upgrade"]["to"]) == (OLD, NEW)
    running = [p for p in pods_of(kubectl, namespace, "server") if not p["metadata"].get("deletionTimestamp")]
    assert [p["spec"]["containers"][0]["image"] for p in running] == [f"{image}:{NEW}"]
    finished = node_exec(sys.executable, HELLO, "finish", "before", env=temporal.env(), timeout=120)
    assert finished.stdout.count("Hello rollout!") == 1, finished.stderr[-600:]  # (the SDK may log a warning)
