"""Payload encryption at rest end to end: the operator's payload keys, the worker and starter encrypting, the
server storing only ciphertext, the Temporal CLI decoding through the codec server, and a key rotation."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from conftest import REPO, condition, operator_logs, wait_for

pytestmark = pytest.mark.cluster

CHART = str(REPO / "charts" / "temporal-hello-world")
ENCRYPTED = base64.b64encode(b"binary/encrypted").decode()


@pytest.fixture
def encrypted_hello(temporal_cluster, kubectl, helm):
    temporal = temporal_cluster()
    kubectl("apply", "-n", temporal.namespace, "-f", str(REPO / "examples" / "namespace.yaml"))
    wait_for(lambda: condition(json.loads(kubectl("get", "temporalnamespace", "default", "-n", temporal.namespace,
                                                  "-o", "json").stdout), "Ready").get("status") == "True",
             90, interval=1, what="the default namespace")
    helm("install", "hello", CHART, "-n", temporal.namespace, "--set", "encryption.enabled=true",
         "--set", "codecServer.enabled=true", "--set", "codecServer.allowedOrigins={http://localhost:8080}",
         "--set", "starter.service.type=ClusterIP", "--wait", "--timeout=180s")
    return temporal


def start_workflow(temporal, node_exec, name: str) -> dict:
    ip = temporal.kubectl("get", "svc", "hello-starter", "-n", temporal.namespace, "-o",
                          "jsonpath={.spec.clusterIP}").stdout
    done = node_exec("curl", "-sS", "--fail-with-body", "--max-time", "60",
                     f"http://{ip}:8000/workflow/start?name={name}&wait=true")
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def show(temporal, workflow_id: str, *codec: str, output: str = "json"):
    return temporal.cli("workflow", "show", "--namespace", "default", "--workflow-id", workflow_id,
                        "--output", output, *codec)


def payloads(history: str):
    """Every payload (a mapping with metadata) in the CLI's JSON history, at any depth."""
    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("metadata"), dict):
                yield node
            for value in node.values():
                yield from walk(value)
        elif isinstance(node, list):
            for value in node:
                yield from walk(value)

    return walk(json.loads(history))


def plain_values(history: str) -> list:
    """The values of the json/plain payloads in the CLI's JSON history (base64 there)."""
    plain = base64.b64encode(b"json/plain").decode()
    return [json.loads(base64.b64decode(p["data"])) for p in payloads(history) if p["metadata"].get("encoding") == plain]


def key_ids(history: str) -> set[str]:
    """The encryption-key-id of every encrypted payload in the CLI's JSON history."""
    return {base64.b64decode(p["metadata"]["encryption-key-id"]).decode() for p in payloads(history)
            if p["metadata"].get("encoding") == ENCRYPTED}


def sqlite_files(kubectl, namespace: str) -> list[Path]:
    volume = kubectl("get", "pvc", "demo-data", "-n", namespace, "-o", "jsonpath={.spec.volumeName}").stdout
    path = Path(kubectl("get", "pv", volume, "-o", "jsonpath={.spec.hostPath.path}").stdout)
    return [p for p in path.rglob("*") if p.is_file()]


