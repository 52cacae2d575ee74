"""The operator's metrics module: values equal the certificates', series go with their resource."""

from __future__ import annotations

import datetime as dt

from prometheus_client import generate_latest

from temporal_mtls_operator import certs, metrics
from temporal_mtls_operator.sources import TLSMaterial

DAY = dt.timedelta(days=1)


def sample(name: str, **labels: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(name, labels)


def material(ca: certs.KeyPair, common_name: str, bundle: bytes | None = None) -> TLSMaterial:
    leaf = certs.issue_leaf(ca, certs.LeafProfile(common_name, client=True), 30 * DAY)
    return TLSMaterial(leaf.cert_pem, leaf.key_pem, bundle or ca.cert_pem)


def test_cluster_series_carry_the_certificates_validity_and_go_with_the_cluster():
    internode, frontend = certs.issue_ca("i", 365 * DAY), certs.issue_ca("f", 90 * DAY)
    next_frontend = certs.issue_ca("f2", 365 * DAY)
    materials = {"internode": material(internode, "a"),
                 "frontend": material(frontend, "b", frontend.cert_pem + next_frontend.cert_pem)}
    metrics.cluster_observed("ns1", "demo", "selfSigned", materials,
                             {"internode": "internode", "frontend": "frontend"},
                             {"frontend": {"phase": "TrustingNewCA"}})
    leaf = certs.load_certificates(materials["frontend"].cert_pem)[0]
    labels = dict(namespace="ns1", cluster="demo", role="frontend", client="", trust_domain="frontend",
                  source="selfSigned")
    assert sample("temporal_mtls_certificate_expiration_timestamp_seconds", **labels) == \
        leaf.not_valid_after_utc.timestamp()
    assert sample("temporal_mtls_certificate_not_before_timestamp_seconds", **labels) == \
        leaf.not_valid_before_utc.timestamp()
    assert sample("temporal_mtls_certificate_ready", **labels) == 1
    # Of old + new CA in a rotating bundle, the one that ends first.
    ca_labels = dict(namespace="ns1", cluster="demo", trust_domain="frontend", source="selfSigned")
    assert sample("temporal_mtls_ca_expiration_timestamp_seconds", **ca_labels) == \
        frontend.certificate.not_valid_after_utc.timestamp()
    phase = dict(namespace="ns1", cluster="demo", trust_domain="frontend")
    assert sample("temporal_mtls_ca_rotation_phase", **phase, phase="TrustingNewCA") == 1
    assert sample("temporal_mtls_ca_rotation_phase", **phase, phase="Idle") == 0
    assert sample("temporal_mtls_ca_rotation_phase", namespace="ns1", cluster="demo", trust_domain="internode",
                  phase="Idle") == 1

    metrics.not_ready("TemporalCluster", "ns1", "demo")
    assert sample("temporal_mtls_certificate_ready", **labels) == 0
    assert sample("temporal_mtls_ca_ready", **ca_labels) == 0

    # A role that is no longer published loses its series; a deleted cluster loses all.
    metrics.cluster_observed("ns1", "demo", "selfSigned", {"internode": materials["internode"]},
                             {"internode": "internode"})
    assert sample("temporal_mtls_certificate_ready", **labels) is None
    metrics.forget("TemporalCluster", "ns1", "demo")
    assert b'cluster="demo"' not in generate_latest(metrics.REGISTRY)


def test_client_series_and_issuance_renewal_counts():
    ca = certs.issue_ca("f", 90 * DAY)
    m = material(ca, "app")
    metrics.client_observed("ns2", "hello", "demo", "selfSigned", m)
    labels = dict(namespace="ns2", cluster="demo", role="client", client="hello", trust_domain="frontend",
                  source="selfSigned")
    assert sample("temporal_mtls_certificate_expiration_timestamp_seconds", **labels) == \
        certs.load_certificates(m.cert_pem)[0].not_valid_after_utc.timestamp()
    metrics.forget("TemporalClusterClient", "ns2", "hello")
    assert sample("temporal_mtls_certificate_ready", **labels) is None

    def count(name: str, kind: str) -> float:
        return sample(f"temporal_mtls_certificate_{name}_total", kind=kind) or 0

    issued, renewed, ca_issued = count("issuances", "leaf"), count("renewals", "leaf"), count("issuances", "ca")
    metrics.certificates_changed("leaf", None, {"frontend": {"serialNumber": "1"}, "frontend-ca": {"serialNumber": "9"}})
    metrics.certificates_changed("leaf", {"frontend": {"serialNumber": "1"}}, {"frontend": {"serialNumber": "1"}})
    metrics.certificates_changed("leaf", {"frontend": {"serialNumber": "1"}}, {"frontend": {"serialNumber": "2"}})
    assert (count("issuances", "leaf"), count("renewals", "leaf"), count("issuances", "ca")) == \
        (issued + 1, renewed + 1, ca_issued + 1)


def test_reconcile_counts_errors_and_durations():
    before = sample("temporal_mtls_reconcile_errors_total", kind="Test") or 0
    with metrics.reconcile("Test"):
        pass
    try:
        with metrics.reconcile("Test"):
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert sample("temporal_mtls_reconcile_errors_total", kind="Test") == before + 1
    assert sample("temporal_mtls_reconcile_duration_seconds_count", kind="Test") >= 2


def test_keyvault_requests_by_operation_and_outcome():
    metrics.keyvault_request("GET", "https://v.vault.azure.net/certificates/frontend/?api-version=7.6", "429")
    metrics.keyvault_request("GET", "https://v.vault.azure.net/secrets/frontend/abc", "200")
    assert sample("temporal_mtls_keyvault_requests_total", operation="get_certificate", outcome="429") >= 1
    assert sample("temporal_mtls_keyvault_requests_total", operation="get_secret", outcome="200") >= 1
