"""Desired objects and rendered config: what rolls the server, what never gets mounted."""

from __future__ import annotations

import datetime as dt

import pytest
import yaml

from temporal_mtls_operator import certs
from temporal_mtls_operator.api import CONFIG_CHECKSUM, LEAF_CHECKSUM, TRUST_CHECKSUM
from temporal_mtls_operator.builders.cluster import cluster_objects
from temporal_mtls_operator.models import TemporalClusterSpec
from temporal_mtls_operator.render import render_config
from temporal_mtls_operator.sources import ClusterIdentity, TLSMaterial
from temporal_mtls_operator.sources.base import leaf_profiles

CLUSTER = ClusterIdentity("demo", "apps", "uid-1")


def materials(spec: TemporalClusterSpec, ca_names=("internode", "frontend")) -> dict[str, TLSMaterial]:
    cas = {d: certs.issue_ca(f"{d} CA {ca_names}", dt.timedelta(days=30)) for d in ("internode", "frontend")}
    result = {}
    for role, (domain, profile) in leaf_profiles(CLUSTER, spec.mtls).items():
        pair = certs.issue_leaf(cas[domain], profile, dt.timedelta(days=10))
        result[role] = TLSMaterial(pair.cert_pem, pair.key_pem, cas[domain].cert_pem)
    return result


def deployment(objects: list[dict]) -> dict:
    return next(o for o in objects if o["kind"] == "Deployment")


def test_config_has_mtls_everywhere_and_the_pod_ip_as_broadcast_address():
    config = yaml.safe_load(render_config(CLUSTER, TemporalClusterSpec()))
    tls = config["global"]["tls"]
    assert tls["internode"]["server"]["requireClientAuth"] is True
    assert tls["frontend"]["server"]["requireClientAuth"] is True
    assert tls["frontend"]["server"]["clientCaFiles"] == ["/etc/temporal/tls/frontend/ca.crt"]
    assert tls["internode"]["client"]["serverName"] == "demo-internode.apps.svc"
    assert tls["systemWorker"]["client"] == {"serverName": "demo-frontend.apps.svc",
                                             "rootCaFiles": ["/etc/temporal/tls/system-worker/ca.crt"]}
    assert tls["refreshInterval"] == "1m"
    assert config["global"]["membership"]["broadcastAddress"] == '{{ env "POD_IP" }}'
    # Authorization on (the default): system workers use the internal frontend, not an admin certificate.
    assert set(config["services"]) == {"frontend", "internal-frontend", "history", "matching", "worker"}
    assert config["services"]["internal-frontend"]["rpc"] == {"grpcPort": 7236, "membershipPort": 6936,
                                                              "bindOnIP": "0.0.0.0"}
    disabled = yaml.safe_load(render_config(CLUSTER, TemporalClusterSpec(authorization={"enabled": False})))
    assert set(disabled["services"]) == {"frontend", "history", "matching", "worker"}


def test_ca_private_keys_are_never_mounted_and_pods_run_non_root():
    objects = cluster_objects(CLUSTER, TemporalClusterSpec(), materials(TemporalClusterSpec()))
    pod = deployment(objects)["spec"]["template"]["spec"]
    secrets = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert secrets == {"demo-internode-tls", "demo-frontend-tls", "demo-system-worker-tls"}
    assert all(not o["metadata"]["name"].endswith("-ca") for o in objects)  # the source owns CA Secrets
    security = pod["containers"][0]["securityContext"]
    assert security["runAsNonRoot"] and security["readOnlyRootFilesystem"] and security["capabilities"]["drop"] == ["ALL"]
    assert deployment(objects)["spec"]["strategy"] == {"type": "Recreate"}  # one SQLite writer