def test_the_server_stores_only_ciphertext_and_the_codec_server_decodes_it(encrypted_hello, kubectl, node_exec):
    temporal, namespace = encrypted_hello, encrypted_hello.namespace
    client = json.loads(kubectl("get", "temporalclusterclient", "hello", "-n", namespace, "-o", "json").stdout)
    assert condition(client, "EncryptionReady")["status"] == "True"
    first_key = client["status"]["encryption"]["activeKeyId"]
    keys = json.loads(kubectl("get", "secret", "hello-payload-keys", "-n", namespace, "-o", "json").stdout)
    assert keys["metadata"]["ownerReferences"][0]["uid"] == client["metadata"]["uid"]
    assert base64.b64decode(keys["data"]["active"]).decode() == first_key
    data_key = base64.b64decode(keys["data"][f"{first_key}.key"])
    assert len(data_key) == 32
    # The data key is nowhere but in its Secret: not in operator logs, Events, status or ConfigMaps.
    visible = "\n".join([
        operator_logs(kubectl),
        kubectl("get", "events", "-n", namespace, "-o", "json").stdout,
        kubectl("get", "temporalclusterclients,configmaps", "-n", namespace, "-o", "json").stdout])
    assert data_key.hex() not in visible and keys["data"][f"{first_key}.key"] not in visible

    started = start_workflow(temporal, node_exec, "World")
    assert started["result"] == "Hello World!"  # the apps decode their own payloads

    plain = show(temporal, started["workflowId"])
    assert plain.returncode == 0, plain.stderr
    assert "Hello World" not in plain.stdout and '"World"' not in plain.stdout  # (the activity is named SayHello)
    assert key_ids(plain.stdout) == {first_key} and plain.stdout.count(ENCRYPTED) >= 4  # in, activity in/out, out
    stored = b"".join(p.read_bytes() for p in sqlite_files(kubectl, namespace))
    assert b"binary/encrypted" in stored  # the right files: the history is in there
    assert b"Hello World" not in stored and b'"World"' not in stored

    codec_ip = kubectl("get", "svc", "hello-codec", "-n", namespace, "-o", "jsonpath={.spec.clusterIP}").stdout
    endpoint = f"http://{codec_ip}:8888"
    token = base64.b64decode(kubectl("get", "secret", "hello-codec-auth", "-n", namespace, "-o",
                                     "jsonpath={.data.token}").stdout).decode()
    decoded = show(temporal, started["workflowId"], "--codec-endpoint", endpoint, "--codec-auth", f"Bearer {token}")
    assert decoded.returncode == 0, decoded.stderr
    assert ENCRYPTED not in decoded.stdout and "Hello World!" in plain_values(decoded.stdout)
    text = show(temporal, started["workflowId"], "--codec-endpoint", endpoint, "--codec-auth", f"Bearer {token}",
                output="text")
    assert 'Result          "Hello World!"' in text.stdout, text.stdout + text.stderr

    # The deployed codec server refuses what lacks the token (401) or comes from another origin (403).
    def status_of(*headers: str) -> str:
        body = json.dumps({"payloads": []})
        return node_exec("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", "-X", "POST",
                         "-H", "Content-Type: application/json", *headers, "--data", body, f"{endpoint}/decode").stdout

    assert status_of() == "401"
    assert status_of("-H", "Authorization: Bearer wrong") == "401"
    assert status_of("-H", f"Authorization: Bearer {token}", "-H", "Origin: http://evil.example") == "403"
    assert status_of("-H", f"Authorization: Bearer {token}", "-H", "Origin: http://localhost:8080") == "200"

    # Rotation: a new key encrypts from now on; the workflow from before stays readable.
    kubectl("annotate", "temporalclusterclient", "hello", "-n", namespace, "temporal-mtls.dev/rotate-payload-key=r1")
    rotated = wait_for(lambda: (s := json.loads(kubectl("get", "temporalclusterclient", "hello", "-n", namespace,
                                                        "-o", "json").stdout)["status"]["encryption"])
                       .get("activeKeyId") != first_key and s, 60, interval=1, what="a new payload key")
    second_key = rotated["activeKeyId"]
    assert rotated["keyIds"] == sorted([first_key, second_key]) and rotated["rotation"] == {"handled": "r1"}

    def new_workflow_with_new_key():
        done = start_workflow(temporal, node_exec, "again")
        ids = key_ids(show(temporal, done["workflowId"]).stdout)
        return ids == {second_key} and done  # the mounted Secret reaches the pods a moment later

    after = wait_for(new_workflow_with_new_key, 90, interval=2, what="payloads with the new key id")
    assert after["result"] == "Hello again!"
    old = show(temporal, started["workflowId"], "--codec-endpoint", endpoint, "--codec-auth", f"Bearer {token}")
    assert "Hello World!" in plain_values(old.stdout)
    assert key_ids(show(temporal, started["workflowId"]).stdout) == {first_key}
