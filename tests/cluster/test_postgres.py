"""PostgreSQL persistence: the schema Job, separately scaled services, and internode mTLS between real pods.

PostgreSQL is Debian's postgresql-15 run by the local node as postgres:15 (examples/postgres.yaml);
temporal-sql-tool and the server are the 1.31.4 binaries `make tools` built. TLS refusals are asserted as
the alert the history pod's Go TLS stack sent, read from `openssl s_client`.
"""

from __future__ import annotations

import json
import re
import secrets
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, condition, wait_for

pytestmark = pytest.mark.cluster

HELLO = str(Path(__file__).resolve().parents[1] / "support" / "hello_workflow.py")
SERVICES = ("frontend", "history", "matching", "worker")
ALERT = re.compile(r"SSL routines:\w+:(?P<text>[^:]+):\S+:\d+:SSL alert number (?P<number>\d+)")
CERTIFICATE_REQUIRED = ("tlsv13 alert certificate required", 116)
UNKNOWN_CA = ("tlsv1 alert unknown ca", 48)


def start_postgres(kubectl, namespace: str) -> str:
    """examples/postgres.yaml with a fresh password; returns the password (never printed by the tests)."""
    password = secrets.token_urlsafe(18)
    documents = list(yaml.safe_load_all((REPO / "examples" / "postgres.yaml").read_text()))
    for document in documents:
        if document["kind"] == "Secret":
            document["stringData"]["password"] = password
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(documents))
    wait_for(lambda: kubectl("get", "pod", "postgres-0", "-n", namespace, "-o",
                             "jsonpath={.status.containerStatuses[0].ready}", check=False).stdout == "true",
             90, interval=0.5, what="postgres-0 to become ready")
    return password


def example_spec() -> dict:
    return yaml.safe_load((REPO / "examples" / "cluster-postgres.yaml").read_text())["spec"]


def pods_of(kubectl, namespace: str, component: str) -> list[dict]:
    return json.loads(kubectl("get", "pods", "-n", namespace, "-l", f"app.kubernetes.io/component={component}",
                              "-o", "json").stdout)["items"]


def s_client(node_exec, address: str, server_name: str, ca_file: Path, cert_dir: Path | None):
    command = ["openssl", "s_client", "-brief", "-connect", address, "-servername", server_name,
               "-verify_hostname", server_name, "-verify_return_error", "-CAfile", str(ca_file), "-alpn", "h2"]
    if cert_dir:
        command += ["-cert", str(cert_dir / "tls.crt"), "-key", str(cert_dir / "tls.key")]
    # Empty stdin: after the handshake s_client sends nothing and ends; a refusal arrives as the server's alert.
    return node_exec("sh", "-c", 'exec "$@" </dev/null', "sh", *command, timeout=20)


def alert(stderr: str) -> tuple[str, int] | None:
    found = ALERT.search(stderr)
    return (found["text"], int(found["number"])) if found else None


