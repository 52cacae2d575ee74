"""The authorization policy: what each kind of grant becomes in the file the server reads, and the API's rules."""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading

import pytest
from pydantic import ValidationError

from temporal_mtls_operator import certs
from temporal_mtls_operator.builders.authorization import POLICY_ENV, certificate_match, policy_config_map
from temporal_mtls_operator.builders.cluster import cluster_objects
from temporal_mtls_operator.handlers.authorization import Coalesced, grants, policy_step
from temporal_mtls_operator.handlers.cluster import validation_message
from temporal_mtls_operator.models import TemporalClusterClientSpec, TemporalClusterSpec, TemporalNamespaceSpec
from temporal_mtls_operator.sources.base import ClusterIdentity

from .test_builders import materials

CLUSTER = ClusterIdentity("demo", "apps", "uid-1")
CA = certs.issue_ca("test CA", dt.timedelta(days=2))
DAY = dt.timedelta(days=1)


def leaf(common_name: str, *uris: str) -> bytes:
    return certs.issue_leaf(CA, certs.LeafProfile(common_name, client=True, uris=uris), DAY).cert_pem


class FakeKube:
    """Only what the policy step reads: lists of clients and namespaces, and Secrets by name."""

    def __init__(self, objects: list[dict]) -> None:
        self.objects = objects

    def list(self, api_version, kind, namespace, selector=""):
        return [o for o in self.objects if o["kind"] == kind and o["metadata"]["namespace"] == namespace]

    def get(self, api_version, kind, namespace, name):
        return next((o for o in self.objects if o["kind"] == kind and o["metadata"]["name"] == name), None)


