"""Payload keys wrapped by a Key Vault key (the Lowkey Vault emulator in the local cluster): the operator wraps,
the apps store only the envelope and unwrap through the vault with DefaultAzureCredential, and a vault
outage leaves running apps working on their cached key while the codec server's metric says so."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest
from azure.identity import ManagedIdentityCredential
from azure.keyvault.keys import KeyClient
from google.protobuf import json_format
from temporalio.api.history.v1 import History
from temporalio.converter import DataConverter

from cluster.test_encryption import CHART, key_ids, plain_values, show, start_workflow
from cluster.test_keyvault import cluster_vault, kubectl_argv  # noqa: F401 (fixtures)
from conftest import REPO, condition, wait_for
from localkube import keyvault
from temporal_mtls_codec import EncryptionCodec
from temporal_mtls_codec.keyvault import KeyVaultKeyProvider, VaultOptions, envelope, parse_envelope

pytestmark = [pytest.mark.cluster, pytest.mark.keyvault]

IN_CLUSTER_VAULT = "https://lowkey-vault.default.svc.cluster.local:8443"
IDENTITY = [("IDENTITY_ENDPOINT", "http://lowkey-vault.default.svc.cluster.local:8480/metadata/identity/oauth2/token"),
            ("IDENTITY_HEADER", "local")]


def test_apps_store_only_vault_wrapped_keys_and_survive_a_vault_outage_on_cached_keys(
        cluster_vault, kubectl_argv, temporal_cluster, kubectl, helm, node_exec, namespace, monkeypatch):
    emulator, ca_file = cluster_vault
    for name, value in emulator.identity_env().items():
        monkeypatch.setenv(name, value)
    options = VaultOptions("7.6", False, str(ca_file))
    credential = ManagedIdentityCredential()
    key_name = f"payloads-{namespace}"[:127]
    with KeyClient(emulator.vault_url, credential, **options.client_kwargs()) as keys:  # encrypt/decrypt: Lowkey wants them
        keys.create_rsa_key(key_name, size=2048, key_operations=["wrapKey", "unwrapKey", "encrypt", "decrypt"])
    keyvault.publish_tls_secret(kubectl_argv, ca_file.read_bytes(), namespace)

    temporal = temporal_cluster()
    kubectl("apply", "-n", namespace, "-f", str(REPO / "examples" / "namespace.yaml"))
    wait_for(lambda: condition(json.loads(kubectl("get", "temporalnamespace", "default", "-n", namespace, "-o",
                                                  "json").stdout), "Ready").get("status") == "True",
             90, interval=1, what="the default namespace")
    env = [arg for i, (name, value) in enumerate(IDENTITY)
           for arg in ("--set", f"extraEnv[{i}].name={name}", "--set", f"extraEnv[{i}].value={value}")]
    helm("install", "hello", CHART, "-n", namespace, "--set", "encryption.enabled=true",
         "--set", f"encryption.azureKeyVault.vaultUrl={IN_CLUSTER_VAULT}",
         "--set", f"encryption.azureKeyVault.keyName={key_name}", "--set", "encryption.azureKeyVault.apiVersion=7.6",
         "--set", "encryption.azureKeyVault.verifyChallengeResource=false",
         "--set", f"encryption.azureKeyVault.tlsCASecret={keyvault.TLS_SECRET}",
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
    assert kid.startswith(f"{IN_CLUSTER_VAULT}/keys/{key_name}/") and algorithm == "RSA-OAEP-256"

    started = start_workflow(temporal, node_exec, "World")
    assert started["result"] == "Hello World!"
    history = show(temporal, started["workflowId"])
    assert key_ids(history.stdout) == {active} and "Hello World" not in history.stdout

    # The envelope is the key: unwrapped by the vault (from the host), it decrypts the server's history.
    keys_dir = temporal.cert_dir.parent / "payload-keys"
    keys_dir.mkdir()
    (keys_dir / "active").write_text(active)
    (keys_dir / f"{active}.wrapped").write_bytes(envelope(kid.replace(IN_CLUSTER_VAULT, emulator.vault_url),
                                                          wrapped, algorithm))
    events = json_format.Parse(history.stdout, History(), ignore_unknown_fields=True).events
    result = events[-1].workflow_execution_completed_event_attributes.result.payloads
    converter = DataConverter(payload_codec=EncryptionCodec(KeyVaultKeyProvider(keys_dir, credential, options)))
    assert asyncio.run(converter.decode(list(result), [str])) == ["Hello World!"]

    # A vault outage: running apps keep their cached key; the codec server's metric says the vault is unreachable.
    codec_ip = kubectl("get", "svc", "hello-codec", "-n", namespace, "-o", "jsonpath={.spec.clusterIP}").stdout
    token = base64.b64decode(kubectl("get", "secret", "hello-codec-auth", "-n", namespace, "-o",
                                     "jsonpath={.data.token}").stdout).decode()
    codec = ("--codec-endpoint", f"http://{codec_ip}:8888", "--codec-auth", f"Bearer {token}")
    assert "Hello World!" in plain_values(show(temporal, started["workflowId"], *codec).stdout)  # warms its cache

    def metric() -> str:
        return node_exec("curl", "-sS", "--max-time", "10", f"http://{codec_ip}:8888/metrics").stdout

    assert "temporal_codec_key_vault_reachable 1" in metric()
    kubectl("scale", "deployment/lowkey-vault", "-n", "default", "--replicas=0")
    try:
        wait_for(lambda: not kubectl("get", "pods", "-n", "default", "-l", "app.kubernetes.io/name=lowkey-vault",
                                     "-o", "name").stdout.strip(), 60, interval=1, what="the vault to stop")
        during = start_workflow(temporal, node_exec, "Outage")  # past the 5 s TTL: the vault is asked and fails
        assert during["result"] == "Hello Outage!"

        def decoded_while_down() -> str | None:  # every decode works; once the 5 s TTL is over it asks the vault
            assert "Hello Outage!" in plain_values(show(temporal, during["workflowId"], *codec).stdout)
            text = metric()
            return text if "temporal_codec_key_vault_reachable 0" in text else None

        text = wait_for(decoded_while_down, 60, interval=1, what="the codec server to notice the outage")
        worker_ip = kubectl("get", "pods", "-n", namespace, "-l", "app.kubernetes.io/name=temporal-hello-worker",
                            "-o", "jsonpath={.items[0].status.podIP}").stdout

        def worker_noticed() -> dict | None:  # each workflow makes the worker use its key (the TTL is 5 s)
            assert start_workflow(temporal, node_exec, "Again")["result"] == "Hello Again!"
            health = json.loads(node_exec("curl", "-sS", "--max-time", "10", f"http://{worker_ip}:8081/healthz").stdout)
            return health if health["keyVault"]["reachable"] is False else None

        health = wait_for(worker_noticed, 60, interval=1, what="the worker to report the vault unreachable")
        assert health["status"] == "ok" and health["keyVault"]["lastError"].startswith("ServiceRequestError")
        assert 'temporal_codec_key_unwraps_total{outcome="stale"}' in text
    finally:
        kubectl("scale", "deployment/lowkey-vault", "-n", "default", "--replicas=1")
        kubectl("rollout", "status", "deployment/lowkey-vault", "-n", "default", "--timeout=180s")
        emulator.wait_until_serving()
