"""The azureKeyVault certificate source against a real Key Vault emulator (Lowkey Vault, a host process) with
the real Azure SDK and DefaultAzureCredential, and a real API server for the Secrets it reads. A
fault-injecting proxy in front of the emulator produces what the emulator cannot (401, 403, 429)."""

from __future__ import annotations

import base64
import datetime as dt
import uuid

import pytest
from azure.keyvault.certificates import CertificateContentType, CertificatePolicy
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from localkube.control_plane import free_port
from support.fault_proxy import FaultProxy
from temporal_mtls_operator import certs, metrics
from temporal_mtls_operator.builders.cluster import tls_secret
from temporal_mtls_operator.keyvault import VaultSettings, open_clients
from temporal_mtls_operator.kube import Kube
from temporal_mtls_operator.models.cluster import MTLS
from temporal_mtls_operator.sources import AzureKeyVaultSource, ClientRequest, ClusterIdentity, SourceError
from temporal_mtls_operator.sources.base import leaf_profiles
from temporal_mtls_operator.sources.schedule import SyncSchedule

pytestmark = [pytest.mark.keyvault, pytest.mark.cluster]

HOUR = dt.timedelta(hours=1)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def identity(host_vault, monkeypatch):
    """The production credential path: DefaultAzureCredential -> managed identity at the emulator's endpoint."""
    for key, value in host_vault.env().items():
        monkeypatch.setenv(key, value)


@pytest.fixture
def kube(api_client) -> Kube:
    return Kube(api_client)


@pytest.fixture
def vault(host_vault):
    clients = open_clients(VaultSettings(host_vault.url, "7.6", False, str(host_vault.ca_file)),
                           credential=_AnyToken())
    yield clients
    clients.close()


class _AnyToken:
    """Only for the test's own imports (the source under test uses DefaultAzureCredential)."""

    def get_token(self, *scopes, **kwargs):
        from azure.core.credentials import AccessToken
        return AccessToken("test", 2_000_000_000)


def put(vault, name: str, pair: certs.KeyPair) -> str:
    """Import key + leaf, as `make keyvault-certs` does; returns the new version."""
    imported = vault.certificates.import_certificate(
        name, pair.key_pem + pair.cert_pem,
        policy=CertificatePolicy(issuer_name="Unknown", content_type=CertificateContentType.pem, exportable=True))
    return imported.properties.version


class World:
    """A vault filled for one TemporalCluster, and the spec that points the source at it."""

    def __init__(self, vault, host_vault, kube: Kube, namespace: str, url: str | None = None) -> None:
        self.prefix = f"t{uuid.uuid4().hex[:8]}-"
        self.cluster = ClusterIdentity("demo", namespace, str(uuid.uuid4()))
        self.ca = certs.issue_ca("test vault CA", 24 * HOUR)
        self.vault, self.kube = vault, kube
        put(vault, f"{self.prefix}ca", self.ca)
        self.profiles = {role: profile for role, (_, profile) in leaf_profiles(self.cluster, MTLS()).items()}
        for role, profile in self.profiles.items():
            put(vault, self.name(role), certs.issue_leaf(self.ca, profile, 12 * HOUR))
        kube.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "vault-tls", "namespace": namespace},
                    "data": {"ca.crt": base64.b64encode(host_vault.ca_pem).decode()}})
        self.mtls = MTLS.model_validate({"source": {"azureKeyVault": {
            "vaultUrl": url or host_vault.url, "apiVersion": "7.6", "verifyChallengeResource": False,
            "tlsCASecret": "vault-tls", "syncInterval": "60s",
            "certificates": {"internode": self.name("internode"), "frontend": self.name("frontend"),
                             "systemWorker": self.name("system-worker"),
                             "operatorClient": self.name("operator-client")},
            "caCertificates": {"internode": [f"{self.prefix}ca"], "frontend": [f"{self.prefix}ca"]}}}})

    def name(self, role: str) -> str:
        return f"{self.prefix}{role}"

    def publish(self, materials) -> None:
        """What the handler does with the result: the Secrets the operator owns (without an owner reference
        here: this test's cluster does not exist, and the garbage collector would delete them)."""
        for role, material in materials.items():
            secret = tls_secret(self.cluster, role, material)
            del secret["metadata"]["ownerReferences"]
            self.kube.apply(secret)


