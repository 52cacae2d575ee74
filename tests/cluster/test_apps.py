"""End to end as a user does it: apply cluster.yaml, helm install the apps, curl the starter."""

from __future__ import annotations

import base64
import datetime as dt
import json
import subprocess
import urllib.request

import pytest
import tomllib
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from conftest import REPO, VOLUME_REFRESH, condition, wait_for
from localkube.images_build import image_refs
from localkube.toolchain import path_of

pytestmark = pytest.mark.cluster

CHART = str(REPO / "charts" / "temporal-hello-world")


def http_json(url: str, timeout: float = 60) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def node_port_free(kubectl) -> bool:
    services = json.loads(kubectl("get", "services", "-A", "-o", "json").stdout)["items"]
    return not [s for s in services for p in s["spec"].get("ports", []) if p.get("nodePort") == 30800]


def pod_log(kubectl, namespace: str, selector: str) -> str:
    return kubectl("logs", "-n", namespace, "-l", selector, "--tail=-1").stdout


@pytest.fixture
def hello(temporal_cluster, kubectl, helm):
    """The example cluster, its default namespace, and the hello-world chart installed."""
    temporal = temporal_cluster()
    kubectl("apply", "-n", temporal.namespace, "-f", str(REPO / "examples" / "namespace.yaml"))
    wait_for(lambda: condition(json.loads(kubectl("get", "temporalnamespace", "default", "-n", temporal.namespace,
                                                  "-o", "json").stdout), "Ready").get("status") == "True",
             90, interval=1, what="the default namespace")
    wait_for(lambda: node_port_free(kubectl), 90, interval=1, what="NodePort 30800 to be free")
    helm("install", "hello", CHART, "-n", temporal.namespace, "--wait", "--timeout=180s")
    return temporal


def test_worker_and_starter_run_workflows_through_mtls(hello, kubectl, helm, node_port_url):
    namespace = hello.namespace
    info = wait_for(lambda: _try(lambda: http_json(f"{node_port_url}/")), 60, interval=1, what="the starter")
    assert info["namespace"] == "default" and info["taskQueue"] == "hello-world"

    started = wait_for(lambda: _try(lambda: http_json(f"{node_port_url}/workflow/start?name=World&wait=true")),
                       60, interval=1, what="a workflow through the starter")
    assert started["result"] == "Hello World!"
    status = http_json(f"{node_port_url}/workflow/{started['workflowId']}")
    assert status == {"workflowId": started["workflowId"], "status": "COMPLETED", "result": "Hello World!"}

    tested = helm("test", "hello", "-n", namespace)
    assert "Phase:          Succeeded" in tested.stdout

    # The client certificate: the app's subject, clientAuth only, issued by the frontend CA.
    client = json.loads(kubectl("get", "temporalclusterclient", "hello", "-n", namespace, "-o", "json").stdout)
    assert condition(client, "Ready")["status"] == "True"
    assert client["status"]["secretName"] == "hello-temporal-client"
    assert client["status"]["serverName"] == f"demo-frontend.{namespace}.svc"
    data = json.loads(kubectl("get", "secret", "hello-temporal-client", "-n", namespace, "-o", "json").stdout)["data"]
    leaf = x509.load_pem_x509_certificate(base64.b64decode(data["tls.crt"]))
    frontend_ca = x509.load_pem_x509_certificate(base64.b64decode(data["ca.crt"]))
    leaf.verify_directly_issued_by(frontend_ca)
    assert leaf.subject.rfc4514_string() == "CN=hello,O=temporal-mtls-operator"
    assert list(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH]
    assert client["status"]["notAfter"] == leaf.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    profile = tomllib.loads(base64.b64decode(data["temporal.toml"]).decode())["profile"]["default"]
    assert profile["address"] == f"demo-frontend.{namespace}.svc:7233"
    assert profile["tls"]["client_cert_path"] == "/etc/temporal/client/tls.crt"