def test_scaled_cluster_on_postgres_runs_workflows_with_internode_mtls_between_pods(
        temporal_cluster, kubectl, node_exec, namespace):
    password = start_postgres(kubectl, namespace)
    temporal = temporal_cluster(example_spec(), timeout=240)
    cluster = temporal.get()
    conditions = {c["type"]: (c["status"], c["reason"]) for c in cluster["status"]["conditions"]}
    assert conditions["Ready"] == ("True", "ServerAvailable")
    assert conditions["PersistenceReady"] == ("True", "SchemaReady")
    job = cluster["status"]["persistence"]["schemaJob"]
    assert job.startswith("demo-schema-1-31-4-") and cluster["status"]["persistence"]["schemaReady"] is True

    # 2 frontend, 2 history, 1 matching, 1 worker: each service in its own pods, each pod with its own IP.
    pods = {service: pods_of(kubectl, namespace, service) for service in SERVICES}
    assert {s: len(p) for s, p in pods.items()} == {"frontend": 2, "history": 2, "matching": 1, "worker": 1}
    ips = [p["status"]["podIP"] for ps in pods.values() for p in ps]
    assert len(set(ips)) == 6, ips
    # The password is only an env secretKeyRef: not in the ConfigMap, the Deployments or the Job.
    rendered = kubectl("get", "configmap,deployments", "-n", namespace, "-o", "yaml").stdout
    assert password not in rendered and "TEMPORAL_POSTGRES_PASSWORD" in rendered

    # A re-run of the same schema Job on the now-initialised databases succeeds and changes nothing.
    original = json.loads(kubectl("get", "job", job, "-n", namespace, "-o", "json").stdout)
    template = original["spec"]["template"]
    template["metadata"]["labels"] = {"app": "schema-rerun"}
    kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "schema-rerun"},
        "spec": {"backoffLimit": 0, "template": template}}))
    wait_for(lambda: condition(json.loads(kubectl("get", "job", "schema-rerun", "-n", namespace, "-o", "json")
                                          .stdout), "Complete").get("status") == "True", 60, interval=0.5,
             what="the re-run schema Job to complete")
    rerun_log = kubectl("logs", "job/schema-rerun", "-n", namespace).stdout
    assert "found zero updates from current version" in rerun_log and "schemas ready" in rerun_log
    assert password not in rerun_log

    # Internode mTLS on a history pod's own IP: the internode certificate is accepted, none or a
    # frontend-CA client certificate is refused by the server with its TLS alert.
    internode = temporal.save_secret("demo-internode-tls", temporal.cert_dir / "internode")
    history_ip = pods["history"][0]["status"]["podIP"]
    probe = dict(address=f"{history_ip}:7234", server_name=f"demo-internode.{namespace}.svc",
                 ca_file=internode / "ca.crt")
    accepted = s_client(node_exec, **probe, cert_dir=internode)
    assert accepted.returncode == 0 and "Verification: OK" in accepted.stderr and alert(accepted.stderr) is None, \
        accepted.stderr
    assert alert(s_client(node_exec, **probe, cert_dir=None).stderr) == CERTIFICATE_REQUIRED
    frontend_client = temporal.cert_dir / "operator"  # signed by the frontend CA: the other trust domain
    assert alert(s_client(node_exec, **probe, cert_dir=frontend_client).stderr) == UNKNOWN_CA

    # Workflows through the frontend Service survive losing a history pod (its shards move to the other).
    kubectl("apply", "-n", namespace, "-f", str(REPO / "examples" / "namespace.yaml"))
    wait_for(lambda: condition(json.loads(kubectl("get", "temporalnamespace", "default", "-n", namespace,
                                                  "-o", "json").stdout), "Ready").get("status") == "True",
             90, interval=1, what="the default namespace")
    ids = [f"pg-{i}" for i in range(4)]
    for workflow_id in ids:
        attempts = []
        wait_for(lambda: (r := node_exec(sys.executable, HELLO, "start", workflow_id, env=temporal.env()))
                 .returncode == 0 or attempts.append(r.stderr[-400:]), 60, interval=1,
                 what=lambda: f"workflow {workflow_id} to start; last error: {attempts[-1:]}")
    kubectl("delete", "pod", pods["history"][0]["metadata"]["name"], "-n", namespace, "--wait=false")
    for workflow_id in ids:
        finished = wait_for(lambda: (r := node_exec(sys.executable, HELLO, "finish", workflow_id, env=temporal.env(),
                                                    timeout=120)).returncode == 0 and r, 120, interval=2,
                            what=f"workflow {workflow_id} to complete after a history pod was deleted")
        assert finished.stdout.strip().endswith("Hello rollout!")

    # Starts through the frontend Service keep succeeding while one frontend pod goes (2 replicas, PDB, probes).
    failures = []
    for i in range(30):
        if i == 5:
            kubectl("delete", "pod", pods["frontend"][0]["metadata"]["name"], "-n", namespace, "--wait=false")
        started = temporal.cli("workflow", "start", "--namespace", "default", "--type", "GreetingWorkflow",
                               "--task-queue", "frontend-failover", "--workflow-id", f"failover-{i}")
        if started.returncode != 0:
            failures.append(started.stderr[-300:])
    assert failures == []

    # Another server image (the same binary under its docker.io name, as a version bump would): a new schema
    # Job runs update-schema first, and only then do the Deployments roll to the new image.
    kubectl("patch", "temporalcluster", "demo", "-n", namespace, "--type=merge",
            "-p", '{"spec": {"image": "docker.io/temporalio/server:1.31.4"}}')
    bumped = wait_for(lambda: (c := temporal.get())["status"].get("persistence", {}).get("schemaJob") != job
                      and condition(c, "Ready").get("status") == "True" and c, 180, interval=1,
                      what="the new schema Job and the rollout to the new image")
    new_job = json.loads(kubectl("get", "job", bumped["status"]["persistence"]["schemaJob"], "-n", namespace,
                                 "-o", "json").stdout)
    assert "schemas ready" in kubectl("logs", f"job/{new_job['metadata']['name']}", "-n", namespace).stdout
    new_pods = [p for service in SERVICES for p in pods_of(kubectl, namespace, service)
                if p["spec"]["containers"][0]["image"] == "docker.io/temporalio/server:1.31.4"]
    assert len(new_pods) == 6
    assert all(p["metadata"]["creationTimestamp"] >= new_job["status"]["completionTime"] for p in new_pods)


