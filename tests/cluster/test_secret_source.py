"""Bring your own certificates: cert-manager-shaped kubernetes.io/tls Secrets drive a TemporalCluster; the
operator validates and copies them and never writes them."""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest
import yaml

from conftest import condition, wait_for
from temporal_mtls_operator import certs
from temporal_mtls_operator.models.cluster import MTLS
from temporal_mtls_operator.sources import ClusterIdentity
from temporal_mtls_operator.sources.base import leaf_profiles

pytestmark = pytest.mark.cluster

DAY = dt.timedelta(days=1)
ROLES = {"internode": "internode", "frontend": "frontend", "system-worker": "systemWorker",
         "operator-client": "operatorClient"}


def tls_secret(name: str, pair: certs.KeyPair, ca: certs.KeyPair) -> str:
    """What cert-manager writes for a Certificate: type kubernetes.io/tls with tls.crt, tls.key, ca.crt."""
    return json.dumps({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                       "metadata": {"name": name, "annotations": {"cert-manager.io/certificate-name": name}},
                       "data": {k: base64.b64encode(v).decode() for k, v in
                                {"tls.crt": pair.cert_pem, "tls.key": pair.key_pem, "ca.crt": ca.cert_pem}.items()}})


def secret(kubectl, namespace: str, name: str) -> dict:
    return json.loads(kubectl("get", "secret", name, "-n", namespace, "-o", "json").stdout)


def test_cert_manager_shaped_secrets_drive_a_ready_cluster_and_a_bad_one_is_refused(
        temporal_cluster, kubectl, namespace, node_exec):
    ca = certs.issue_ca("my company CA", 30 * DAY)
    profiles = leaf_profiles(ClusterIdentity("demo", namespace, ""), MTLS())
    for role, (_, profile) in profiles.items():
        kubectl("apply", "-n", namespace, "-f", "-", input=tls_secret(f"my-{role}", certs.issue_leaf(ca, profile, DAY),
                                                                       ca))
    theirs = {role: secret(kubectl, namespace, f"my-{role}") for role in ROLES}

    temporal = temporal_cluster({"mtls": {"source": {"secret": {field: f"my-{role}" for role, field in ROLES.items()}}}})
    cluster = temporal.get()
    assert condition(cluster, "CertificatesReady")["message"] == "source: secret"
    published = secret(kubectl, namespace, "demo-frontend-tls")
    assert base64.b64decode(published["data"]["tls.crt"]) == base64.b64decode(theirs["frontend"]["data"]["tls.crt"])
    assert base64.b64decode(published["data"]["ca.crt"]) == ca.cert_pem
    assert published["metadata"]["annotations"]["temporal-mtls.dev/source-secret"] == "my-frontend"
    described = wait_for(lambda: (r := temporal.cli("operator", "namespace", "describe", "--namespace",
                                                    "temporal-system")).returncode == 0 and r, 30, interval=1,
                         what="the CLI to connect with the user's operator-client certificate")
    assert "Registered" in described.stdout

    # A bad replacement (a frontend certificate without the frontend's name) is refused; nothing is copied.
    wrong = certs.issue_leaf(ca, certs.LeafProfile("demo-frontend", ("elsewhere.example",), server=True), DAY)
    kubectl("apply", "-n", namespace, "-f", "-", input=tls_secret("my-frontend", wrong, ca))
    refused = wait_for(lambda: (c := condition(temporal.get(), "CertificatesReady")).get("status") == "False" and c,
                       60, interval=1, what="the bad Secret to be refused")
    assert refused["reason"] == "MissingDNSName"
    assert "my-frontend" in refused["message"] and f"demo-frontend.{namespace}.svc" in refused["message"]
    assert secret(kubectl, namespace, "demo-frontend-tls")["data"] == published["data"]
    assert condition(temporal.get(), "Ready")["status"] == "True"  # still serving the certificate it had

    # The operator never wrote the user's Secrets: same bytes, no owner, no field manager of ours.
    for role in ("internode", "system-worker", "operator-client"):
        now = json.loads(kubectl("get", "secret", f"my-{role}", "-n", namespace, "-o", "json",
                                 "--show-managed-fields").stdout)
        assert now["metadata"]["resourceVersion"] == theirs[role]["metadata"]["resourceVersion"]
        assert "ownerReferences" not in now["metadata"]
        assert {f["manager"] for f in now["metadata"]["managedFields"]} == {"kubectl-client-side-apply"}


def test_the_secret_source_refuses_the_operators_own_secret_names(kubectl, namespace, operator):
    spec = {"mtls": {"source": {"secret": {"internode": "demo-internode-tls", "frontend": "my-frontend",
                                           "systemWorker": "my-system-worker", "operatorClient": "my-client"}}}}
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump({
        "apiVersion": "temporal-mtls.dev/v1alpha1", "kind": "TemporalCluster", "metadata": {"name": "demo"},
        "spec": spec}))
    get = lambda: json.loads(kubectl("get", "temporalcluster", "demo", "-n", namespace, "-o", "json").stdout)  # noqa: E731
    refused = wait_for(lambda: (c := condition(get(), "CertificatesReady")).get("status") == "False" and c,
                       60, interval=1, what="the clash to be reported")
    assert refused["reason"] == "InvalidSpec"
    assert "demo-internode-tls" in refused["message"]
