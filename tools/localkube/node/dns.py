"""A tiny authoritative DNS server for cluster.local, inside the node namespace.

Some clients (Rust's hickory resolver in the Temporal SDKs) ask DNS directly instead of
/etc/hosts. This answers A queries for Service names and NXDOMAIN for everything else;
nothing is ever forwarded off the machine.
"""

from __future__ import annotations

import asyncio
import ipaddress
import struct
from typing import Callable

_A, _IN = 1, 1


def _read_name(packet: bytes, offset: int) -> tuple[str, int]:
    labels = []
    while True:
        length = packet[offset]
        if length == 0:
            return ".".join(labels).lower(), offset + 1
        if length & 0xC0:
            raise ValueError("compressed names are not expected in questions")
        labels.append(packet[offset + 1:offset + 1 + length].decode("ascii", "replace"))
        offset += 1 + length


def answer(query: bytes, lookup: Callable[[str], str | None]) -> bytes | None:
    """The response to one query packet, or None for something that is not a query."""
    if len(query) < 12:
        return None
    ident, flags, questions = struct.unpack("!HHH", query[:6])
    if flags & 0x8000 or questions != 1:
        return None
    try:
        name, end = _read_name(query, 12)
    except (IndexError, ValueError):
        return None
    qtype, qclass = struct.unpack("!HH", query[end:end + 4])
    question = query[12:end + 4]
    address = lookup(name)
    rcode = 0 if address else 3  # NOERROR / NXDOMAIN
    records = b""
    if address and qtype == _A and qclass == _IN:
        records = b"\xc0\x0c" + struct.pack("!HHIH", _A, _IN, 5, 4) + ipaddress.ip_address(address).packed
    header = struct.pack("!HHHHHH", ident, 0x8400 | (flags & 0x0100) | rcode, 1, 1 if records else 0, 0, 0)
    return header + question + records


class DnsProtocol(asyncio.DatagramProtocol):
    def __init__(self, lookup: Callable[[str], str | None]) -> None:
        self.lookup = lookup
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        response = answer(data, self.lookup)
        if response and self.transport:
            self.transport.sendto(response, addr)