@pytest.fixture
def world(vault, host_vault, kube, namespace, identity) -> World:
    return World(vault, host_vault, kube, namespace)


def source_with_clock(kube: Kube) -> tuple[AzureKeyVaultSource, Clock]:
    clock = Clock()
    return AzureKeyVaultSource(kube, SyncSchedule(clock=clock, rng=lambda: 0.5)), clock


def sha1(pem: bytes) -> str:
    return x509.load_pem_x509_certificate(pem).fingerprint(hashes.SHA1()).hex().upper()


def test_one_request_per_certificate_when_nothing_changed_and_the_secret_only_for_a_new_version(world, kube):
    source, clock = source_with_clock(kube)
    first = source.materials(world.cluster, world.mtls)
    assert source.requests == 2 + 4 * 2  # two CA certificates, then per role the certificate and its secret
    assert first["frontend"].origin["temporal-mtls.dev/keyvault-certificate"] == world.name("frontend")
    assert certs.private_key_matches(certs.load_certificates(first["frontend"].cert_pem)[0],
                                     certs.load_private_key(first["frontend"].key_pem))
    assert sha1(first["frontend"].cert_pem) == first["frontend"].origin["temporal-mtls.dev/keyvault-thumbprint"]
    assert first["frontend"].ca_pem == world.ca.cert_pem
    world.publish(first)

    before = source.requests
    assert source.materials(world.cluster, world.mtls) == first  # inside syncInterval: no request at all
    assert source.requests == before

    clock.now += 61
    assert source.materials(world.cluster, world.mtls) == first
    assert source.requests - before == 2 + 4  # one per certificate: versions compared, no secret fetched

    version = put(world.vault, world.name("frontend"),
                  certs.issue_leaf(world.ca, world.profiles["frontend"], 12 * HOUR))
    clock.now += 61
    before = source.requests
    third = source.materials(world.cluster, world.mtls)
    assert source.requests - before == 2 + 4 + 1  # plus the new version's secret
    assert third["frontend"].origin["temporal-mtls.dev/keyvault-version"] == version
    assert third["frontend"].cert_pem != first["frontend"].cert_pem
    assert third["internode"] == first["internode"]


def test_client_certificates_come_from_the_vault_and_are_checked_for_client_auth(world, kube, namespace):
    source, _ = source_with_clock(kube)
    put(world.vault, world.name("client-app"), certs.issue_leaf(world.ca, certs.LeafProfile("app", client=True), HOUR))
    material = source.client_material(world.cluster, world.mtls,
                                      ClientRequest(namespace, "app-client", "app", world.name("client-app")))
    assert certs.load_certificates(material.cert_pem)[0].subject.rfc4514_string() == "CN=app,O=temporal-mtls-operator"

    put(world.vault, world.name("client-server"),
        certs.issue_leaf(world.ca, certs.LeafProfile("server-only", ("x",), server=True), HOUR))
    with pytest.raises(SourceError) as refused:
        source.client_material(world.cluster, world.mtls,
                               ClientRequest(namespace, "other", "other", world.name("client-server")))
    assert refused.value.reason == "MissingClientAuth"

    with pytest.raises(SourceError) as missing:
        source.client_material(world.cluster, world.mtls, ClientRequest(namespace, "third", "third", None))
    assert missing.value.reason == "InvalidSpec"


def _expired(ca: certs.KeyPair, profile: certs.LeafProfile) -> certs.KeyPair:
    """A leaf that was valid yesterday (cryptography's builder: issue_leaf only issues current ones)."""
    key = certs.KeyAlgorithm.ECDSA_P256.generate()
    now = dt.datetime.now(dt.timezone.utc)
    leaf = (x509.CertificateBuilder().subject_name(x509.Name.from_rfc4514_string(f"CN={profile.common_name}"))
            .issuer_name(ca.certificate.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - 48 * HOUR).not_valid_after(now - 24 * HOUR)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in profile.dns_names]), critical=False)
            .sign(ca.private_key, hashes.SHA256()))
    from cryptography.hazmat.primitives import serialization
    return certs.KeyPair(certs.to_pem(leaf), key.private_bytes(serialization.Encoding.PEM,
                                                                serialization.PrivateFormat.PKCS8,
                                                                serialization.NoEncryption()))


