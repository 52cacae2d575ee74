"""Rotation end to end on one TemporalCluster shared by the module (operator-managed CAs, refreshInterval 5s):
on-demand leaf rotation without a restart."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from conftest import REPO, TemporalAccess, condition, wait_for
from localkube.toolchain import path_of
from temporal_mtls_operator import certs

pytestmark = pytest.mark.cluster

NAME = "demo"
CHART = str(REPO / "charts" / "temporal-hello-world")
ALERT = re.compile(r"SSL routines:\w+:(?P<text>[^:]+):\S+:\d+:SSL alert number (?P<number>\d+)")


@pytest.fixture(scope="module")
def rotating(kubectl, node_exec, operator, tmp_path_factory) -> TemporalAccess:
    namespace = f"rotation-{uuid.uuid4().hex[:5]}"
    kubectl("create", "namespace", namespace)
    try:
        wait_for(lambda: kubectl("get", "serviceaccount", "default", "-n", namespace, check=False).returncode == 0,
                 30, what=f"the default service account in {namespace}")
        kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump({
            "apiVersion": "temporal-mtls.dev/v1alpha1", "kind": "TemporalCluster", "metadata": {"name": NAME},
            "spec": {"mtls": {"refreshInterval": "5s"}}}))
        wait_for(lambda: condition(get_cluster(kubectl, namespace), "Ready").get("status") == "True", 180,
                 interval=0.5, what=f"TemporalCluster {NAME} to become Ready")
        access = TemporalAccess(kubectl, node_exec, namespace, NAME, tmp_path_factory.mktemp("rotation"))
        wait_for(lambda: access.cli("operator", "namespace", "describe", "--namespace", "temporal-system")
                 .returncode == 0, 60, interval=0.5, what="the CLI to connect through the Service")
        yield access
    finally:
        kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def get_cluster(kubectl, namespace: str) -> dict:
    return json.loads(kubectl("get", "temporalcluster", NAME, "-n", namespace, "-o", "json").stdout)


def secret(kubectl, namespace: str, name: str) -> dict[str, bytes]:
    found = kubectl("get", "secret", name, "-n", namespace, "-o", "json", check=False)
    if found.returncode != 0:
        return {}
    return {k: base64.b64decode(v) for k, v in (json.loads(found.stdout).get("data") or {}).items()}


def cert(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def server_pod(kubectl, namespace: str) -> dict:
    pods = json.loads(kubectl("get", "pods", "-n", namespace, "-l", "app.kubernetes.io/component=server", "-o",
                              "json").stdout)["items"]
    return pods[0] if len(pods) == 1 else {}


def served_leaf(node_exec, access: TemporalAccess, ca_file: Path, client_dir: Path) -> tuple[x509.Certificate, str]:
    """The frontend's certificate as openssl receives it (verified against ``ca_file``), and s_client's output."""
    shown = node_exec("openssl", "s_client", "-connect", access.address, "-servername", access.server_name,
                      "-CAfile", str(ca_file), "-showcerts", "-cert", str(client_dir / "tls.crt"),
                      "-key", str(client_dir / "tls.key"), timeout=30)
    found = re.search(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", shown.stdout, re.S)
    return (cert(found.group(0).encode()) if found else None), shown.stdout + shown.stderr


def write_pair(directory: Path, pair: certs.KeyPair) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tls.crt").write_bytes(pair.cert_pem)
    (directory / "tls.key").write_bytes(pair.key_pem)
    return directory


def cli_ok(access: TemporalAccess, client_dir: Path) -> subprocess.CompletedProcess:
    return access.cli("operator", "namespace", "describe", "--namespace", "temporal-system", cert_dir=client_dir)


def restart_count(pod: dict) -> int:
    return pod["status"]["containerStatuses"][0]["restartCount"]


# -- leaves ----------------------------------------------------------------------------------------------------------

def test_rotate_annotation_reissues_leaves_served_by_the_same_pod(rotating, kubectl, node_exec, tmp_path):
    access, ns = rotating, rotating.namespace
    pod = server_pod(kubectl, ns)
    roles = ("internode", "frontend", "system-worker", "operator-client")
    before = {role: secret(kubectl, ns, f"{NAME}-{role}-tls") for role in roles}
    ca_file = access.cert_dir / "operator" / "ca.crt"
    first, said = served_leaf(node_exec, access, ca_file, access.cert_dir / "operator")
    assert first is not None and first == cert(before["frontend"]["tls.crt"]), said

    kubectl("annotate", "temporalcluster", NAME, "-n", ns, "temporal-mtls.dev/rotate=first")
    handled = wait_for(lambda: (get_cluster(kubectl, ns).get("status") or {}).get("leafRotation", {})
                       .get("handled") == "first" and get_cluster(kubectl, ns)["status"]["leafRotation"], 60,
                       interval=0.5, what="the rotate annotation to be handled")
    assert handled["reissuedAt"]
    after = {role: secret(kubectl, ns, f"{NAME}-{role}-tls") for role in roles}
    assert all(after[role]["tls.crt"] != before[role]["tls.crt"] for role in roles)  # every leaf, same CAs
    assert all(after[role]["ca.crt"] == before[role]["ca.crt"] for role in roles)

    # Temporal reloads the leaf files (refreshInterval 5s) and presents the new frontend leaf: same pod, no restart.
    wait_for(lambda: served_leaf(node_exec, access, ca_file, access.cert_dir / "operator")[0]
             == cert(after["frontend"]["tls.crt"]), 60, interval=1, what="the frontend to serve the new leaf")
    now = server_pod(kubectl, ns)
    assert now["metadata"]["uid"] == pod["metadata"]["uid"] and restart_count(now) == 0

    # The same value again is a no-op; a client's own annotation re-issues only its certificate.
    kubectl("annotate", "--overwrite", "temporalcluster", NAME, "-n", ns, "temporal-mtls.dev/rotate=first")
    kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump({
        "apiVersion": "temporal-mtls.dev/v1alpha1", "kind": "TemporalClusterClient", "metadata": {"name": "app"},
        "spec": {"clusterRef": {"name": NAME}}}))
    issued = wait_for(lambda: secret(kubectl, ns, "app-temporal-client").get("tls.crt"), 60, interval=0.5,
                      what="the app's certificate")
    kubectl("annotate", "temporalclusterclient", "app", "-n", ns, "temporal-mtls.dev/rotate=1")
    wait_for(lambda: secret(kubectl, ns, "app-temporal-client").get("tls.crt") != issued, 60, interval=0.5,
             what="the app's certificate to be re-issued")
    client = json.loads(kubectl("get", "temporalclusterclient", "app", "-n", ns, "-o", "json").stdout)
    assert client["status"]["leafRotation"]["handled"] == "1"
    assert secret(kubectl, ns, f"{NAME}-frontend-tls")["tls.crt"] == after["frontend"]["tls.crt"]
