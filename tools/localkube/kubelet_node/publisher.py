"""Publishes node ports on the host's loopback, as kind publishes its node container's ports.

    python -m localkube.kubelet_node.publisher --state-dir=DIR --netns=NAME --forward=127.0.0.1:8000=10.250.0.2:30800 ...

Listens in the host's network namespace; each connection is piped to a socket made inside the node's namespace.
Only loopback on the host and addresses inside the node's own namespace are ever used.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import os
import signal
import socket
import sys

_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL("libc.so.6", use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns")


class NodeSockets:
    """Sockets created inside the node's network namespace; the calling thread returns to the host's right after."""

    def __init__(self, netns: str) -> None:
        self._host = os.open("/proc/self/ns/net", os.O_RDONLY)
        self._node = os.open(f"/run/netns/{netns}", os.O_RDONLY)

    def new(self) -> socket.socket:
        _setns(self._node)
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        finally:
            _setns(self._host)
        sock.setblocking(False)
        return sock


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            writer.write_eof() if writer.can_write_eof() else writer.close()
        except (OSError, RuntimeError):
            writer.close()


async def _forward(node: NodeSockets, target: tuple[str, int], reader: asyncio.StreamReader,
                   writer: asyncio.StreamWriter) -> None:
    sock = node.new()
    try:
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, target), 10)
        node_reader, node_writer = await asyncio.open_connection(sock=sock)
    except (OSError, asyncio.TimeoutError):
        sock.close()
        writer.close()
        return
    await asyncio.gather(_pipe(reader, node_writer), _pipe(node_reader, writer))
    node_writer.close()
    writer.close()


def _address(text: str) -> tuple[str, int]:
    host, port = text.rsplit(":", 1)
    return host, int(port)


async def serve(netns: str, forwards: list[tuple[tuple[str, int], tuple[str, int]]]) -> None:
    node = NodeSockets(netns)
    servers = []
    for listen, target in forwards:
        servers.append(await asyncio.start_server(
            lambda r, w, t=target: _forward(node, t, r, w), listen[0], listen[1], reuse_address=True))
        print(f"publishing {listen[0]}:{listen[1]} -> {target[0]}:{target[1]} in {netns}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for server in servers:
        server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--state-dir", required=True, help="only to mark the process as this cluster's")
    parser.add_argument("--netns", required=True)
    parser.add_argument("--forward", action="append", default=[], help="HOST:PORT=NODE_ADDRESS:PORT")
    args = parser.parse_args(argv)
    forwards = [(_address(f.split("=", 1)[0]), _address(f.split("=", 1)[1])) for f in args.forward]
    asyncio.run(serve(args.netns, forwards))
    return 0


if __name__ == "__main__":
    sys.exit(main())
