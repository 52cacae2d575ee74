"""Authorization by certificate identity through the real server (our build, its policy rendered by the operator).

Each role calls every API of the matrix once with its own certificate, through the SDK's gRPC client and the
Temporal CLI; each answer must be what Temporal's default authorizer decides for that role (the model below, from
Temporal 1.31's common/api/metadata.go and common/authorization/default_authorizer.go): an allowed call succeeds,
a refused one ends in gRPC PermissionDenied "Request unauthorized.".
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import sys
import time

import pytest
import yaml

from conftest import REPO, VOLUME_REFRESH, condition, wait_for
from temporal_mtls_operator import certs

from .test_postgres import example_spec, start_postgres

pytestmark = pytest.mark.cluster

PROBE = str(REPO / "tests" / "support" / "authz_probe.py")
NAMESPACE = "authz"
DENIED = "PERMISSION_DENIED: Request unauthorized."
ROLE = {"none": 0, "worker": 1, "reader": 2, "writer": 4, "admin": 8}  # Temporal's authorization.Role bits
# call -> (scope, role it needs); health checks need none. register_namespace targets a namespace that does not
# exist yet, so only a system role counts for it.
NEEDS = {"health": None, "list_namespaces": ("cluster", "reader"), "describe_namespace": ("namespace", "reader"),
         "register_namespace": ("new", "admin"), "update_namespace": ("namespace", "admin"),
         "start": ("namespace", "writer"), "list": ("namespace", "reader"), "describe": ("namespace", "reader"),
         "query": ("namespace", "reader"), "signal": ("namespace", "writer"), "poll_complete": ("namespace", "writer"),
         "terminate": ("namespace", "writer")}
# client -> (system role, role in NAMESPACE), and its spec.permissions (None: omitted, the default)
CLIENTS = {
    "worker": ("none", "worker", {"namespaces": [{"name": NAMESPACE, "role": "worker"}]}),
    "reader": ("none", "reader", {"namespaces": [{"name": NAMESPACE, "role": "reader"}]}),
    "writer": ("none", "writer", None),  # omitted: writer on its temporalNamespace
    "admin": ("none", "admin", {"namespaces": [{"name": NAMESPACE, "role": "admin"}]}),
    "system-reader": ("reader", "none", {"system": "reader", "namespaces": []}),
    "system-admin": ("admin", "none", {"system": "admin", "namespaces": []}),
    "nothing": ("none", "none", {"namespaces": []}),
}


def decides(system: str, namespace_role: str, call: str) -> bool:
    """Temporal's default authorizer: System | Namespaces[target] must reach the API's role (a numeric compare)."""
    if NEEDS[call] is None:
        return True
    scope, needed = NEEDS[call]
    has = ROLE[system] | (ROLE[namespace_role] if scope == "namespace" else 0)
    return has >= ROLE[needed]


def observed(answer: str, call: str) -> bool | str:
    if answer == "allowed":
        return True
    if answer == DENIED:
        return False
    # Nobody answers the query: allowed, Temporal itself says it cannot be answered (never PermissionDenied).
    if call == "query" and not answer.startswith("PERMISSION_DENIED"):
        return True
    return answer  # anything else is a failure of its own, shown as it is


def client_manifest(name: str, permissions: dict | None) -> dict:
    spec: dict = {"clusterRef": {"name": "demo"}, "temporalNamespace": NAMESPACE}
    if permissions is not None:
        spec["permissions"] = permissions
    return {"apiVersion": "temporal-mtls.dev/v1alpha1", "kind": "TemporalClusterClient", "metadata": {"name": name},
            "spec": spec}


def stranger_certificate(temporal, directory) -> None:
    """Signed by the frontend CA, but no TemporalClusterClient stands for it."""
    data = json.loads(temporal.kubectl("get", "secret", "demo-frontend-ca", "-n", temporal.namespace, "-o",
                                       "json").stdout)["data"]
    ca = certs.KeyPair(base64.b64decode(data["tls.crt"]), base64.b64decode(data["tls.key"]))
    pair = certs.issue_leaf(ca, certs.LeafProfile("stranger", client=True), dt.timedelta(hours=1))
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tls.crt").write_bytes(pair.cert_pem)
    (directory / "tls.key").write_bytes(pair.key_pem)


def probe(temporal, cert_dir, workflow_id: str, *calls: str) -> dict[str, str]:
    result = temporal.node_exec(sys.executable, PROBE, "probe", NAMESPACE, workflow_id, *calls,
                                env=temporal.env(cert_dir), timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def server_pod(temporal) -> tuple[str, int]:
    pod = json.loads(temporal.kubectl("get", "pods", "-n", temporal.namespace, "-l",
                                      "app.kubernetes.io/component=server", "-o", "json").stdout)["items"][0]
    return pod["metadata"]["uid"], sum(s["restartCount"] for s in pod["status"]["containerStatuses"])


@pytest.fixture
def authorized_cluster(request, temporal_cluster, kubectl, namespace, tmp_path):
    """The example cluster (SQLite, or with ``postgresql`` the scaled PostgreSQL topology) with the Web UI, a
    TemporalNamespace, a client per role and a frontend-CA certificate that no client stands for."""
    spec: dict = {"ui": {}}
    if getattr(request, "param", "sqlite") == "postgresql":
        start_postgres(kubectl, namespace)
        spec.update(example_spec())
    temporal = temporal_cluster(spec, timeout=300)
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(
        [{"apiVersion": "temporal-mtls.dev/v1alpha1", "kind": "TemporalNamespace", "metadata": {"name": NAMESPACE},
          "spec": {"clusterRef": {"name": "demo"}}}]
        + [client_manifest(name, permissions) for name, (_, _, permissions) in CLIENTS.items()]))
    for kind, name in [("temporalnamespace", NAMESPACE), *(("temporalclusterclient", c) for c in (*CLIENTS, "demo-ui"))]:
        wait_for(lambda: condition(json.loads(kubectl("get", kind, name, "-n", namespace, "-o", "json").stdout),
                                   "Ready").get("status") == "True", 120, interval=1, what=f"{kind} {name} Ready")
    dirs = {name: temporal.save_secret(f"{name}-temporal-client", tmp_path / "clients" / name)
            for name in (*CLIENTS, "demo-ui")}
    # A grant reaches the server a few seconds after its client is Ready (the policy ConfigMap's volume, then the
    # server's 2 s reload): wait until each granted client is recognised.
    for name in ("reader", "writer", "admin", "system-reader", "system-admin", "demo-ui"):
        wait_for(lambda: probe(temporal, dirs[name], "ready", "describe_namespace")["describe_namespace"] == "allowed",
                 60 + VOLUME_REFRESH, interval=0.5, what=f"the server to recognise {name}'s grant")
    dirs["stranger"] = tmp_path / "clients" / "stranger"
    stranger_certificate(temporal, dirs["stranger"])
    return temporal, dirs


@pytest.mark.parametrize("authorized_cluster", ["sqlite", "postgresql"], indirect=True)
def test_each_role_may_do_exactly_what_temporals_default_authorizer_grants_it(authorized_cluster, kubectl, namespace):
    temporal, dirs = authorized_cluster
    cluster = temporal.get()
    assert condition(cluster, "AuthorizationReady")["reason"] == "PolicyApplied"
    roles = {**{name: (system, ns_role) for name, (system, ns_role, _) in CLIENTS.items()},
             "demo-ui": ("reader", "none"), "stranger": ("none", "none")}
    workflows = {name: f"authz-{name}" for name in roles}
    # The operator's own client (a system admin) starts the workflows each role's calls act on.
    prepared = temporal.node_exec(sys.executable, PROBE, "prepare", NAMESPACE, *workflows.values(), env=temporal.env())
    assert prepared.returncode == 0, prepared.stderr[-2000:]
    table, mismatches = [], []
    for name, (system, ns_role) in roles.items():
        answers = probe(temporal, dirs[name], workflows[name])
        for call, answer in answers.items():
            expected, seen = decides(system, ns_role, call), observed(answer, call)
            table.append(f"{name:14} {call:19} {'allow' if expected else 'deny':5} {answer}")
            if seen != expected:
                mismatches.append(table[-1])
    print("\n".join(table))
    assert mismatches == []
    # The status says what each client was granted and how the server recognises it.
    reader = json.loads(kubectl("get", "temporalclusterclient", "reader", "-n", namespace, "-o", "json").stdout)
    assert reader["status"]["permissions"] == {
        "enforced": True, "system": "none", "namespaces": [{"name": NAMESPACE, "role": "reader"}],
        "matchedBy": {"uri": f"spiffe://temporal-mtls.dev/ns/{namespace}/cluster/demo/client/reader"}}


def test_the_cli_sees_the_same_refusals(authorized_cluster):
    temporal, dirs = authorized_cluster
    listed = temporal.cli("workflow", "list", "--namespace", NAMESPACE, cert_dir=dirs["reader"])
    assert listed.returncode == 0, listed.stderr
    refused = temporal.cli("workflow", "start", "--namespace", NAMESPACE, "--type", "Greeting", "--task-queue", "q",
                           "--workflow-id", "cli-reader", cert_dir=dirs["reader"])
    assert refused.returncode != 0 and "Request unauthorized." in refused.stderr, refused.stderr
    stranger = temporal.cli("operator", "namespace", "list", cert_dir=dirs["stranger"])
    assert stranger.returncode != 0 and "Request unauthorized." in stranger.stderr, stranger.stderr
    health = temporal.cli("operator", "cluster", "health", cert_dir=dirs["stranger"])
    assert health.returncode == 0 and "SERVING" in health.stdout, health.stdout + health.stderr


def test_granting_and_revoking_takes_effect_without_a_restart(authorized_cluster, kubectl, namespace):
    temporal, dirs = authorized_cluster
    before = server_pod(temporal)
    assert probe(temporal, dirs["nothing"], "grant", "start")["start"] == DENIED

    def set_permissions(permissions: dict) -> float:
        kubectl("patch", "temporalclusterclient", "nothing", "-n", namespace, "--type=merge", "-p",
                json.dumps({"spec": {"permissions": permissions}}))
        return time.monotonic()

    changed = set_permissions({"namespaces": [{"name": NAMESPACE, "role": "writer"}]})
    wait_for(lambda: probe(temporal, dirs["nothing"], "grant", "start")["start"] == "allowed", 90 + VOLUME_REFRESH,
             interval=0.5, what="the granted start to be allowed")
    granted = time.monotonic() - changed
    changed = set_permissions({"namespaces": []})
    wait_for(lambda: probe(temporal, dirs["nothing"], "revoke", "start")["start"] == DENIED, 90 + VOLUME_REFRESH,
             interval=0.5, what="the revoked start to be refused")
    revoked = time.monotonic() - changed
    print(f"policy propagation: grant {granted:.1f} s, revoke {revoked:.1f} s (probe included)")
    assert server_pod(temporal) == before  # same pod, no restart


def test_authorization_off_runs_the_stock_server_where_every_frontend_certificate_is_an_admin(
        temporal_cluster, kubectl, namespace, tmp_path):
    temporal = temporal_cluster({"authorization": {"enabled": False}})
    cluster = temporal.get()
    assert (condition(cluster, "AuthorizationReady")["status"], condition(cluster, "AuthorizationReady")["reason"]) \
        == ("False", "Disabled")
    pod = json.loads(kubectl("get", "pods", "-n", namespace, "-l", "app.kubernetes.io/component=server", "-o",
                             "json").stdout)["items"][0]
    assert pod["spec"]["containers"][0]["image"] == "temporalio/server:1.31.4"
    assert kubectl("get", "configmap", "demo-authorization", "-n", namespace, check=False).returncode != 0
    stranger = tmp_path / "stranger"
    stranger_certificate(temporal, stranger)
    listed = temporal.cli("operator", "namespace", "list", cert_dir=stranger)
    assert listed.returncode == 0 and "temporal-system" in listed.stdout, listed.stderr
