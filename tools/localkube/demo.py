"""`make demo`: the main job end to end on built-in defaults, as the original sample did it.

Starts the local cluster, runs the Key Vault emulator in it and fills it (`make keyvault-certs`),
installs the operator chart, applies examples/cluster-keyvault.yaml (or, with
SOURCE=selfSigned, examples/cluster.yaml) and examples/namespace.yaml, proves mTLS with the Temporal CLI, helm-installs the hello-world worker
and starter, and starts a workflow through the starter's NodePort (localhost:8000). Leaves
everything running. With POSTGRES=1 (--postgres) PostgreSQL 15 runs first (examples/postgres.yaml) and the
TemporalCluster takes persistence and scaled services from examples/cluster-postgres.yaml.
"""

from __future__ import annotations

import base64
import json
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from . import keyvault
from .control_plane import ControlPlane
from .paths import REPO_ROOT
from .toolchain import path_of


def _run(*argv: str, capture: bool = False) -> str:
    print("+", " ".join(Path(argv[0]).name if i == 0 else a for i, a in enumerate(argv)), flush=True)
    result = subprocess.run(argv, check=True, text=True, capture_output=capture)
    return result.stdout if capture else ""


STARTER_NODE_PORT = 30800
UI_NODE_PORT, CODEC_NODE_PORT = 30808, 30888  # kind-config.yaml: 127.0.0.1:8080 and 127.0.0.1:8888


def _published(cluster: ControlPlane, node_port: int, default: int) -> str:
    address, port = cluster.port_mappings.get(node_port, ("127.0.0.1", default))
    return f"http://{address}:{port}"  # the UI and the codec server on one host: their requests are same-site


def _http_get(url: str, attempts: int = 30) -> str:
    """GET with retries: the NodePort answers once the Service has a ready endpoint."""
    for attempt in range(attempts):
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                return response.read().decode()
        except OSError:
            if attempt == attempts - 1:
                raise
            time.sleep(1)
    return ""


def _http_refusal(url: str) -> str:
    """The status line and body of an answer that is meant to be an error (403 from the starter)."""
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return f"HTTP {response.status} (expected a refusal): {response.read().decode()}"
    except urllib.error.HTTPError as error:
        return f"HTTP {error.code}: {error.read().decode()}"


def fill_vault(cluster: ControlPlane, kubectl: list[str], *seed_args: str) -> None:
    """`make keyvault-certs` on the local cluster: the emulator runs, is trusted, and holds the certificates."""
    print("+ kubectl apply -f examples/lowkey-vault.yaml  (Lowkey Vault, an Azure Key Vault emulator)", flush=True)
    keyvault.deploy(kubectl)
    emulator = keyvault.Emulator.from_port_mappings(cluster.port_mappings)
    emulator.wait_until_serving()
    certificate = emulator.tls_certificate()
    ca_file = cluster.state_dir / "lowkey-vault-ca.crt"
    ca_file.write_bytes(certificate)
    keyvault.publish_tls_secret(kubectl, certificate, keyvault.NAMESPACE)
    print(f"+ python -m temporal_mtls_operator.keyvault --vault-url {emulator.vault_url} {' '.join(seed_args)}",
          flush=True)
    keyvault.seed(emulator, ca_file, *seed_args)


def demo_manifest(name: str, postgres: bool, ui: dict | None = None) -> str:
    """examples/<name>, on PostgreSQL with scaled services (examples/cluster-postgres.yaml's) when asked."""
    manifest = yaml.safe_load((REPO_ROOT / "examples" / name).read_text())
    if ui:
        manifest["spec"]["ui"] = ui
    if postgres:
        scaled = yaml.safe_load((REPO_ROOT / "examples" / "cluster-postgres.yaml").read_text())["spec"]
        manifest["spec"].update(persistence=scaled["persistence"], services=scaled["services"])
    return yaml.safe_dump(manifest)


