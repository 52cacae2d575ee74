"""Payload keys wrapped by a Key Vault key: the operator wraps with a Lowkey Vault emulator of the test's own
namespace (tests.support.lowkey), the apps store only the envelope and unwrap through the vault with
DefaultAzureCredential, and an outage of that vault leaves running apps working on their cached keys
while the codec server's metric and the worker's health say the vault is unreachable."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest
import yaml
from google.protobuf import json_format
from temporalio.api.history.v1 import History
from temporalio.converter import DataConverter

from cluster.test_encryption import CHART, key_ids, plain_values, show, start_workflow
from cluster.test_keyvault import cluster_vault, kubectl_argv  # noqa: F401 (fixtures: the shared token endpoint)
from cluster.test_lowkey_vault import ClusterVault
from conftest import REPO, condition, wait_for
from support.lowkey import HTTPS_PORT, TOKEN_PORT, cluster_vault_manifests, service_hosts, vault_tls
from temporal_mtls_codec import EncryptionCodec, SecretKeyProvider
from temporal_mtls_codec.keyvault import parse_envelope

pytestmark = [pytest.mark.cluster, pytest.mark.keyvault]

KEY_NAME = "payloads"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def from_b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_apps_store_only_vault_wrapped_keys_and_survive_a_vault_outage_on_cached_keys(
        cluster_vault, temporal_cluster, kubectl, helm, node_exec, namespace, tmp_path):  # noqa: F811
    # The operator's DefaultAzureCredential gets its tokens from the shared emulator (its chart values); the
    # emulator accepts any token, so this test's own vault can go down without touching anyone else's.
    ca_pem, cert_pem, key_pem = vault_tls(namespace)
    (tmp_path / "vault-ca.pem").write_bytes(ca_pem)
    kubectl("apply", "-n", namespace, "-f", "-",
            input=yaml.safe_dump_all(cluster_vault_manifests(namespace, tls=(cert_pem, key_pem))))
    kubectl("create", "secret", "generic", "payload-vault-ca", "-n", namespace,
            f"--from-file=ca.crt={tmp_path / 'vault-ca.pem'}")
    vault = ClusterVault(kubectl, namespace, str(tmp_path / "vault-ca.pem"))
    vault.wait_ready()
    host = service_hosts(namespace)[0]
    vault_url = f"https://{host}:{HTTPS_PORT}"
    created = json.loads(vault.curl(node_exec, host, f"/keys/{KEY_NAME}/create?api-version=7.6", "-X", "POST",
                                    "-H", "Content-Type: application/json", "-d", json.dumps({
                                        "kty": "RSA", "key_size": 2048,  # Lowkey also wants encrypt/decrypt
                                        "key_ops": ["wrapKey", "unwrapKey", "encrypt", "decrypt"]})))
    assert created["key"]["kid"].startswith(f"{vault_url}/keys/{KEY_NAME}/")

    temporal = temporal_cluster()
    kubectl("apply", "-n", namespace, "-f", str(REPO / "examples" / "namespace.yaml"))
    wait_for(lambda: condition(json.loads(kubectl("get", "temporalnamespace", "default", "-n", namespace, "-o",
                                                  "json").stdout), "Ready").get("status") == "True",
             90, interval=1, what="the default namespace")
    identity = {"IDENTITY_ENDPOINT": f"http://{host}:{TOKEN_PORT}/metadata/identity/oauth2/token",
                "IDENTITY_HEADER": "local"}
    env = [arg for i, (name, value) in enumerate(identity.items())
           for arg in ("--set", f"extraEnv[{i}].name={name}", "--set", f"extraEnv[{i}].value={value}")]
    helm("install", "hello", CHART, "-n", namespace, "--set", "encryption.enabled=true",
         "--set", f"encryption.azureKeyVault.vaultUrl={vault_url}",
         "--set", f"encryption.azureKeyVault.keyName={KEY_NAME}",
         "--set", "encryption.azureKeyVault.apiVersion=7.6",
         "--set", "encryption.azureKeyVault.verifyChallengeResource=false",
         "--set", "encryption.azureKeyVault.tlsCASecret=payload-vault-ca",
         "--set", "encryption.azureKeyVault.cacheTTL=5s", "--set", "codecServer.enabled=true",
         "--set", "starter.service.type=ClusterIP", *env, "--wait", "--timeout=180s")

    client = json.loads(kubectl("get", "temporalclusterclient", "hello", "-n", namespace, "-o", "json").stdout)
    assert condition(client, "EncryptionReady")["status"] == "True"
    active = client["status"]["encryption"]["activeKeyId"]
    assert client["status"]["encryption"]["source"] == "azureKeyVault"
    stored = {k: base64.b64decode(v) for k, v in json.loads(kubectl(
        "get", "secret", "hello-payload-keys", "-n", namespace, "-o", "json").stdout)["data"].items()}
    assert set(stored) == {"active", "codec.json", "vault-ca.crt", f"{active}.wrapped"}  # no plain data key
    kid, algorithm, wrapped = parse_envelope(stored[f"{active}.wrapped"])
    assert kid == created["key"]["kid"] and algorithm == "RSA-OAEP-256"

    started = start_workflow(temporal, node_exec, "World")
    assert started["result"] == "Hello World!"
    history = show(temporal, started["workflowId"])
    assert key_ids(history.stdout) == {active} and "Hello World" not in history.stdout

    # The envelope is the key: unwrapped by the vault, it decrypts the result the server stored.
    unwrapped = json.loads(vault.curl(node_exec, host, f"{kid.removeprefix(vault_url)}/unwrapkey?api-version=7.6",
                                      "-X", "POST", "-H", "Content-Type: application/json",
                                      "-d", json.dumps({"alg": algorithm, "value": b64url(wrapped)})))
    keys_dir = tmp_path / "payload-keys"
    keys_dir.mkdir()
    (keys_dir / f"{active}.key").write_bytes(from_b64url(unwrapped["value"]))
    (keys_dir / "active").write_text(active)
    events = json_format.Parse(history.stdout, History(), ignore_unknown_fields=True).events
    result = events[-1].workflow_execution_completed_event_attributes.result.payloads
    converter = DataConverter(payload_codec=EncryptionCodec(SecretKeyProvider(keys_dir)))
    assert asyncio.run(converter.decode(list(result), [str])) == ["Hello World!"]

    # A vault outage: running apps keep their cached key; the codec server's metric and the worker say so.
    codec_ip = kubectl("get", "svc", "hello-codec", "-n", namespace, "-o", "jsonpath={.spec.clusterIP}").stdout
    token = base64.b64decode(kubectl("get", "secret", "hello-codec-auth", "-n", namespace, "-o",
                                     "jsonpath={.data.token}").stdout).decode()
    codec = ("--codec-endpoint", f"http://{codec_ip}:8888", "--codec-auth", f"Bearer {token}")
    assert "Hello World!" in plain_values(show(temporal, started["workflowId"], *codec).stdout)  # warms its cache

    def metric() -> str:
        return node_exec("curl", "-sS", "--max-time", "10", f"http://{codec_ip}:8888/metrics").stdout

    assert "temporal_codec_key_vault_reachable 1" in metric()
    kubectl("scale", "deployment/lowkey-vault", "-n", namespace, "--replicas=0")
    wait_for(lambda: not kubectl("get", "pods", "-n", namespace, "-l", "app.kubernetes.io/name=lowkey-vault",
                                 "-o", "name").stdout.strip(), 60, interval=1, what="the vault to stop")
    during = start_workflow(temporal, node_exec, "Outage")
    assert during["result"] == "Hello Outage!"

    def decoded_while_down() -> str | None:  # every decode works; once the 5 s TTL is over it asks the vault
        assert "Hello Outage!" in plain_values(show(temporal, during["workflowId"], *codec).stdout)
        text = metric()
        return text if "temporal_codec_key_vault_reachable 0" in text else None

    text = wait_for(decoded_while_down, 60, interval=1, what="the codec server to notice the outage")
    assert 'temporal_codec_key_unwraps_total{outcome="stale"}' in text
    worker_ip = kubectl("get", "pods", "-n", namespace, "-l", "app.kubernetes.io/name=temporal-hello-worker",
                        "-o", "jsonpath={.items[0].status.podIP}").stdout

    def worker_noticed() -> dict | None:  # each workflow makes the worker use its key (the TTL is 5 s)
        assert start_workflow(temporal, node_exec, "Again")["result"] == "Hello Again!"
        health = json.loads(node_exec("curl", "-sS", "--max-time", "10", f"http://{worker_ip}:8081/healthz").stdout)
        return health if health["keyVault"]["reachable"] is False else None

    health = wait_for(worker_noticed, 60, interval=1, what="the worker to report the vault unreachable")
    # refused (ServiceRequestError) or, on a kept-alive connection to the stopped pod, reset (ServiceResponseError)
    error_type = health["keyVault"]["lastError"].split(":", 1)[0]
    assert health["status"] == "ok" and error_type in {"ServiceRequestError", "ServiceResponseError"}