def test_a_pod_without_the_client_secret_cannot_connect(hello, kubectl):
    namespace = hello.namespace
    ca = json.loads(kubectl("get", "secret", "hello-temporal-client", "-n", namespace, "-o", "json").stdout)["data"]
    kubectl("create", "configmap", "frontend-ca", "-n", namespace,
            f"--from-literal=ca.crt={base64.b64decode(ca['ca.crt']).decode()}")
    address = f"demo-frontend.{namespace}.svc"
    probe = ("import asyncio, socket, ssl\n"
             "from temporalio.client import Client\n"
             "from temporalio.service import RetryConfig, TLSConfig\n"
             "async def main():\n"
             "    ca = open('/ca/ca.crt', 'rb').read()\n"
             f"    tls = TLSConfig(server_root_ca_cert=ca, domain='{address}')\n"
             "    for _ in range(3):\n"
             "        try:\n"
             f"            c = await asyncio.wait_for(Client.connect('{address}:7233', tls=tls,\n"
             "                                       retry_config=RetryConfig(max_retries=1)), 30)\n"
             "            await asyncio.wait_for(c.count_workflows(), 30)\n"
             "            print('CONNECTED')\n"
             "        except Exception as e:\n"
             "            print('REFUSED', type(e).__name__, str(e)[:300])\n"
             "asyncio.run(main())\n"
             # The SDK writes right after its TLS 1.3 handshake, so the server's alert often meets it mid-write (a
             # broken pipe); a client that reads first always receives the alert the frontend sends.
             "context = ssl.create_default_context(cafile='/ca/ca.crt')\n"
             f"with context.wrap_socket(socket.create_connection(('{address}', 7233), 30),\n"
             f"                         server_hostname='{address}') as s:\n"
             "    try:\n"
             "        s.recv(1)\n"
             "        print('CONNECTED')\n"
             "    except ssl.SSLError as e:\n"
             "        print('ALERT', e.reason)\n"
             "import os, sys; sys.stdout.flush(); os._exit(0)\n")  # the SDK's bridge can abort at interpreter exit
    kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "no-client-cert"},
        "spec": {"restartPolicy": "Never", "containers": [{
            "name": "probe", "image": image_refs()["worker"], "command": ["python", "-c", probe],  # has the SDK
            "volumeMounts": [{"name": "ca", "mountPath": "/ca"}]}],
            "volumes": [{"name": "ca", "configMap": {"name": "frontend-ca"}}]}}))
    phase = wait_for(lambda: (p := kubectl("get", "pod", "no-client-cert", "-n", namespace, "-o",
                                          "jsonpath={.status.phase}").stdout) in ("Succeeded", "Failed") and p,
                     150, interval=1, what=lambda: "the probe pod: " + kubectl(
                         "get", "pod", "no-client-cert", "-n", namespace, "-o", "jsonpath={.status}").stdout)
    output = kubectl("logs", "no-client-cert", "-n", namespace).stdout
    assert phase == "Succeeded", output
    assert output.count("REFUSED") == 3 and "CONNECTED" not in output
    assert output.splitlines()[-1] == "ALERT TLSV13_ALERT_CERTIFICATE_REQUIRED"  # the frontend demanded a client cert


def test_worker_reconnects_with_a_new_certificate_without_a_restart(hello, kubectl, node_port_url):
    namespace = hello.namespace
    restarts = _restart_counts(kubectl, namespace)  # a pod may have restarted while Temporal warmed up
    before = kubectl("get", "secret", "hello-temporal-client", "-n", namespace, "-o", "jsonpath={.data.tls\\.crt}").stdout
    kubectl("patch", "temporalclusterclient", "hello", "-n", namespace, "--type=merge",
            "-p", json.dumps({"spec": {"commonName": "hello-rotated"}}))
    wait_for(lambda: kubectl("get", "secret", "hello-temporal-client", "-n", namespace, "-o",
                             "jsonpath={.data.tls\\.crt}").stdout != before, 60, interval=1, what="a new certificate")
    wait_for(lambda: "reconnected with renewed client certificate" in pod_log(
        kubectl, namespace, "app.kubernetes.io/name=temporal-hello-worker"), 60 + VOLUME_REFRESH, interval=1,
        what="the worker to reconnect")
    result = wait_for(lambda: _try(lambda: http_json(f"{node_port_url}/workflow/start?name=again&wait=true")),
                      60, interval=1, what="a workflow after the rotation")
    assert result["result"] == "Hello again!"
    assert _restart_counts(kubectl, namespace) == restarts, _last_states(kubectl, namespace)  # nothing restarted


