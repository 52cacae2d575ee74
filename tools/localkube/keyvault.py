"""The Key Vault emulator in the local cluster: deploy examples/lowkey-vault.yaml, trust it, fill it.

Pods reach the emulator through its Service; the host reaches the same vault through the NodePorts
that kind-config.yaml publishes (30843 -> localhost:8443 for the vault, 30880 -> localhost:8480 for
its managed-identity token endpoint).
"""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding, pkcs12

from .paths import REPO_ROOT

MANIFEST = REPO_ROOT / "examples" / "lowkey-vault.yaml"
NAMESPACE = "default"
HTTPS_NODE_PORT, TOKEN_NODE_PORT = 30843, 30880
TLS_SECRET = "lowkey-vault-tls"  # examples/cluster-keyvault.yaml's tlsCASecret


@dataclass(frozen=True)
class Emulator:
    vault_url: str  # https://localhost:PORT: the vault is chosen by the Host header, so use this one name
    token_base: str  # http://127.0.0.1:PORT

    @classmethod
    def from_port_mappings(cls, mappings: dict[int, tuple[str, int]]) -> "Emulator":
        https, token = mappings.get(HTTPS_NODE_PORT, ("127.0.0.1", 8443)), mappings.get(TOKEN_NODE_PORT,
                                                                                          ("127.0.0.1", 8480))
        return cls(f"https://localhost:{https[1]}", f"http://{token[0]}:{token[1]}")

    def identity_env(self) -> dict[str, str]:
        """What DefaultAzureCredential's managed-identity path reads (App Service style)."""
        return {"IDENTITY_ENDPOINT": f"{self.token_base}/metadata/identity/oauth2/token", "IDENTITY_HEADER": "local"}

    def wait_until_serving(self, timeout: float = 60.0) -> None:
        """The vault's HTTPS answers through the NodePort (a Ready pod's endpoint reaches the proxy a moment later)."""
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # only "is it up?": nothing is sent
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.vault_url}/ping", timeout=5, context=context) as response:
                    if response.read() == b"pong":
                        return
            except OSError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.5)

    def tls_certificate(self) -> bytes:
        """The emulator's own TLS certificate (PEM), from the keystore it publishes on its token port."""
        keystore = _get(f"{self.token_base}/metadata/default-cert/lowkey-vault.p12")
        password = _get(f"{self.token_base}/metadata/default-cert/password").strip()
        _, certificate, _ = pkcs12.load_key_and_certificates(keystore, password)
        return certificate.public_bytes(Encoding.PEM)


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


def deploy(kubectl: list[str], timeout: str = "240s") -> None:
    """Apply the emulator and wait until its pod answers (idempotent)."""
    subprocess.run([*kubectl, "apply", "-n", NAMESPACE, "-f", str(MANIFEST)], check=True, capture_output=True)
    subprocess.run([*kubectl, "rollout", "status", "-n", NAMESPACE, "deployment/lowkey-vault", f"--timeout={timeout}"],
                   check=True, capture_output=True)


def publish_tls_secret(kubectl: list[str], certificate: bytes, namespace: str) -> None:
    """The Secret examples/cluster-keyvault.yaml names in tlsCASecret (the operator verifies the vault with it)."""
    manifest = subprocess.run([*kubectl, "create", "secret", "generic", TLS_SECRET, "-n", namespace,
                               "--from-file=ca.crt=/dev/stdin", "--dry-run=client", "-o", "yaml"],
                              input=certificate, check=True, capture_output=True).stdout
    subprocess.run([*kubectl, "apply", "-f", "-"], input=manifest, check=True, capture_output=True)


def seed(emulator: Emulator, ca_file: Path, *args: str, capture: bool = False) -> str:
    """``python -m temporal_mtls_operator.keyvault`` (make keyvault-certs) against the emulator."""
    command = [sys.executable, "-m", "temporal_mtls_operator.keyvault", "--vault-url", emulator.vault_url,
               "--tls-ca", str(ca_file), "--api-version", "7.6", "--no-verify-challenge-resource", *args]
    result = subprocess.run(command, env={**os.environ, **emulator.identity_env()}, text=True,
                            capture_output=capture, check=True)
    return result.stdout if capture else ""
