"""keyvault-certs (`python -m temporal_mtls_operator.keyvault`) against the Lowkey Vault emulator.

The command runs as a subprocess with the emulator's managed-identity endpoint in its environment,
so the real DefaultAzureCredential path is used. What it left in the vault is read back with the
SDK and checked against what the operator expects (``sources.base.leaf_profiles``).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid

import pytest
from azure.core.credentials import AccessToken
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from temporal_mtls_operator.certs import KeyAlgorithm, LeafProfile, issue_ca, issue_leaf, private_key_matches
from temporal_mtls_operator.keyvault import VaultSettings, open_clients
from temporal_mtls_operator.keyvault.seed import SeedError, SeedPlan, import_pair, key_from_secret, stale_reason
from temporal_mtls_operator.models.cluster import MTLS
from temporal_mtls_operator.sources.base import ClusterIdentity, leaf_profiles
from support.fault_proxy import FaultProxy

ROLES = ("internode", "frontend", "system-worker", "operator-client")


class AnyToken:
    """Lowkey Vault accepts any bearer token; used only to read back what the command wrote."""

    def get_token(self, *scopes, **kwargs):
        return AccessToken("test", int(time.time()) + 3600)


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "IDENTITY_", "MSI_"))}
    return subprocess.run([sys.executable, "-m", "temporal_mtls_operator.keyvault", *args],
                          env={**clean, **(env or {})}, capture_output=True, text=True, timeout=120)


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}-"


@pytest.fixture
def seed_cli(host_vault, prefix):
    """Run the command against the emulator with this test's prefix; returns (summary, process)."""

    def run(*extra: str) -> tuple[dict, subprocess.CompletedProcess]:
        done = run_cli("--vault-url", host_vault.url, "--tls-ca", host_vault.ca_file, "--prefix", prefix,
                       "--json", *extra, env=host_vault.env())
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout), done

    return run


@pytest.fixture
def vault(host_vault):
    clients = open_clients(VaultSettings(host_vault.url, api_version="7.6", verify_challenge_resource=False,
                                         ca_bundle_path=host_vault.ca_file), credential=AnyToken())
    yield clients
    clients.close()


def stored(vault, name: str):
    """(certificate, private key, PEM secret text) of the newest version of ``name``."""
    bundle = vault.certificates.get_certificate(name)
    secret = vault.secrets.get_secret(name, bundle.properties.version)
    cert = x509.load_der_x509_certificate(bundle.cer)
    key = serialization.load_pem_private_key(secret.value.encode(), None)
    return cert, key, secret.value


