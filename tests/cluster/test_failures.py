"""What keeps a cluster's pods from running reaches the TemporalCluster: the exact reason, the object, Degraded=True,
one Warning Event per cause, and the condition clears by itself once the cause is fixed (issue 22, item 1).

Each test has its own namespace. The local node reports an image it cannot run, a missing Secret and a crash loop
with a kubelet's waiting reasons (ErrImagePull/ImagePullBackOff, CreateContainerConfigError, CrashLoopBackOff); the
real kube-scheduler says Unschedulable.
"""

from __future__ import annotations

import json
import re
import time

import pytest
import yaml

from conftest import OPERATOR_NAMESPACE, condition, wait_for
from localkube import images_build
from temporal_mtls_operator.models.cluster import DEFAULT_VERSION

from .test_postgres import example_spec, start_postgres

pytestmark = pytest.mark.cluster


def apply_cluster(kubectl, namespace: str, spec: dict, name: str = "demo") -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump({
        "apiVersion": "temporal-mtls.dev/v1alpha1", "kind": "TemporalCluster", "metadata": {"name": name},
        "spec": spec}))


def get_cluster(kubectl, namespace: str, name: str = "demo") -> dict:
    return json.loads(kubectl("get", "temporalcluster", name, "-n", namespace, "-o", "json").stdout)


def wait_reason(kubectl, namespace: str, kind: str, reason: str, timeout: float = 180, name: str = "demo") -> dict:
    """The cluster's ``kind`` condition once its reason is ``reason``."""
    seen = {}

    def reached():
        seen["now"] = condition(get_cluster(kubectl, namespace, name), kind)
        return seen["now"] if seen["now"].get("reason") == reason else None

    return wait_for(reached, timeout, interval=1, what=lambda: (
        f"{kind} reason {reason} (now {seen.get('now')}); operator log: "
        + kubectl("logs", "deployment/tmo", "-n", OPERATOR_NAMESPACE, "--tail=15", check=False).stdout))