@pytest.mark.parametrize("fault", ["KeyMismatch", "Expired", "MissingDNSName", "MissingServerAuth", "Untrusted"])
def test_a_bad_frontend_certificate_is_refused_with_the_rule_it_breaks(world, kube, fault):
    source, _ = source_with_clock(kube)
    profile = world.profiles["frontend"]
    good = certs.issue_leaf(world.ca, profile, HOUR)
    other = certs.issue_leaf(world.ca, profile, HOUR)
    bad = {
        "KeyMismatch": certs.KeyPair(good.cert_pem, other.key_pem),
        "Expired": _expired(world.ca, profile),
        "MissingDNSName": certs.issue_leaf(world.ca, certs.LeafProfile(profile.common_name, ("elsewhere.example",),
                                                                        server=True), HOUR),
        "MissingServerAuth": certs.issue_leaf(world.ca, certs.LeafProfile(profile.common_name, profile.dns_names,
                                                                           client=True), HOUR),
        "Untrusted": certs.issue_leaf(certs.issue_ca("someone else", HOUR), profile, HOUR),
    }[fault]
    put(world.vault, world.name("frontend"), bad)
    with pytest.raises(SourceError) as refused:
        source.materials(world.cluster, world.mtls)
    assert refused.value.reason == fault
    assert world.name("frontend") in str(refused.value)
    assert "PRIVATE KEY" not in str(refused.value) and base64.b64encode(bad.key_pem)[:40].decode() not in str(refused.value)


def test_a_ca_certificate_that_is_no_ca_is_refused(world, kube):
    source, _ = source_with_clock(kube)
    not_a_ca = certs.issue_leaf(world.ca, certs.LeafProfile("pretender", server=True), HOUR)
    put(world.vault, f"{world.prefix}ca", not_a_ca)
    with pytest.raises(SourceError) as refused:
        source.materials(world.cluster, world.mtls)
    assert refused.value.reason == "NotACA"


def test_an_unknown_certificate_name_is_reported(world, kube):
    source, _ = source_with_clock(kube)
    mtls = world.mtls.model_copy(update={"source": world.mtls.source.model_copy(update={
        "azure_key_vault": world.mtls.source.azure_key_vault.model_copy(update={
            "certificates": world.mtls.source.azure_key_vault.certificates.model_copy(
                update={"frontend": f"{world.prefix}nothing"})})})})
    with pytest.raises(SourceError) as missing:
        source.materials(world.cluster, mtls)
    assert missing.value.reason == "CertificateNotFound"
    assert f"{world.prefix}nothing" in str(missing.value)


def test_an_unreachable_vault_is_reported_and_retried_with_backoff(vault, host_vault, kube, namespace, identity):
    world = World(vault, host_vault, kube, namespace, url=f"https://localhost:{free_port()}")
    source, clock = source_with_clock(kube)
    with pytest.raises(SourceError) as down:
        source.materials(world.cluster, world.mtls)
    assert down.value.reason == "VaultUnreachable"
    key = ("TemporalCluster", world.cluster.uid)
    assert not source.schedule.due(key)
    requests = source.requests
    with pytest.raises(SourceError) as still:  # between attempts: the same failure, no request
        source.materials(world.cluster, world.mtls)
    assert still.value is down.value and source.requests == requests
    clock.now += 5  # first backoff step
    assert source.schedule.due(key)


@pytest.fixture
def proxy(host_vault):
    ca = certs.issue_ca("proxy CA", HOUR)
    served = certs.issue_leaf(ca, certs.LeafProfile("localhost", ("localhost",), server=True), HOUR)
    with FaultProxy(host_vault.url, upstream_ca_file=str(host_vault.ca_file), cert_pem=served.cert_pem,
                    key_pem=served.key_pem) as running:
        running.ca_pem = ca.cert_pem
        yield running


