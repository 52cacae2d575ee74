"""A fault-injecting HTTPS reverse proxy for tests.

It sits in front of a real upstream (the Lowkey Vault emulator) and forwards every request unchanged,
except that the Host header names the upstream (the emulator picks the vault by it). On demand it
answers instead with failures the emulator cannot produce: Key Vault-shaped 401/403, 429 with
Retry-After, 500/503, a request left hanging (to exercise client timeouts), and connection refused
(``stop()``; ``start()`` again reuses the same port so clients built on ``url`` keep working).

    with FaultProxy("https://localhost:8443", upstream_ca_file=None, cert_pem=..., key_pem=...) as proxy:
        proxy.fail(429, headers={"Retry-After": "1"})
        proxy.fail(403, path_contains="/certificates/")
        proxy.hang()
        ... proxy.url ... proxy.requests  # [(method, path-with-query, status), ...]; status 0 = left hanging
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import socketserver
import ssl
import tempfile
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HUNG = 0  # the status recorded for a request that was left hanging
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
                        "trailer", "trailers", "transfer-encoding", "upgrade"})


@dataclass
class _Fault:
    status: int  # HUNG: accept the request and never answer it
    remaining: int
    headers: dict
    body: dict | None
    path_contains: str | None


def _end_to_end(headers: http.client.HTTPMessage) -> list[tuple[str, str]]:
    """The headers minus the hop-by-hop ones (including any the Connection header names)."""
    drop = HOP_BY_HOP | {t.strip().lower() for v in headers.get_all("Connection", []) for t in v.split(",")}
    return [(k, v) for k, v in headers.items() if k.lower() not in drop]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self):
        super().setup()
        self.server.track(self.connection, True)

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def log_message(self, format, *args):  # the proxy records requests itself
        pass

    def _handle(self):
        proxy = self.server.proxy
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        fault = proxy._take_fault(self.path)
        if fault is None:
            self._forward(proxy, body)
        elif fault.status == HUNG:
            proxy._record(self.command, self.path, HUNG)
            self.server.stopping.wait()  # released (and the connection closed unanswered) by stop()
            self.close_connection = True
        else:
            phrase = http.client.responses.get(fault.status, "Error")
            error = {"error": {"code": phrase.replace(" ", ""), "message": f"Injected fault: {fault.status} {phrase}"}}
            self._reply(fault.status, error if fault.body is None else fault.body, fault.headers)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _handle

    def _reply(self, status: int, body: dict, headers: dict | None = None):
        data = json.dumps(body).encode()
        self.server.proxy._record(self.command, self.path, status)
        self.send_response(status)
        for k, v in {"Content-Type": "application/json; charset=utf-8", **(headers or {})}.items():
            self.send_header(k, str(v))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _forward(self, proxy: FaultProxy, body: bytes | None):
        up = proxy._upstream
        conn = http.client.HTTPSConnection(up.hostname, up.port, context=proxy._upstream_context,
                                           timeout=proxy.upstream_timeout)
        try:
            try:
                conn.putrequest(self.command, up.path.rstrip("/") + self.path, skip_host=True,
                                skip_accept_encoding=True)
                conn.putheader("Host", up.netloc)
                for k, v in _end_to_end(self.headers):
                    if k.lower() != "host":
                        conn.putheader(k, v)
                conn.endheaders(body)
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                return self._reply(502, {"error": {"code": "BadGateway", "message": f"upstream: {exc!r}"}})
            proxy._record(self.command, self.path, resp.status)
            # Stream a body of known length; read a close-delimited or chunked one whole to give it a length.
            data = resp.read() if resp.getheader("Content-Length") is None else None
            self.send_response_only(resp.status, resp.reason)
            for k, v in _end_to_end(resp.headers):
                self.send_header(k, v)
            if data is not None:
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if data is None:
                shutil.copyfileobj(resp, self.wfile)
            else:
                self.wfile.write(data)
        finally:
            conn.close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], proxy: FaultProxy, context: ssl.SSLContext):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)
        # The TLS handshake happens on first read, in the connection's own thread, not in the accept loop.
        self.socket = context.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)
        self.proxy = proxy
        self.stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()

    def server_bind(self):  # skip HTTPServer's reverse DNS lookup (socket.getfqdn), which can be slow
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def track(self, connection: socket.socket, open_: bool):
        with self._lock:
            (self._connections.add if open_ else self._connections.discard)(connection)

    def close_connections(self):
        """Cut every open connection (keep-alive ones included), so a stopped proxy serves nothing."""
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            try:  # the plain socket's shutdown: SSLSocket.shutdown would drop the TLS object under the reader
                socket.socket.shutdown(conn, socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request, client_address):  # clients hanging up mid-request are expected
        pass


class FaultProxy:
    """An HTTPS reverse proxy to ``upstream`` that injects queued faults; see the module docstring."""

    def __init__(self, upstream: str, *, upstream_ca_file: str | None, cert_pem: bytes, key_pem: bytes,
                 host: str = "127.0.0.1", upstream_timeout: float = 30.0):
        self._upstream = urlsplit(upstream)
        if self._upstream.scheme != "https" or not self._upstream.hostname:
            raise ValueError(f"upstream must be an https URL, got {upstream!r}")
        self._upstream_context = ssl.create_default_context(cafile=upstream_ca_file)
        if upstream_ca_file is None:  # the emulator's self-signed certificate: do not verify
            self._upstream_context.check_hostname = False
            self._upstream_context.verify_mode = ssl.CERT_NONE
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with tempfile.TemporaryDirectory() as d:  # load_cert_chain takes files only
            cert_file, key_file = os.path.join(d, "tls.crt"), os.path.join(d, "tls.key")
            with open(cert_file, "wb") as f:
                f.write(cert_pem)
            with open(key_file, "wb") as f:
                f.write(key_pem)
            self._context.load_cert_chain(cert_file, key_file)
        self.host = host
        self.upstream_timeout = upstream_timeout
        self._port = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._faults: list[_Fault] = []
        self._requests: list[tuple[str, str, int]] = []

    @property
    def url(self) -> str:
        if not self._port:
            raise RuntimeError("FaultProxy not started")
        return f"https://localhost:{self._port}"

    def start(self) -> FaultProxy:
        """Listen (on a free port the first time, on the same port after a stop) and serve in a thread."""
        if self._server is not None:
            raise RuntimeError("FaultProxy already started")
        self._server = _Server((self.host, self._port), self, self._context)
        self._port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"fault-proxy-{self._port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening (connecting is refused), cut open connections and release hanging requests."""
        server, self._server = self._server, None
        if server is None:
            return
        server.stopping.set()
        server.shutdown()
        server.server_close()
        server.close_connections()
        self._thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def fail(self, status: int, *, times: int = 1, headers: dict | None = None, path_contains: str | None = None,
             body: dict | None = None) -> None:
        """Answer the next ``times`` requests whose path-with-query contains ``path_contains`` (any request if
        None) with ``status``, ``headers`` and the JSON ``body`` (default: a Key Vault-shaped error)."""
        self._queue(_Fault(status, times, dict(headers or {}), body, path_contains))

    def hang(self, times: int = 1) -> None:
        """Accept the next ``times`` requests and never answer them (until ``stop()``)."""
        self._queue(_Fault(HUNG, times, {}, None, None))

    @property
    def requests(self) -> list[tuple[str, str, int]]:
        """(method, path-with-query, status returned) of every request seen so far; status 0: left hanging."""
        with self._lock:
            return list(self._requests)

    def clear(self) -> None:
        """Forget the recorded requests and drop the faults still queued."""
        with self._lock:
            self._requests.clear()
            self._faults.clear()

    def _queue(self, fault: _Fault) -> None:
        if fault.remaining < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._faults.append(fault)

    def _take_fault(self, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.path_contains is None or fault.path_contains in path:
                    fault.remaining -= 1
                    if not fault.remaining:
                        self._faults.remove(fault)
                    return fault
        return None

    def _record(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self._requests.append((method, path, status))