def run_demo(cluster: ControlPlane, apps: bool = True, source: str = "azureKeyVault", postgres: bool = False) -> None:
    if source == "azureKeyVault":
        path_of("lowkey-vault.jar")  # fails early, in one line, when the emulator cannot be had
    cluster.up()
    kubectl = [str(path_of("kubectl")), f"--kubeconfig={cluster.kubeconfig}"]
    helm = [str(path_of("helm")), f"--kubeconfig={cluster.kubeconfig}"]
    # Helm installs a chart's CRDs only once; apply them so an upgraded demo gets new fields too.
    _run(*kubectl, "apply", "--server-side", "--force-conflicts", "-f", str(REPO_ROOT / "crds"))
    operator_values, cluster_manifest, app_values = [], "cluster.yaml", []
    if source == "azureKeyVault":
        fill_vault(cluster, kubectl, "--cluster", "demo", "--namespace", "default", "--client", "hello",
                   "--client", "demo-ui")  # the Web UI's own client certificate (spec.ui.keyVaultCertificate)
        operator_values = ["-f", str(REPO_ROOT / "examples" / "operator-values-lowkey-vault.yaml")]
        cluster_manifest, app_values = "cluster-keyvault.yaml", ["--set", "keyVaultCertificate=temporal-client-hello"]
    _run(*helm, "upgrade", "--install", "tmo", str(REPO_ROOT / "charts" / "temporal-mtls-operator"),
         "-n", "temporal-mtls-system", "--create-namespace", *operator_values, "--wait", "--timeout=180s")
    if postgres:
        _run(*kubectl, "apply", "-f", str(REPO_ROOT / "examples" / "postgres.yaml"))
        _run(*kubectl, "rollout", "status", "statefulset/postgres", "--timeout=120s")
    ui_url, codec_url = _published(cluster, UI_NODE_PORT, 8080), _published(cluster, CODEC_NODE_PORT, 8888)
    # With the apps: the Web UI, decoding payloads through the hello-world codec server (same host: same site).
    ui = {"serviceType": "NodePort", "nodePort": UI_NODE_PORT, "codecEndpoint": codec_url,
          "codecIncludeCredentials": True, "publicUrl": ui_url,
          **({"keyVaultCertificate": "temporal-client-demo-ui"} if source == "azureKeyVault" else {})} if apps else None
    print(f"+ kubectl apply -f examples/{cluster_manifest}" + ("  (on PostgreSQL: examples/cluster-postgres.yaml's "
                                                                "persistence and services)" if postgres else "")
          + ("  (with spec.ui)" if ui else ""))
    subprocess.run([*kubectl, "apply", "-f", "-"], input=demo_manifest(cluster_manifest, postgres, ui), text=True,
                   check=True)
    _run(*kubectl, "wait", "--for=condition=Ready", "temporalcluster/demo", "--timeout=300s")
    _run(*kubectl, "apply", "-f", str(REPO_ROOT / "examples" / "namespace.yaml"))
    _run(*kubectl, "wait", "--for=condition=Ready", "temporalnamespace/default", "--timeout=120s")
    _run(*kubectl, "get", "temporalclusters,temporalnamespaces,pods")

    # Prove mTLS from outside the operator: the Temporal CLI with the operator's client certificate.
    secret = json.loads(_run(*kubectl, "get", "secret", "demo-operator-client-tls", "-o", "json", capture=True))
    address = _run(*kubectl, "get", "svc", "demo-frontend", "-o", "jsonpath={.spec.clusterIP}", capture=True)
    with tempfile.TemporaryDirectory() as certs:
        for key in ("tls.crt", "tls.key", "ca.crt"):
            (Path(certs) / key).write_bytes(base64.b64decode(secret["data"][key]))
        describe = ["ip", "netns", "exec", cluster.netns, str(path_of("temporal")), "operator", "namespace", "describe",
                    "--namespace", "default", "--address", f"{address}:7233",
                    "--tls-server-name", "demo-frontend.default.svc", "--tls-ca-path", f"{certs}/ca.crt",
                    "--tls-cert-path", f"{certs}/tls.crt", "--tls-key-path", f"{certs}/tls.key"]
        for attempt in range(30):  # the Service may take a moment to route to the new endpoint
            try:
                _run(*describe)
                break
            except subprocess.CalledProcessError:
                if attempt == 29:
                    raise
                time.sleep(1)
    if not apps:
        print("\nTemporal is running with mTLS. Next: make start-worker.  Stop it with: make down")
        return

    # The apps: worker and starter with a client certificate from the operator, then the starter over HTTP.
    _run(*helm, "upgrade", "--install", "hello", str(REPO_ROOT / "charts" / "temporal-hello-world"), *app_values,
         "--set", "encryption.enabled=true", "--set", "codecServer.enabled=true",
         "--set", "codecServer.service.type=NodePort", "--set", f"codecServer.allowedOrigins={{{ui_url}}}",
         "--wait", "--timeout=180s")
    address, port = cluster.port_mappings.get(STARTER_NODE_PORT, ("127.0.0.1", 8000))
    url = f"http://{address}:{port}/workflow/start?name=World&wait=true"
    print(f"+ curl '{url}'", flush=True)
    print(_http_get(url))
    # Authorization: the app's certificate may write in default only; the server refuses anything else.
    refused = f"http://{address}:{port}/workflow/start?name=World&namespace=temporal-system"
    print(f"+ curl '{refused}'", flush=True)
    print(_http_refusal(refused))
    print(f"\nThe stack is running. Try:       curl '{url}'\n"
          f"Web UI:                 {ui_url}/namespaces/default/workflows\n"
          f"  (payloads are encrypted at rest; to see them decoded, sign the browser in to the codec server once:\n"
          f"   open {codec_url}/login#TOKEN with TOKEN from: kubectl get secret hello-codec-auth "
          f"-o jsonpath='{{.data.token}}' | base64 -d)\n"
          f"Use kubectl/helm with:  eval \"$(make -s env)\"\nStop it with:           make down")
