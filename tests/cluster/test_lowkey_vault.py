"""The Lowkey Vault emulator as a pod (tests.support.lowkey.cluster_vault_manifests): non-root, read-only
root filesystem, serving a test CA's certificate, one vault under the Service's names and localhost."""

from __future__ import annotations

import json
import uuid

import pytest
import yaml

from conftest import wait_for
from support.lowkey import HTTPS_PORT, cluster_vault_manifests, service_hosts, vault_tls

pytestmark = [pytest.mark.cluster, pytest.mark.keyvault]


@pytest.fixture
def deploy(kubectl, namespace, tmp_path):
    """Apply the emulator's manifests (with a test CA's certificate) and wait for its pod to be Ready."""

    def run(**options) -> "ClusterVault":
        ca_pem, cert_pem, key_pem = vault_tls(namespace)
        (tmp_path / "ca.pem").write_bytes(ca_pem)
        kubectl("apply", "-n", namespace, "-f", "-",
                input=yaml.safe_dump_all(cluster_vault_manifests(namespace, tls=(cert_pem, key_pem), **options)))
        vault = ClusterVault(kubectl, namespace, str(tmp_path / "ca.pem"))
        vault.wait_ready()
        return vault

    return run


class ClusterVault:
    def __init__(self, kubectl, namespace: str, ca_file: str) -> None:
        self.kubectl, self.namespace, self.ca_file = kubectl, namespace, ca_file
        self.ip = kubectl("get", "service", "lowkey-vault", "-n", namespace, "-o", "jsonpath={.spec.clusterIP}").stdout

    def wait_ready(self) -> None:
        # The JVM starts in 10-60 s, as loaded as the machine is; kubectl's own limit first, so its answer is seen.
        done = self.kubectl("rollout", "status", "deployment/lowkey-vault", "-n", self.namespace, "--timeout=180s",
                            check=False, timeout=200)
        if done.returncode != 0:
            pods = self.kubectl("get", "pods", "-n", self.namespace, "-o", "yaml", check=False).stdout
            logs = self.kubectl("logs", "deployment/lowkey-vault", "-n", self.namespace, "--tail=30", check=False)
            raise AssertionError(f"the emulator's pod is not Ready: {done.stderr}\n{pods[-3000:]}\n{logs.stdout}")

    def curl(self, node_exec, host: str, path: str, *args: str) -> str:
        """HTTPS to the Service's ClusterIP from the node namespace, as ``host`` (SNI, Host), verified by the test CA."""
        def attempt():
            return node_exec("curl", "-sS", "--fail-with-body", "--max-time", "10", "--cacert", self.ca_file,
                             "--resolve", f"{host}:{HTTPS_PORT}:{self.ip}", "-H", "Authorization: Bearer test",
                             *args, f"https://{host}:{HTTPS_PORT}{path}")

        # Connection refused or reset (curl 7, 35) while the Service still routes to no or an old endpoint.
        done = wait_for(lambda: (r := attempt()).returncode not in (7, 35) and r, 30, interval=0.5,
                        what=f"the Service to route https://{host}:{HTTPS_PORT} to the emulator")
        assert done.returncode == 0, f"curl https://{host}:{HTTPS_PORT}{path}: {done.stderr}{done.stdout}"
        return done.stdout

    def put_secret(self, node_exec, host: str, name: str, value: str) -> None:
        self.curl(node_exec, host, f"/secrets/{name}?api-version=7.6", "-X", "PUT",
                  "-H", "Content-Type: application/json", "-d", json.dumps({"value": value}))

    def secret(self, node_exec, host: str, name: str) -> str:
        return json.loads(self.curl(node_exec, host, f"/secrets/{name}?api-version=7.6"))["value"]


def test_pods_reach_one_vault_by_service_name_over_the_test_cas_tls(deploy, namespace, node_exec):
    vault = deploy()
    short, fqdn = service_hosts(namespace)
    assert vault.curl(node_exec, short, "/ping") == "pong"
    vault.put_secret(node_exec, short, "shared", "one vault")
    for host in (fqdn, "localhost"):  # localhost is what the host sees through the NodePort
        assert vault.secret(node_exec, host, "shared") == "one vault"


def test_an_export_claim_keeps_the_data_when_the_pod_goes(deploy, kubectl, namespace, node_exec):
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "vault-data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Mi"}}}}))
    vault = deploy(export_claim="vault-data")
    short, fqdn = service_hosts(namespace)
    value = uuid.uuid4().hex
    vault.put_secret(node_exec, short, "kept", value)
    kubectl("scale", "deployment/lowkey-vault", "-n", namespace, "--replicas=0")
    kubectl("wait", "--for=delete", "pod", "-l", "app.kubernetes.io/instance=lowkey-vault", "-n", namespace,
            "--timeout=60s")
    kubectl("scale", "deployment/lowkey-vault", "-n", namespace, "--replicas=1")
    vault.wait_ready()
    assert vault.secret(node_exec, fqdn, "kept") == value  # imported, aliases included
    vault.put_secret(node_exec, short, "after-restart", "still exporting")

