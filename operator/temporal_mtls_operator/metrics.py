"""The operator's Prometheus metrics: one registry, small functions the handlers and sources call in one line.

Certificate series carry (namespace, cluster, role, client, trust_domain, source) like cert-manager's
``certmanager_certificate_expiration_timestamp_seconds``; a deleted resource's series are removed (``forget_*``),
so memory stays bounded by what exists.
"""

from __future__ import annotations

import contextlib
import threading
import time
from urllib.parse import urlsplit

from cryptography import x509
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

PREFIX = "temporal_mtls"
REGISTRY = CollectorRegistry(auto_describe=True)
PHASES = ("Idle", "TrustingNewCA", "ReissuingLeaves", "RemovingOldCA", "Completed")

_CERT = ("namespace", "cluster", "role", "client", "trust_domain", "source")
_CA = ("namespace", "cluster", "trust_domain", "source")

certificate_not_after = Gauge(f"{PREFIX}_certificate_expiration_timestamp_seconds",
                              "The certificate's notAfter (Unix time)", _CERT, registry=REGISTRY)
certificate_not_before = Gauge(f"{PREFIX}_certificate_not_before_timestamp_seconds",
                               "The certificate's notBefore (Unix time)", _CERT, registry=REGISTRY)
certificate_ready = Gauge(f"{PREFIX}_certificate_ready",
                          "1 when the certificate is published and valid, 0 when its source failed", _CERT,
                          registry=REGISTRY)
ca_not_after = Gauge(f"{PREFIX}_ca_expiration_timestamp_seconds", "The trusted CA's notAfter (Unix time)", _CA,
                     registry=REGISTRY)
ca_not_before = Gauge(f"{PREFIX}_ca_not_before_timestamp_seconds", "The trusted CA's notBefore (Unix time)", _CA,
                      registry=REGISTRY)
ca_ready = Gauge(f"{PREFIX}_ca_ready", "1 when the trust domain's CA bundle is published, 0 when its source failed",
                 _CA, registry=REGISTRY)
ca_rotation_phase = Gauge(f"{PREFIX}_ca_rotation_phase", "1 for the trust domain's current CA rotation phase",
                          ("namespace", "cluster", "trust_domain", "phase"), registry=REGISTRY)
reconciles = Counter(f"{PREFIX}_reconcile", "Reconciles started", ("kind",), registry=REGISTRY)
reconcile_errors = Counter(f"{PREFIX}_reconcile_errors", "Reconciles that ended in an error (retried)", ("kind",),
                           registry=REGISTRY)
reconcile_duration = Histogram(f"{PREFIX}_reconcile_duration_seconds", "Time a reconcile took", ("kind",),
                               buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=REGISTRY)
issuances = Counter(f"{PREFIX}_certificate_issuances", "Certificates published for the first time", ("kind",),
                    registry=REGISTRY)
renewals = Counter(f"{PREFIX}_certificate_renewals", "Certificates replaced by a new one (renewal, rotation)",
                   ("kind",), registry=REGISTRY)
keyvault_requests = Counter(f"{PREFIX}_keyvault_requests", "Key Vault requests by operation and outcome "
                            "(HTTP status, or the exception's name)", ("operation", "outcome"), registry=REGISTRY)
keyvault_sync_duration = Histogram(f"{PREFIX}_keyvault_sync_duration_seconds",
                                   "Time one resource's Key Vault sync took", ("result",),
                                   buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=REGISTRY)

secret_repairs = Counter(f"{PREFIX}_secret_repairs", "Owned Secrets deleted or edited outside the operator, "
                         "written back by a reconcile of their owner", ("kind", "change"), registry=REGISTRY)
kube_requests = Counter(f"{PREFIX}_kube_requests", "API server requests of the operator's reconciles (kube.py; "
                        "kopf's watches, finalizers and status patches not included)", ("verb",), registry=REGISTRY)
leader = Gauge(f"{PREFIX}_operator_leader", "1 while this operator process holds the leader-election Lease and "
               "runs the handlers, 0 on a standby (leader.py)", registry=REGISTRY)

# What each resource has put into labelled series, so deleting the resource removes exactly those.
_series: dict[tuple[str, str, str], list[tuple[Gauge, tuple[str, ...]]]] = {}
_lock = threading.Lock()


def serve(port: int) -> None:
    """``/metrics`` on ``port`` in a daemon thread (the operator's event loop never serves it)."""
    start_http_server(port, registry=REGISTRY)


@contextlib.contextmanager
def reconcile(kind: str):
    reconciles.labels(kind).inc()
    started = time.perf_counter()
    try:
        yield
    except BaseException:
        reconcile_errors.labels(kind).inc()
        raise
    finally:
        reconcile_duration.labels(kind).observe(time.perf_counter() - started)


