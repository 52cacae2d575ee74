"""Security matrix: every listening TCP port of the Temporal server pod against every way a client can be wrong.

One TemporalCluster (examples/cluster.yaml, operator-managed CAs) serves the whole module. Each port is probed
with `openssl s_client` from the node's network namespace, always verifying the server (-verify_hostname with
the server name of the port's trust domain, -verify_return_error, the domain's CA), and each refusal is asserted
as the exact TLS alert the server (Go's crypto/tls) sent, with its alert number. The frontend's gRPC port is
also probed with the Temporal CLI, whose connection error then carries the same alert as Go names it.

Trust domains (operator/temporal_mtls_operator/render/templates/temporal.yaml.j2):
- frontend: gRPC 7233 and HTTP 7243; server name <name>-frontend.<ns>.svc, frontend CA.
- internode: history/matching/worker gRPC and every membership (ringpop) port; server name
  <name>-internode.<ns>.svc, internode CA. Ringpop runs over the internode TLS because dynamic.yaml sets
  system.enableRingpopTLS (without it those ports would be plaintext TChannel).
Both require client certificates (requireClientAuth: true), verified against the domain's own CA only.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import struct
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conftest import REPO, TemporalAccess, condition, past_write_races, wait_for
from localkube.toolchain import path_of
from temporal_mtls_operator.models import TemporalClusterSpec
from temporal_mtls_operator.render.config import METRICS_PORT, configured_services

pytestmark = pytest.mark.cluster

NAME = "demo"


# -- the ports --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Port:
    number: int
    service: str
    protocol: str  # "grpc", "http" or "ringpop": what a legitimate client speaks once TLS is up
    domain: str    # "frontend" or "internode": which CA and server name

    def __str__(self) -> str:
        return f"{self.number}-{self.service}-{self.protocol}"


def rendered_ports() -> list[Port]:
    """Every port the rendered config makes Temporal listen on (services.<name>.rpc)."""
    ports = []
    # The example cluster has authorization on: the frontend process also serves the internal frontend (internode).
    for service, rpc in configured_services(TemporalClusterSpec()).items():
        domain = "frontend" if service == "frontend" else "internode"
        ports.append(Port(rpc["grpc"], service, "grpc", domain))
        if rpc["http"]:
            ports.append(Port(rpc["http"], service, "http", "frontend"))
        ports.append(Port(rpc["membership"], service, "ringpop", "internode"))  # membership is always internode
    return ports


PORTS = rendered_ports()


# -- the cases and what the server answers -----------------------------------------------------------------------

# What openssl prints for the alert the server sent ("SSL routines:<fn>:<text>:...SSL alert number <n>").
CERTIFICATE_REQUIRED = ("tlsv13 alert certificate required", 116)  # TLS 1.3, no certificate
HANDSHAKE_FAILURE = ("sslv3 alert handshake failure", 40)          # TLS 1.2, no certificate
UNKNOWN_CA = ("tlsv1 alert unknown ca", 48)                        # x509.UnknownAuthorityError
CERTIFICATE_EXPIRED = ("sslv3 alert certificate expired", 45)      # x509.CertificateInvalidError{Reason: Expired}
BAD_CERTIFICATE = ("sslv3 alert bad certificate", 42)              # any other verification error (EKU here)
PROTOCOL_VERSION = ("tlsv1 alert protocol version", 70)            # below MinVersion TLS 1.2

# case -> (client certificate to present, extra s_client flags, expected alert; None = accepted)
CASES = {
    "accepted": ("legit", (), None),
    "no-cert": (None, (), CERTIFICATE_REQUIRED),
    "no-cert-tls1.2": (None, ("-tls1_2",), HANDSHAKE_FAILURE),
    "foreign-ca": ("foreign", (), UNKNOWN_CA),
    "other-trust-domain": ("other", (), UNKNOWN_CA),
    "expired": ("expired", (), CERTIFICATE_EXPIRED),
    "no-clientauth-eku": ("no-clientauth", (), BAD_CERTIFICATE),
    # The legitimate certificate, so the version is the only thing wrong; SECLEVEL=0 makes OpenSSL really offer
    # TLS 1.0/1.1 (its own policy may refuse to, "no protocols available", which would test nothing).
    "tls1.0": ("legit", ("-tls1", "-cipher", "DEFAULT:@SECLEVEL=0"), PROTOCOL_VERSION),
    "tls1.1": ("legit", ("-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"), PROTOCOL_VERSION),
    "plaintext": (None, (), "closed"),  # a raw TCP client of the port's own protocol, see PLAINTEXT_PROBES
}

# The Temporal CLI on the frontend (Go client, through the Service VIP): case -> the alert as Go names it. Go's
# client only presents a certificate whose issuer is in the server's CertificateRequest CA list, so a foreign or
# internode certificate is never sent and the server answers "certificate required", as for none.
CLI_CASES = {
    "no-cert": (None, "certificate required"),
    "foreign-ca": ("foreign", "certificate required"),
    "other-trust-domain": ("other", "certificate required"),
    "expired": ("expired", "expired certificate"),
    "no-clientauth-eku": ("no-clientauth", "bad certificate"),
}

ALERT = re.compile(r"SSL routines:\w+:(?P<text>[^:]+):\S+:\d+:SSL alert number (?P<number>\d+)")


# -- certificates --------------------------------------------------------------------------------------------------

def _write_pair(directory: Path, cert: x509.Certificate, key) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "tls.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    return directory


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "security-matrix"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def sign_leaf(issuer: x509.Certificate, issuer_key, common_name: str, not_before: dt.datetime,
              not_after: dt.datetime, usages: list) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A leaf as the operator issues them (ECDSA P-256, KeyUsage digitalSignature), with the given dates and EKUs."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name(common_name)).issuer_name(issuer.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                           critical=False)
            .sign(issuer_key, hashes.SHA256()))
    return cert, key


def foreign_ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name("someone else's CA")).issuer_name(_name("someone else's CA"))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return cert, key


# -- the cluster ------------------------------------------------------------------------------------------------

@dataclass
class Matrix:
    access: TemporalAccess
    namespace: str
    pod_ip: str
    pid: str
    dirs: dict  # (domain, certificate) -> directory with tls.crt/tls.key (and ca.crt for the cluster's own)
    ca_files: dict  # domain -> the CA bundle a client verifies the server with
    server_names: dict  # domain -> the name the server certificate must carry

    def cert_dir(self, domain: str, certificate: str | None) -> Path | None:
        return None if certificate is None else self.dirs[domain, certificate]


def listening_ports(pid: str) -> dict[int, str]:
    """port -> owning process, from the pod's own network namespace."""
    listed = subprocess.run(["nsenter", "-t", pid, "-n", "ss", "-Hltnp"], capture_output=True, text=True, timeout=30,
                            check=True).stdout
    ports = {}
    for line in listed.splitlines():
        fields = line.split(None, 5)  # State Recv-Q Send-Q Local:Port Peer:Port Process
        ports[int(fields[3].rsplit(":", 1)[1])] = fields[5] if len(fields) > 5 else ""
    return ports


