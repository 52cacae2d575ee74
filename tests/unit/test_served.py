"""served.accepts_client_certificate against a real TLS 1.3 server (Python's ssl, as Go's: the client certificate is
judged after the client's handshake ends, the refusal arrives as an alert on the first read)."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading

from temporal_mtls_operator import certs
from temporal_mtls_operator.served import accepts_client_certificate

HOUR = dt.timedelta(hours=1)


def serve_once(tmp_path, server: certs.KeyPair, trusted: certs.KeyPair) -> int:
    """One connection on a free port: a server trusting ``trusted`` only, which answers a taken client with bytes."""
    for name, data in (("tls.crt", server.cert_pem), ("tls.key", server.key_pem), ("ca.crt", trusted.cert_pem)):
        (tmp_path / name).write_bytes(data)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    context.load_verify_locations(tmp_path / "ca.crt")
    context.verify_mode = ssl.CERT_REQUIRED
    listener = socket.create_server(("127.0.0.1", 0))

    def run():
        with listener:
            connection, _ = listener.accept()
            try:
                with context.wrap_socket(connection, server_side=True) as tls:
                    tls.sendall(b"\x00")  # as a gRPC server's HTTP/2 SETTINGS
                    tls.recv(1)
            except (ssl.SSLError, OSError):
                pass  # the refusal: ssl sent the alert

    threading.Thread(target=run, daemon=True).start()
    return listener.getsockname()[1]


def test_a_server_refuses_an_old_ca_client_and_takes_a_new_one(tmp_path):
    old, new = certs.issue_ca("old CA", HOUR), certs.issue_ca("new CA", HOUR)
    server = certs.issue_leaf(new, certs.LeafProfile("server", dns_names=("server",), server=True), HOUR)
    old_client = certs.issue_leaf(old, certs.LeafProfile("probe", client=True), HOUR)
    new_client = certs.issue_leaf(new, certs.LeafProfile("probe", client=True), HOUR)
    port = serve_once(tmp_path, server, new)
    assert accepts_client_certificate("127.0.0.1", port, "server", old_client.cert_pem, old_client.key_pem) is False
    port = serve_once(tmp_path, server, new)
    assert accepts_client_certificate("127.0.0.1", port, "server", new_client.cert_pem, new_client.key_pem) is True
    # A pod that trusts both (it mounted the bundle of old and new) takes the old CA's certificate.
    (tmp_path / "both").mkdir()
    both = certs.KeyPair(new.cert_pem + old.cert_pem, new.key_pem)
    port = serve_once(tmp_path / "both", server, both)
    assert accepts_client_certificate("127.0.0.1", port, "server", old_client.cert_pem, old_client.key_pem) is True


def test_a_server_that_is_not_listening_cannot_be_asked():
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        port = placeholder.getsockname()[1]
    pair = certs.issue_leaf(certs.issue_ca("CA", HOUR), certs.LeafProfile("probe", client=True), HOUR)
    assert accepts_client_certificate("127.0.0.1", port, "server", pair.cert_pem, pair.key_pem) is None