def _replace(key: tuple[str, str, str], values: list[tuple[Gauge, tuple[str, ...], float]]) -> None:
    """Set a resource's series; series it had before and no longer has are removed."""
    with _lock:
        old = {(g, labels) for g, labels in _series.get(key, [])}
        new = [(g, labels) for g, labels, _ in values]
        for gauge, labels in old - set(new):
            _remove(gauge, labels)
        for gauge, labels, value in values:
            gauge.labels(*labels).set(value)
        _series[key] = new


def _remove(gauge: Gauge, labels: tuple[str, ...]) -> None:
    with contextlib.suppress(KeyError):
        gauge.remove(*labels)


def _validity(certificate: x509.Certificate) -> tuple[float, float]:
    return certificate.not_valid_before_utc.timestamp(), certificate.not_valid_after_utc.timestamp()


def _first_to_end(pem: bytes) -> x509.Certificate:
    """Of a CA bundle (old and new CA while a rotation runs) the CA that ends first: the one to alert on."""
    return min(x509.load_pem_x509_certificates(pem), key=lambda c: c.not_valid_after_utc)


def cluster_observed(namespace: str, cluster: str, source: str, materials: dict, domains: dict[str, str],
                     rotations: dict[str, dict] | None = None) -> None:
    """A TemporalCluster's published certificates (role -> TLSMaterial, role -> trust domain), its CAs (from the
    bundles it published) and its CA rotation phases."""
    values = []
    bundles: dict[str, bytes] = {}
    for role, material in materials.items():
        labels = (namespace, cluster, role, "", domains[role], source)
        not_before, not_after = _validity(x509.load_pem_x509_certificates(material.cert_pem)[0])
        values += [(certificate_not_after, labels, not_after), (certificate_not_before, labels, not_before),
                   (certificate_ready, labels, 1)]
        bundles.setdefault(domains[role], material.ca_pem)
    for domain, pem in bundles.items():
        labels = (namespace, cluster, domain, source)
        not_before, not_after = _validity(_first_to_end(pem))
        values += [(ca_not_after, labels, not_after), (ca_not_before, labels, not_before), (ca_ready, labels, 1)]
    for domain in ("internode", "frontend"):
        current = ((rotations or {}).get(domain) or {}).get("phase") or "Idle"
        values += [(ca_rotation_phase, (namespace, cluster, domain, phase), float(phase == current))
                   for phase in PHASES]
    _replace(("TemporalCluster", namespace, cluster), values)


def client_observed(namespace: str, client: str, cluster: str, source: str, material) -> None:
    labels = (namespace, cluster, "client", client, "frontend", source)
    not_before, not_after = _validity(x509.load_pem_x509_certificates(material.cert_pem)[0])
    _replace(("TemporalClusterClient", namespace, client),
             [(certificate_not_after, labels, not_after), (certificate_not_before, labels, not_before),
              (certificate_ready, labels, 1)])


def not_ready(kind: str, namespace: str, name: str) -> None:
    """The source failed: the resource's certificates and CAs stay listed (with their validity) but not ready."""
    with _lock:
        for gauge, labels in _series.get((kind, namespace, name), []):
            if gauge in (certificate_ready, ca_ready):
                gauge.labels(*labels).set(0)


def forget(kind: str, namespace: str, name: str) -> None:
    """The resource is gone: remove every series it had."""
    with _lock:
        for gauge, labels in _series.pop((kind, namespace, name), []):
            _remove(gauge, labels)


def certificates_changed(kind: str, before: dict | None, after: dict) -> None:
    """Count first issuances and renewals: each certificate's serial in status before vs the one published now
    (name -> status entry with ``serialNumber``; names ending in ``-ca`` count as kind ``ca``)."""
    for name, entry in after.items():
        old, new = ((before or {}).get(name) or {}).get("serialNumber"), (entry or {}).get("serialNumber")
        if new and old != new:
            (renewals if old else issuances).labels("ca" if name.endswith("-ca") else kind).inc()


def kube_request(method: str) -> None:
    kube_requests.labels(method).inc()


def keyvault_request(method: str, url: str, outcome: str) -> None:
    keyvault_requests.labels(_operation(method, url), outcome).inc()


def _operation(method: str, url: str) -> str:
    """``GET /certificates/<name>/<version>`` -> ``get_certificate``."""
    segments = [s for s in urlsplit(url).path.split("/") if s]
    collection = segments[0] if segments else ""
    noun = {"certificates": "certificate", "secrets": "secret", "keys": "key"}.get(collection, "other")
    return f"{method.lower()}_{noun}"


@contextlib.contextmanager
def keyvault_sync():
    started = time.perf_counter()
    result = "failure"
    try:
        yield
        result = "success"
    finally:
        keyvault_sync_duration.labels(result).observe(time.perf_counter() - started)