@pytest.fixture(scope="module")
def matrix(kubectl, node_exec, operator, local_cluster, tmp_path_factory) -> Matrix:
    """One TemporalCluster in its own namespace for the whole module, with every certificate the cases present."""
    namespace = f"security-matrix-{uuid.uuid4().hex[:5]}"
    kubectl("create", "namespace", namespace)
    try:
        wait_for(lambda: kubectl("get", "serviceaccount", "default", "-n", namespace, check=False).returncode == 0,
                 30, what=f"the default service account in {namespace}")
        kubectl("apply", "-n", namespace, "-f", str(REPO / "examples" / "cluster.yaml"))
        wait_for(lambda: condition(json.loads(kubectl("get", "temporalcluster", NAME, "-n", namespace, "-o",
                                                      "json").stdout), "Ready").get("status") == "True",
                 180, interval=0.5, what=f"TemporalCluster {NAME} to become Ready")
        pod = json.loads(kubectl("get", "pods", "-n", namespace, "-l", "app.kubernetes.io/component=server", "-o",
                                 "json").stdout)["items"][0]
        pid = str(local_cluster.container_processes(pod["status"]["containerStatuses"][0]["containerID"])[0])
        wanted = {p.number for p in PORTS} | {METRICS_PORT}
        wait_for(lambda: wanted <= set(listening_ports(pid)), 60, interval=0.2,
                 what=lambda: f"Temporal to listen on {sorted(wanted)}; listening: {sorted(listening_ports(pid))}")

        root = tmp_path_factory.mktemp("security-matrix")
        access = TemporalAccess(kubectl, node_exec, namespace, NAME, root / "access")
        own = {"frontend": access.save_secret(f"{NAME}-operator-client-tls", root / "frontend-legit"),
               "internode": access.save_secret(f"{NAME}-internode-tls", root / "internode-legit")}
        dirs = {("frontend", "legit"): own["frontend"], ("frontend", "other"): own["internode"],
                ("internode", "legit"): own["internode"], ("internode", "other"): own["frontend"]}
        now = dt.datetime.now(dt.timezone.utc)
        stranger, stranger_key = foreign_ca()
        both = [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]
        for domain in ("frontend", "internode"):
            # The CA key lives only in the operator's <name>-<domain>-ca Secret.
            ca = json.loads(kubectl("get", "secret", f"{NAME}-{domain}-ca", "-n", namespace, "-o", "json").stdout)
            ca_cert = x509.load_pem_x509_certificate(base64.b64decode(ca["data"]["tls.crt"]))
            ca_key = serialization.load_pem_private_key(base64.b64decode(ca["data"]["tls.key"]), None)
            expired = sign_leaf(ca_cert, ca_key, "expired", now - dt.timedelta(days=2), now - dt.timedelta(days=1),
                                both)
            server_only = sign_leaf(ca_cert, ca_key, "server-only", now - dt.timedelta(minutes=5),
                                    now + dt.timedelta(days=1), [ExtendedKeyUsageOID.SERVER_AUTH])
            foreign = sign_leaf(stranger, stranger_key, "intruder", now - dt.timedelta(minutes=5),
                                now + dt.timedelta(days=1), both)
            dirs[domain, "expired"] = _write_pair(root / f"{domain}-expired", *expired)
            dirs[domain, "no-clientauth"] = _write_pair(root / f"{domain}-no-clientauth", *server_only)
            dirs[domain, "foreign"] = _write_pair(root / f"{domain}-foreign", *foreign)

        # The Service routes to the pod once its endpoint is published: wait for one legitimate CLI call.
        wait_for(lambda: access.cli("operator", "namespace", "describe", "--namespace", "temporal-system")
                 .returncode == 0, 60, interval=0.5, what="the CLI to connect through the Service")
        yield Matrix(access, namespace, pod["status"]["podIP"], pid, dirs,
                     {d: own[d] / "ca.crt" for d in own},
                     {"frontend": f"{NAME}-frontend.{namespace}.svc", "internode": f"{NAME}-internode.{namespace}.svc"})
    finally:
        kubectl("delete", "namespace", namespace, "--wait=false", check=False)


