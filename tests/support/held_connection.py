"""An HTTP/2 connection held open with a client certificate, and when and how the server ended it.

    python held_connection.py HOST PORT SERVER_NAME CERT KEY

Completes TLS (ALPN h2) and HTTP/2's connection preface, answers the server's SETTINGS and PINGs (so gRPC's
keepalive never ends it), and opens one call whose request never comes, so the connection is never idle (the
frontend's keepAliveMaxConnectionIdle, 2 minutes, would end it with a GOAWAY; its age limit is 5 minutes +-10 %).
Prints one JSON line when the connection is up and one when it ends:
``{"event": "closed", "at": <unix time>, "goaway": <error code of a GOAWAY the server sent, or null>,
"call_ended": <"RST_STREAM" or "trailers" if the server ended the held call, or null>, ...}``.
A server that closes the socket under gRPC (our build's tlsreload) sends no GOAWAY; gRPC's own limits send one first.
"""

from __future__ import annotations

import json
import socket
import ssl
import struct
import sys
import time

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY = 0x1, 0x3, 0x4, 0x6, 0x7
ACK, END_STREAM, END_HEADERS = 0x1, 0x1, 0x4
HELD_CALL = "/temporal.api.workflowservice.v1.WorkflowService/GetSystemInfo"


def frame(kind: int, flags: int, payload: bytes = b"", stream: int = 0) -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def literal(name: str, value: str) -> bytes:
    """An HPACK header field, literal and not indexed (RFC 7541 6.2.2); names and values here are under 127 bytes."""
    return b"\0" + bytes([len(name)]) + name.encode() + bytes([len(value)]) + value.encode()


def open_call(server_name: str) -> bytes:
    """Stream 1's HEADERS without END_STREAM: the server's handler waits for a request message that never comes."""
    fields = [(":method", "POST"), (":scheme", "https"), (":path", HELD_CALL), (":authority", server_name),
              ("content-type", "application/grpc"), ("te", "trailers")]
    return frame(HEADERS, END_HEADERS, b"".join(literal(*field) for field in fields), stream=1)


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
    goaway, call_ended, began = None, None, time.monotonic()
    with socket.create_connection((host, int(port)), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname=server_name) as tls:
        tls.sendall(PREFACE + frame(SETTINGS, 0) + open_call(server_name))
        tls.settimeout(None)
        opened = False
        try:
            while True:
                length, kind, flags = struct.unpack(">I", b"\0" + read_exactly(tls, 3))[0], *read_exactly(tls, 2)
                stream = struct.unpack(">I", read_exactly(tls, 4))[0] & 0x7FFFFFFF
                payload = read_exactly(tls, length) if length else b""
                if kind == SETTINGS and not flags & ACK:
                    tls.sendall(frame(SETTINGS, ACK))
                    if not opened:  # the server took our certificate: TLS 1.3 refuses with an alert instead
                        opened = True
                        say("open")
                elif kind == PING and not flags & ACK:
                    tls.sendall(frame(PING, ACK, payload))
                elif stream == 1 and (kind == RST_STREAM or kind == HEADERS and flags & END_STREAM):
                    call_ended = "RST_STREAM" if kind == RST_STREAM else "trailers"  # idle from here on
                elif kind == GOAWAY:
                    goaway = struct.unpack(">I", payload[4:8])[0]
        except (EOFError, OSError) as ended:  # ssl.SSLError is an OSError: an alert, or EOF without close_notify
            say("closed", goaway=goaway, call_ended=call_ended, opened=opened, how=type(ended).__name__,
                held_seconds=round(time.monotonic() - began, 1))


if __name__ == "__main__":
    main(*sys.argv[1:6])