def test_worker_and_starter_keep_working_after_their_first_certificates_expired(temporal_cluster, kubectl, helm,
                                                                               node_port_url, kubeconfig):
    """Leaves of 90 s, renewed 60 s ahead: a workflow after the first client certificate expired can only
    complete if both the starter and the worker swapped to the renewed one (the server refuses expired ones)."""
    temporal = temporal_cluster({"mtls": {"certificateDuration": "90s", "renewBefore": "60s",
                                          "refreshInterval": "5s"}})
    namespace = temporal.namespace
    kubectl("apply", "-n", namespace, "-f", str(REPO / "examples" / "namespace.yaml"))
    wait_for(lambda: condition(json.loads(kubectl("get", "temporalnamespace", "default", "-n", namespace, "-o",
                                                  "json").stdout), "Ready").get("status") == "True",
             90, interval=1, what="the default namespace")
    wait_for(lambda: node_port_free(kubectl), 90, interval=1, what="NodePort 30800 to be free")
    helm("install", "hello", CHART, "-n", namespace, "--wait", "--timeout=180s")
    first = _client_certificate(kubectl, namespace)
    restarts = _restart_counts(kubectl, namespace)

    wait_for(lambda: dt.datetime.now(dt.timezone.utc) > first.not_valid_after_utc + dt.timedelta(seconds=2),
             150, interval=1, what="the first client certificate to expire")
    assert _client_certificate(kubectl, namespace) != first
    result = wait_for(lambda: _try(lambda: http_json(f"{node_port_url}/workflow/start?name=renewed&wait=true")),
                      60, interval=1, what="a workflow with renewed certificates")
    assert result["result"] == "Hello renewed!"
    for app in ("temporal-hello-worker", "temporal-hello-starter"):
        assert "reconnected with renewed client certificate" in pod_log(kubectl, namespace,
                                                                        f"app.kubernetes.io/name={app}")
    assert _restart_counts(kubectl, namespace) == restarts, _last_states(kubectl, namespace)

    # Uninstalling sends SIGTERM: the worker stops polling, drains and exits by itself (no SIGKILL after the grace).
    worker = kubectl("get", "pods", "-n", namespace, "-l", "app.kubernetes.io/name=temporal-hello-worker",
                     "-o", "name").stdout.strip()
    with subprocess.Popen([str(path_of("kubectl")), f"--kubeconfig={kubeconfig}", "logs", "-f", worker, "-n",
                           namespace], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as logs:
        helm("uninstall", "hello", "-n", namespace, "--wait")
        output = logs.communicate(timeout=60)[0]
    assert "stopping: no new tasks, draining running activities for up to 20.0s" in output, output[-2000:]
    assert output.rstrip().endswith("worker stopped"), output[-2000:]


def _client_certificate(kubectl, namespace: str) -> x509.Certificate:
    pem = kubectl("get", "secret", "hello-temporal-client", "-n", namespace, "-o", "jsonpath={.data.tls\\.crt}").stdout
    return x509.load_pem_x509_certificate(base64.b64decode(pem))


def _try(call):
    try:
        return call()
    except OSError:
        return None


def _last_states(kubectl, namespace: str) -> str:
    """Why a container restarted (exit code, reason) and the kubelet's Events, for the assertion message."""
    states = kubectl("get", "pods", "-n", namespace, "-l", "app.kubernetes.io/instance=hello", "-o",
                     "jsonpath={range .items[*]}{.metadata.name} {.status.containerStatuses[0].lastState}{'\\n'}{end}")
    events = kubectl("get", "events", "-n", namespace, "--field-selector", "type=Warning", "-o",
                     "custom-columns=OBJECT:.involvedObject.name,REASON:.reason,MESSAGE:.message")
    previous = kubectl("logs", "-n", namespace, "-l", "app.kubernetes.io/instance=hello", "--previous", "--tail=20",
                       check=False)
    return states.stdout + events.stdout + previous.stdout


def _restart_counts(kubectl, namespace: str) -> dict[str, int]:
    pods = json.loads(kubectl("get", "pods", "-n", namespace, "-l", "app.kubernetes.io/instance=hello",
                              "-o", "json").stdout)["items"]
    assert len(pods) == 2
    return {p["metadata"]["name"]: p["status"]["containerStatuses"][0]["restartCount"] for p in pods}
