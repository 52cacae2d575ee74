"""PostgreSQL persistence: the schema Job, separately scaled services, and internode mTLS between real pods.

PostgreSQL is Debian's postgresql-15 run by the local node as postgres:15 (examples/postgres.yaml);
temporal-sql-tool and the server are the 1.31.4 binaries `make tools` built; the scaled cluster starts on databases
that tool left at older schema versions. TLS refusals are asserted as the alert the history pod's Go TLS stack
sent, read from `openssl s_client`; leaf and internode CA rotation run on separate pods here too.
"""

from __future__ import annotations

import base64
import datetime
import json
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cluster.test_metrics import scrape_address
from conftest import REPO, condition, wait_for
from localkube.toolchain import path_of
from temporal_mtls_operator import certs

pytestmark = pytest.mark.cluster

HELLO = str(Path(__file__).resolve().parents[1] / "support" / "hello_workflow.py")
SERVICES = ("frontend", "history", "matching", "worker")
SERVICES_GRPC = {"history": 7234, "matching": 7235, "worker": 7239}  # internode gRPC
ALERT = re.compile(r"SSL routines:\w+:(?P<text>[^:]+):\S+:\d+:SSL alert number (?P<number>\d+)")
CERTIFICATE_REQUIRED = ("tlsv13 alert certificate required", 116)
UNKNOWN_CA = ("tlsv1 alert unknown ca", 48)
# An older Temporal's schemas, five versioned updates behind on each database: the scaled cluster starts on them.
AGED = {"temporal": ("temporal", "1.14"), "temporal_visibility": ("visibility", "1.9")}


def start_postgres(kubectl, namespace: str, tls_secret: str | None = None) -> str:
    """examples/postgres.yaml with a fresh password; returns the password (never printed by the tests).

    With ``tls_secret`` (a kubernetes.io/tls Secret) the server speaks TLS, the official image's way (``-c ssl=on
    ...``), and its pg_hba accepts only ``hostssl``: a connection without TLS is refused.
    """
    password = secrets.token_urlsafe(18)
    documents = list(yaml.safe_load_all((REPO / "examples" / "postgres.yaml").read_text()))
    for document in documents:
        if document["kind"] == "Secret":
            document["stringData"]["password"] = password
        if document["kind"] == "StatefulSet" and tls_secret:
            pod = document["spec"]["template"]["spec"]
            pod["containers"][0]["args"] += [
                "-c", "ssl=on", "-c", "ssl_cert_file=/etc/postgres-tls/tls.crt",
                "-c", "ssl_key_file=/etc/postgres-tls/tls.key", "-c", "hba_file=/etc/postgres-hba/pg_hba.conf"]
            pod["containers"][0]["volumeMounts"] += [{"name": "tls", "mountPath": "/etc/postgres-tls"},
                                                      {"name": "hba", "mountPath": "/etc/postgres-hba"}]
            # postgres takes a key owned by root only with mode 0640 or less; fsGroup 999 lets it read.
            pod["volumes"] += [{"name": "tls", "secret": {"secretName": tls_secret, "defaultMode": 0o640}},
                               {"name": "hba", "configMap": {"name": "postgres-hba"}}]
    if tls_secret:
        kubectl("create", "configmap", "postgres-hba", "-n", namespace,
                "--from-literal=pg_hba.conf=hostssl all all all scram-sha-256\n")
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(documents))
    wait_for(lambda: kubectl("get", "pod", "postgres-0", "-n", namespace, "-o",
                             "jsonpath={.status.containerStatuses[0].ready}", check=False).stdout == "true",
             90, interval=0.5, what="postgres-0 to become ready")
    return password


