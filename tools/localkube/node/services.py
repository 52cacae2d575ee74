"""Services on the local node: virtual IPs and NodePorts forwarding to ready endpoints, and names.

A userspace proxy (like kube-proxy's original mode): asyncio listeners on each Service's
ClusterIP inside the node namespace, and on the host's loopback for NodePorts named in the
port mappings (kind's extraPortMappings). Each new connection picks a ready endpoint at that
moment, so clients survive rollouts. Names resolve through each pod's /etc/hosts.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from .dns import DnsProtocol
from .network import GATEWAY, NodeNetwork, enter

log = logging.getLogger("localkube.node.services")

Backend = tuple[str, int]  # (ip, port); ip "root:127.0.0.1" dials in the host namespace


@dataclass
class ServiceTable:
    """What the proxy and the hosts files need, rebuilt from the API each sync."""
    services: list[dict] = field(default_factory=list)
    routes: dict[Backend, list[Backend]] = field(default_factory=dict)  # (vip, port) -> endpoints
    node_ports: dict[Backend, Backend] = field(default_factory=dict)  # (host addr, host port) -> (vip, port)

    @classmethod
    def build(cls, services: list[dict], slices: list[dict], apiserver_port: int,
              port_mappings: dict[int, Backend]) -> "ServiceTable":
        ready: dict[tuple[str, str], list[tuple[str, dict[str, int]]]] = {}
        for item in slices:
            owner = (item["metadata"]["namespace"], item["metadata"].get("labels", {}).get("kubernetes.io/service-name", ""))
            ports = {p.get("name") or "": p["port"] for p in item.get("ports") or [] if "port" in p}
            for endpoint in item.get("endpoints") or []:
                if (endpoint.get("conditions") or {}).get("ready", True) is not False:
                    ready.setdefault(owner, []).extend((a, ports) for a in endpoint["addresses"])
        table = cls(services=services)
        for service in services:
            meta, spec = service["metadata"], service["spec"]
            vip = spec.get("clusterIP")
            if not vip or vip == "None":
                continue
            for port in spec.get("ports") or []:
                if port.get("protocol", "TCP") != "TCP":
                    continue
                key = (vip, port["port"])
                if (meta["namespace"], meta["name"]) == ("default", "kubernetes"):
                    table.routes[key] = [("root:127.0.0.1", apiserver_port)]
                else:
                    table.routes[key] = [(ip, ports[port.get("name") or ""])
                                         for ip, ports in ready.get((meta["namespace"], meta["name"]), [])
                                         if (port.get("name") or "") in ports]
                if port.get("nodePort") in port_mappings:
                    table.node_ports[port_mappings[port["nodePort"]]] = key
        return table

    def lookup(self, name: str) -> str | None:
        """A record of a Service's FQDN (<svc>.<ns>.svc.cluster.local), for the node's DNS server."""
        parts = name.rstrip(".").split(".")
        if len(parts) != 5 or parts[2:] != ["svc", "cluster", "local"]:
            return None
        for service in self.services:
            meta, vip = service["metadata"], service["spec"].get("clusterIP")
            if meta["name"] == parts[0] and meta["namespace"] == parts[1] and vip and vip != "None":
                return vip
        return None

    def hosts(self, namespace: str, pod_ip: str, hostname: str) -> str:
        lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
        if pod_ip:
            lines.append(f"{pod_ip}\t{hostname}")
        for service in self.services:
            meta, vip = service["metadata"], service["spec"].get("clusterIP")
            if not vip or vip == "None":
                continue
            name, ns = meta["name"], meta["namespace"]
            names = [f"{name}.{ns}.svc.cluster.local", f"{name}.{ns}.svc", f"{name}.{ns}"]
            if ns == namespace:
                names.append(name)
            lines.append(f"{vip}\t{' '.join(names)}")
        return "\n".join(lines) + "\n"

    def environment(self, namespace: str, links: bool) -> dict[str, str]:
        """Docker-link style variables, as the kubelet sets them (KUBERNETES_* always)."""
        env = {}
        for service in self.services:
            meta, spec = service["metadata"], service["spec"]
            own = meta["namespace"] == namespace and links
            is_api = (meta["namespace"], meta["name"]) == ("default", "kubernetes")
            vip, ports = spec.get("clusterIP"), spec.get("ports") or []
            if not (own or is_api) or not vip or vip == "None" or not ports:
                continue
            prefix = meta["name"].upper().replace("-", "_")
            env[f"{prefix}_SERVICE_HOST"] = vip
            env[f"{prefix}_SERVICE_PORT"] = str(ports[0]["port"])
            env[f"{prefix}_PORT"] = f"tcp://{vip}:{ports[0]['port']}"
            for port in ports:
                if port.get("name"):
                    env[f"{prefix}_SERVICE_PORT_{port['name'].upper().replace('-', '_')}"] = str(port["port"])
        return env


class ServiceProxy:
    def __init__(self, network: NodeNetwork) -> None:
        self.network = network
        self.table = ServiceTable()
        self._round_robin: dict[Backend, itertools.count] = {}
        self._vip_servers: dict[Backend, asyncio.AbstractServer] = {}
        self._host_servers: dict[Backend, asyncio.AbstractServer] = {}
        self._vips: set[str] = set()
        # Sockets belong to the namespace of the thread that creates them: this pool stays in
        # the host namespace (its thread is started here, from the host-namespace caller).
        self._host_sockets = ThreadPoolExecutor(1, thread_name_prefix="host-ns")
        self._host_sockets.submit(lambda: None).result()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name="service-proxy", daemon=True)
        self._ready = threading.Event()

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(10)

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._host_sockets.shutdown(wait=False)

    def update(self, table: ServiceTable) -> None:
        for vip in {ip for ip, _ in table.routes} - self._vips:
            self.network.add_virtual_ip(vip)
        for vip in self._vips - {ip for ip, _ in table.routes}:
            self.network.remove_virtual_ip(vip)
        self._vips = {ip for ip, _ in table.routes}
        asyncio.run_coroutine_threadsafe(self._apply(table), self._loop).result(15)

    def _serve(self) -> None:
        enter(self.network.node_ns)
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._loop.create_datagram_endpoint(
            lambda: DnsProtocol(lambda name: self.table.lookup(name)), local_addr=(GATEWAY, 53)))
        self._loop.call_soon(self._ready.set)
        self._loop.run_forever()

    async def _apply(self, table: ServiceTable) -> None:
        self.table = table
        for key in set(self._vip_servers) - set(table.routes):
            self._vip_servers.pop(key).close()
        for key in set(table.routes) - set(self._vip_servers):
            try:
                self._vip_servers[key] = await asyncio.start_server(
                    lambda r, w, k=key: self._forward(r, w, k), host=key[0], port=key[1], reuse_address=True)
            except OSError as error:
                log.warning("cannot listen on service address %s:%s: %s", *key, error)
        for key in set(self._host_servers) - set(table.node_ports):
            self._host_servers.pop(key).close()
        for key in set(table.node_ports) - set(self._host_servers):
            try:
                sock = await self._loop.run_in_executor(self._host_sockets, _listening_socket, key)
                self._host_servers[key] = await asyncio.start_server(
                    lambda r, w, k=key: self._forward(r, w, self.table.node_ports.get(k)), sock=sock)
            except OSError as error:
                log.warning("cannot publish node port on %s:%s: %s", *key, error)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: Backend | None) -> None:
        backends = self.table.routes.get(key, []) if key else []
        if not backends:
            writer.close()  # like kube-proxy's REJECT for a Service without ready endpoints
            return
        turn = next(self._round_robin.setdefault(key, itertools.count()))
        host, port = backends[turn % len(backends)]
        try:
            if host.startswith("root:"):
                sock = await self._loop.run_in_executor(self._host_sockets, socket.socket)
                sock.setblocking(False)
                await self._loop.sock_connect(sock, (host[5:], port))
                upstream_reader, upstream_writer = await asyncio.open_connection(sock=sock)
            else:
                upstream_reader, upstream_writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
        except (OSError, asyncio.TimeoutError):
            writer.close()
            return
        await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
        for stream in (writer, upstream_writer):
            stream.close()


def _listening_socket(address: Backend) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.listen(128)
    sock.setblocking(False)
    return sock


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy one direction; pass a half-close on, and on a reset close so the other side ends too."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()
