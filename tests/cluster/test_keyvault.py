"""End to end with Azure Key Vault as the certificate source: the Lowkey Vault emulator runs in the
local cluster from examples/lowkey-vault.yaml, `make keyvault-certs` (the same command) fills it from
the host, and the operator (a pod) syncs it with the Azure SDK through DefaultAzureCredential."""

from __future__ import annotations

import base64
import json
import os
import re
import signal

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from conftest import REPO, VOLUME_REFRESH, condition, operator_logs, wait_for
from localkube import keyvault
from localkube.toolchain import path_of

pytestmark = [pytest.mark.cluster, pytest.mark.keyvault]

CHART = str(REPO / "charts" / "temporal-hello-world")


@pytest.fixture(scope="session")
def kubectl_argv(kubeconfig) -> list[str]:
    return [str(path_of("kubectl")), f"--kubeconfig={kubeconfig}"]


@pytest.fixture(scope="session")
def cluster_vault(local_cluster, kubectl_argv, tmp_path_factory):
    """examples/lowkey-vault.yaml in namespace default; the host reaches it through its NodePorts."""
    keyvault.deploy(kubectl_argv)
    emulator = keyvault.Emulator.from_port_mappings(local_cluster.port_mappings)
    emulator.wait_until_serving()
    ca_file = tmp_path_factory.mktemp("vault") / "lowkey-vault-ca.crt"
    ca_file.write_bytes(wait_for(lambda: _try(emulator.tls_certificate), 60, interval=0.5,
                                 what="the emulator's TLS certificate"))
    return emulator, ca_file


def _try(call):
    try:
        return call()
    except OSError:
        return None


def fill(cluster_vault, namespace: str, *args: str) -> dict:
    """`make keyvault-certs` for TemporalCluster "demo" in ``namespace``, names prefixed by the namespace."""
    emulator, ca_file = cluster_vault
    out = keyvault.seed(emulator, ca_file, "--cluster", "demo", "--namespace", namespace, "--prefix", f"{namespace}-",
                        "--client", "hello", "--json", *args, capture=True)
    assert "PRIVATE KEY" not in out
    return json.loads(out)


def key_vault_spec(cluster_vault, kubectl_argv, namespace: str, sync_interval: str = "10s") -> dict:
    """examples/cluster-keyvault.yaml with this test's certificate names and a short sync interval."""
    emulator, ca_file = cluster_vault
    keyvault.publish_tls_secret(kubectl_argv, ca_file.read_bytes(), namespace)
    spec = yaml.safe_load((REPO / "examples" / "cluster-keyvault.yaml").read_text())["spec"]
    vault = spec["mtls"]["source"]["azureKeyVault"]
    vault["certificates"] = {role: f"{namespace}-{name.removeprefix('temporal-')}"
                             for role, name in vault["certificates"].items()}
    vault["caCertificates"] = {"internode": [f"{namespace}-ca"], "frontend": [f"{namespace}-ca"]}
    vault["syncInterval"] = sync_interval
    spec["mtls"]["refreshInterval"] = "5s"  # Temporal re-reads leaf files this often
    return spec


