"""A history pod cut off from everything on the PostgreSQL topology while workflows run: the cluster's conditions
name the pod, and once it is back every workflow completes.

The cut is real: nftables rules in the node's network namespace, which routes every pod's traffic (the CNI's
point-to-point veths), drop every packet from and to the pod's IP, the way a failed link or a wrong NetworkPolicy
would; the kubelet's probes, which come from the node, fail like everyone else's connections.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import threading
import uuid

import pytest

from cluster.test_postgres import HELLO, example_spec, pods_of, start_postgres
from conftest import condition, wait_for
from temporal_mtls_operator.diagnosis import SETTLED_SECONDS

pytestmark = pytest.mark.cluster


def cut_off(node_exec, table: str, ip: str) -> None:
    """Drop every packet from and to ``ip`` in the node: routed between pods, and to and from the node itself."""
    node_exec("nft", "add", "table", "inet", table).check_returncode()
    for hook in ("forward", "input", "output"):
        node_exec("nft", "add", "chain", "inet", table, hook,
                  f"{{ type filter hook {hook} priority 0; policy accept; }}").check_returncode()
        for direction in ("saddr", "daddr"):
            node_exec("nft", "add", "rule", "inet", table, hook, "ip", direction, ip, "drop").check_returncode()


def test_a_history_pod_cut_off_is_named_and_every_workflow_completes_once_it_returns(
        temporal_cluster, kubectl, node_exec, namespace):
    start_postgres(kubectl, namespace)
    temporal = temporal_cluster(example_spec(), timeout=300)  # 2 frontend, 2 history, 1 matching, 1 worker
    kubectl("apply", "-n", namespace, "-f", "examples/namespace.yaml")
    wait_for(lambda: condition(json.loads(kubectl("get", "temporalnamespace", "default", "-n", namespace,
                                                  "-o", "json").stdout), "Ready").get("status") == "True",
             90, interval=1, what="the default namespace")
    before = [f"before-{i}" for i in range(4)]
    for workflow in before:
        wait_for(lambda: node_exec(sys.executable, HELLO, "start", workflow, env=temporal.env()).stdout.strip()
                 == "started", 60, interval=1, what=f"start of {workflow}")

    victim = pods_of(kubectl, namespace, "history")[0]
    name, ip = victim["metadata"]["name"], victim["status"]["podIP"]
    restarts = victim["status"]["containerStatuses"][0]["restartCount"]
    # The operator names a pod that is not Ready once its container has run SETTLED_SECONDS (a rollout's warm-up).
    started = dt.datetime.fromisoformat(victim["status"]["containerStatuses"][0]["state"]["running"]["startedAt"]
                                        .replace("Z", "+00:00"))
    wait_for(lambda: (dt.datetime.now(dt.timezone.utc) - started).total_seconds() > SETTLED_SECONDS, 90, interval=1,
             what=f"{name} to have run {SETTLED_SECONDS} s")

    table = f"tmo-partition-{uuid.uuid4().hex[:6]}"
    during, answers = [f"during-{i}" for i in range(3)], {}
    cut_off(node_exec, table, ip)
    try:
        wait_for(lambda: condition(temporal.get(), "Degraded").get("reason") == "PodNotReady", 40, interval=0.5,
                 what="Degraded PodNotReady")
        degraded, ready = condition(temporal.get(), "Degraded"), condition(temporal.get(), "Ready")
        assert degraded["status"] == "True" and degraded["message"].startswith(
            f"container temporal of pod {name} runs but is not Ready since "), degraded
        assert (ready["status"], ready["reason"]) == ("False", "PodNotReady"), ready
        # Starts meanwhile, each in the background (one whose shard the cut pod held waits for the shard to move).
        threads = [threading.Thread(target=lambda w=w: answers.__setitem__(w, node_exec(
            sys.executable, HELLO, "start", w, env=temporal.env(), timeout=90))) for w in during]
        for thread in threads:
            thread.start()
    finally:
        node_exec("nft", "delete", "table", "inet", table)
    for thread in threads:
        thread.join(100)
    print(f"starts during the cut: {[answers[w].stdout.strip() or answers[w].stderr[-200:] for w in during]}")

    # Back: the condition clears by itself, and every workflow, from before and during the cut, completes.
    wait_for(lambda: condition(temporal.get(), "Degraded").get("reason") == "AsExpected"
             and condition(temporal.get(), "Ready").get("status") == "True", 90, interval=1,
             what="Degraded to clear and Ready once the pod is back")
    for workflow in during:  # a start whose answer the cut lost is tried again (starting is idempotent by id)
        if answers[workflow].stdout.strip() != "started":
            wait_for(lambda: node_exec(sys.executable, HELLO, "start", workflow, env=temporal.env()).stdout.strip()
                     == "started", 60, interval=1, what=f"start of {workflow} after the cut")
    finished = node_exec(sys.executable, HELLO, "finish", *before, *during, env=temporal.env(), timeout=240)
    assert finished.stdout.count("Hello rollout!") == len(before) + len(during), finished.stderr[-600:]
    after = next(p for p in pods_of(kubectl, namespace, "history") if p["metadata"]["name"] == name)
    print(f"{name}: restarts {restarts} before the cut, {after['status']['containerStatuses'][0]['restartCount']} "
          "after")
