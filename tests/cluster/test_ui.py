"""The Temporal Web UI behind mTLS, in a real browser: spec.ui deploys temporalio/ui with its own client
certificate; headless Chromium lists the encrypted hello workflow and shows its result decoded by the
codec server ("Hello World!"), which it reaches with a session cookie from /login."""

from __future__ import annotations

import base64
import html
import json
import re

import pytest
import yaml
from cryptography import x509

from cluster.test_encryption import CHART, start_workflow
from conftest import REPO, condition, wait_for
from support import chromium

pytestmark = pytest.mark.cluster


def text_of(dom: str) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", re.sub(
        r"<(script|style)[^>]*>.*?</\1>", " ", dom, flags=re.S))))


def test_the_ui_lists_the_workflow_and_shows_its_decoded_result(temporal_cluster, kubectl, helm, node_exec,
                                                               local_cluster, tmp_path):
    ui_host, ui_port = local_cluster.port_mappings[30808]
    codec_host, codec_port = local_cluster.port_mappings[30888]
    ui_url, codec_url = f"http://{ui_host}:{ui_port}", f"http://{codec_host}:{codec_port}"
    spec = yaml.safe_load((REPO / "examples" / "cluster.yaml").read_text())["spec"]
    spec["ui"] = {"serviceType": "NodePort", "nodePort": 30808, "codecEndpoint": codec_url,
                  "codecIncludeCredentials": True, "publicUrl": ui_url}
    temporal = temporal_cluster(spec)
    namespace = temporal.namespace
    kubectl("apply", "-n", namespace, "-f", str(REPO / "examples" / "namespace.yaml"))
    wait_for(lambda: condition(json.loads(kubectl("get", "temporalnamespace", "default", "-n", namespace, "-o",
                                                  "json").stdout), "Ready").get("status") == "True",
             90, interval=1, what="the default namespace")
    helm("install", "hello", CHART, "-n", namespace, "--set", "encryption.enabled=true",
         "--set", "codecServer.enabled=true", "--set", "codecServer.service.type=NodePort",
         "--set", f"codecServer.allowedOrigins={{{ui_url}}}", "--set", "starter.service.type=ClusterIP",
         "--wait", "--timeout=180s")
    kubectl("rollout", "status", "deployment/demo-ui", "-n", namespace, "--timeout=120s")
    started = start_workflow(temporal, node_exec, "World")
    assert started["result"] == "Hello World!"

    # The UI pod holds its own client certificate (frontend CA, clientAuth) and no CA key.
    ui_client = json.loads(kubectl("get", "temporalclusterclient", "demo-ui", "-n", namespace, "-o", "json").stdout)
    assert condition(ui_client, "Ready")["status"] == "True"
    assert ui_client["metadata"]["ownerReferences"][0]["kind"] == "TemporalCluster"
    pod = json.loads(kubectl("get", "deployment", "demo-ui", "-n", namespace, "-o", "json").stdout)["spec"]["template"]
    assert [v["secret"]["secretName"] for v in pod["spec"]["volumes"] if "secret" in v] == ["demo-ui-temporal-client"]
    mounted = json.loads(kubectl("get", "secret", "demo-ui-temporal-client", "-n", namespace, "-o", "json").stdout)
    assert sorted(mounted["data"]) == ["ca.crt", "temporal.toml", "tls.crt", "tls.key"]
    leaf = x509.load_pem_x509_certificate(base64.b64decode(mounted["data"]["tls.crt"]))
    assert leaf.subject.rfc4514_string() == "CN=demo-ui,O=temporal-mtls-operator"
    assert not x509.load_pem_x509_certificate(base64.b64decode(mounted["data"]["ca.crt"])).subject == leaf.subject
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["TEMPORAL_TLS_SERVER_NAME"] == f"demo-frontend.{namespace}.svc"
    assert env["TEMPORAL_CODEC_ENDPOINT"] == codec_url

    profile = tmp_path / "chromium-profile"
    token = base64.b64decode(kubectl("get", "secret", "hello-codec-auth", "-n", namespace, "-o",
                                     "jsonpath={.data.token}").stdout).decode()
    # Without signing in, the page cannot decode: the codec server refuses the browser (its request has no cookie).
    workflow_url = f"{ui_url}/namespaces/default/workflows/{started['workflowId']}"
    stranger = wait_for(lambda: (t := text_of(chromium.dump_dom(workflow_url, tmp_path / "no-session"))) and
                        "GreetingWorkflow" in t and "Result" in t and t, 90, interval=2, what="the workflow page")
    assert "Hello World!" not in stranger
    assert "signed in" in text_of(chromium.dump_dom(f"{codec_url}/login#{token}", profile, 5000))

    listed = wait_for(lambda: (t := text_of(chromium.dump_dom(f"{ui_url}/namespaces/default/workflows", profile)))
                      and started["workflowId"] in t and t, 90, interval=2, what="the workflow in the UI's list")
    assert "GreetingWorkflow" in listed
    page = wait_for(lambda: (t := text_of(chromium.dump_dom(workflow_url, profile))) and "Hello World!" in t and t,
                    90, interval=2, what="the decoded result on the workflow page")
    assert "binary/encrypted" not in page
    shot = chromium.screenshot(workflow_url, profile, tmp_path / "ui-workflow.png")
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")

    # spec.ui removed: exactly the UI's objects go (the client's Secret with its client), the cluster stays Ready.
    def names(kinds: str) -> set[str]:
        return set(kubectl("get", kinds, "-n", namespace, "-o", "name").stdout.split())

    ui_objects = {"deployment.apps/demo-ui", "service/demo-ui", "temporalclusterclient.temporal-mtls.dev/demo-ui",
                  "secret/demo-ui-temporal-client"}
    kinds = "deployments,services,temporalclusterclients,secrets,configmaps"
    before = names(kinds)
    assert ui_objects <= before
    kubectl("patch", "temporalcluster", "demo", "-n", namespace, "--type=json",
            "-p", json.dumps([{"op": "remove", "path": "/spec/ui"}]))
    wait_for(lambda: not ui_objects & names(kinds), 30, interval=0.5, what="the UI objects to be deleted")
    assert names(kinds) == before - ui_objects  # nothing else: the server, the hello apps, their Secrets stay
    settled = wait_for(lambda: (c := temporal.get()) and c["status"].get("observedGeneration") == c["metadata"][
        "generation"] and condition(c, "Ready").get("status") == "True" and c, 60, interval=0.5,
        what="the cluster Ready at its new generation")
    assert "ui" not in settled["status"]
    assert start_workflow(temporal, node_exec, "again")["result"] == "Hello again!"
