"""An HTTP/2 connection held open with a client certificate, and when and how the server ended it.

    python held_connection.py HOST PORT SERVER_NAME CERT KEY

Completes TLS (ALPN h2) and HTTP/2's connection preface, answers the server's SETTINGS and PINGs (so gRPC's
keepalive never ends it), and sends nothing else. Prints one JSON line when the connection is up and one when it
ends: ``{"event": "closed", "at": <unix time>, "goaway": <error code of a GOAWAY the server sent, or null>}``.
A server that closes the socket under gRPC (our build's tlsreload) sends no GOAWAY; gRPC's own idle or age limit
sends one first.
"""

from __future__ import annotations

import json
import socket
import ssl
import struct
import sys
import time

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SETTINGS, PING, GOAWAY = 0x4, 0x6, 0x7
ACK = 0x1


def frame(kind: int, flags: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", 0) + payload


def read_exactly(tls: ssl.SSLSocket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = tls.recv(size - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def say(event: str, **fields) -> None:
    print(json.dumps({"event": event, "at": time.time(), **fields}), flush=True)


def main(host: str, port: str, server_name: str, cert: str, key: str) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # the test checks trust elsewhere
    context.set_alpn_protocols(["h2"])
    context.load_cert_chain(cert, key)
    goaway = None
    with socket.create_connection((host, int(port)), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname=server_name) as tls:
        tls.sendall(PREFACE + frame(SETTINGS, 0))
        tls.settimeout(None)
        opened = False
        try:
            while True:
                length, kind, flags = struct.unpack(">I", b"\0" + read_exactly(tls, 3))[0], *read_exactly(tls, 2)
                read_exactly(tls, 4)
                payload = read_exactly(tls, length) if length else b""
                if kind == SETTINGS and not flags & ACK:
                    tls.sendall(frame(SETTINGS, ACK))
                    if not opened:  # the server took our certificate: TLS 1.3 refuses with an alert instead
                        opened = True
                        say("open")
                elif kind == PING and not flags & ACK:
                    tls.sendall(frame(PING, ACK, payload))
                elif kind == GOAWAY:
                    goaway = struct.unpack(">I", payload[4:8])[0]
        except (EOFError, OSError) as ended:  # ssl.SSLError is an OSError: an alert, or EOF without close_notify
            say("closed", goaway=goaway, opened=opened, how=type(ended).__name__)


if __name__ == "__main__":
    main(*sys.argv[1:6])
