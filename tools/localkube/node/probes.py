"""Liveness, readiness and startup probes: tcp, http and exec (grpc is reported unsupported)."""

from __future__ import annotations

import http.client
import socket
import ssl
import subprocess
from concurrent.futures import Executor
from dataclasses import dataclass, field


@dataclass
class ProbeState:
    spec: dict
    successes: int = 0
    failures: int = 0
    result: bool | None = None  # None until the probe has decided once
    next_at: float = 0.0
    message: str = ""

    @property
    def period(self) -> float:
        return float(self.spec.get("periodSeconds", 10))

    def record(self, ok: bool, message: str) -> bool | None:
        """Apply thresholds; return the new result if it changed, else None."""
        self.message = message
        if ok:
            self.successes, self.failures = self.successes + 1, 0
            decided = self.successes >= int(self.spec.get("successThreshold", 1))
        else:
            self.failures, self.successes = self.failures + 1, 0
            decided = self.failures >= int(self.spec.get("failureThreshold", 3))
        if decided and self.result is not ok:
            self.result = ok
            return ok
        return None


@dataclass
class ProbeTarget:
    pod_ip: str
    pid: int
    env: dict[str, str] = field(default_factory=dict)
    exec_prefix: list[str] | None = None  # how to run a command in the container (runc exec); else nsenter


def _port(spec: dict, ports: dict[str, int]) -> int:
    port = spec["port"]
    return ports[port] if isinstance(port, str) else int(port)


def run_probe(spec: dict, target: ProbeTarget, ports: dict[str, int], network: Executor) -> tuple[bool, str]:
    """Run one probe; tcp and http go through ``network`` (threads inside the node namespace)."""
    timeout = float(spec.get("timeoutSeconds", 1))
    try:
        if "tcpSocket" in spec:
            port = _port(spec["tcpSocket"], ports)
            network.submit(_tcp, target.pod_ip, port, timeout).result(timeout + 1)
            return True, ""
        if "httpGet" in spec:
            get = spec["httpGet"]
            status = network.submit(_http, target.pod_ip, _port(get, ports), get.get("path", "/"),
                                    get.get("scheme", "HTTP"), get.get("httpHeaders") or [], timeout
                                    ).result(timeout + 1)
            return 200 <= status < 400, f"HTTP probe failed with statuscode: {status}"
        if "exec" in spec:
            prefix = target.exec_prefix or ["nsenter", "-t", str(target.pid), "-n", "-m", "-u", "--"]
            result = subprocess.run([*prefix, *spec["exec"]["command"]],
                                    env=target.env, capture_output=True, timeout=timeout + 1)
            return result.returncode == 0, f"exec probe exited with {result.returncode}"
        if "grpc" in spec:
            return False, "grpc probes are not supported by the local node"
    except Exception as error:  # a probe failure is data, never a crash
        return False, f"probe error: {type(error).__name__}: {error}"
    return False, "probe has no handler"


def _tcp(host: str, port: int, timeout: float) -> None:
    with socket.create_connection((host, port), timeout=timeout):
        pass


def _http(host: str, port: int, path: str, scheme: str, headers: list[dict], timeout: float) -> int:
    if scheme.upper() == "HTTPS":
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # as the kubelet does
        connection = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
    else:
        connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"User-Agent": "kube-probe/localkube",
                                                 **{h["name"]: h["value"] for h in headers}})
        return connection.getresponse().status
    finally:
        connection.close()
