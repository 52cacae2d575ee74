"""The operator killed inside a reconcile, between creating the internode CA and the frontend CA: the next
operator keeps the first CA, creates the second, and issues every leaf from the right one."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys

import pytest
from cryptography import x509

from conftest import REPO, wait_for
from temporal_mtls_operator.models.cluster import MTLS
from temporal_mtls_operator.sources import ClusterIdentity
from temporal_mtls_operator.sources.base import leaf_profiles

pytestmark = pytest.mark.cluster


def secret_data(kubectl, namespace: str, name: str) -> dict | None:
    found = kubectl("get", "secret", name, "-n", namespace, "-o", "json", check=False)
    return {k: base64.b64decode(v) for k, v in json.loads(found.stdout)["data"].items()} if found.returncode == 0 \
        else None


def operator_pods(kubectl, namespace: str) -> list:
    return json.loads(kubectl("get", "pods", "-n", namespace, "-l", "app.kubernetes.io/name=temporal-mtls-operator",
                              "-o", "json").stdout)["items"]


def test_a_kill_between_the_two_cas_keeps_the_first_and_the_next_operator_completes(
        kubectl, namespace, operator, kubeconfig, temporal_cluster, tmp_path):
    # The chart's operator steps aside; an operator scoped to this namespace pauses after each CA it creates.
    replicas = kubectl("get", "deployment/tmo", "-n", operator, "-o", "jsonpath={.spec.replicas}").stdout
    kubectl("scale", "deployment/tmo", "-n", operator, "--replicas=0")
    wait_for(lambda: not operator_pods(kubectl, operator), 60, interval=0.5, what="the chart's operator to stop")
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "TMO_WATCH_NAMESPACES": namespace,
           "TMO_LIVENESS_ENDPOINT": "", "TMO_TEST_SLEEP_AFTER_CREATING_CA": "120"}
    with open(tmp_path / "operator.log", "w") as log:
        paused = subprocess.Popen([sys.executable, "-m", "temporal_mtls_operator"], env=env, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    try:
        kubectl("apply", "-n", namespace, "-f", str(REPO / "examples" / "cluster.yaml"))
        first = wait_for(lambda: secret_data(kubectl, namespace, "demo-internode-ca"), 60, interval=0.2,
                         what=lambda: f"the internode CA ({(tmp_path / 'operator.log').read_text()[-800:]})")
        paused.kill()  # inside the reconcile: after the first CA, before the second
        paused.wait(30)
        assert secret_data(kubectl, namespace, "demo-frontend-ca") is None
        assert not [s for s in json.loads(kubectl("get", "secrets", "-n", namespace, "-o", "json").stdout)["items"]
                    if s["metadata"]["name"].endswith("-tls")]
    finally:
        if paused.poll() is None:
            paused.kill()
        kubectl("scale", "deployment/tmo", "-n", operator, f"--replicas={replicas}")
        kubectl("rollout", "status", "deployment/tmo", "-n", operator, "--timeout=120s")

    temporal = temporal_cluster()  # the chart's operator resumes the reconcile and the server becomes Ready
    assert secret_data(kubectl, namespace, "demo-internode-ca") == first  # kept, byte for byte
    cas = {domain: x509.load_pem_x509_certificate(secret_data(kubectl, namespace, f"demo-{domain}-ca")["tls.crt"])
           for domain in ("internode", "frontend")}
    assert cas["internode"] != cas["frontend"]
    cluster = ClusterIdentity("demo", namespace, temporal.get()["metadata"]["uid"])
    for role, (domain, _) in leaf_profiles(cluster, MTLS()).items():
        leaf = x509.load_pem_x509_certificate(secret_data(kubectl, namespace, f"demo-{role}-tls")["tls.crt"])
        leaf.verify_directly_issued_by(cas[domain])