def resource(kind: str, name: str, spec: dict, namespace: str = "apps") -> dict:
    return {"kind": kind, "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def policy(kube: FakeKube, spec: dict | None = None) -> dict:
    cluster_spec = TemporalClusterSpec.model_validate(spec or {})
    operator_cert = leaf("temporal-mtls-operator", CLUSTER.operator_identity)
    return {g.name: g.as_policy() for g in grants(kube, CLUSTER, cluster_spec, operator_cert)}


def test_operator_issued_clients_are_granted_by_their_identity_uri_and_default_to_writer_on_their_namespace():
    kube = FakeKube([
        resource("TemporalClusterClient", "hello", {"clusterRef": {"name": "demo"}, "temporalNamespace": "orders"}),
        resource("TemporalClusterClient", "auditor", {"clusterRef": {"name": "demo"}, "permissions": {
            "system": "reader", "namespaces": [{"name": "orders", "role": "reader"}]}}),
        resource("TemporalClusterClient", "nothing", {"clusterRef": {"name": "demo"}, "permissions": {"namespaces": []}}),
        resource("TemporalClusterClient", "elsewhere", {"clusterRef": {"name": "other"}}),
        resource("TemporalClusterClient", "broken", {"clusterRef": {"name": "demo"}, "permissions": {"system": "root"}}),
    ])
    found = policy(kube)
    assert found["operator"] == {"name": "operator", "match": {"uri": CLUSTER.operator_identity}, "system": "admin"}
    assert found["TemporalClusterClient apps/hello"] == {
        "name": "TemporalClusterClient apps/hello",
        "match": {"uri": "spiffe://temporal-mtls.dev/ns/apps/cluster/demo/client/hello"},
        "namespaces": {"orders": "writer"}}
    assert found["TemporalClusterClient apps/auditor"]["system"] == "reader"
    assert found["TemporalClusterClient apps/auditor"]["namespaces"] == {"orders": "reader"}
    assert "system" not in found["TemporalClusterClient apps/nothing"]
    assert "namespaces" not in found["TemporalClusterClient apps/nothing"]
    assert set(found) == {"operator", "TemporalClusterClient apps/hello", "TemporalClusterClient apps/auditor",
                          "TemporalClusterClient apps/nothing"}  # other clusters' and invalid clients grant nothing


def test_key_vault_certificates_are_pinned_by_fingerprint():
    vault_cert = leaf("hello")
    kube = FakeKube([
        resource("TemporalClusterClient", "hello", {"clusterRef": {"name": "demo"}, "keyVaultCertificate": "hello"}),
        {"kind": "Secret", "metadata": {"name": "hello-temporal-client", "namespace": "apps"},
         "data": {"tls.crt": base64.b64encode(vault_cert).decode()}},
        resource("TemporalClusterClient", "later", {"clusterRef": {"name": "demo"}, "keyVaultCertificate": "later"}),
    ])
    spec = {"mtls": {"source": {"azureKeyVault": {
        "vaultUrl": "https://v.example", "certificates": {"internode": "a", "frontend": "b", "systemWorker": "c",
                                                          "operatorClient": "d"},
        "caCertificates": {"internode": ["ca"], "frontend": ["ca"]}}}}}
    found = policy(kube, spec)
    fingerprint = certs.describe(certs.load_certificates(vault_cert)[0]).sha256
    assert found["TemporalClusterClient apps/hello"]["match"] == {"sha256": fingerprint}
    assert "TemporalClusterClient apps/later" not in found  # no certificate synced yet: nothing to match


def test_namespace_filters_and_system_clients_keep_their_fields_and_grant_their_roles():
    kube = FakeKube([resource("TemporalNamespace", "orders", {"clusterRef": {"name": "demo"}, "name": "orders-prod",
                                                               "clientCertificateFilters": [
        {"commonName": "*.orders.example.com", "organization": "Example", "role": "writer"},
        {"subjectAlternativeName": "spiffe://example.com/*", "role": "reader"}]})])
    found = policy(kube, {"authorization": {"systemClients": [{"organizationalUnit": "SRE", "role": "admin"}]}})
    assert found["TemporalNamespace apps/orders clientCertificateFilters[0]"] == {
        "name": "TemporalNamespace apps/orders clientCertificateFilters[0]",
        "match": {"commonName": "*.orders.example.com", "organization": "Example"},
        "namespaces": {"orders-prod": "writer"}}
    assert found["TemporalNamespace apps/orders clientCertificateFilters[1]"]["match"] == {
        "subjectAlternativeName": "spiffe://example.com/*"}
    assert found["TemporalCluster demo systemClients[0]"] == {
        "name": "TemporalCluster demo systemClients[0]", "match": {"organizationalUnit": "SRE"}, "system": "admin"}


@pytest.mark.parametrize("value, message", [
    ("*", "'*' alone would match every certificate"),
    ("a*b", "one '*' is allowed, only at the start or the end"),
    ("*a*", "one '*' is allowed, only at the start or the end"),
    ("", "must not be empty"),
])
def test_filters_follow_temporal_clouds_syntax(value, message):
    with pytest.raises(ValidationError) as error:
        TemporalNamespaceSpec.model_validate({"clusterRef": {"name": "demo"},
                                              "clientCertificateFilters": [{"commonName": value, "role": "reader"}]})
    assert message in validation_message(error.value)


def test_a_filter_needs_a_field_and_a_namespace_at_most_25():
    with pytest.raises(ValidationError) as error:
        TemporalNamespaceSpec.model_validate({"clusterRef": {"name": "demo"},
                                              "clientCertificateFilters": [{"role": "reader"}]})
    assert "needs at least one of commonName" in validation_message(error.value)
    with pytest.raises(ValidationError) as error:
        TemporalNamespaceSpec.model_validate({"clusterRef": {"name": "demo"}, "clientCertificateFilters": [
            {"commonName": f"app-{i}", "role": "reader"} for i in range(26)]})
    assert "at most 25 items" in validation_message(error.value)


def test_permissions_name_each_namespace_once():
    with pytest.raises(ValidationError) as error:
        TemporalClusterClientSpec.model_validate({"clusterRef": {"name": "demo"}, "permissions": {"namespaces": [
            {"name": "a", "role": "reader"}, {"name": "a", "role": "writer"}]}})
    assert "namespace 'a' is listed twice" in validation_message(error.value)


def test_the_policy_file_is_stable_and_only_frontend_pods_mount_it():
    kube = FakeKube([resource("TemporalClusterClient", c, {"clusterRef": {"name": "demo"}}) for c in ("b", "a")])
    spec = TemporalClusterSpec()
    operator_cert = leaf("temporal-mtls-operator", CLUSTER.operator_identity)
    mounted, condition = policy_step(kube, CLUSTER, spec, operator_cert)
    document = json.loads(mounted[0]["data"]["policy.json"])
    assert document["version"] == 1
    assert [g["name"] for g in document["grants"]] == ["TemporalClusterClient apps/a", "TemporalClusterClient apps/b",
                                                        "operator"]
    assert (condition.type, condition.ok, condition.reason) == ("AuthorizationReady", True, "PolicyApplied")
    assert mounted[0]["metadata"]["name"] == "demo-authorization"
    assert mounted == [policy_config_map(CLUSTER, grants(kube, CLUSTER, spec, operator_cert))]
    for kind in ({}, {"persistence": {"postgresql": {"host": "pg", "user": "t", "passwordSecretRef": {
            "name": "pg", "key": "password"}}}}):
        spec = TemporalClusterSpec.model_validate(kind)
        objects = cluster_objects(CLUSTER, spec, materials(spec), mounted)
        assert objects.index(mounted[0]) < min(i for i, o in enumerate(objects) if o["kind"] == "Deployment")
        for deployment in (o for o in objects if o["kind"] == "Deployment"):
            pod = deployment["spec"]["template"]["spec"]
            container = pod["containers"][0]
            frontend = deployment["metadata"]["labels"]["app.kubernetes.io/component"] in ("server", "frontend")
            assert ({"name": "authorization", "configMap": {"name": "demo-authorization"}} in pod["volumes"]) is frontend
            assert any(e["name"] == POLICY_ENV for e in container["env"]) is frontend
            # The policy is not in the config checksum: a permission change restarts nothing.
            assert "policy.json" not in json.dumps(deployment["spec"]["template"]["metadata"])


def test_authorization_off_mounts_no_policy_and_says_so():
    spec = TemporalClusterSpec.model_validate({"authorization": {"enabled": False}})
    mounted, condition = policy_step(FakeKube([]), CLUSTER, spec, b"")
    assert mounted == [] and (condition.ok, condition.reason) == (False, "Disabled")


def test_certificate_match_prefers_the_identity_uri():
    assert certificate_match(leaf("x", "spiffe://temporal-mtls.dev/a"), "spiffe://temporal-mtls.dev/a") == {
        "uri": "spiffe://temporal-mtls.dev/a"}
    other = leaf("x", "spiffe://elsewhere/a")
    assert certificate_match(other, "spiffe://temporal-mtls.dev/a") == {
        "sha256": certs.describe(certs.load_certificates(other)[0]).sha256}


def test_coalesced_runs_once_for_a_burst_and_retries_a_failure():
    calls, done = [], threading.Event()

    def action(key):
        calls.append(key)
        if len(calls) == 2:
            done.set()
        return len(calls) > 1  # the first run fails: tried again

    run = Coalesced(action, delay=0.05)
    import temporal_mtls_operator.handlers.authorization as module
    module.RETRY_DELAY, saved = 0.05, module.RETRY_DELAY
    try:
        for _ in range(50):
            run(("apps", "demo"))
        assert done.wait(5)
    finally:
        module.RETRY_DELAY = saved
    assert calls == [("apps", "demo"), ("apps", "demo")]