@pytest.mark.parametrize("status, reason", [(401, "VaultUnauthorized"), (403, "VaultForbidden"),
                                            (503, "VaultError")])
def test_vault_refusals_become_reasons(vault, host_vault, kube, namespace, identity, proxy, status, reason):
    world = World(vault, host_vault, kube, namespace, url=proxy.url)
    kube.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "vault-tls", "namespace": namespace},
                "data": {"ca.crt": base64.b64encode(proxy.ca_pem).decode()}})
    source, _ = source_with_clock(kube)
    source.materials(world.cluster, world.mtls)  # through the proxy: works, and the SDK has its challenge
    source.schedule.expedite(("TemporalCluster", world.cluster.uid))
    proxy.fail(status, times=5, path_contains="/certificates/")
    with pytest.raises(SourceError) as refused:
        source.materials(world.cluster, world.mtls)
    assert refused.value.reason == reason
    assert f"HTTP {status}" in str(refused.value)


def test_throttling_honours_retry_after(vault, host_vault, kube, namespace, identity, proxy):
    world = World(vault, host_vault, kube, namespace, url=proxy.url)
    kube.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "vault-tls", "namespace": namespace},
                "data": {"ca.crt": base64.b64encode(proxy.ca_pem).decode()}})
    source, clock = source_with_clock(kube)
    source.materials(world.cluster, world.mtls)
    key = ("TemporalCluster", world.cluster.uid)
    source.schedule.expedite(key)
    proxy.fail(429, times=10, headers={"Retry-After": "17"})

    def throttled_count() -> float:
        return metrics.REGISTRY.get_sample_value("temporal_mtls_keyvault_requests_total",
                                                 {"operation": "get_certificate", "outcome": "429"}) or 0

    def failed_syncs() -> float:
        return metrics.REGISTRY.get_sample_value("temporal_mtls_keyvault_sync_duration_seconds_count",
                                                 {"result": "failure"}) or 0

    throttled_before, failed_before = throttled_count(), failed_syncs()
    with pytest.raises(SourceError) as throttled:
        source.materials(world.cluster, world.mtls)
    assert throttled.value.reason == "VaultThrottled" and throttled.value.retry_after == 17
    statuses = [s for _, _, s in proxy.requests]
    assert statuses.count(429) <= 2  # the SDK gives up fast; the operator's schedule does the waiting
    # The operator's metrics saw exactly the 429s the vault answered, and one failed sync.
    assert throttled_count() - throttled_before == statuses.count(429) >= 1
    assert failed_syncs() - failed_before == 1
    clock.now += 16
    assert not source.schedule.due(key)
    clock.now += 1
    assert source.schedule.due(key)


@pytest.mark.parametrize("value, reason", [("cert-only", "NoPrivateKey"), ("garbage", "Malformed")])
def test_a_secret_without_a_usable_key_is_refused(vault, host_vault, kube, namespace, identity, proxy, value, reason):
    """Real Key Vault answers a non-exportable certificate's secret with the certificate alone; Lowkey always
    includes the key, so the proxy answers as Key Vault does (and with garbage for a malformed secret)."""
    world = World(vault, host_vault, kube, namespace, url=proxy.url)
    kube.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "vault-tls", "namespace": namespace},
                "data": {"ca.crt": base64.b64encode(proxy.ca_pem).decode()}})
    source, _ = source_with_clock(kube)
    version = vault.certificates.get_certificate(world.name("frontend")).properties.version
    leaf = vault.certificates.get_certificate(world.name("frontend")).cer
    content = certs.to_pem(x509.load_der_x509_certificate(leaf)).decode() if value == "cert-only" else "not a PEM"
    proxy.fail(200, path_contains=f"/secrets/{world.name('frontend')}/", body={
        "value": content, "contentType": "application/x-pem-file",
        "id": f"{proxy.url}/secrets/{world.name('frontend')}/{version}", "attributes": {"enabled": True},
        "kid": f"{proxy.url}/keys/{world.name('frontend')}/{version}", "managed": True})
    with pytest.raises(SourceError) as refused:
        source.materials(world.cluster, world.mtls)
    assert refused.value.reason == reason
    assert world.name("frontend") in str(refused.value)