# -- probes ---------------------------------------------------------------------------------------------------------

def tchannel_frame(kind: int, frame_id: int, payload: bytes = b"") -> bytes:
    return struct.pack(">HBBI8x", 16 + len(payload), kind, 0, frame_id) + payload


def tchannel_init_request() -> bytes:
    params = [(b"host_port", b"0.0.0.0:0"), (b"process_name", b"security-matrix")]
    body = struct.pack(">HH", 2, len(params)) + b"".join(
        struct.pack(">H", len(k)) + k + struct.pack(">H", len(v)) + v for k, v in params)
    return tchannel_frame(0x01, 1, body)


HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # + empty SETTINGS
HTTP_REQUEST = b"GET /api/v1/namespaces HTTP/1.1\r\nHost: temporal\r\nConnection: close\r\n\r\n"

# What a legitimate client sends once TLS is up. Each ends so that the server closes the connection (s_client
# runs with -ign_eof): gRPC gets garbage after its preface, HTTP asks to close, TChannel gets a frame header
# with an impossible size after its init request.
APPLICATION_PROBES = {
    "grpc": HTTP2_PREFACE + b"garbage, not an HTTP/2 frame\n",
    "http": HTTP_REQUEST,
    "ringpop": tchannel_init_request() + bytes(16),
}
# What a plaintext client of each protocol sends first.
PLAINTEXT_PROBES = {"grpc": HTTP2_PREFACE, "http": HTTP_REQUEST, "ringpop": tchannel_init_request()}