def ca_and_leaf(directory: Path, prefix: str, dns_names: list[str]) -> None:
    """``{prefix}-ca.crt`` and a server certificate ``{prefix}.crt``/``{prefix}.key`` it signed for ``dns_names``."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{prefix} test CA")])

    def build(subject, public_key, extensions):
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_name).public_key(public_key)
                   .serial_number(x509.random_serial_number()).not_valid_before(now)
                   .not_valid_after(now + datetime.timedelta(hours=1)))
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical)
        return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)

    (directory / f"{prefix}-ca.crt").write_bytes(build(ca_name, ca_key.public_key(), [
        (x509.BasicConstraints(ca=True, path_length=None), True)]))
    (directory / f"{prefix}.crt").write_bytes(build(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_names[0])]), key.public_key(),
        [(x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]), False)]))
    (directory / f"{prefix}.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


def example_spec() -> dict:
    return yaml.safe_load((REPO / "examples" / "cluster-postgres.yaml").read_text())["spec"]


def pods_of(kubectl, namespace: str, component: str) -> list[dict]:
    return json.loads(kubectl("get", "pods", "-n", namespace, "-l", f"app.kubernetes.io/component={component}",
                              "-o", "json").stdout)["items"]


def s_client(node_exec, address: str, server_name: str, ca_file: Path, cert_dir: Path | None):
    """The server's verdict on our certificate: with TLS 1.3 it comes after the client's handshake ends, as an alert
    (refused) or the gRPC server's HTTP/2 SETTINGS on stdout (taken). ``-ign_eof`` reads on until one arrives (with
    an empty stdin s_client could end before a busy server answered, a refusal then looked like a connection); the
    bogus greeting makes a server that took us close the connection."""
    command = ["openssl", "s_client", "-brief", "-ign_eof", "-connect", address, "-servername", server_name,
               "-verify_hostname", server_name, "-verify_return_error", "-CAfile", str(ca_file), "-alpn", "h2"]
    if cert_dir:
        command += ["-cert", str(cert_dir / "tls.crt"), "-key", str(cert_dir / "tls.key")]
    try:
        return node_exec("sh", "-c", 'printf "%s\\n" not-an-http2-client-preface-at-all | "$@"', "sh", *command,
                         timeout=20)
    except subprocess.TimeoutExpired:  # a port that took the TCP connection but no handshake yet: no verdict
        return subprocess.CompletedProcess(command, 124, "", "no answer within 20 s")


def taken(result) -> bool:
    """The server verified itself (our CA file) and took our certificate: its HTTP/2 bytes came, no alert."""
    return "Verification: OK" in result.stderr and alert(result.stderr) is None and result.stdout != ""


def alert(stderr: str) -> tuple[str, int] | None:
    found = ALERT.search(stderr)
    return (found["text"], int(found["number"])) if found else None


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def versioned_dir(schema: str) -> Path:
    """temporal-sql-tool's versioned updates of ``schema`` (temporal, visibility), as its tool dir ships them."""
    return path_of("temporal-sql-tool").parents[1] / "schema" / "postgresql" / "v12" / schema / "versioned"


def schema_versions(schema: str) -> list[str]:
    """Every version ``schema`` has an update for, oldest first: the last is the one this Temporal runs on."""
    return sorted((d.name.removeprefix("v") for d in versioned_dir(schema).iterdir()), key=version_key)


def age_databases(node_exec, host: str, password: str) -> None:
    """Both databases as an older Temporal left them: the real tool's setup, then its updates only up to AGED."""
    env = {"SQL_PLUGIN": "postgres12", "SQL_HOST": host, "SQL_PORT": "5432", "SQL_USER": "temporal",
           "SQL_PASSWORD": password}
    for database, (schema, version) in AGED.items():
        for step in (["create-database", "--defaultdb", "postgres"], ["setup-schema", "-v", "0.0"],
                     ["update-schema", "-d", str(versioned_dir(schema)), "--version", version]):
            done = node_exec(str(path_of("temporal-sql-tool")), "--db", database, *step, env=env)
            assert done.returncode == 0, (step, (done.stdout + done.stderr)[-600:])