def warnings(kubectl, namespace: str, reason: str, name: str = "demo") -> list[dict]:
    return [e for e in json.loads(kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
            if e["reason"] == reason and e["involvedObject"].get("kind") == "TemporalCluster"
            and e["involvedObject"]["name"] == name and e["type"] == "Warning"]


def assert_named(kubectl, namespace: str, reason: str, *words: str, name: str = "demo",
                 ready: str = "False") -> dict:
    """Ready (unless the servers still serve) and Degraded carry ``reason`` and a message naming ``words``; one
    Warning Event says the same; it stays one over the next upkeep passes."""
    cluster = get_cluster(kubectl, namespace, name)
    degraded = condition(cluster, "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", reason), degraded
    for word in words:
        assert word in degraded["message"], (word, degraded["message"])
    if ready == "False":
        assert (condition(cluster, "Ready")["status"], condition(cluster, "Ready")["reason"]) == ("False", reason)
    def naming():
        return [e for e in warnings(kubectl, namespace, reason, name) if all(word in e["message"] for word in words)]

    wait_for(naming, 30, what=lambda: f"a Warning Event {reason} naming {words}: "
                                      f"{[e['message'] for e in warnings(kubectl, namespace, reason, name)]}")
    time.sleep(25)  # an upkeep pass (every 20 s while not Ready) and the rollout events: no second Event
    assert len(naming()) == 1, [e["message"] for e in naming()]
    return degraded


def wait_ready(kubectl, namespace: str, timeout: float = 240, name: str = "demo") -> dict:
    wait_reason(kubectl, namespace, "Ready", "ServerAvailable", timeout, name)
    cluster = get_cluster(kubectl, namespace, name)
    assert (condition(cluster, "Degraded")["status"], condition(cluster, "Degraded")["reason"]) == (
        "False", "AsExpected")
    return cluster


def test_an_image_that_does_not_exist_is_named_until_the_version_is_fixed(kubectl, namespace, operator):
    # The version picks two images; the pod's init container (admin-tools' health probe) is pulled first, as a
    # kubelet does, so that one is named (the server image ghcr.io/...:9.9.9 would be next).
    image = "temporalio/admin-tools:9.9.9"
    apply_cluster(kubectl, namespace, {"version": "9.9.9"})
    ready = wait_reason(kubectl, namespace, "Ready", "ImagePullFailed", 120)
    assert f"image {image} of init container health-probe of pod demo-server-" in ready["message"], ready["message"]
    assert_named(kubectl, namespace, "ImagePullFailed", f"image {image}", "pod demo-server-")
    # The servers never ran 9.9.9 (no status.version yet): correcting it is no downgrade, the CRD takes it.

    kubectl("patch", "temporalcluster", "demo", "-n", namespace, "--type=merge",
            "-p", json.dumps({"spec": {"version": DEFAULT_VERSION}}))
    wait_ready(kubectl, namespace)


def test_a_web_ui_whose_image_cannot_be_pulled_degrades_a_serving_cluster_until_fixed(kubectl, namespace, operator):
    apply_cluster(kubectl, namespace, {"ui": {"version": "9.9.9"}})
    degraded = wait_reason(kubectl, namespace, "Degraded", "ImagePullFailed", 180)
    assert "image temporalio/ui:9.9.9 of container ui of pod demo-ui-" in degraded["message"], degraded["message"]
    wait_reason(kubectl, namespace, "Ready", "ServerAvailable", 180)  # the server serves: only the UI is down
    assert_named(kubectl, namespace, "ImagePullFailed", "image temporalio/ui:9.9.9", "pod demo-ui-", ready="True")

    apply_cluster(kubectl, namespace, {"ui": {}})
    wait_for(lambda: condition(get_cluster(kubectl, namespace), "Degraded").get("reason") == "AsExpected", 180,
             interval=1, what="Degraded=False once the UI runs")
    wait_ready(kubectl, namespace)


def test_a_missing_database_password_secret_is_named_before_the_schema_job_exists(kubectl, namespace, operator):
    spec = example_spec()
    spec["persistence"]["postgresql"]["passwordSecretRef"] = {"name": "temporal-db", "key": "password"}
    spec["services"] = {name: {"replicas": 1} for name in ("frontend", "history", "matching", "worker")}
    apply_cluster(kubectl, namespace, spec)
    ready = wait_reason(kubectl, namespace, "Ready", "SecretNotFound", 90)
    expected = (f"Secret temporal-db does not exist in namespace {namespace} "
                "(persistence.postgresql.passwordSecretRef): the schema Job and the server pods need it")
    assert ready["message"].startswith(expected), ready["message"]
    assert condition(get_cluster(kubectl, namespace), "PersistenceReady")["reason"] == "SecretNotFound"
    assert_named(kubectl, namespace, "SecretNotFound", "Secret temporal-db", "passwordSecretRef")
    assert kubectl("get", "jobs,deployments", "-n", namespace, "-o", "name").stdout.strip() == ""

    # The fix: the database and the Secret the spec names; nothing else changes.
    password = start_postgres(kubectl, namespace)
    kubectl("create", "secret", "generic", "temporal-db", "-n", namespace, f"--from-literal=password={password}")
    wait_ready(kubectl, namespace, 300)


def test_a_schema_job_whose_image_cannot_be_pulled_is_named_until_the_image_is_fixed(kubectl, namespace, operator):
    kubectl("create", "secret", "generic", "pg", "-n", namespace, "--from-literal=password=irrelevant")
    image = "ghcr.io/temporal-mtls-operator/no-such-admin-tools:1.31.4"
    # Nothing listens on port 1: once its image is right, the Job fails fast (its own reason, SchemaJobFailing).
    postgresql = {"host": "127.0.0.1", "port": 1, "user": "temporal", "schemaImage": image,
                  "passwordSecretRef": {"name": "pg", "key": "password"}}
    apply_cluster(kubectl, namespace, {**example_spec(), "persistence": {"postgresql": postgresql}})
    persistence = wait_reason(kubectl, namespace, "PersistenceReady", "ImagePullFailed", 120)
    assert f"image {image} of container schema of pod demo-schema-{DEFAULT_VERSION.replace('.', '-')}-" in \
        persistence["message"], persistence["message"]
    assert_named(kubectl, namespace, "ImagePullFailed", f"image {image}", "pod demo-schema-")

    del postgresql["schemaImage"]
    apply_cluster(kubectl, namespace, {**example_spec(), "persistence": {"postgresql": postgresql}})
    wait_reason(kubectl, namespace, "PersistenceReady", "SchemaJobFailing", 120)
    degraded = condition(get_cluster(kubectl, namespace), "Degraded")
    assert degraded["reason"] == "SchemaJobFailing", degraded  # the Job runs now: the database is what fails


def test_a_schema_job_the_quota_refuses_a_pod_is_named_until_the_quota_allows_it(kubectl, namespace, operator):
    kubectl("create", "secret", "generic", "pg", "-n", namespace, "--from-literal=password=irrelevant")
    kubectl("create", "quota", "no-pods", "-n", namespace, "--hard=pods=0")
    postgresql = {"host": "127.0.0.1", "port": 1, "user": "temporal",
                  "passwordSecretRef": {"name": "pg", "key": "password"}}
    apply_cluster(kubectl, namespace, {**example_spec(), "persistence": {"postgresql": postgresql}})
    persistence = wait_reason(kubectl, namespace, "PersistenceReady", "SchemaJobCannotStart", 120)
    assert persistence["message"].startswith(f"schema Job demo-schema-{DEFAULT_VERSION.replace('.', '-')}-")
    assert "exceeded quota: no-pods" in persistence["message"], persistence["message"]
    assert_named(kubectl, namespace, "SchemaJobCannotStart", "schema Job demo-schema-", "exceeded quota")

    kubectl("delete", "quota", "no-pods", "-n", namespace)
    wait_reason(kubectl, namespace, "PersistenceReady", "SchemaJobFailing", 180)  # its pod runs (port 1: refused)


def test_a_server_that_keeps_exiting_is_a_crash_loop_with_its_last_exit(kubectl, namespace, operator):
    # An image without temporal-server: its container exits at once, again and again (the node runs it with runc).
    image = images_build.image_refs()["worker"]
    if not images_build.inspect(image):
        pytest.skip(f"{image} is not in local image storage (make images): the node would map it to a program")
    apply_cluster(kubectl, namespace, {"image": image})
    ready = wait_reason(kubectl, namespace, "Ready", "CrashLoopBackOff", 150)
    assert "container temporal of pod demo-server-" in ready["message"], ready["message"]
    # The local node says Error; a kubelet says StartError (exit code 128) for a command the image does not have.
    assert re.search(r"last exit: (Error|StartError), exit code \d+", ready["message"]), ready["message"]
    assert "temporal-server" in ready["message"].split("last exit:")[1], ready["message"]  # the runtime's own words
    assert_named(kubectl, namespace, "CrashLoopBackOff", "container temporal of pod demo-server-", "last exit")

    kubectl("patch", "temporalcluster", "demo", "-n", namespace, "--type=json",
            "-p", json.dumps([{"op": "remove", "path": "/spec/image"}]))
    wait_ready(kubectl, namespace)


def test_a_pod_no_node_can_take_is_unschedulable_with_the_schedulers_words(kubectl, namespace, operator):
    # Containers without requests get the namespace's defaults: more CPU than the node has.
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump({
        "apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "huge"},
        "spec": {"limits": [{"type": "Container", "defaultRequest": {"cpu": "512"}}]}}))
    apply_cluster(kubectl, namespace, {})
    ready = wait_reason(kubectl, namespace, "Ready", "Unschedulable", 120)
    assert "pod demo-server-" in ready["message"] and "Insufficient cpu" in ready["message"], ready["message"]
    assert_named(kubectl, namespace, "Unschedulable", "pod demo-server-", "Insufficient cpu")

    kubectl("delete", "limitrange", "huge", "-n", namespace)
    kubectl("delete", "pod", "-n", namespace, "-l", "app.kubernetes.io/instance=demo,app.kubernetes.io/component=server")
    wait_ready(kubectl, namespace)


