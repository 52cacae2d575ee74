"""What a TLS server presents right now: the certificate its handshake sends (no trust decision made here).

A CA rotation moves on when the server is seen serving a leaf from the new CA, not when the Secret was written:
the pod takes a Secret change only when its volume is refreshed (a kubelet: a minute or two) and Temporal re-reads
it at refreshInterval.
"""

from __future__ import annotations

import os
import socket
import ssl
import tempfile

from cryptography import x509


def presented_certificate(host: str, port: int, server_name: str, timeout: float = 3.0) -> x509.Certificate | None:
    """The leaf ``host:port`` presents for SNI ``server_name``, or None when it cannot be reached.

    No client certificate is offered: with TLS 1.3 the server's certificate arrives before it asks for ours."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # only looking, never sending data
    context.set_alpn_protocols(["h2"])
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw, \
                context.wrap_socket(raw, server_hostname=server_name) as tls:
            der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError):
        return None
    return x509.load_der_x509_certificate(der) if der else None


def accepts_client_certificate(host: str, port: int, server_name: str, cert_pem: bytes, key_pem: bytes,
                               timeout: float = 3.0) -> bool | None:
    """Whether ``host:port`` takes the client certificate ``cert_pem`` (True), refuses it with a TLS alert (False),
    or cannot be asked (None: not listening, no answer).

    With TLS 1.3 the server judges our certificate after the handshake: its refusal is the alert on the first read;
    a gRPC server that took it sends its HTTP/2 SETTINGS instead."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # asking about their trust, not ours
    context.set_alpn_protocols(["h2"])
    # ssl loads a chain from files only: a private temporary directory, gone when this returns.
    with tempfile.TemporaryDirectory(prefix="probe-") as directory:
        cert_file, key_file = os.path.join(directory, "tls.crt"), os.path.join(directory, "tls.key")
        for path, data in ((cert_file, cert_pem), (key_file, key_pem)):
            with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as file:
                file.write(data)
        context.load_cert_chain(cert_file, key_file)
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw, \
                context.wrap_socket(raw, server_hostname=server_name) as tls:
            return bool(tls.recv(1)) or None
    except ssl.SSLError as error:
        return False if "ALERT" in (error.reason or "") else None
    except OSError:
        return None