def curr_versions(node_exec, host: str, password: str) -> dict[str, str]:
    """``schema_version.curr_version`` of each database: what the server checks before it starts."""
    return {database: node_exec("psql", f"host={host} user=temporal dbname={database}", "-Atc",
                                "select curr_version from schema_version", env={"PGPASSWORD": password}).stdout.strip()
            for database in AGED}


def test_scaled_cluster_on_postgres_runs_workflows_with_internode_mtls_between_pods(
        temporal_cluster, kubectl, node_exec, namespace):
    password = start_postgres(kubectl, namespace)
    # The databases an older Temporal left behind: the schema Job has to update them, not set them up.
    postgres_ip = kubectl("get", "pod", "postgres-0", "-n", namespace, "-o", "jsonpath={.status.podIP}").stdout
    age_databases(node_exec, postgres_ip, password)
    assert curr_versions(node_exec, postgres_ip, password) == {"temporal": "1.14", "temporal_visibility": "1.9"}

    temporal = temporal_cluster(example_spec(), timeout=240)
    cluster = temporal.get()
    conditions = {c["type"]: (c["status"], c["reason"]) for c in cluster["status"]["conditions"]}
    assert conditions["Ready"] == ("True", "ServerAvailable")
    assert conditions["PersistenceReady"] == ("True", "SchemaReady")
    job = cluster["status"]["persistence"]["schemaJob"]
    assert job.startswith("demo-schema-1-31-4-") and cluster["status"]["persistence"]["schemaReady"] is True
    original = json.loads(kubectl("get", "job", job, "-n", namespace, "-o", "json").stdout)

    # 2 frontend, 2 history, 1 matching, 1 worker: each service in its own pods, each pod with its own IP.
    pods = {service: pods_of(kubectl, namespace, service) for service in SERVICES}
    assert {s: len(p) for s, p in pods.items()} == {"frontend": 2, "history": 2, "matching": 1, "worker": 1}

    # The Job kept the old versions (no re-setup) and ran every later update in order, up to the newest this
    # Temporal ships, before the first server pod was created.
    assert curr_versions(node_exec, postgres_ip, password) == {
        database: schema_versions(schema)[-1] for database, (schema, _) in AGED.items()}
    job_log = kubectl("logs", f"job/{job}", "-n", namespace).stdout
    for schema, old in AGED.values():
        steps = [old] + [v for v in schema_versions(schema) if version_key(v) > version_key(old)]
        assert f"Current database schema version {old} is greater than initial schema version 0.0" in job_log
        assert f"running {len(steps) - 1} updates for current version {old}" in job_log
        assert all(f"Schema updated from {a} to {b}" in job_log for a, b in zip(steps, steps[1:])), (schema, steps)
    assert all(p["metadata"]["creationTimestamp"] >= original["status"]["completionTime"]
               for service in pods.values() for p in service)
    ips = [p["status"]["podIP"] for ps in pods.values() for p in ps]
    assert len(set(ips)) == 6, ips
    # Least privilege: a history pod holds the internode and system-worker certificates, not the frontend's key.
    history_secrets = {v["secret"]["secretName"] for v in pods["history"][0]["spec"]["volumes"] if "secret" in v}
    assert history_secrets == {"demo-internode-tls", "demo-system-worker-tls"}
    # The password is only an env secretKeyRef: not in the ConfigMap, the Deployments or the Job.
    rendered = kubectl("get", "configmap,deployments", "-n", namespace, "-o", "yaml").stdout
    assert password not in rendered and "TEMPORAL_POSTGRES_PASSWORD" in rendered

    # A re-run of the same schema Job on the now-current databases succeeds and changes nothing.
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
    # Ready counts a pod once its port takes TCP connections; its gRPC server may answer a moment later.
    tries = []
    wait_for(lambda: taken(tries.append(s_client(node_exec, **probe, cert_dir=internode)) or tries[-1]), 60,
             interval=0.5, what=lambda: f"the history pod to take the internode certificate: {tries[-1].stderr[-600:]}")
    print(f"history pod took the internode certificate at probe {len(tries)}; before: "
          f"{[t.stderr.strip().splitlines()[-1:] for t in tries[:-1]]}")
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

    # Another server image (the stock one under its docker.io name, as a version bump would; a stock image runs
    # with authorization off): a new schema Job runs update-schema first, and only then do the Deployments roll.
    kubectl("patch", "temporalcluster", "demo", "-n", namespace, "--type=merge", "-p",
            '{"spec": {"image": "docker.io/temporalio/server:1.31.4", "authorization": {"enabled": false}}}')
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


