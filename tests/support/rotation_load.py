"""Workflow starts at a fixed rate through the hello-world starter, and the numbers per rotation window: shared by
bench/rotation.py and tests/cluster/test_rotation.py."""

from __future__ import annotations

import base64
import json
import statistics
import sys
import threading
import time
import urllib.request

from cryptography import x509
from cryptography.exceptions import InvalidSignature


class Load(threading.Thread):
    """Fixed-rate ``/workflow/start?wait=true`` calls, each in its own thread; each result is (issued at, ok,
    seconds to the result), each failure (issued at, what it said)."""

    def __init__(self, base: str, rate: float, prefix: str = "w") -> None:
        super().__init__(daemon=True)
        self.base, self.interval, self.prefix = base, 1.0 / rate, prefix
        self.results: list[tuple[float, bool, float]] = []
        self.errors: list[tuple[float, str]] = []
        self.lock, self.halt, self.calls = threading.Lock(), threading.Event(), []

    def one(self, index: int) -> None:
        name, issued, began = f"{self.prefix}{index}", time.time(), time.monotonic()
        try:
            with urllib.request.urlopen(f"{self.base}/workflow/start?name={name}&wait=true", timeout=120) as answer:
                ok = json.loads(answer.read()).get("result") == f"Hello {name}!"
            error = "" if ok else "wrong result"
        except (OSError, ValueError) as failure:
            ok, error = False, (getattr(failure, "read", lambda: b"")() or str(failure).encode())[:300].decode(
                errors="replace")
        with self.lock:
            self.results.append((issued, ok, time.monotonic() - began))
            if error:
                self.errors.append((issued, error))

    def run(self) -> None:
        index, next_at = 0, time.monotonic()
        while not self.halt.is_set():
            index += 1
            call = threading.Thread(target=self.one, args=(index,), daemon=True)
            call.start()
            self.calls.append(call)
            next_at += self.interval
            self.halt.wait(max(0.0, next_at - time.monotonic()))

    def stop(self, timeout: float = 130) -> None:
        """No new starts; the ones in flight get their answer."""
        self.halt.set()
        self.join(timeout)
        for call in self.calls:
            call.join(max(0.0, timeout))


def starter_answers(base: str) -> bool:
    """One ``wait=true`` start through the starter returns its workflow's result (the stack is up end to end)."""
    try:
        with urllib.request.urlopen(f"{base}/workflow/start?name=warm&wait=true", timeout=60) as answer:
            return json.loads(answer.read()).get("result") == "Hello warm!"
    except (OSError, ValueError):
        return False


def window(load: Load, name: str, began: float, ended: float) -> dict:
    """The starts issued between ``began`` and ``ended`` (wall clock): count, failed, p50/p99/max latency."""
    with load.lock:
        issued = [r for r in load.results if began <= r[0] <= ended]
    latencies = sorted(r[2] for r in issued if r[1]) or [float("nan")]
    return {f"{name}_starts": len(issued), f"{name}_failed": sum(1 for r in issued if not r[1]),
            f"{name}_p50_seconds": statistics.median(latencies),
            f"{name}_p99_seconds": latencies[int(0.99 * (len(latencies) - 1))], f"{name}_max_seconds": latencies[-1]}


# (name, annotation on the TemporalCluster, trust domain): the bench's order, leaves first.
ROTATIONS = [("frontend_leaf", "temporal-mtls.dev/rotate", "frontend"),
             ("internode_leaf", "temporal-mtls.dev/rotate", "internode"),
             ("frontend_ca", "temporal-mtls.dev/rotate-ca-frontend", "frontend"),
             ("internode_ca", "temporal-mtls.dev/rotate-ca-internode", "internode")]

