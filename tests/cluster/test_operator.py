"""End to end: the operator (a pod from its chart) runs a real Temporal server with mTLS."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import sys
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from conftest import OPERATOR_NAMESPACE, REPO, condition, operator_logs, past_write_races, wait_for
from localkube.toolchain import path_of
from temporal_mtls_operator import certs

pytestmark = pytest.mark.cluster

HELLO = str(Path(__file__).resolve().parents[1] / "support" / "hello_workflow.py")


def fingerprint(pem: bytes) -> str:
    return x509.load_pem_x509_certificate(pem).fingerprint(hashes.SHA256()).hex(":").upper()


def test_example_cluster_is_ready_and_its_frontend_requires_client_certificates(temporal_cluster, kubectl, node_exec,
                                                                                tmp_path):
    temporal = temporal_cluster()
    cluster = temporal.get()
    assert cluster["status"]["observedGeneration"] == cluster["metadata"]["generation"]
    assert {c["type"]: c["status"] for c in cluster["status"]["conditions"]} == {
        "Ready": "True", "CertificatesReady": "True", "ConfigReady": "True", "Progressing": "False", "Degraded": "False",
        "CAExpiring": "False", "CARotation": "False", "PersistenceReady": "True", "AuthorizationReady": "True"}

    # The server pod runs from the operator's Deployment.
    pods = json.loads(kubectl("get", "pods", "-n", temporal.namespace, "-l", "app.kubernetes.io/component=server",
                              "-o", "json").stdout)["items"]
    assert len(pods) == 1 and pods[0]["status"]["phase"] == "Running"
    assert pods[0]["spec"]["containers"][0]["image"] == "ghcr.io/temporal-mtls-operator/temporal-server:1.31.4"  # our build: authorization on
    mounted = {v["secret"]["secretName"] for v in pods[0]["spec"]["volumes"] if "secret" in v}
    assert not {s for s in mounted if s.endswith("-ca")}, "CA private keys must never be mounted"

    # Ready is Temporal's health check over mTLS run in the pod (builders/health_probe.py): the init container copied
    # the CLI; the pod's own probe command, run here with the Secret's files against the pod's IP, says SERVING, and
    # fails for a name the frontend certificate does not carry (it verifies the server, it does not just connect).
    assert [s["state"]["terminated"]["exitCode"] for s in pods[0]["status"]["initContainerStatuses"]] == [0]
    probe = pods[0]["spec"]["containers"][0]["readinessProbe"]["exec"]["command"]
    files = str(temporal.save_secret("demo-system-worker-tls", tmp_path / "system-worker"))
    command = [str(path_of("temporal")) if a == probe[0] else a.replace("/etc/temporal/tls/system-worker", files)
               for a in probe]
    command[command.index("--address") + 1] = f"{pods[0]['status']['podIP']}:7233"
    served = node_exec(*command, timeout=30)
    assert served.returncode == 0 and served.stdout.strip() == "SERVING", served.stderr
    name = command.index("--tls-server-name") + 1
    misnamed = node_exec(*command[:name], f"demo-internode.{temporal.namespace}.svc", *command[name + 1:], timeout=30)
    assert misnamed.returncode != 0 and "x509: certificate is valid for" in misnamed.stderr, misnamed.stderr

    # Clients retry while the Service routes to the new endpoint (as after any rollout).
    described = wait_for(lambda: (r := temporal.cli("operator", "namespace", "describe", "--namespace",
                                                    "temporal-system")).returncode == 0 and r, 30, interval=1,
                         what="the CLI to connect with the operator's client certificate")
    assert "Registered" in described.stdout

    def refusal(cert_dir: Path) -> str:
        """The CLI's first error line; without its connection diagnosis, which replaces the server's alert with the
        CLI's own classification (foreign and missing certificates both read "server requires client certificate")."""
        refused = past_write_races(lambda: node_exec(
            str(path_of("temporal")), "operator", "namespace", "describe", "--namespace", "temporal-system",
            "--command-timeout", "15s", timeout=60,
            env={**temporal.env(cert_dir), "TEMPORAL_CLI_DISABLE_CONNECT_DIAGNOSIS": "1"}))
        assert refused.returncode == 1, refused.stdout
        return refused.stderr.splitlines()[0]

    def alert(text: str) -> str:
        return (f"Error: failed connecting to Temporal server at {temporal.address}: failed reaching server: "
                f'connection error: desc = "error reading server preface: remote error: tls: {text}"')

    assert refusal(tmp_path / "none") == alert("certificate required")  # TLS 1.3 alert 116

    foreign_ca = certs.issue_ca("someone else", dt.timedelta(days=1))
    foreign = certs.issue_leaf(foreign_ca, certs.LeafProfile("intruder", client=True), dt.timedelta(hours=1))
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "tls.crt").write_bytes(foreign.cert_pem)
    (tmp_path / "foreign" / "tls.key").write_bytes(foreign.key_pem)
    # Go's TLS client presents only a certificate whose issuer is among the CAs in the server's CertificateRequest
    # (here the frontend CA), so the CLI never sends the foreign one and the server refuses a missing certificate.
    # tests/cluster/test_security_matrix.py presents it with openssl and gets "unknown ca" (alert 48).
    assert refusal(tmp_path / "foreign") == alert("certificate required")

    # What the frontend presents: the leaf recorded in status, its SANs, and the frontend CA as issuer.
    ca = (temporal.cert_dir / "operator" / "ca.crt")
    shown = node_exec("openssl", "s_client", "-connect", temporal.address, "-servername", temporal.server_name,
                      "-CAfile", str(ca), "-showcerts", "-verify_return_error",
                      "-cert", str(temporal.cert_dir / "operator" / "tls.crt"),
                      "-key", str(temporal.cert_dir / "operator" / "tls.key"), timeout=30)
    assert "Verify return code: 0 (ok)" in shown.stdout
    served = re.search(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", shown.stdout, re.S).group(0)
    leaf = x509.load_pem_x509_certificate(served.encode())
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert temporal.server_name in sans and f"demo-frontend.{temporal.namespace}.svc.cluster.local" in sans
    assert fingerprint(served.encode()) == cluster["status"]["certificates"]["frontend"]["sha256Fingerprint"]
    assert leaf.issuer == x509.load_pem_x509_certificate(ca.read_bytes()).subject


def test_temporal_namespace_is_registered_over_mtls(temporal_cluster, kubectl):
    temporal = temporal_cluster()
    kubectl("apply", "-n", temporal.namespace, "-f", str(REPO / "examples" / "namespace.yaml"))
    wait_for(lambda: condition(json.loads(kubectl("get", "temporalnamespace", "default", "-n", temporal.namespace,
                                                  "-o", "json").stdout), "Ready").get("status") == "True",
             90, interval=1, what="the TemporalNamespace to become Ready")
    described = wait_for(lambda: (r := temporal.cli("operator", "namespace", "describe", "--namespace", "default",
                                                    "-o", "json")).returncode == 0 and r, 30, interval=1,
                         what="the CLI to describe the namespace")
    info = json.loads(described.stdout)
    assert info["namespaceInfo"]["description"] == "Default namespace of the hello-world sample"
    assert info["config"]["workflowExecutionRetentionTtl"] in ("259200s", "72h0m0s", "259200.000s")


def test_namespace_waits_quietly_for_its_cluster(kubectl, namespace, operator):
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump({
        "apiVersion": "temporal-mtls.dev/v1alpha1", "kind": "TemporalNamespace", "metadata": {"name": "orphan"},
        "spec": {"clusterRef": {"name": "absent"}}}))
    ready = wait_for(lambda: condition(json.loads(kubectl("get", "temporalnamespace", "orphan", "-n", namespace,
                                                          "-o", "json").stdout), "Ready") or None,
                     60, what="a Ready condition")
    assert ready["status"] == "False" and ready["reason"] == "ClusterNotReady"
    assert "does not exist" in ready["message"]


