"""Key Vault sync cost and speed: requests per certificate per sync, and vault import -> server presents it.

    .venv/bin/python bench/keyvault.py [--runs 3] [--sync-interval 10s] [--kubelet-sync-frequency 10s]

Starts a private local cluster with the Lowkey Vault emulator (examples/lowkey-vault.yaml) and the
operator, fills the vault with `make keyvault-certs`' command, and creates a TemporalCluster with the
azureKeyVault source. Then:
- counts the Key Vault requests of one sync of the operator's own source code (AzureKeyVaultSource, the
  same class the operator runs) when nothing changed and when every leaf has a new version (the
  cluster itself syncs hourly meanwhile, so it cannot take the change first);
- `--runs` times: imports new versions (--rotate) and measures until the frontend presents the new
  certificate (openssl s_client from the cluster network, polled every 0.25 s); a changed Secret reaches the
  pod's volume within the kubelet's --kubelet-sync-frequency.
Prints a table, writes bench/results/keyvault.json.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from kubernetes.config import new_client_from_config

from localkube import keyvault
from localkube.control_plane import DEFAULT_SYNC_FREQUENCY, ControlPlane, free_port
from localkube.paths import REPO_ROOT, state_root
from localkube.toolchain import path_of
from report import poll, report
from temporal_mtls_operator.kube import Kube
from temporal_mtls_operator.models.cluster import TemporalClusterSpec
from temporal_mtls_operator.sources import AzureKeyVaultSource, ClusterIdentity

NAMESPACE = "bench"


def served_thumbprint(node_ns: str, address: str, server_name: str, certs_dir: Path) -> str | None:
    shown = subprocess.run(["ip", "netns", "exec", node_ns, "openssl", "s_client", "-connect", address,
                            "-servername", server_name, "-CAfile", str(certs_dir / "ca.crt"),
                            "-cert", str(certs_dir / "tls.crt"), "-key", str(certs_dir / "tls.key")],
                           input="", capture_output=True, text=True, timeout=30).stdout
    found = re.search(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", shown, re.S)
    return x509.load_pem_x509_certificate(found.group(0).encode()).fingerprint(hashes.SHA1()).hex().upper() \
        if found else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sync-interval", default="10s")
    parser.add_argument("--kubelet-sync-frequency", default=DEFAULT_SYNC_FREQUENCY,
                        help="the kubelet's syncFrequency: how soon a changed Secret reaches a mounted volume "
                             "(the kubelet's own default: 1m; LOCALKUBE_KUBELET_SYNC_FREQUENCY)")
    args = parser.parse_args()
    mappings = {port: ("127.0.0.1", free_port()) for port in (keyvault.HTTPS_NODE_PORT, keyvault.TOKEN_NODE_PORT)}
    cluster = ControlPlane(state_root() / f"bench-{os.getpid()}-{uuid.uuid4().hex[:4]}", mappings,
                           sync_frequency=args.kubelet_sync_frequency)
    try:
        cluster.up()
        kubectl = [str(path_of("kubectl")), f"--kubeconfig={cluster.kubeconfig}"]

        def k(*a: str, input: str | None = None) -> str:
            return subprocess.run([*kubectl, *a], check=True, capture_output=True, text=True, input=input).stdout

        subprocess.run([str(path_of("helm")), f"--kubeconfig={cluster.kubeconfig}", "upgrade", "--install", "tmo",
                        str(REPO_ROOT / "charts" / "temporal-mtls-operator"), "-n", "temporal-mtls-system",
                        "--create-namespace", "-f", str(REPO_ROOT / "examples" / "operator-values-lowkey-vault.yaml"),
                        "--wait"], check=True, capture_output=True)
        keyvault.deploy(kubectl)
        emulator = keyvault.Emulator.from_port_mappings(cluster.port_mappings)
        emulator.wait_until_serving()
        ca_file = cluster.state_dir / "lowkey-vault-ca.crt"
        ca_file.write_bytes(poll(lambda: _try(emulator.tls_certificate), 60))
        k("create", "namespace", NAMESPACE)
        keyvault.publish_tls_secret(kubectl, ca_file.read_bytes(), NAMESPACE)
        seed = ["--cluster", "demo", "--namespace", NAMESPACE, "--json"]
        keyvault.seed(emulator, ca_file, *seed, capture=True)

        # The cluster syncs hourly while this benchmark counts its own sync's requests (no race with it).
        spec = yaml.safe_load((REPO_ROOT / "examples" / "cluster-keyvault.yaml").read_text())
        spec["spec"]["mtls"]["source"]["azureKeyVault"]["syncInterval"] = "1h"
        spec["spec"]["mtls"]["refreshInterval"] = "5s"
        started = time.monotonic()
        k("apply", "-n", NAMESPACE, "-f", "-", input=yaml.safe_dump(spec))
        k("wait", "--for=condition=Ready", "temporalcluster/demo", "-n", NAMESPACE, "--timeout=300s")
        ready_seconds = time.monotonic() - started

        # Requests of one sync, counted in the operator's own source class against the same vault.
        body = json.loads(k("get", "temporalcluster", "demo", "-n", NAMESPACE, "-o", "json"))
        identity = ClusterIdentity("demo", NAMESPACE, body["metadata"]["uid"])
        # The same vault as the operator's, by the host's name for it (an alias in examples/lowkey-vault.yaml).
        spec["spec"]["mtls"]["source"]["azureKeyVault"]["vaultUrl"] = emulator.vault_url
        mtls = TemporalClusterSpec.model_validate(spec["spec"]).mtls
        os.environ.update(emulator.identity_env())
        source = AzureKeyVaultSource(Kube(new_client_from_config(config_file=str(cluster.kubeconfig))))

        def one_sync() -> int:
            source.schedule.expedite(("TemporalCluster", identity.uid))
            before = source.requests
            source.materials(identity, mtls)
            return source.requests - before

        one_sync()  # warm: a new client's first request carries the auth challenge
        unchanged = one_sync()
        keyvault.seed(emulator, ca_file, *seed, "--rotate", capture=True)
        changed = one_sync()

        # Import -> served, with the cluster's real sync interval.
        k("patch", "temporalcluster", "demo", "-n", NAMESPACE, "--type=merge", "-p", json.dumps(
            {"spec": {"mtls": {"source": {"azureKeyVault": {"syncInterval": args.sync_interval}}}}}))
        node_ns = cluster.netns
        address = k("get", "svc", "demo-frontend", "-n", NAMESPACE, "-o", "jsonpath={.spec.clusterIP}") + ":7233"
        rotate_seconds = []
        with tempfile.TemporaryDirectory() as certs_dir:
            secret = json.loads(k("get", "secret", "demo-operator-client-tls", "-n", NAMESPACE, "-o", "json"))["data"]
            for key in ("tls.crt", "tls.key", "ca.crt"):
                Path(certs_dir, key).write_bytes(base64.b64decode(secret[key]))
            server_name = f"demo-frontend.{NAMESPACE}.svc"
            for _ in range(args.runs):
                imported = time.monotonic()
                rotated = json.loads(keyvault.seed(emulator, ca_file, *seed, "--rotate", capture=True))
                new = rotated["temporal-frontend"]["thumbprint"]
                poll(lambda: served_thumbprint(node_ns, address, server_name, Path(certs_dir)) == new, interval=0.25)
                rotate_seconds.append(time.monotonic() - imported)
    finally:
        cluster.down()
    leaves, cas = 4, 2  # one certificate per role; one CA certificate per trust domain
    report("keyvault", {
        "sync_interval": args.sync_interval,
        "kubelet_sync_frequency": args.kubelet_sync_frequency,
        "requests_per_certificate_unchanged": round(unchanged / (leaves + cas), 2),
        "requests_per_changed_leaf": round((changed - cas) / leaves, 2),
        "requests_sync_unchanged": unchanged,
        "requests_sync_all_leaves_changed": changed,
        "apply_to_ready_seconds": round(ready_seconds, 2),
        "import_to_served_median_seconds": round(statistics.median(rotate_seconds), 2),
        "import_to_served_max_seconds": round(max(rotate_seconds), 2),
        "runs": args.runs,
    })


def _try(call):
    try:
        return call()
    except OSError:
        return None


if __name__ == "__main__":
    main()
