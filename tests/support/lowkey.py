"""Lowkey Vault, the Azure Key Vault emulator, for tests: a host process, or manifests for the local cluster.

The vault is chosen by the request's Host header (https://localhost:P and https://127.0.0.1:P
are two different, empty vaults), so always use one URL: ``HostVault.url``, or in the cluster
``https://<name>.<namespace>.svc:8443``, which is an alias of ``https://localhost:8443``.
"""

from __future__ import annotations

import base64
import ctypes
import datetime as dt
import os
import secrets
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from localkube.control_plane import free_port
from localkube.keyvault import Emulator
from localkube.toolchain import java_binary, path_of
from temporal_mtls_operator.certs import issue

IMAGE = "nagyesta/lowkey-vault:7.3.74"
FAST_JVM_FLAGS = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xss512k", "-Xmx256m")  # ~6 s, ~230 MB
HTTPS_PORT, TOKEN_PORT = 8443, 8480
HTTPS_NODE_PORT, TOKEN_NODE_PORT = 30843, 30880  # published as localhost:8443 / :8480 (kind-config.yaml)
IDENTITY_HEADER = "local"  # the emulator accepts any value; azure-identity only needs one

_libc = ctypes.CDLL("libc.so.6", use_errno=True)
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child: if the test process dies without cleaning up, the JVM dies too."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _get(url: str, timeout: float = 2.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


class HostVault:
    """The emulator's jar as a host process on free loopback ports; its data survive ``stop()``/``start()``.

    Start it from a thread that outlives it (the JVM is killed when its starting thread exits).
    """

    def __init__(self, workdir: Path, *, start_timeout: float = 90.0) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port, self.token_port = free_port(), free_port()
        self.export_file = self.workdir / "vault.json"
        self.log_file = self.workdir / "lowkey-vault.log"
        self.start_timeout = start_timeout
        self._process: subprocess.Popen | None = None
        self._ca_pem: bytes | None = None

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"

    @property
    def token_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.token_port}/metadata/identity/oauth2/token"

    def env(self) -> dict[str, str]:
        """What makes ManagedIdentityCredential / DefaultAzureCredential ask this emulator for tokens."""
        return {"IDENTITY_ENDPOINT": self.token_endpoint, "IDENTITY_HEADER": IDENTITY_HEADER}

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> "HostVault":
        if self.running:
            return self
        env = {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8",  # nothing stray (SERVER_PORT...) leaks in
               "LOWKEY_EXPORT_LOCATION": str(self.export_file)}
        if self.export_file.exists():  # a restart: load what the last run exported, as the README says
            env.update(LOWKEY_IMPORT_LOCATION=str(self.export_file), LOWKEY_VAULT_NAMES="-",
                       LOWKEY_VAULT_RELAXED_PORTS="true")
        argv = [str(java_binary()), *FAST_JVM_FLAGS, "-jar", str(path_of("lowkey-vault.jar")),
                f"--server.port={self.port}", f"--app.token.port={self.token_port}", "--server.address=127.0.0.1"]
        with open(self.log_file, "ab") as log:
            self._process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                             env=env, cwd=self.workdir, preexec_fn=_die_with_parent)
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> "HostVault":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"lowkey-vault exited with {self._process.returncode}:\n{self.log_tail()}")
            try:
                if _get(f"http://127.0.0.1:{self.token_port}/ping", timeout=1) == b"pong":
                    return
            except OSError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                raise RuntimeError(f"lowkey-vault did not answer /ping within {self.start_timeout:.0f}s:\n"
                                   f"{self.log_tail()}")
            time.sleep(0.1)

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_file.read_text(errors="replace") if self.log_file.exists() else "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    @property
    def ca_pem(self) -> bytes:
        """The emulator's own TLS certificate (self-signed), as PEM: what verifies ``url``."""
        if self._ca_pem is None:
            self._ca_pem = Emulator(self.url, f"http://127.0.0.1:{self.token_port}").tls_certificate()
        return self._ca_pem

    @property
    def ca_file(self) -> str:
        path = self.workdir / "lowkey-vault-ca.pem"
        if not path.exists():
            path.write_bytes(self.ca_pem)
        return str(path)


# -- in the local cluster ---------------------------------------------------------------------------

KEYSTORE_DIR = "/etc/lowkey-vault/tls"
DATA_DIR = "/data"
# The emulator's TLS 1.2 cipher list is RSA-only; add ECDSA so P-256 certificates work too.
_CIPHERS = "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256," \
           "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,TLS_AES_128_GCM_SHA256"


def service_hosts(namespace: str, name: str = "lowkey-vault") -> tuple[str, str]:
    return f"{name}.{namespace}.svc", f"{name}.{namespace}.svc.cluster.local"


def vault_tls(namespace: str, name: str = "lowkey-vault") -> tuple[bytes, bytes, bytes]:
    """(ca_pem, cert_pem, key_pem): a test CA and a server certificate for the Service's names and localhost."""
    ca = issue.issue_ca("lowkey-vault test CA", dt.timedelta(days=1))
    leaf = issue.issue_leaf(ca, issue.LeafProfile(service_hosts(namespace, name)[0],
                                                  dns_names=(*service_hosts(namespace, name), "localhost"),
                                                  ip_addresses=("127.0.0.1",), server=True), dt.timedelta(days=1))
    return ca.cert_pem, leaf.cert_pem, leaf.key_pem