def test_unreachable_database_gets_a_condition_an_event_and_no_server_pod(kubectl, namespace, operator):
    kubectl("create", "secret", "generic", "pg", "-n", namespace, "--from-literal=password=irrelevant")
    spec = {**example_spec(), "persistence": {"postgresql": {
        # Nothing listens on port 1 of the Job pod's own loopback: refused at once, each attempt fails fast.
        "host": "127.0.0.1", "port": 1, "user": "temporal", "passwordSecretRef": {"name": "pg", "key": "password"}}}}
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump({
        "apiVersion": "temporal-mtls.dev/v1alpha1", "kind": "TemporalCluster", "metadata": {"name": "demo"},
        "spec": spec}))
    persistence = wait_for(lambda: (c := condition(json.loads(kubectl(
        "get", "temporalcluster", "demo", "-n", namespace, "-o", "json").stdout), "PersistenceReady"))
        .get("reason") == "SchemaJobFailing" and c, 120, interval=1, what="PersistenceReady=False/SchemaJobFailing")
    assert persistence["status"] == "False" and "failed attempt(s), retrying with backoff" in persistence["message"]
    cluster = json.loads(kubectl("get", "temporalcluster", "demo", "-n", namespace, "-o", "json").stdout)
    ready = condition(cluster, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "SchemaJobFailing")
    assert condition(cluster, "Degraded")["status"] == "True"
    # The Job retries with the Job controller's backoff; the condition counts the attempts.
    wait_for(lambda: int(re.search(r"(\d+) (?:failed )?attempt", condition(json.loads(kubectl(
        "get", "temporalcluster", "demo", "-n", namespace, "-o", "json").stdout), "PersistenceReady")
        ["message"])[1]) >= 2, 60, interval=1, what="a second failed attempt of the schema Job")
    wait_for(lambda: [e for e in json.loads(kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
                      if e["reason"] == "SchemaJobFailing" and e["involvedObject"]["kind"] == "TemporalCluster"],
             30, what="a SchemaJobFailing Event")
    # Nothing of the server exists: no Deployment, so no pod can start against a missing schema.
    deployments = json.loads(kubectl("get", "deployments", "-n", namespace, "-o", "json").stdout)["items"]
    assert deployments == []
    assert all(not pods_of(kubectl, namespace, service) for service in SERVICES)
