"""The operator writes only objects it owns: a name clash is a condition, the other object stays byte for byte."""

from __future__ import annotations

import json

import pytest
import yaml

from conftest import condition, wait_for

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