def eku(cert: x509.Certificate) -> set:
    return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def dns_names(cert: x509.Certificate) -> set:
    try:
        return set(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
                   .get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        return set()


def common_name(cert: x509.Certificate) -> str:
    return cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


@pytest.mark.keyvault
def test_first_run_puts_a_ca_and_leaves_the_operator_expects(seed_cli, vault, prefix):
    summary, _ = seed_cli("--cluster", "prod", "--namespace", "temporal", "--client", "hello-worker")

    names = [f"{prefix}ca", *(f"{prefix}{role}" for role in ROLES), f"{prefix}client-hello-worker"]
    assert list(summary) == names
    assert {entry["action"] for entry in summary.values()} == {"created"}

    ca_cert, ca_key, _ = stored(vault, f"{prefix}ca")
    assert ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert private_key_matches(ca_cert, ca_key)
    profiles = {f"{prefix}{role}": profile
                for role, (_, profile) in leaf_profiles(ClusterIdentity("prod", "temporal", uid=""), MTLS()).items()}
    for name in names[1:]:
        cert, key, secret_text = stored(vault, name)
        cert.verify_directly_issued_by(ca_cert)
        assert private_key_matches(cert, key)
        assert secret_text.count("-----BEGIN CERTIFICATE-----") == 1  # key + leaf only, never a chain
        assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
        if name in profiles:
            profile = profiles[name]
            assert common_name(cert) == profile.common_name
            assert dns_names(cert) == set(profile.dns_names)
            assert eku(cert) == ({ExtendedKeyUsageOID.SERVER_AUTH} if profile.server else set()) | (
                {ExtendedKeyUsageOID.CLIENT_AUTH} if profile.client else set())
        else:
            assert common_name(cert) == "hello-worker"
            assert dns_names(cert) == set()
            assert eku(cert) == {ExtendedKeyUsageOID.CLIENT_AUTH}
        bundle = vault.certificates.get_certificate(name)
        assert summary[name]["version"] == bundle.properties.version
        assert summary[name]["thumbprint"] == cert.fingerprint(hashes.SHA1()).hex().upper()
        assert summary[name]["notAfter"] == cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")

    frontend, *_ = stored(vault, f"{prefix}frontend")
    assert "prod-frontend.temporal.svc" in dns_names(frontend)


WINDOW = 16  # a leaked run of this many key characters counts


def key_windows(vault, name: str, version: str) -> set[str]:
    """Every WINDOW-character run of the ways a private key could be printed: the vault's PEM body,
    PKCS#8 DER (as this command generated it) in base64 and hex, the private scalar in hex."""
    secret = vault.secrets.get_secret(name, version).value
    body = "".join(secret.split("-----BEGIN PRIVATE KEY-----")[1].split("-----END PRIVATE KEY-----")[0].split())
    key = serialization.load_pem_private_key(secret.encode(), None)
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    numbers = key.private_numbers()
    scalar = format(numbers.private_value if hasattr(numbers, "private_value") else numbers.d, "x")
    return {text[i:i + WINDOW] for text in (body, base64.b64encode(der).decode(), der.hex(), scalar)
            for i in range(len(text) - WINDOW + 1)}


def leaked(output: str, windows: set[str]) -> list[str]:
    tokens = re.findall(r"[A-Za-z0-9+/=]{%d,}" % WINDOW, output.replace("\\n", "\n"))
    return [t for t in tokens if any(t[i:i + WINDOW] in windows for i in range(len(t) - WINDOW + 1))]


@pytest.mark.keyvault
def test_output_never_contains_key_material(host_vault, seed_cli, vault, prefix):
    created, json_run = seed_cli("--client", "app")
    text_run = run_cli("--vault-url", host_vault.url, "--tls-ca", host_vault.ca_file, "--prefix", prefix,
                       "--client", "app", "--rotate", env=host_vault.env())
    assert text_run.returncode == 0, text_run.stderr
    assert len(text_run.stdout.splitlines()) == len(created)  # one line per certificate
    rotated = {line.split()[0]: line.split()[2] for line in text_run.stdout.splitlines()}

    output = "\n".join((json_run.stdout, json_run.stderr, text_run.stdout, text_run.stderr))
    assert "PRIVATE KEY" not in output
    for name in created:
        for version in {created[name]["version"], rotated[name]}:
            assert not leaked(output, key_windows(vault, name, version)), name


@pytest.mark.keyvault
def test_second_run_keeps_everything(seed_cli):
    first, _ = seed_cli("--client", "app")
    second, _ = seed_cli("--client", "app")
    assert {entry["action"] for entry in second.values()} == {"kept"}
    assert {name: entry["version"] for name, entry in second.items()} == \
        {name: entry["version"] for name, entry in first.items()}


@pytest.mark.keyvault
def test_rotate_imports_new_leaf_versions_signed_by_the_same_ca(seed_cli, vault, prefix):
    first, _ = seed_cli("--client", "app")
    rotated, _ = seed_cli("--client", "app", "--rotate")

    assert rotated[f"{prefix}ca"] == {**first[f"{prefix}ca"], "action": "kept"}
    ca_cert, *_ = stored(vault, f"{prefix}ca")
    for name in list(first)[1:]:
        assert rotated[name]["action"] == "rotated"
        assert rotated[name]["version"] != first[name]["version"]
        assert rotated[name]["thumbprint"] != first[name]["thumbprint"]
        cert, key, _ = stored(vault, name)
        cert.verify_directly_issued_by(ca_cert)
        assert private_key_matches(cert, key)
        versions = list(vault.certificates.list_properties_of_certificate_versions(name))
        assert len(versions) == 2


@pytest.mark.keyvault
def test_a_leaf_from_another_ca_is_replaced_and_the_rest_kept(host_vault, seed_cli, vault, prefix):
    seed_cli()
    stranger = issue_ca("someone else", dt.timedelta(days=3650))
    profile = leaf_profiles(ClusterIdentity("demo", "default", uid=""), MTLS())["frontend"][1]
    leaf = issue_leaf(stranger, profile, dt.timedelta(days=90))
    import_pair(vault, f"{prefix}frontend", leaf, {})

    done = run_cli("--vault-url", host_vault.url, "--tls-ca", host_vault.ca_file, "--prefix", prefix,
                   env=host_vault.env())
    assert done.returncode == 0, done.stderr
    actions = {line.split()[0]: line.split()[1] for line in done.stdout.splitlines()}
    assert actions.pop(f"{prefix}frontend") == "rotated"
    assert set(actions.values()) == {"kept"}
    assert "not signed by the current CA" in done.stderr
    ca_cert, *_ = stored(vault, f"{prefix}ca")
    stored(vault, f"{prefix}frontend")[0].verify_directly_issued_by(ca_cert)


@pytest.mark.keyvault
def test_rsa_keys(seed_cli, vault, prefix):
    seed_cli("--key-algorithm", "RSA-2048")
    for name in (f"{prefix}ca", f"{prefix}frontend"):
        cert, key, _ = stored(vault, name)
        assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
        assert private_key_matches(cert, key)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_one_line_error(done: subprocess.CompletedProcess, *fragments: str) -> None:
    assert done.returncode != 0
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("keyvault-certs: error: "), done.stderr
    assert "Traceback" not in done.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_unreachable_vault_is_one_line():
    url = f"https://localhost:{free_port()}"
    done = run_cli("--vault-url", url, env={"IDENTITY_ENDPOINT": "http://127.0.0.1:1/token", "IDENTITY_HEADER": "x"})
    assert_one_line_error(done, "cannot reach the vault", url)


def test_bad_options_are_one_line():
    assert_one_line_error(run_cli("--key-algorithm", "ECDSA-P384"), "ECDSA-P384", "Lowkey")
    assert_one_line_error(run_cli("--certificate-duration", "10d"), "--certificate-duration")
    assert_one_line_error(run_cli("--client", "Not_A_Label"), "--client")
    assert_one_line_error(run_cli("--vault-url", "http://localhost:8443"), "https://")
    assert_one_line_error(run_cli("--no-such-option"), "--no-such-option")


@pytest.mark.keyvault
def test_credential_failure_is_one_line(host_vault, prefix):
    token_endpoint = host_vault.env()["IDENTITY_ENDPOINT"]
    wrong_endpoint = token_endpoint[:token_endpoint.index("/metadata/")] + "/no-such-token-endpoint"
    done = run_cli("--vault-url", host_vault.url, "--tls-ca", host_vault.ca_file, "--prefix", prefix,
                   env={"IDENTITY_ENDPOINT": wrong_endpoint, "IDENTITY_HEADER": "local"})
    assert_one_line_error(done, "authentication failed", "ManagedIdentityCredential")


@pytest.fixture
def fault_proxy(host_vault, tmp_path):
    """(proxy, CA file): an HTTPS proxy in front of the emulator that answers with injected failures."""
    ca = issue_ca("fault proxy CA", dt.timedelta(days=1))
    leaf = issue_leaf(ca, LeafProfile("localhost", ("localhost",), ("127.0.0.1",), server=True), dt.timedelta(days=1))
    (tmp_path / "proxy-ca.pem").write_bytes(ca.cert_pem)
    with FaultProxy(host_vault.url, upstream_ca_file=host_vault.ca_file, cert_pem=leaf.cert_pem,
                    key_pem=leaf.key_pem) as proxy:
        yield proxy, str(tmp_path / "proxy-ca.pem")


@pytest.mark.keyvault
@pytest.mark.parametrize("status, path, fragments", [
    (403, "/certificates/", ("authentication failed", "HTTP 403 Forbidden", "Injected fault")),
    (500, "/import", ("vault request failed", "HTTP 500 Internal Server Error", "Injected fault")),
    (429, "/certificates/", ("HTTP 429", "run again after 7 s")),
])
def test_vault_errors_are_one_line_with_status_and_message(host_vault, fault_proxy, prefix, status, path, fragments):
    proxy, proxy_ca = fault_proxy
    proxy.fail(status, path_contains=path, headers={"Retry-After": "7"} if status == 429 else None)
    done = run_cli("--vault-url", proxy.url, "--tls-ca", proxy_ca, "--prefix", prefix, "--json", env=host_vault.env())
    assert_one_line_error(done, *fragments)


@pytest.mark.keyvault
def test_a_ca_whose_key_cannot_be_read_is_a_clear_error(host_vault, seed_cli, fault_proxy, prefix):
    seed_cli()
    proxy, proxy_ca = fault_proxy
    proxy.fail(404, path_contains=f"/secrets/{prefix}ca")
    done = run_cli("--vault-url", proxy.url, "--tls-ca", proxy_ca, "--prefix", prefix, env=host_vault.env())
    assert_one_line_error(done, f"the key of CA '{prefix}ca' cannot be read")


# Pure helpers, no emulator.

def test_stale_reason():
    ca = issue_ca("ca", dt.timedelta(days=3650))
    profile = leaf_profiles(ClusterIdentity("demo", "default", uid=""), MTLS())["internode"][1]

    def reason(signer=ca, issued=profile, days=90) -> str:
        return stale_reason(issue_leaf(signer, issued, dt.timedelta(days=days)).certificate, profile, ca.certificate)

    assert reason() == ""
    assert "expires" in reason(days=20)
    assert "CA" in reason(signer=issue_ca("other", dt.timedelta(days=3650)))
    assert "SAN" in reason(issued=LeafProfile(profile.common_name, ("elsewhere",), server=True, client=True))
    assert "usage" in reason(issued=LeafProfile(profile.common_name, profile.dns_names, server=True))


def test_key_from_secret_reads_pem_and_refuses_what_has_no_key():
    ca = issue_ca("ca", dt.timedelta(days=10), KeyAlgorithm.RSA_2048)
    key = key_from_secret("x-ca", (ca.key_pem + ca.cert_pem).decode(), "application/x-pem-file")
    assert private_key_matches(ca.certificate, key)
    with pytest.raises(SeedError, match="cannot be read") as raised:
        key_from_secret("x-ca", ca.cert_pem.decode(), "application/x-pem-file")
    assert "PRIVATE" not in str(raised.value)


def test_plan_names():
    plan = SeedPlan(prefix="p-", clients=("a", "b"))
    assert list(plan.leaves()) == ["p-internode", "p-frontend", "p-system-worker", "p-operator-client",
                                   "p-client-a", "p-client-b"]
    assert plan.ca_name == "p-ca"
