"""The fault-injecting HTTPS proxy, in front of a tiny local HTTPS upstream."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from support.fault_proxy import HUNG, FaultProxy
from temporal_mtls_operator import certs


class _Upstream(BaseHTTPRequestHandler):
    """Echoes the request as JSON; ``/status/<code>`` answers with that code, ``/no-length`` without a length."""

    def _handle(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        data = json.dumps({"method": self.command, "path": self.path, "host": self.headers["Host"],
                           "body": body.decode(), "x-test": self.headers.get("X-Test")}).encode()
        self.send_response(int(self.path.split("/")[2]) if self.path.startswith("/status/") else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Upstream", "yes")
        if self.path.startswith("/status/401"):
            self.send_header("WWW-Authenticate", 'Bearer authorization="https://login/t", resource="https://vault"')
        if not self.path.startswith("/no-length"):  # HTTP/1.0: otherwise the body ends when the connection does
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _handle

    def log_message(self, format, *args):
        pass


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    ca = certs.issue_ca("fault-proxy-test-ca", dt.timedelta(days=1))
    leaf = certs.issue_leaf(ca, certs.LeafProfile("localhost", dns_names=("localhost",), server=True),
                            dt.timedelta(days=1))
    d = tmp_path_factory.mktemp("tls")
    (d / "ca.crt").write_bytes(ca.cert_pem)
    (d / "tls.crt").write_bytes(leaf.cert_pem)
    (d / "tls.key").write_bytes(leaf.key_pem)
    return {"ca_file": str(d / "ca.crt"), "cert_file": str(d / "tls.crt"), "key_file": str(d / "tls.key"),
            "leaf": leaf}


@pytest.fixture(scope="module")
def upstream(tls):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls["cert_file"], tls["key_file"])
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"https://localhost:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def proxy(tls, upstream):
    with FaultProxy(upstream, upstream_ca_file=tls["ca_file"], cert_pem=tls["leaf"].cert_pem,
                    key_pem=tls["leaf"].key_pem) as p:
        yield p


def connect(url: str, ca_file: str, timeout: float = 5.0) -> http.client.HTTPSConnection:
    host, port = url.removeprefix("https://").split(":")
    return http.client.HTTPSConnection(host, int(port), timeout=timeout,
                                       context=ssl.create_default_context(cafile=ca_file))


def call(proxy: FaultProxy, ca_file: str, path: str, method: str = "GET", body: bytes | None = None,
         headers: dict | None = None, timeout: float = 5.0):
    conn = connect(proxy.url, ca_file, timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def test_forwards_method_path_body_and_headers_and_rewrites_host(proxy, tls, upstream):
    status, headers, body = call(proxy, tls["ca_file"], "/echo?x=1", "POST", b'{"a": 1}', {"X-Test": "t"})
    assert status == 200 and headers["X-Upstream"] == "yes"
    assert json.loads(body) == {"method": "POST", "path": "/echo?x=1", "host": upstream.removeprefix("https://"),
                                "body": '{"a": 1}', "x-test": "t"}

    status, headers, body = call(proxy, tls["ca_file"], "/status/401")  # the SDK's challenge passes through
    assert status == 401 and headers["WWW-Authenticate"].startswith('Bearer authorization="https://login/t"')

    status, headers, body = call(proxy, tls["ca_file"], "/no-length")  # close-delimited upstream body
    assert status == 200 and json.loads(body)["path"] == "/no-length"
    assert headers["Content-Length"] == str(len(body))
    assert proxy.requests == [("POST", "/echo?x=1", 200), ("GET", "/status/401", 401), ("GET", "/no-length", 200)]


def test_queued_429_with_retry_after_reaches_client_then_requests_are_forwarded(proxy, tls):
    proxy.fail(429, headers={"Retry-After": "7"})
    status, headers, body = call(proxy, tls["ca_file"], "/secrets/s")
    assert status == 429 and headers["Retry-After"] == "7"
    assert json.loads(body)["error"]["code"] == "TooManyRequests"
    assert call(proxy, tls["ca_file"], "/secrets/s")[0] == 200
    assert proxy.requests == [("GET", "/secrets/s", 429), ("GET", "/secrets/s", 200)]


@pytest.mark.parametrize("status, code", [(401, "Unauthorized"), (403, "Forbidden"), (500, "InternalServerError"),
                                          (503, "ServiceUnavailable")])
def test_default_error_body_is_key_vault_shaped(proxy, tls, status, code):
    proxy.fail(status)
    got, headers, body = call(proxy, tls["ca_file"], "/certificates/c")
    error = json.loads(body)["error"]
    assert got == status and headers["Content-Type"].startswith("application/json")
    assert error["code"] == code and error["message"]


def test_custom_body(proxy, tls):
    proxy.fail(403, body={"error": {"code": "Forbidden", "message": "Caller is not authorized"}})
    assert json.loads(call(proxy, tls["ca_file"], "/x")[2])["error"]["message"] == "Caller is not authorized"


def test_path_contains_only_faults_matching_requests(proxy, tls):
    proxy.fail(503, times=2, path_contains="/certificates/")
    paths = ["/secrets/a", "/certificates/b", "/secrets/c", "/certificates/d?api-version=7.5", "/certificates/e"]
    assert [call(proxy, tls["ca_file"], p)[0] for p in paths] == [200, 503, 200, 503, 200]


def test_clear_drops_queued_faults_and_recorded_requests(proxy, tls):
    proxy.fail(500, times=3)
    assert call(proxy, tls["ca_file"], "/a")[0] == 500
    proxy.clear()
    assert proxy.requests == []
    assert call(proxy, tls["ca_file"], "/a")[0] == 200


def test_hang_makes_a_client_time_out_then_requests_are_forwarded(proxy, tls):
    proxy.hang()
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        call(proxy, tls["ca_file"], "/slow", timeout=1)
    assert 0.9 < time.monotonic() - started < 3
    assert call(proxy, tls["ca_file"], "/slow")[0] == 200
    assert proxy.requests == [("GET", "/slow", HUNG), ("GET", "/slow", 200)]


def test_stopped_proxy_refuses_connections_cuts_open_ones_and_restarts_on_the_same_port(proxy, tls):
    url = proxy.url
    kept = connect(url, tls["ca_file"])  # a keep-alive connection opened before the stop
    kept.request("GET", "/a")
    assert kept.getresponse().read()
    proxy.stop()
    with pytest.raises(ConnectionRefusedError):
        connect(url, tls["ca_file"]).connect()
    with pytest.raises((http.client.HTTPException, OSError)):
        kept.request("GET", "/a")
        kept.getresponse()
    kept.close()
    proxy.start()
    assert proxy.url == url and call(proxy, tls["ca_file"], "/a")[0] == 200


def test_unreachable_upstream_is_a_502(tls):
    with FaultProxy("https://localhost:1", upstream_ca_file=tls["ca_file"], cert_pem=tls["leaf"].cert_pem,
                    key_pem=tls["leaf"].key_pem) as p:
        status, _, body = call(p, tls["ca_file"], "/a")
    assert status == 502 and json.loads(body)["error"]["code"] == "BadGateway"
