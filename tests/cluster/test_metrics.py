"""Metrics: the operator's /metrics through its Service, Temporal's own through the server's, the chart's monitoring
objects accepted by an API server that knows the prometheus-operator CRDs."""

from __future__ import annotations

import base64
import json

import pytest
import yaml
from cryptography import x509
from prometheus_client.parser import text_string_to_metric_families

from conftest import REPO, operator_leader, wait_for

pytestmark = pytest.mark.cluster

CHART = str(REPO / "charts" / "temporal-mtls-operator")
MONITORING_CRDS = REPO / "tests" / "data" / "prometheus-operator-crds"


def scrape(kubectl, node_exec, namespace: str, service: str, port: int) -> dict[tuple, float]:
    """{(sample name, sorted labels): value} of a Service's /metrics, fetched from inside the node namespace."""
    return scrape_address(node_exec, kubectl("get", "svc", service, "-n", namespace, "-o",
                                             "jsonpath={.spec.clusterIP}").stdout, port)


def scrape_operator(kubectl, node_exec) -> dict[tuple, float]:
    """The leading operator pod's /metrics (its Service balances over the leader and the standby, whose
    reconcile and certificate series are empty: Prometheus scrapes every pod)."""
    return scrape_address(node_exec, operator_leader(kubectl)["status"]["podIP"], 8081)


def scrape_address(node_exec, address: str, port: int) -> dict[tuple, float]:
    result = node_exec("curl", "-sS", "--fail", "--max-time", "10", f"http://{address}:{port}/metrics", timeout=30)
    assert result.returncode == 0, result.stderr
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(result.stdout) for s in family.samples}


def value(samples: dict, name: str, **labels: str) -> float | None:
    """The one sample of ``name`` whose labels include ``labels``."""
    found = [v for (n, ls), v in samples.items() if n == name and labels.items() <= dict(ls).items()]
    assert len(found) <= 1, found
    return found[0] if found else None


def test_operator_and_temporal_metrics_through_their_services(temporal_cluster, kubectl, node_exec, namespace):
    temporal_cluster()
    tls_crt = base64.b64decode(json.loads(kubectl("get", "secret", "demo-frontend-tls", "-n", namespace, "-o",
                                                  "json").stdout)["data"]["tls.crt"])
    not_after = x509.load_pem_x509_certificates(tls_crt)[0].not_valid_after_utc.timestamp()
    frontend = dict(namespace=namespace, cluster="demo", role="frontend", trust_domain="frontend", source="selfSigned")

    def operator_metrics():
        return scrape_operator(kubectl, node_exec)

    samples = wait_for(lambda: (s := operator_metrics()) and value(
        s, "temporal_mtls_certificate_expiration_timestamp_seconds", **frontend) == not_after and s, 60, interval=1,
        what="the frontend certificate's expiry in the operator's metrics")
    assert value(samples, "temporal_mtls_certificate_ready", **frontend) == 1
    ca = dict(namespace=namespace, cluster="demo", trust_domain="frontend", source="selfSigned")
    assert value(samples, "temporal_mtls_ca_expiration_timestamp_seconds", **ca) > not_after
    assert value(samples, "temporal_mtls_ca_rotation_phase", namespace=namespace, cluster="demo",
                 trust_domain="frontend", phase="Idle") == 1
    count = value(samples, "temporal_mtls_reconcile_duration_seconds_count", kind="TemporalCluster")
    assert count >= 1 and value(samples, "temporal_mtls_reconcile_total", kind="TemporalCluster") >= count
    renewed = value(samples, "temporal_mtls_certificate_renewals_total", kind="leaf") or 0

    # A leaf rotation: the histogram counts the reconcile, four leaves are renewed, the gauge follows the new Secret.
    kubectl("annotate", "--overwrite", "temporalcluster", "demo", "-n", namespace, "temporal-mtls.dev/rotate=metrics")
    wait_for(lambda: (value(operator_metrics(), "temporal_mtls_certificate_renewals_total", kind="leaf") or 0)
             >= renewed + 4, 60, interval=1, what="four leaf renewals in the metrics")
    samples = operator_metrics()
    assert value(samples, "temporal_mtls_reconcile_duration_seconds_count", kind="TemporalCluster") > count
    assert value(samples, "temporal_mtls_certificate_expiration_timestamp_seconds", **frontend) == \
        x509.load_pem_x509_certificates(base64.b64decode(json.loads(kubectl(
            "get", "secret", "demo-frontend-tls", "-n", namespace, "-o", "json").stdout)["data"]["tls.crt"]))[0] \
        .not_valid_after_utc.timestamp()

    # Temporal's own metrics, from the listener the rendered config sets, through the server Service's metrics port.
    ports = json.loads(kubectl("get", "svc", "demo-frontend", "-n", namespace, "-o", "json").stdout)["spec"]["ports"]
    assert {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"} in ports
    temporal = wait_for(lambda: scrape(kubectl, node_exec, namespace, "demo-frontend", 9090), 30, interval=1,
                        what="Temporal's /metrics")
    names = {name for name, _ in temporal}
    assert any(n.startswith("service_requests") for n in names), sorted(names)[:40]

    # A deleted cluster's series go with it.
    kubectl("delete", "temporalcluster", "demo", "-n", namespace, "--wait=false")
    wait_for(lambda: value(operator_metrics(), "temporal_mtls_certificate_ready", **frontend) is None, 60, interval=1,
             what="the deleted cluster's series to disappear")


def established(kubectl, crd: str) -> bool:
    conditions = json.loads(kubectl("get", "crd", crd, "-o", "json").stdout).get("status", {}).get("conditions") or []
    return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)


