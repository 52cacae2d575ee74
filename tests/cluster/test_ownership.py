"""The operator writes only objects it owns: a name clash is a condition, the other object stays byte for byte; and
what it owns it repairs at once: a Secret deleted or edited by hand is written back by a reconcile of its owner."""

from __future__ import annotations

import base64
import json
import time

import pytest
import yaml

from conftest import condition, wait_for
from temporal_mtls_operator import certs

from cluster.test_metrics import scrape_operator, value

pytestmark = pytest.mark.cluster


def test_a_client_certificate_never_overwrites_a_foreign_secret(kubectl, namespace, operator):
    kubectl("create", "secret", "generic", "db-password", "-n", namespace, "--from-literal=password=hunter2")
    before = json.loads(kubectl("get", "secret", "db-password", "-n", namespace, "-o", "json").stdout)
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all([
        {"apiVersion": "temporal-mtls.dev/v1alpha1", "kind": "TemporalCluster", "metadata": {"name": "demo"},
         "spec": {}},
        {"apiVersion": "temporal-mtls.dev/v1alpha1", "kind": "TemporalClusterClient", "metadata": {"name": "app"},
         "spec": {"clusterRef": {"name": "demo"}, "secretName": "db-password"}}]))

    def client() -> dict:
        return json.loads(kubectl("get", "temporalclusterclient", "app", "-n", namespace, "-o", "json").stdout)

    refused = wait_for(lambda: (c := condition(client(), "Ready")).get("reason") == "SecretConflict" and c, 90,
                       interval=1, what=lambda: f"the clash to be reported (now {condition(client(), 'Ready')})")
    assert refused["status"] == "False"
    assert refused["message"].startswith("Secret db-password already exists and belongs to no controller")
    events = wait_for(lambda: [e for e in json.loads(kubectl("get", "events", "-n", namespace, "-o", "json").stdout)
                               ["items"] if e["reason"] == "SecretConflict"], 30, interval=1, what="a Warning Event")
    assert events[0]["type"] == "Warning" and events[0]["involvedObject"]["name"] == "app"
    after = json.loads(kubectl("get", "secret", "db-password", "-n", namespace, "-o", "json").stdout)
    assert after["data"] == before["data"] and after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]

    # Renamed to a free name, the client gets its certificate.
    kubectl("patch", "temporalclusterclient", "app", "-n", namespace, "--type=merge", "-p",
            json.dumps({"spec": {"secretName": "app-temporal-client"}}))
    wait_for(lambda: condition(client(), "Ready").get("status") == "True", 90, interval=1, what="the certificate")
    assert json.loads(kubectl("get", "secret", "db-password", "-n", namespace, "-o", "json").stdout)["data"] == \
        before["data"]


def test_owned_secrets_deleted_or_edited_by_hand_are_restored_within_seconds(kubectl, namespace, operator, node_exec):
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all([
        {"apiVersion": "temporal-mtls.dev/v1alpha1", "kind": "TemporalCluster", "metadata": {"name": "demo"},
         "spec": {}},
        {"apiVersion": "temporal-mtls.dev/v1alpha1", "kind": "TemporalClusterClient", "metadata": {"name": "app"},
         "spec": {"clusterRef": {"name": "demo"}}}]))
    # A user's Secret with the operator's labels but no owner reference from it: never touched.
    kubectl("create", "secret", "generic", "lookalike", "-n", namespace, "--from-literal=tls.crt=mine")
    kubectl("label", "secret", "lookalike", "-n", namespace, "app.kubernetes.io/managed-by=temporal-mtls-operator",
            "app.kubernetes.io/instance=demo", "app.kubernetes.io/component=frontend-tls")

    def secret(name: str) -> dict[str, bytes]:
        found = kubectl("get", "secret", name, "-n", namespace, "-o", "json", check=False)
        return {k: base64.b64decode(v) for k, v in (json.loads(found.stdout).get("data") or {}).items()} \
            if found.returncode == 0 else {}

    def client() -> dict:
        return json.loads(kubectl("get", "temporalclusterclient", "app", "-n", namespace, "-o", "json").stdout)

    wait_for(lambda: condition(client(), "Ready").get("status") == "True", 90, interval=0.5, what="the client")
    ca = certs.load_certificates(secret("demo-frontend-ca")["tls.crt"])[0]

    def from_the_ca(data: dict[str, bytes], name: str) -> bool:
        """A leaf the frontend CA signed, its key in tls.key, with ``name`` as subject CN."""
        try:
            leaf = certs.load_certificates(data["tls.crt"])[0]
            leaf.verify_directly_issued_by(ca)
            return (certs.private_key_matches(leaf, certs.load_private_key(data["tls.key"]))
                    and leaf.subject.rfc4514_string().startswith(f"CN={name},"))
        except Exception:  # missing, garbage, another issuer: not restored yet
            return False

    def repairs(change: str) -> float:
        return value(scrape_operator(kubectl, node_exec),
                     "temporal_mtls_secret_repairs_total", kind="TemporalClusterClient", change=change) or 0

    wait_for(lambda: from_the_ca(secret("demo-frontend-tls"), "demo-frontend"), 90, interval=0.5,
             what="the frontend certificate")
    lookalike = json.loads(kubectl("get", "secret", "lookalike", "-n", namespace, "-o", "json").stdout)
    deleted_before = repairs("deleted")

    # Deleted: the client (settled, next resync in ~10 min) writes it back at once.
    started = time.monotonic()
    kubectl("delete", "secret", "app-temporal-client", "-n", namespace)
    wait_for(lambda: from_the_ca(secret("app-temporal-client"), "app"), 10, interval=0.1,
             what="the client Secret to be written back")
    print(f"deleted client Secret restored in {time.monotonic() - started:.2f} s")
    assert secret("app-temporal-client")["ca.crt"] == secret("demo-frontend-ca")["tls.crt"]

    # Hand-edited: the frontend's tls.crt replaced by a certificate from the right CA with the wrong key and name.
    edited = base64.b64encode(secret("app-temporal-client")["tls.crt"]).decode()
    started = time.monotonic()
    kubectl("patch", "secret", "demo-frontend-tls", "-n", namespace, "-p", json.dumps({"data": {"tls.crt": edited}}))
    wait_for(lambda: from_the_ca(secret("demo-frontend-tls"), "demo-frontend"), 10, interval=0.1,
             what="the frontend Secret to be written back")
    print(f"edited frontend Secret restored in {time.monotonic() - started:.2f} s")

    events = wait_for(lambda: {(e["involvedObject"]["name"], e["message"].split(" was ")[1]) for e in json.loads(
        kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"] if e["reason"] == "SecretDrift"}
        >= {("app", "deleted outside the operator: writing it back"),
            ("demo", "edited outside the operator: writing it back")} or None, 10, what="SecretDrift Events")
    assert events
    assert repairs("deleted") >= deleted_before + 1
    after = json.loads(kubectl("get", "secret", "lookalike", "-n", namespace, "-o", "json").stdout)
    assert after["metadata"]["resourceVersion"] == lookalike["metadata"]["resourceVersion"]
    assert after["data"] == lookalike["data"]