def owned_versions(kubectl, namespace: str) -> dict[str, str]:
    objects = json.loads(kubectl("get", "secrets,configmaps,services,persistentvolumeclaims,deployments", "-n",
                                 namespace, "-l", "app.kubernetes.io/managed-by=temporal-mtls-operator",
                                 "-o", "json").stdout)["items"]
    return {f"{o['kind']}/{o['metadata']['name']}": o["metadata"]["resourceVersion"] for o in objects}


def test_tls_change_rolls_the_server_a_noop_writes_nothing_and_workflows_survive(temporal_cluster, kubectl,
                                                                                node_exec, operator):
    temporal = temporal_cluster()
    kubectl("apply", "-n", temporal.namespace, "-f", str(REPO / "examples" / "namespace.yaml"))
    wait_for(lambda: condition(json.loads(kubectl("get", "temporalnamespace", "default", "-n", temporal.namespace,
                                                  "-o", "json").stdout), "Ready").get("status") == "True",
             90, interval=1, what="the default namespace")
    attempts = []  # keep what each try said, so a timeout shows why
    started = wait_for(lambda: (r := node_exec(sys.executable, HELLO, "start", "survivor", env=temporal.env()))
                       .returncode == 0 and r or attempts.append(r.stderr[-400:]), 60, interval=1,
                       what=lambda: f"the workflow to start; last error: {attempts[-1:]}")
    assert started.stdout.strip() == "started"

    # A re-reconcile without a change writes nothing: restart the operator (resume handlers run).
    before = owned_versions(kubectl, temporal.namespace)
    assert {"Deployment/demo-server", "ConfigMap/demo-config", "Secret/demo-frontend-ca"} <= set(before)
    pod_before = kubectl("get", "pods", "-n", temporal.namespace, "-l", "app.kubernetes.io/component=server",
                         "-o", "jsonpath={.items[0].metadata.uid}").stdout
    kubectl("rollout", "restart", "deployment/tmo", "-n", operator)
    kubectl("rollout", "status", "deployment/tmo", "-n", operator, "--timeout=120s")
    resumed = wait_for(lambda: "resumed" in operator_logs(kubectl, operator).lower()
                       or "cluster_changed" in operator_logs(kubectl, operator),
                       60, what="the restarted operator to handle the cluster")
    assert resumed
    assert owned_versions(kubectl, temporal.namespace) == before

    # Changing a TLS setting re-renders the config and rolls the Deployment.
    kubectl("patch", "temporalcluster", "demo", "-n", temporal.namespace, "--type=merge",
            "-p", json.dumps({"spec": {"mtls": {"refreshInterval": "2m"}}}))
    wait_for(lambda: "refreshInterval: 2m" in kubectl("get", "configmap", "demo-config", "-n", temporal.namespace,
                                                     "-o", "jsonpath={.data.config\\.yaml}").stdout,
             60, what="the re-rendered config")
    wait_for(lambda: (uid := kubectl("get", "pods", "-n", temporal.namespace, "-l",
                                     "app.kubernetes.io/component=server", "-o",
                                     "jsonpath={.items[*].metadata.uid}").stdout) and uid != pod_before
             and " " not in uid, 120, interval=1, what="a new server pod")
    wait_for(lambda: condition(temporal.get(), "Ready").get("status") == "True", 180, interval=1,
             what="Ready after the rollout")

    # The workflow started before the rollout is still there, and completes after it.
    finished = wait_for(lambda: (r := node_exec(sys.executable, HELLO, "finish", "survivor", env=temporal.env(),
                                                timeout=120)).returncode == 0 and r, 90, interval=2,
                        what="the workflow to complete after the rollout")
    assert finished.stdout.strip().endswith("Hello rollout!")