def test_only_config_and_trust_changes_roll_the_stock_server():
    spec = TemporalClusterSpec(authorization={"enabled": False})  # temporalio/server: CA bundles read once
    assert spec.server_image == "temporalio/server:1.31.4" and not spec.reloads_ca_bundles
    first = materials(spec)
    base = deployment(cluster_objects(CLUSTER, spec, first))["spec"]["template"]["metadata"]["annotations"]
    renewed = {role: TLSMaterial(certs.issue_leaf(certs.issue_ca("x", dt.timedelta(days=1)),
                                                  certs.LeafProfile("x"), dt.timedelta(days=1)).cert_pem,
                                 m.key_pem, m.ca_pem) for role, m in first.items()}
    same_trust = deployment(cluster_objects(CLUSTER, spec, renewed))["spec"]["template"]["metadata"]["annotations"]
    assert same_trust == base and LEAF_CHECKSUM not in base  # leaves reload via refreshInterval

    new_trust = deployment(cluster_objects(CLUSTER, spec, materials(spec, ("other",))))["spec"]["template"]
    assert new_trust["metadata"]["annotations"][TRUST_CHECKSUM] != base[TRUST_CHECKSUM]

    changed = TemporalClusterSpec.model_validate({"mtls": {"refreshInterval": "2m"}})
    rolled = deployment(cluster_objects(CLUSTER, changed, first))["spec"]["template"]["metadata"]["annotations"]
    assert rolled[CONFIG_CHECKSUM] != base[CONFIG_CHECKSUM]

    no_refresh = TemporalClusterSpec.model_validate({"mtls": {"refreshInterval": "0s"}})
    assert LEAF_CHECKSUM in deployment(cluster_objects(CLUSTER, no_refresh, first))["spec"]["template"]["metadata"][
        "annotations"]


@pytest.mark.parametrize("spec", [
    TemporalClusterSpec(),  # authorization on: our server build
    TemporalClusterSpec(authorization={"enabled": False}, image="ghcr.io/temporal-mtls-operator/temporal-server:1.31.4"),
    TemporalClusterSpec(persistence={"postgresql": {"host": "db", "user": "t", "passwordSecretRef": {"name": "pw", "key": "pw"}}}),
], ids=["default", "our-image-without-authorization", "postgresql"])
def test_a_ca_change_rolls_no_pod_of_our_server_build_which_reloads_bundles(spec):
    assert spec.reloads_ca_bundles
    pods = lambda objects: {o["metadata"]["name"]: o["spec"]["template"] for o in objects if o["kind"] == "Deployment"}
    before = pods(cluster_objects(CLUSTER, spec, materials(spec)))
    after = pods(cluster_objects(CLUSTER, spec, materials(spec, ("other",))))
    assert before == after and before
    for template in before.values():
        assert TRUST_CHECKSUM not in template["metadata"]["annotations"]
        assert {"name": "TEMPORAL_MTLS_RELOADING_TLS", "value": "true"} in template["spec"]["containers"][0]["env"]
    stock = TemporalClusterSpec(authorization={"enabled": False})
    stock_env = deployment(cluster_objects(CLUSTER, stock, materials(stock)))["spec"]["template"]["spec"][
        "containers"][0]["env"]
    assert all(e["name"] != "TEMPORAL_MTLS_RELOADING_TLS" for e in stock_env)


def test_every_object_is_owned_and_labelled():
    for obj in cluster_objects(CLUSTER, TemporalClusterSpec(), materials(TemporalClusterSpec())):
        assert obj["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "temporal-mtls-operator"
        assert obj["metadata"]["labels"]["app.kubernetes.io/instance"] == "demo"


def test_published_secrets_record_where_their_material_came_from():
    spec = TemporalClusterSpec()
    vault = {role: TLSMaterial(m.cert_pem, m.key_pem, m.ca_pem, {"temporal-mtls.dev/keyvault-version": f"v-{role}"})
             for role, m in materials(spec).items()}
    secrets = {o["metadata"]["name"]: o for o in cluster_objects(CLUSTER, spec, vault) if o["kind"] == "Secret"}
    assert secrets["demo-frontend-tls"]["metadata"]["annotations"]["temporal-mtls.dev/keyvault-version"] == "v-frontend"
    # The version is bookkeeping, not content: the pod template does not change with it alone.
    again = {role: TLSMaterial(m.cert_pem, m.key_pem, m.ca_pem, {"temporal-mtls.dev/keyvault-version": "other"})
             for role, m in vault.items()}
    assert deployment(cluster_objects(CLUSTER, spec, vault)) == deployment(cluster_objects(CLUSTER, spec, again))