def test_postgres_over_verify_full_tls_and_a_foreign_ca_fails_the_schema_job(
        temporal_cluster, kubectl, node_exec, namespace, tmp_path):
    ca_and_leaf(tmp_path, "postgres", ["postgres", f"postgres.{namespace}.svc"])
    ca_and_leaf(tmp_path, "foreign", ["postgres"])
    kubectl("create", "secret", "tls", "postgres-server-tls", "-n", namespace,
            f"--cert={tmp_path / 'postgres.crt'}", f"--key={tmp_path / 'postgres.key'}")
    for name in ("postgres", "foreign"):
        kubectl("create", "secret", "generic", f"{name}-ca", "-n", namespace,
                f"--from-file=ca.crt={tmp_path / f'{name}-ca.crt'}")
    password = start_postgres(kubectl, namespace, tls_secret="postgres-server-tls")
    ip = kubectl("get", "pod", "postgres-0", "-n", namespace, "-o", "jsonpath={.status.podIP}").stdout

    def psql(sslmode: str, sql: str = "select 1"):
        return node_exec("psql", f"host=postgres hostaddr={ip} user=temporal dbname=postgres sslmode={sslmode} "
                         f"sslrootcert={tmp_path / 'postgres-ca.crt'}", "-Atc", sql, env={"PGPASSWORD": password})

    # pg_hba has only hostssl: without TLS the server refuses; verify-full against the CA is accepted.
    plain = psql("disable")
    assert plain.returncode != 0 and 'user "temporal", database "postgres", no encryption' in plain.stderr
    assert psql("verify-full").stdout.strip() == "1"

    def postgres_spec(ca_secret: str) -> dict:
        spec = example_spec()
        spec["persistence"]["postgresql"]["tls"] = {"enabled": True, "sslmode": "verify-full",
                                                    "caSecretRef": {"name": ca_secret, "key": "ca.crt"}}
        spec["services"] = {service: {"replicas": 1} for service in SERVICES}
        return spec

    # A CA that did not sign the server's certificate: the schema Job fails verification, no server pod.
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump({
        "apiVersion": "temporal-mtls.dev/v1alpha1", "kind": "TemporalCluster", "metadata": {"name": "foreign"},
        "spec": postgres_spec("foreign-ca")}))
    failing = wait_for(lambda: (c := condition(json.loads(kubectl(
        "get", "temporalcluster", "foreign", "-n", namespace, "-o", "json").stdout), "PersistenceReady"))
        .get("reason") == "SchemaJobFailing" and c, 120, interval=1, what="PersistenceReady=False/SchemaJobFailing")
    assert failing["status"] == "False"
    job = kubectl("get", "jobs", "-n", namespace, "-o", "name").stdout.strip()  # the only Job: the schema's
    assert "x509: certificate signed by unknown authority" in kubectl("logs", job, "-n", namespace).stdout
    assert json.loads(kubectl("get", "deployments", "-n", namespace, "-o", "json").stdout)["items"] == []
    kubectl("delete", "temporalcluster", "foreign", "-n", namespace, "--wait=false")

    # The right CA: schema Job and every server connect with verify-full (the only way pg_hba lets them in).
    temporal_cluster(postgres_spec("postgres-ca"), timeout=240)
    encrypted = psql("verify-full", "select count(*) from pg_stat_ssl join pg_stat_activity using (pid) "
                                    "where ssl and datname in ('temporal', 'temporal_visibility')")
    assert int(encrypted.stdout) >= 4, encrypted.stderr