RAW_TCP = """
import json, socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
s.sendall(bytes.fromhex(sys.argv[3]))
received, end = b"", "eof"
try:
    while chunk := s.recv(65536):
        received += chunk
except ConnectionResetError:
    end = "reset"
except TimeoutError:
    end = "timeout"
print(json.dumps({"received": received.hex(), "end": end}))
"""


def s_client(node_exec, matrix: Matrix, port: Port, certificate: str | None, flags=(), stdin: bytes = b"",
             work: Path = None) -> tuple[int, str, bytes]:
    """openssl s_client to the pod, verifying the server; returns (exit code, stderr, bytes the server sent)."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "in").write_bytes(stdin)
    server_name = matrix.server_names[port.domain]
    command = ["openssl", "s_client", "-brief", "-connect", f"{matrix.pod_ip}:{port.number}",
               "-servername", server_name, "-verify_hostname", server_name, "-verify_return_error",
               "-CAfile", str(matrix.ca_files[port.domain]), "-ign_eof", *flags]
    if port.protocol == "grpc":
        command += ["-alpn", "h2"]  # grpc-go refuses TLS connections without ALPN h2
    cert_dir = matrix.cert_dir(port.domain, certificate)
    if cert_dir:
        command += ["-cert", str(cert_dir / "tls.crt"), "-key", str(cert_dir / "tls.key")]
    # -brief writes the handshake summary and errors to stderr; stdout is only what the server sent (binary).
    try:
        done = node_exec("sh", "-c", 'i=$1 o=$2; shift 2; exec "$@" <"$i" >"$o"', "sh", str(work / "in"),
                         str(work / "out"), *command, timeout=15)
    except subprocess.TimeoutExpired as error:
        said = error.stderr.decode() if isinstance(error.stderr, bytes) else error.stderr
        raise AssertionError(f"port {port.number} kept the connection open for 15 s (neither refused nor closed); "
                             f"s_client said: {said}") from None
    return done.returncode, done.stderr, (work / "out").read_bytes()


def assert_application_answer(port: Port, received: bytes) -> None:
    if port.protocol == "grpc":
        # The server's HTTP/2 SETTINGS frame (type 4) on stream 0: a gRPC server talked to us.
        assert len(received) >= 9 and received[3] == 0x04 and received[5:9] == b"\x00\x00\x00\x00", received[:64]
    elif port.protocol == "http":
        assert received.startswith(b"HTTP/1.1 200 OK\r\n"), received[:200]
        assert b'"name":"temporal-system"' in received
    else:
        # A TChannel init response (type 2) for our id 1, naming the Temporal process.
        assert received[2] == 0x02 and received[4:8] == b"\x00\x00\x00\x01", received[:64]
        assert b"host_port" in received and b"temporal-server[" in received, received


# -- tests ----------------------------------------------------------------------------------------------------------

def test_every_listening_port_is_in_the_matrix(matrix, kubectl):
    """The matrix covers exactly what listens: the pod's sockets, the rendered config and the pod spec agree. The one
    port outside it is Temporal's Prometheus listener: plain HTTP, as Prometheus scrapes (metrics, no key material)."""
    listening = listening_ports(matrix.pid)
    assert set(listening) == {p.number for p in PORTS} | {METRICS_PORT}, listening
    assert all(f'"temporal-server",pid={matrix.pid},' in owner for owner in listening.values()), listening

    config = kubectl("get", "configmap", f"{NAME}-config", "-n", matrix.namespace, "-o", "json")
    data = json.loads(config.stdout)["data"]
    rendered = yaml.safe_load(data["config.yaml"])["services"]
    assert {port for rpc in rendered.values() for key, port in rpc["rpc"].items() if key.endswith("Port")} \
        == set(listening) - {METRICS_PORT}
    prometheus = yaml.safe_load(data["config.yaml"])["global"]["metrics"]["prometheus"]
    assert prometheus["listenAddress"] == f"0.0.0.0:{METRICS_PORT}"
    assert yaml.safe_load(data["dynamic.yaml"]) == {"system.enableRingpopTLS": [{"value": True}]}
    assert all(rpc["rpc"]["bindOnIP"] == "0.0.0.0" for rpc in rendered.values())  # reachable on the pod IP

    declared = json.loads(kubectl("get", "pods", "-n", matrix.namespace, "-l", "app.kubernetes.io/component=server",
                                  "-o", "json").stdout)["items"][0]["spec"]["containers"][0]["ports"]
    # The pod spec declares the gRPC and HTTP ports; membership ports are not declared (containerPort is only
    # informational) but listen on the pod IP all the same, hence the socket listing above.
    assert {p["containerPort"] for p in declared} == {p.number for p in PORTS if p.protocol != "ringpop"} | {METRICS_PORT}