def key_traces(key_pem: bytes) -> set[str]:
    """Runs of a key's secret part (EC scalar, RSA private exponent) as hex and base64 at every byte alignment:
    any leak of the key, as PEM, base64 or hex DER, shows one. (Its public parts, such as the algorithm
    identifier every P-256 key shares, would match certificates, which are public.)"""
    key = serialization.load_pem_private_key(key_pem, None)
    numbers = key.private_numbers()
    value = numbers.private_value if hasattr(numbers, "private_value") else numbers.d
    secret = value.to_bytes((value.bit_length() + 7) // 8, "big")
    aligned = {base64.b64encode(bytes(shift) + secret).decode()[4:28] for shift in range(3)}
    return aligned | {secret.hex()[:24], secret.hex().upper()[:24]}


def served_certificate(temporal, node_exec) -> x509.Certificate:
    """The frontend's certificate as a real TLS client sees it (openssl verifies chain and host name)."""
    shown = node_exec("openssl", "s_client", "-connect", temporal.address, "-servername", temporal.server_name,
                      "-verify_hostname", temporal.server_name, "-CAfile", str(temporal.cert_dir / "operator" / "ca.crt"),
                      "-cert", str(temporal.cert_dir / "operator" / "tls.crt"),
                      "-key", str(temporal.cert_dir / "operator" / "tls.key"), "-verify_return_error", timeout=30)
    assert "Verify return code: 0 (ok)" in shown.stdout, shown.stdout[-500:]
    pem = re.search(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", shown.stdout, re.S).group(0)
    return x509.load_pem_x509_certificate(pem.encode())


def thumbprint(certificate: x509.Certificate) -> str:
    """Key Vault's x509 thumbprint: SHA-1 of the DER certificate."""
    return certificate.fingerprint(hashes.SHA1()).hex().upper()


def secret_bytes(kubectl, namespace: str, name: str) -> dict[str, bytes]:
    data = json.loads(kubectl("get", "secret", name, "-n", namespace, "-o", "json").stdout)["data"]
    return {k: base64.b64decode(v) for k, v in data.items()}


def server_pod(kubectl, namespace: str) -> dict:
    pods = json.loads(kubectl("get", "pods", "-n", namespace, "-l", "app.kubernetes.io/component=server",
                              "-o", "json").stdout)["items"]
    assert len(pods) == 1
    return pods[0]


def test_a_cluster_from_key_vault_serves_the_vaults_certificates_and_runs_workflows(
        cluster_vault, temporal_cluster, kubectl, kubectl_argv, node_exec, helm, namespace, node_port_url):
    vault = fill(cluster_vault, namespace)
    assert {info["action"] for info in vault.values()} == {"created"}
    temporal = temporal_cluster(key_vault_spec(cluster_vault, kubectl_argv, namespace))

    status = temporal.get()["status"]
    assert condition(temporal.get(), "CertificatesReady")["reason"] == "Synced"
    frontend = vault[f"{namespace}-frontend"]
    assert status["certificates"]["frontend"]["source"] == {
        "keyvault-certificate": f"{namespace}-frontend", "keyvault-version": frontend["version"],
        "keyvault-thumbprint": frontend["thumbprint"]}
    served = served_certificate(temporal, node_exec)
    assert thumbprint(served) == frontend["thumbprint"]  # the vault's certificate, byte for byte
    published = secret_bytes(kubectl, namespace, "demo-frontend-tls")
    assert x509.load_pem_x509_certificate(published["tls.crt"]) == served
    ca = x509.load_pem_x509_certificates(published["ca.crt"])
    assert [thumbprint(c) for c in ca] == [vault[f"{namespace}-ca"]["thumbprint"]]
    for role in ("internode", "system-worker", "operator-client"):
        assert status["certificates"][role]["source"]["keyvault-version"] == vault[f"{namespace}-{role}"]["version"]

    # The apps with the client certificate from the vault: a workflow through the starter.
    kubectl("apply", "-n", namespace, "-f", str(REPO / "examples" / "namespace.yaml"))
    wait_for(lambda: condition(json.loads(kubectl("get", "temporalnamespace", "default", "-n", namespace, "-o",
                                                  "json").stdout), "Ready").get("status") == "True",
             90, interval=1, what="the default namespace")
    wait_for(lambda: _node_port_free(kubectl), 90, interval=1, what="NodePort 30800 to be free")
    helm("install", "hello", CHART, "-n", namespace, "--set", f"keyVaultCertificate={namespace}-client-hello",
         "--wait", "--timeout=180s")
    client = json.loads(kubectl("get", "temporalclusterclient", "hello", "-n", namespace, "-o", "json").stdout)
    assert client["status"]["certificate"]["source"]["keyvault-version"] == vault[f"{namespace}-client-hello"]["version"]
    app_cert = x509.load_pem_x509_certificate(secret_bytes(kubectl, namespace, "hello-temporal-client")["tls.crt"])
    assert thumbprint(app_cert) == vault[f"{namespace}-client-hello"]["thumbprint"]
    started = wait_for(lambda: _try(lambda: _http_json(f"{node_port_url}/workflow/start?name=Vault&wait=true")),
                       90, interval=1, what="a workflow through the starter")
    assert started["result"] == "Hello Vault!"
    helm("uninstall", "hello", "-n", namespace, "--wait")

    # No private key in anything that is not a Secret: operator logs, Events, status, ConfigMaps.
    keys = [secret_bytes(kubectl, namespace, f"demo-{role}-tls")["tls.key"] for role in
            ("internode", "frontend", "system-worker", "operator-client")]
    visible = "\n".join([
        operator_logs(kubectl),
        kubectl("get", "events", "-n", namespace, "-o", "json").stdout,
        kubectl("get", "temporalclusters,temporalclusterclients,configmaps", "-n", namespace, "-o", "json").stdout])
    visible = visible.replace("\\n", "").replace("\n", "")  # a PEM's line breaks, raw or escaped in JSON
    for key in keys:
        assert not [trace for trace in key_traces(key) if trace in visible], "key material leaked"


def test_a_new_vault_version_reaches_the_server_without_a_restart_and_an_outage_loses_nothing(
        cluster_vault, temporal_cluster, kubectl, kubectl_argv, node_exec, namespace, local_cluster):
    fill(cluster_vault, namespace)
    temporal = temporal_cluster(key_vault_spec(cluster_vault, kubectl_argv, namespace))
    pod = server_pod(kubectl, namespace)

    rotated = fill(cluster_vault, namespace, "--rotate")
    assert rotated[f"{namespace}-frontend"]["action"] == "rotated"
    new = rotated[f"{namespace}-frontend"]["thumbprint"]
    wait_for(lambda: thumbprint(served_certificate(temporal, node_exec)) == new, 90 + VOLUME_REFRESH, interval=1,
             what="the server to present the new vault version")
    after = server_pod(kubectl, namespace)
    assert after["metadata"]["uid"] == pod["metadata"]["uid"]  # a new leaf is hot-reloaded: no restart
    assert after["status"]["containerStatuses"][0]["restartCount"] == pod["status"]["containerStatuses"][0]["restartCount"]
    assert temporal.get()["status"]["certificates"]["frontend"]["source"]["keyvault-version"] == \
        rotated[f"{namespace}-frontend"]["version"]

    # The vault stops answering (its process frozen): the cluster keeps serving on what it has.
    vault_pod = json.loads(kubectl("get", "pods", "-n", keyvault.NAMESPACE, "-l", "app.kubernetes.io/name=lowkey-vault",
                                   "-o", "json").stdout)["items"][0]
    vault_processes = local_cluster.container_processes(vault_pod["status"]["containerStatuses"][0]["containerID"])
    before = {s: secret_bytes(kubectl, namespace, f"demo-{s}-tls") for s in ("internode", "frontend")}
    for pid in vault_processes:
        os.kill(pid, signal.SIGSTOP)
    try:
        down = wait_for(lambda: (c := condition(temporal.get(), "CertificatesReady")).get("status") == "False" and c,
                        120, interval=1, what="the vault outage to be reported")
        assert down["reason"] == "VaultUnreachable", down
        assert condition(temporal.get(), "Ready")["status"] == "True"  # still serving
        assert condition(temporal.get(), "Degraded")["reason"] == "VaultUnreachable"
        events = wait_for(lambda: [e for e in json.loads(kubectl("get", "events", "-n", namespace, "-o",
                                                                 "json").stdout)["items"]
                                   if e["reason"] == "VaultUnreachable"], 30, interval=1, what="a Warning Event")
        assert events[0]["type"] == "Warning"
        assert {s: secret_bytes(kubectl, namespace, f"demo-{s}-tls") for s in ("internode", "frontend")} == before
        described = temporal.cli("operator", "namespace", "describe", "--namespace", "temporal-system")
        assert described.returncode == 0, described.stderr
    finally:
        for pid in vault_processes:
            os.kill(pid, signal.SIGCONT)
    wait_for(lambda: condition(temporal.get(), "CertificatesReady").get("reason") == "Synced", 120, interval=1,
             what="the operator to recover by itself")
    assert {s: secret_bytes(kubectl, namespace, f"demo-{s}-tls") for s in ("internode", "frontend")} == before


def _node_port_free(kubectl) -> bool:
    services = json.loads(kubectl("get", "services", "-A", "-o", "json").stdout)["items"]
    return not [s for s in services for p in s["spec"].get("ports", []) if p.get("nodePort") == 30800]


def _http_json(url: str) -> dict:
    import urllib.request
    with urllib.request.urlopen(url, timeout=60) as response:
        return json.loads(response.read())