def served_serial(node_exec, address: str, server_name: str, ca_file: Path) -> int | None:
    """The serial of the leaf the server at ``address`` sends in its handshake (verified against ``ca_file``)."""
    shown = node_exec("sh", "-c", '"$@" </dev/null', "sh", "openssl", "s_client", "-connect", address,
                      "-servername", server_name, "-verify_return_error", "-CAfile", str(ca_file), "-showcerts",
                      timeout=20)
    found = re.search(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", shown.stdout, re.S)
    return x509.load_pem_x509_certificate(found.group(0).encode()).serial_number if found else None


def secret_serial(kubectl, namespace: str, name: str) -> int:
    data = json.loads(kubectl("get", "secret", name, "-n", namespace, "-o", "json").stdout)["data"]
    return x509.load_pem_x509_certificate(base64.b64decode(data["tls.crt"])).serial_number


def server_counter(node_exec, pods: list[dict], name: str) -> float:
    """A counter of our server build summed over pods and labels, from each pod's :9090."""
    return sum(v for pod in pods for (sample, _), v in scrape_address(node_exec, pod["status"]["podIP"], 9090).items()
               if sample in (name, f"{name}_total"))


def test_leaf_and_both_ca_rotations_between_separate_pods_restart_nothing_and_keep_workflows_running(
        temporal_cluster, kubectl, node_exec, namespace, tmp_path):
    """test_rotation.py's leaf rotation and both CA rotations on this topology, where internode TLS crosses pods
    (kept here, beside their topology; the rotations themselves are test_rotation.py's). Our server build reloads CA
    bundles: the six pods stay the same pods, with no restart, through all three."""
    start_postgres(kubectl, namespace)
    temporal = temporal_cluster({**example_spec(), "mtls": {"refreshInterval": "5s"}}, timeout=240)  # 2/2/1/1
    kubectl("apply", "-n", namespace, "-f", str(REPO / "examples" / "namespace.yaml"))
    wait_for(lambda: condition(json.loads(kubectl("get", "temporalnamespace", "default", "-n", namespace,
                                                  "-o", "json").stdout), "Ready").get("status") == "True",
             90, interval=1, what="the default namespace")

    # The rotate annotation re-issues the leaves (same CAs); every server pod serves its new leaf from the same
    # process (Temporal re-reads the files every refreshInterval) while workflows start through the frontend.
    internode_dir = temporal.save_secret("demo-internode-tls", tmp_path / "internode")
    frontend_ca = temporal.cert_dir / "operator" / "ca.crt"
    servers = {}  # pod name -> (its gRPC address, the certificate it serves there)
    for service in SERVICES:
        port, role = (7233, "frontend") if service == "frontend" else (SERVICES_GRPC[service], "internode")
        servers.update({p["metadata"]["name"]: (f"{p['status']['podIP']}:{port}", role)
                        for p in pods_of(kubectl, namespace, service)})
    probes = {"frontend": (f"demo-frontend.{namespace}.svc", frontend_ca),
              "internode": (f"demo-internode.{namespace}.svc", internode_dir / "ca.crt")}

    def serving() -> dict[str, int | None]:
        return {pod: served_serial(node_exec, address, *probes[role]) for pod, (address, role) in servers.items()}

    before = {role: secret_serial(kubectl, namespace, f"demo-{role}-tls") for role in probes}
    # Ready counts a pod once its port takes TCP connections; its gRPC server may answer a moment later.
    wait_for(lambda: serving() == {pod: before[role] for pod, (_, role) in servers.items()}, 60, interval=1,
             what="every server pod to serve its first leaf")
    def pod_identities() -> dict[str, tuple[str, int]]:
        return {p["metadata"]["name"]: (p["metadata"]["uid"], p["status"]["containerStatuses"][0]["restartCount"])
                for service in SERVICES for p in pods_of(kubectl, namespace, service)}

    pods_before = pod_identities()
    leaf_ids, failures = ["leaf-before"], []  # one workflow in flight across the rotation, more started during it
    wait_for(lambda: node_exec(sys.executable, HELLO, "start", "leaf-before", env=temporal.env()).returncode == 0,
             60, interval=1, what="a first start through the frontend")
    kubectl("annotate", "temporalcluster", "demo", "-n", namespace, "temporal-mtls.dev/rotate=1")
    wait_for(lambda: (temporal.get()["status"].get("leafRotation") or {}).get("handled") == "1", 60, interval=0.5,
             what="the rotate annotation to be handled")
    after = {role: secret_serial(kubectl, namespace, f"demo-{role}-tls") for role in probes}
    assert all(after[role] != before[role] for role in probes)
    expected = {pod: after[role] for pod, (_, role) in servers.items()}
    annotated = time.monotonic()
    while (served := serving()) != expected:
        assert time.monotonic() - annotated < 60, f"not every pod serves its new leaf: {served}, expected {expected}"
        # One annotation value, one re-issue (a pass queued with an older view of the object once re-issued again).
        assert {role: secret_serial(kubectl, namespace, f"demo-{role}-tls") for role in probes} == after
        leaf_ids.append(f"leaf-{len(leaf_ids)}")
        result = node_exec(sys.executable, HELLO, "start", leaf_ids[-1], env=temporal.env(), timeout=60)
        if result.stdout.strip() != "started":
            failures.append((result.returncode, result.stderr[-300:]))
    assert pod_identities() == pods_before  # the same pods, and no container restarted during the rotation
    print(f"restarts before the leaf rotation: {sum(restarts for _, restarts in pods_before.values())}")
    # Those workflows complete across the pods now serving the new leaves.
    finished = node_exec(sys.executable, HELLO, "finish", *leaf_ids, env=temporal.env(), timeout=120)
    print(f"leaf rotation on PostgreSQL: {len(leaf_ids) - 1} starts while the {len(servers)} pods reloaded, "
          f"{len(failures)} failed")
    assert failures == [] and finished.stdout.count("Hello rollout!") == len(leaf_ids), finished.stderr[-600:]

    # Then the internode CA, in stages: every pod takes the new bundles and leaves in place.
    ca_secret = json.loads(kubectl("get", "secret", "demo-internode-ca", "-n", namespace, "-o", "json").stdout)["data"]
    old_ca = certs.KeyPair(*(base64.b64decode(ca_secret[k]) for k in ("tls.crt", "tls.key")))

    kubectl("annotate", "temporalcluster", "demo", "-n", namespace, "temporal-mtls.dev/rotate-ca-internode=1")
    # Starts through the frontend (which reaches history and matching over internode mTLS) all through the rotation,
    # by an SDK client (its default retries, as the apps have).
    failures, started, began = [], 0, time.monotonic()
    while (rotation := (temporal.get()["status"].get("caRotation") or {}).get("internode") or {}).get("phase") \
            != "Completed":
        # Bounded in time, not starts: a start takes 0.3 s to seconds, as loaded as the machine is.
        assert time.monotonic() - began < 240, f"the rotation did not complete: {rotation}"
        result = node_exec(sys.executable, HELLO, "start", f"rotation-{started}", env=temporal.env(), timeout=60)
        started += 1
        if result.stdout.strip() != "started":  # the server's answer (the SDK may crash at exit after it)
            failures.append((result.returncode, result.stderr[-300:]))
    print(f"internode CA rotation on PostgreSQL: {started} starts during it ({time.monotonic() - began:.0f} s), "
          f"{len(failures)} failed")
    assert failures == [] and set(rotation["phaseTimes"]) >= {"TrustingNewCA", "ReissuingLeaves", "RemovingOldCA"}

    # Every internode server pod now serves a leaf of the new CA and refuses a client certificate of the old one.
    new_dir = temporal.save_secret("demo-internode-tls", tmp_path / "new")
    old_dir = tmp_path / "old"
    old_dir.mkdir()
    old_leaf = certs.issue_leaf(old_ca, certs.LeafProfile("old-internode", client=True), datetime.timedelta(hours=1))
    (old_dir / "tls.crt").write_bytes(old_leaf.cert_pem)
    (old_dir / "tls.key").write_bytes(old_leaf.key_pem)
    wait_for(lambda: condition(temporal.get(), "Ready").get("status") == "True", 120, interval=1,
             what="Ready after the rotation")
    assert pod_identities() == pods_before  # no pod rolled, no container restarted
    # The removal closed the internode connections the old CA authenticated (those that predate ReissuingLeaves);
    # the frontends sent the calls in flight on them again at once (server/resend), if any were.
    closed = server_counter(node_exec, pods_of(kubectl, namespace, "matching"), "temporal_mtls_tls_connections_closed")
    resent = server_counter(node_exec, pods_of(kubectl, namespace, "frontend"), "temporal_mtls_matching_calls_resent")
    print(f"internode CA removal: matching closed {closed:.0f} connections, the frontends resent {resent:.0f} calls")
    assert closed > 0
    for service in ("history", "matching", "worker"):
        for pod in pods_of(kubectl, namespace, service):
            probe = dict(address=f"{pod['status']['podIP']}:{SERVICES_GRPC[service]}",
                         server_name=f"demo-internode.{namespace}.svc", ca_file=new_dir / "ca.crt")
            accepted = s_client(node_exec, **probe, cert_dir=new_dir)
            assert taken(accepted), (service, accepted.stderr)
            assert alert(s_client(node_exec, **probe, cert_dir=old_dir).stderr) == UNKNOWN_CA, service
    # And a workflow started before nothing: one started now completes across the rotated pods.
    assert wait_for(lambda: (r := node_exec(sys.executable, HELLO, "start", "after-rotation", env=temporal.env()))
                    .returncode == 0 and r, 60, interval=1, what="a start after the rotation")
    finished = node_exec(sys.executable, HELLO, "finish", "after-rotation", env=temporal.env(), timeout=120)
    assert finished.stdout.strip().endswith("Hello rollout!"), finished.stderr[-400:]

    # And the frontend CA, with starts through it by a client that takes its Secret as it changes (as the apps do:
    # old + new CA trusted, then a new-CA certificate, then the new CA alone).
    kubectl("annotate", "temporalcluster", "demo", "-n", namespace, "temporal-mtls.dev/rotate-ca-frontend=1")
    failures, started, began = [], 0, time.monotonic()
    while (rotation := (temporal.get()["status"].get("caRotation") or {}).get("frontend") or {}).get("phase") \
            != "Completed":
        assert time.monotonic() - began < 240, f"the rotation did not complete: {rotation}"
        temporal.save_secret("demo-operator-client-tls", temporal.cert_dir / "operator")
        result = node_exec(sys.executable, HELLO, "start", f"frontend-{started}", env=temporal.env(), timeout=60)
        started += 1
        if result.stdout.strip() != "started":
            failures.append((result.returncode, result.stderr[-300:]))
    print(f"frontend CA rotation on PostgreSQL: {started} starts during it ({time.monotonic() - began:.0f} s), "
          f"{len(failures)} failed")
    assert failures == [] and set(rotation["phaseTimes"]) >= {"TrustingNewCA", "ReissuingLeaves", "RemovingOldCA"}
    assert pod_identities() == pods_before
    temporal.save_secret("demo-operator-client-tls", temporal.cert_dir / "operator")
    finished = node_exec(sys.executable, HELLO, "finish", *(f"frontend-{i}" for i in range(started)),
                         env=temporal.env(), timeout=180)
    assert finished.stdout.count("Hello rollout!") == started, finished.stderr[-600:]