def plaintext(node_exec, matrix: Matrix, port: Port) -> tuple[str, bytes]:
    """A raw TCP client sends the port's plaintext greeting; returns how the connection ended and what came back."""
    probe = node_exec(sys.executable, "-c", RAW_TCP, matrix.pod_ip, str(port.number),
                      PLAINTEXT_PROBES[port.protocol].hex(), timeout=30)
    assert probe.returncode == 0, probe.stderr
    result = json.loads(probe.stdout)
    return result["end"], bytes.fromhex(result["received"])


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("port", PORTS, ids=str)
def test_tls_matrix(matrix, node_exec, tmp_path, port, case):
    certificate, flags, expected = CASES[case]
    if case == "plaintext":
        end, received = plaintext(node_exec, matrix, port)
        assert end == "eof", (end, received)
        if port.protocol == "http":
            # Go's net/http answers a plaintext HTTP/1 request on its TLS listener itself, with no data behind it.
            assert received == b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"
        else:
            # crypto/tls sees a first record that is no TLS handshake and closes without an alert: no HTTP/2
            # SETTINGS frame, no TChannel init response, not a byte.
            assert received == b"", received
        return

    if expected is None:
        code, stderr, received = s_client(node_exec, matrix, port, certificate, flags,
                                          stdin=APPLICATION_PROBES[port.protocol], work=tmp_path)
        assert "Protocol version: TLSv1.3" in stderr, stderr
        assert "Verification: OK" in stderr, stderr  # openssl's verify result 0 for the server's chain and name
        assert f"Verified peername: {matrix.server_names[port.domain]}" in stderr, stderr
        assert "alert" not in stderr, stderr
        assert_application_answer(port, received)
        return

    # Nothing sent after the handshake, so s_client waits for the server's verdict (-ign_eof) instead of racing it.
    code, stderr, received = s_client(node_exec, matrix, port, certificate, flags, work=tmp_path)
    alerts = [(m["text"], int(m["number"])) for m in ALERT.finditer(stderr)]
    assert code != 0 and alerts == [expected], stderr
    assert received == b"", received
    if expected in (CERTIFICATE_REQUIRED, UNKNOWN_CA, CERTIFICATE_EXPIRED, BAD_CERTIFICATE):
        # TLS 1.3: we verified the server first; the refusal came after it had read our certificate (or none).
        assert "Verification: OK" in stderr, stderr


def temporal_cli(node_exec, matrix: Matrix, env: dict[str, str]):
    # The CLI's connection diagnosis would replace the server's alert with its own classification.
    return node_exec(str(path_of("temporal")), "operator", "namespace", "describe", "--namespace", "temporal-system",
                     "--command-timeout", "15s", env={**env, "TEMPORAL_CLI_DISABLE_CONNECT_DIAGNOSIS": "1"},
                     timeout=60)


@pytest.mark.parametrize("case", [*CLI_CASES, "plaintext"])
def test_temporal_cli_on_the_frontend(matrix, node_exec, case):
    access = matrix.access
    if case == "plaintext":
        refused = temporal_cli(node_exec, matrix, {"TEMPORAL_ADDRESS": access.address})
        reason = "EOF"
    else:
        certificate, alert = CLI_CASES[case]
        cert_dir = matrix.cert_dir("frontend", certificate) or Path("/nonexistent")
        refused = past_write_races(lambda: temporal_cli(node_exec, matrix, access.env(cert_dir)))
        reason = f"remote error: tls: {alert}"
    assert refused.returncode == 1
    assert refused.stderr.splitlines()[0] == (
        f"Error: failed connecting to Temporal server at {access.address}: failed reaching server: "
        f'connection error: desc = "error reading server preface: {reason}"'), refused.stderr


def test_temporal_cli_accepts_the_legitimate_certificate(matrix, node_exec):
    described = temporal_cli(node_exec, matrix, matrix.access.env(matrix.cert_dir("frontend", "legit")))
    assert described.returncode == 0, described.stderr
    assert "Registered" in described.stdout