def test_chart_monitoring_objects_pass_server_side_dry_run(helm, kubectl, namespace):
    for crd in sorted(MONITORING_CRDS.glob("*.yaml")):
        kubectl("apply", "--server-side", "-f", str(crd))
    for name in ("servicemonitors", "prometheusrules"):
        # Polled: `kubectl wait --for=condition` fails at once on a CRD whose status has no conditions yet.
        wait_for(lambda: established(kubectl, f"{name}.monitoring.coreos.com"), 60, what=f"CRD {name} Established")
    rendered = helm("template", "tmo", CHART, "-n", namespace, "--set", "metrics.serviceMonitor.enabled=true",
                    "--set", "metrics.prometheusRule.enabled=true", "--set", "metrics.grafanaDashboard.enabled=true",
                    "--set", "metrics.prometheusRule.certificateExpiryDays=7").stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    kinds = {d["kind"] for d in docs}
    assert {"ServiceMonitor", "PrometheusRule", "Service", "ConfigMap"} <= kinds
    applied = kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", input=rendered)  # the test's own namespace
    assert "servicemonitor.monitoring.coreos.com/tmo created (server dry run)" in applied.stdout, applied.stdout
    assert "prometheusrule.monitoring.coreos.com/tmo created (server dry run)" in applied.stdout, applied.stdout

    (monitor,) = [d for d in docs if d["kind"] == "ServiceMonitor"]
    (service,) = [d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "tmo-metrics"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"] == "metrics"
    (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    expiring = next(r for g in rule["spec"]["groups"] for r in g["rules"]
                    if r.get("alert") == "TemporalMTLSCertificateExpiringSoon")
    assert expiring["expr"].endswith("< 7 * 86400")
    (dashboard,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "tmo-dashboard"]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    panels = json.loads(dashboard["data"]["temporal-mtls-operator.json"])["panels"]
    assert any("temporal_mtls_certificate_expiration_timestamp_seconds" in t["expr"] for p in panels
               for t in p["targets"])
    # A ServiceMonitor with a bad interval is refused by the chart's schema, before any API server sees it.
    assert helm("template", "tmo", CHART, "--set", "metrics.serviceMonitor.interval=soon", check=False).returncode != 0