# Run in the node's network namespace (where pod and Service IPs answer): the PEM of the leaf host:port presents.
SERVED_LEAF = """
import sys
from cryptography.hazmat.primitives.serialization import Encoding
from temporal_mtls_operator.served import presented_certificate
found = presented_certificate(sys.argv[1], int(sys.argv[2]), sys.argv[3])
print(found.public_bytes(Encoding.PEM).decode() if found else "")
"""


class Rotations:
    """Triggers one rotation of a TemporalCluster and waits for what it observes: the leaf the server presents
    (frontend through its Service, internode on the pod's history port) and, for a CA, the Completed phase."""

    def __init__(self, kubectl, node_exec, namespace: str, name: str) -> None:
        """``kubectl(*args) -> stdout``; ``node_exec(*args) -> stdout`` runs a host command in the node's network."""
        self.kubectl, self.node_exec, self.namespace, self.name = kubectl, node_exec, namespace, name

    def get(self, *what: str) -> dict:
        return json.loads(self.kubectl("get", *what, "-n", self.namespace, "-o", "json"))

    def secret(self, name: str) -> dict[str, bytes]:
        return {k: base64.b64decode(v) for k, v in (self.get("secret", name).get("data") or {}).items()}

    def server_pods(self) -> dict[str, int]:
        """uid -> container restarts of the server pods."""
        pods = self.get("pods", "-l", "app.kubernetes.io/component=server")["items"]
        return {p["metadata"]["uid"]: sum(c["restartCount"] for c in p["status"].get("containerStatuses", []))
                for p in pods}

    def served_leaf(self, domain: str) -> bytes:
        if domain == "frontend":
            host = self.get("service", f"{self.name}-frontend")["spec"]["clusterIP"]
            port, server_name = 7233, f"{self.name}-frontend.{self.namespace}.svc"
        else:
            pods = self.get("pods", "-l", "app.kubernetes.io/component=server")["items"]
            ips = [p["status"].get("podIP") for p in pods if p["status"].get("phase") == "Running"]
            if len(ips) != 1 or not ips[0]:
                return b""
            host, port, server_name = ips[0], 7234, f"{self.name}-internode.{self.namespace}.svc"
        return self.node_exec(sys.executable, "-c", SERVED_LEAF, host, str(port), server_name).strip().encode()

    def serves_leaf_of(self, domain: str, ca_pem: bytes) -> bool:
        served = self.served_leaf(domain)
        if not served:
            return False
        try:
            x509.load_pem_x509_certificate(served).verify_directly_issued_by(x509.load_pem_x509_certificate(ca_pem))
            return True
        except (InvalidSignature, ValueError, TypeError):
            return False

    def rotate(self, rotation: str, annotation: str, domain: str, value: str, timeout: float = 900) -> dict:
        """Annotate, wait until done; {duration_seconds, server_restarts} (new pods plus container restarts)."""
        before = self.server_pods()
        seen = dict(before)
        began = time.monotonic()
        self.kubectl("annotate", "--overwrite", "temporalcluster", self.name, "-n", self.namespace,
                     f"{annotation}={value}")

        def done() -> bool:
            seen.update(self.server_pods())
            status = self.get("temporalcluster", self.name).get("status") or {}
            if rotation.endswith("_leaf"):
                return ((status.get("leafRotation") or {}).get("handled") == value
                        and self.served_leaf(domain) == self.secret(f"{self.name}-{domain}-tls")["tls.crt"].strip())
            state = (status.get("caRotation") or {}).get(domain) or {}
            return (state.get("phase") == "Completed" and state.get("requested") == value
                    and self.serves_leaf_of(domain, self.secret(f"{self.name}-{domain}-ca")["tls.crt"]))

        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{rotation} did not complete in {timeout:.0f} s")
            time.sleep(1)
        duration = time.monotonic() - began
        seen.update(self.server_pods())
        restarts = len(set(seen) - set(before)) + sum(max(0, seen[uid] - before[uid]) for uid in before)
        return {f"{rotation}_duration_seconds": duration, f"{rotation}_server_restarts": restarts}