@pytest.mark.parametrize("spec, message", [
    ({"version": "latest"}, "spec.version in body should match"),
    ({"mtls": {"keyAlgorithm": "DSA-1024"}}, 'spec.mtls.keyAlgorithm: Unsupported value: "DSA-1024"'),
    ({"numHistoryShards": 0}, "spec.numHistoryShards in body should be greater than or equal to 1"),
    ({"persistence": {"sqlite": {}, "postgresql": {"host": "db", "user": "t",
                                                   "passwordSecretRef": {"name": "pg", "key": "password"}}}},
     "set either persistence.sqlite or persistence.postgresql, not both"),
    ({"services": {"history": {"replicas": 2}}}, "services.*.replicas > 1 needs persistence.postgresql"),
    ({"mtls": {"renewBefore": "soon"}}, "spec.mtls.renewBefore in body should match"),
    ({"mtls": {"extraDnsNames": ["Not A Name"]}}, "spec.mtls.extraDnsNames[0] in body should match"),
    ({"mtls": {"unknownField": True}}, 'unknown field "spec.mtls.unknownField"'),
])
def test_invalid_specs_are_rejected_by_the_schema(kubectl, namespace, operator, spec, message):
    rejected = kubectl("apply", "--validate=strict", "-n", namespace, "-f", "-", check=False, input=yaml.safe_dump({
        "apiVersion": "temporal-mtls.dev/v1alpha1", "kind": "TemporalCluster", "metadata": {"name": "bad"},
        "spec": spec}))
    assert rejected.returncode != 0
    assert message in rejected.stderr, rejected.stderr