@pytest.mark.parametrize("name, spec, message", [
    ("a" * 57, {}, "metadata.name: at most 50 characters, because the certificate the operator issues to the system "
                   "worker has CN <name>-system-worker and a CN is at most 64 bytes"),
    ("a" * 46, {"persistence": {"postgresql": {"host": "db", "user": "t",
                                               "passwordSecretRef": {"name": "pg", "key": "password"}}}},
     "at most 45 characters with persistence.postgresql, because the Service <name>-matching-headless"),
    ("a" * 41, {"persistence": {"postgresql": {"host": "db", "user": "t",
                                               "passwordSecretRef": {"name": "pg", "key": "password"}}}},
     "metadata.name and spec.version: at most 46 characters together with persistence.postgresql"),
])
def test_a_name_too_long_for_what_the_operator_derives_is_refused_saying_the_limit(kubectl, namespace, operator,
                                                                                   name, spec, message):
    rejected = kubectl("apply", "-n", namespace, "-f", "-", check=False, input=yaml.safe_dump({
        "apiVersion": "temporal-mtls.dev/v1alpha1", "kind": "TemporalCluster", "metadata": {"name": name},
        "spec": spec}))
    assert rejected.returncode != 0
    assert message in " ".join(rejected.stderr.split()), rejected.stderr
