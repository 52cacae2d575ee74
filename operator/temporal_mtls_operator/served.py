"""What a TLS server presents right now: the certificate its handshake sends (no trust decision made here).

A CA rotation moves on when the server is seen serving a leaf from the new CA, not when the Secret was written:
the pod takes a Secret change only when its volume is refreshed (a kubelet: a minute or two) and Temporal re-reads
it at refreshInterval.
"""

from __future__ import annotations

import socket
import ssl

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