def test_a_semantically_wrong_spec_gets_a_condition_and_an_event(kubectl, namespace, operator):
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump({
        "apiVersion": "temporal-mtls.dev/v1alpha1", "kind": "TemporalCluster", "metadata": {"name": "odd"},
        "spec": {"mtls": {"certificateDuration": "24h", "renewBefore": "48h"}}}))
    ready = wait_for(lambda: condition(json.loads(kubectl("get", "temporalcluster", "odd", "-n", namespace, "-o",
                                                          "json").stdout), "Ready") or None, 90,
                     what=lambda: "a condition; operator log: " + operator_logs(kubectl, tail=20))
    assert ready["status"] == "False" and ready["reason"] == "InvalidSpec"
    assert "renewBefore (48h) must be shorter than mtls.certificateDuration (24h)" in ready["message"]
    events = wait_for(lambda: [e for e in json.loads(kubectl("get", "events", "-n", namespace, "-o", "json").stdout)
                               ["items"] if e["reason"] == "InvalidSpec"], 30, what="an InvalidSpec event")
    assert events[0]["involvedObject"]["name"] == "odd" and events[0]["type"] == "Warning"
    assert kubectl("get", "secrets", "-n", namespace, "-o", "name").stdout.strip() == ""  # nothing was made
    operator_pod = json.loads(kubectl("get", "pods", "-n", OPERATOR_NAMESPACE, "-o", "json").stdout)["items"][0]
    assert operator_pod["status"]["containerStatuses"][0]["ready"] is True


def test_chart_crds_are_the_crds_folder(helm):
    source = sorted((REPO / "crds").glob("*.yaml"))
    chart = sorted((REPO / "charts" / "temporal-mtls-operator" / "crds").glob("*.yaml"))
    assert [p.name for p in source] == [p.name for p in chart]
    for a, b in zip(source, chart):
        assert a.read_text() == b.read_text(), f"{b} differs from {a}: copy crds/ into the chart"
    lint = helm("lint", "--strict", str(REPO / "charts" / "temporal-mtls-operator"))
    assert "0 chart(s) failed" in lint.stdout


def test_an_unreadable_ca_is_reported_and_never_replaced(temporal_cluster, kubectl):
    temporal = temporal_cluster()
    ns = temporal.namespace
    original = kubectl("get", "secret", "demo-internode-ca", "-n", ns, "-o", "jsonpath={.data.tls\\.crt}").stdout
    leaves = owned_versions(kubectl, ns)
    garbage = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n").decode()
    kubectl("patch", "secret", "demo-internode-ca", "-n", ns, "-p", json.dumps({"data": {"tls.crt": garbage}}))

    degraded = wait_for(lambda: (c := condition(temporal.get(), "CertificatesReady")).get("status") == "False" and c,
                        60, interval=1, what="the source failure to be reported")
    assert degraded["reason"] == "CAUnreadable"
    assert "demo-internode-ca is unreadable" in degraded["message"] and "left untouched" in degraded["message"]
    assert "BEGIN" not in degraded["message"]
    events = wait_for(lambda: [e for e in json.loads(kubectl("get", "events", "-n", ns, "-o", "json").stdout)["items"]
                               if e["reason"] == "CAUnreadable"], 30, what="a Warning Event")
    assert events[0]["type"] == "Warning" and "BEGIN" not in events[0]["message"]
    assert kubectl("get", "secret", "demo-internode-ca", "-n", ns, "-o",
                   "jsonpath={.data.tls\\.crt}").stdout == garbage  # not replaced
    after = owned_versions(kubectl, ns)
    assert {k: v for k, v in after.items() if k != "Secret/demo-internode-ca"} == \
        {k: v for k, v in leaves.items() if k != "Secret/demo-internode-ca"}  # nothing else was written
    assert temporal.cli("operator", "namespace", "describe", "--namespace", "temporal-system").returncode == 0

    kubectl("patch", "secret", "demo-internode-ca", "-n", ns, "-p", json.dumps({"data": {"tls.crt": original}}))
    wait_for(lambda: condition(temporal.get(), "CertificatesReady").get("status") == "True"
             and condition(temporal.get(), "Ready").get("status") == "True", 60, interval=1, what="recovery")