def _keystore(cert_pem: bytes, key_pem: bytes, password: str) -> bytes:
    key = serialization.load_pem_private_key(key_pem, None)
    return pkcs12.serialize_key_and_certificates(b"lowkey-vault", key, x509.load_pem_x509_certificate(cert_pem),
                                                 None, serialization.BestAvailableEncryption(password.encode()))


def cluster_vault_manifests(namespace: str, *, name: str = "lowkey-vault", node_ports: bool = False,
                            tls: tuple[bytes, bytes] | None = None, export_claim: str | None = None) -> list[dict]:
    """A Deployment and Service (+ a keystore Secret when ``tls=(cert_pem, key_pem)``) running the emulator.

    ``https://localhost:8443`` (from the host through NodePort 30843, with ``node_ports``) and
    ``https://<name>.<namespace>.svc[.cluster.local]:8443`` (from pods) are the same vault.
    ``export_claim`` names a PVC that keeps the vault's data when the pod goes (scale to 0 and back).
    """
    labels = {"app.kubernetes.io/name": "lowkey-vault", "app.kubernetes.io/instance": name}
    args = [f"--server.port={HTTPS_PORT}", f"--app.token.port={TOKEN_PORT}"]
    env = [{"name": "LOWKEY_VAULT_ALIASES",
            "value": ",".join(f"localhost={host}:<port>" for host in service_hosts(namespace, name))},
           {"name": "LOWKEY_VAULT_RELAXED_PORTS", "value": "true"}]  # host port 8443 or a mapped one: one vault
    volumes: list[dict] = [{"name": "tmp", "emptyDir": {}}]  # Tomcat and the JVM write under /tmp
    mounts: list[dict] = [{"name": "tmp", "mountPath": "/tmp"}]
    init_containers: list[dict] = []
    manifests: list[dict] = []
    if tls:
        password = secrets.token_urlsafe(18)
        manifests.append({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": f"{name}-keystore", "namespace": namespace, "labels": labels},
            "data": {"keystore.p12": base64.b64encode(_keystore(*tls, password)).decode(),
                     "password": base64.b64encode(password.encode()).decode()}})
        volumes.append({"name": "keystore", "secret": {"secretName": f"{name}-keystore"}})
        mounts.append({"name": "keystore", "mountPath": KEYSTORE_DIR, "readOnly": True})
        env.insert(0, {"name": "KEYSTORE_PASSWORD",
                       "valueFrom": {"secretKeyRef": {"name": f"{name}-keystore", "key": "password"}}})
        args += [f"--server.ssl.key-store=file:{KEYSTORE_DIR}/keystore.p12",
                 "--server.ssl.key-store-password=$(KEYSTORE_PASSWORD)", f"--server.ssl.ciphers={_CIPHERS}"]
    if export_claim:
        # The image's entrypoint is fixed (`java ... ${LOWKEY_ARGS}`), so an init container decides:
        # a previous export present -> import it (and register no vaults of its own, or startup fails).
        env.append({"name": "LOWKEY_EXPORT_LOCATION", "value": f"{DATA_DIR}/vault.json"})
        args.append(f"--spring.config.import=optional:file:{DATA_DIR}/import.properties")
        volumes.append({"name": "data", "persistentVolumeClaim": {"claimName": export_claim}})
        mounts.append({"name": "data", "mountPath": DATA_DIR})
        init_containers.append({
            "name": "import-previous-export", "image": "busybox:1.37",
            "command": ["sh", "-c",
                        f"if [ -s {DATA_DIR}/vault.json ]; then printf 'LOWKEY_IMPORT_LOCATION={DATA_DIR}/vault.json\\n"
                        f"LOWKEY_VAULT_NAMES=-\\n' > {DATA_DIR}/import.properties; "
                        f"else rm -f {DATA_DIR}/import.properties; fi"],
            "volumeMounts": [{"name": "data", "mountPath": DATA_DIR}],
            "securityContext": {"readOnlyRootFilesystem": True}})
    env.append({"name": "LOWKEY_ARGS", "value": " ".join(args)})
    container = {
        "name": "lowkey-vault", "image": IMAGE, "env": env, "volumeMounts": mounts,
        "ports": [{"name": "https", "containerPort": HTTPS_PORT}, {"name": "token", "containerPort": TOKEN_PORT}],
        "readinessProbe": {"httpGet": {"path": "/ping", "port": "token"}, "periodSeconds": 1, "failureThreshold": 3},
        "securityContext": {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False},
    }
    manifests.append({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": 1, "selector": {"matchLabels": labels},
            "strategy": {"type": "Recreate"},  # one writer of the export file at a time
            "template": {"metadata": {"labels": labels}, "spec": {
                "securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "runAsNonRoot": True, "fsGroup": 1000},
                "initContainers": init_containers, "containers": [container], "volumes": volumes}}}})
    service_ports = [{"name": "https", "port": HTTPS_PORT, "targetPort": "https"},
                     {"name": "token", "port": TOKEN_PORT, "targetPort": "token"}]
    if node_ports:
        service_ports[0]["nodePort"], service_ports[1]["nodePort"] = HTTPS_NODE_PORT, TOKEN_NODE_PORT
    manifests.append({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"type": "NodePort" if node_ports else "ClusterIP", "selector": labels, "ports": service_ports}})
    return manifests
