"""A real Kubernetes cluster like a kind cluster: etcd, kube-apiserver, controller-manager, scheduler and one real
node (kubelet, containerd, kube-proxy, CoreDNS), all in the cluster's own network namespace.

All state (PKI, etcd data, logs, pid files, kubeconfig, the node's files) lives in one directory; ports are
picked free, so several clusters can run side by side.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import random
import shutil
import json
import socket
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import pki, processes
from .kubelet_node.node import NODE, PROVISIONER, PUBLISHER, RealNode
from .kubelet_node import addons as node_addons
from .kubelet_node.layout import NODE_IP
from .toolchain import path_of

SERVICE_CIDR = "10.96.0.0/16"
AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    verbs: [create, update, patch, delete]
    resources:
      - {group: "", resources: [secrets]}
      - {group: coordination.k8s.io, resources: [leases]}
  - level: None
"""

CONTROL_PLANE = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"]
# The publisher first (the host reaches the apiserver through it), the node launcher last.
COMPONENTS = [PUBLISHER, *CONTROL_PLANE, PROVISIONER, NODE]
_GRACE = {NODE: 30.0}  # the node stops its daemons first
# The kubelet's syncFrequency (its own default is 1m): tests wait on what they observe, this only makes it sooner.
DEFAULT_SYNC_FREQUENCY = os.environ.get("LOCALKUBE_KUBELET_SYNC_FREQUENCY", "10s")


class ControlPlaneError(RuntimeError):
    pass


def _port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_port() -> int:
    """A free port below the ephemeral range, so no outgoing connection can take it before we bind."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(200):
        port = random.randrange(max(1024, low - 12000), low)
        if _port_is_free(port):
            return port
    raise ControlPlaneError("no free port below the ephemeral range")


def _can_listen(address: str, port: int) -> bool:
    """As the node will listen there (SO_REUSEADDR: connections closing on the port do not count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((address, port))
            s.listen()
            return True
        except OSError:
            return False


def listener(port: int) -> tuple[int, str] | None:
    """The process listening on a TCP port of this host (pid, command line), from /proc; None if unknown."""
    sockets = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                sockets.add(f"socket:[{fields[9]}]")
    for pid in filter(str.isdigit, os.listdir("/proc") if sockets else []):
        try:  # processes come and go while we look
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") in sockets for fd in os.listdir(f"/proc/{pid}/fd")):
                return int(pid), Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
    return None


def check_host_ports(port_mappings: dict[int, tuple[str, int]], own_pid: int | None = None) -> None:
    """Stop, in one line, when a host port to publish is taken by anything but this cluster's node (own_pid)."""
    for node_port, (address, port) in sorted(port_mappings.items()):
        if _can_listen(address, port):
            continue
        holder = listener(port)
        if holder and holder[0] == own_pid:
            continue  # this cluster already publishes it (an earlier make demo)
        command = holder[1] if holder else ""
        if "localkube.kubelet_node.publisher" in command:
            state_dir = command.split("--state-dir=", 1)[-1].split()[0]
            fix = f"stop that local cluster (python -m localkube --dir {state_dir} down, or make down)"
        else:
            fix = "stop that program" + (f" (pid {holder[0]}: {command[:80]})" if holder else "")
        raise ControlPlaneError(f"{address}:{port} is taken; the local cluster publishes NodePort {node_port} there "
                                f"(kind-config.yaml extraPortMappings): {fix} and run again")


def kind_port_mappings(kind_config: Path) -> dict[int, tuple[str, int]]:
    """kind's extraPortMappings (containerPort = a NodePort) as {nodePort: (address, hostPort)}."""
    config = yaml.safe_load(kind_config.read_text())
    return {m["containerPort"]: (m.get("listenAddress", "127.0.0.1"), m["hostPort"])
            for node in config.get("nodes", []) for m in node.get("extraPortMappings", [])}


@dataclass(frozen=True)
class ControlPlane:
    state_dir: Path
    port_mappings: dict[int, tuple[str, int]] = field(default_factory=dict)
    sync_frequency: str = DEFAULT_SYNC_FREQUENCY  # the kubelet's: how soon a changed Secret reaches a volume

    @property
    def name(self) -> str:
        return self.state_dir.name

    @property
    def context(self) -> str:
        return f"localkube-{self.name}"

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def audit_log(self) -> Path:
        """The API server's audit log (JSON lines): every write to a Secret or a Lease, with who and from where."""
        return self.state_dir / "logs" / "audit.log"

    @property
    def pki_dir(self) -> Path:
        return self.state_dir / "pki"

    @property
    def node(self) -> RealNode:
        return RealNode(self.state_dir)

    @property
    def netns(self) -> str:
        """The node's network namespace, where pod and Service IPs answer (`ip netns exec <netns> ...`)."""
        return self.node.layout.netns

    @property
    def components(self) -> list[str]:
        return COMPONENTS

    def running(self) -> dict[str, int]:
        return processes.running(self.state_dir) if (self.state_dir / "pids").exists() else {}

    def up(self, timeout: float = 120.0) -> None:
        """Start every component (unless already running) and wait until the cluster serves."""
        check_host_ports(self.port_mappings, own_pid=self.running().get(PUBLISHER))
        if self.running():
            if set(self.running()) >= set(self.components):
                self.wait_ready(timeout)
                return
            raise ControlPlaneError(f"{self.state_dir} is partly running ({sorted(self.running())}); run down first")
        binaries = {b: str(path_of(b)) for b in CONTROL_PLANE}
        self.state_dir.mkdir(parents=True, exist_ok=True)
        node = self.node
        # The whole cluster runs inside the node's network namespace, as kind's runs in its node container.
        inside = node.in_namespace
        ports = self._ports()
        self._write_pki(ports["apiserver"])
        p = self.pki_dir
        node.prepare()
        node.write_apiserver_kubelet_client(p)
        # The host reaches etcd's health and the apiserver on loopback at the same ports, and kind's NodePorts.
        forwards = {("127.0.0.1", ports[c]): ("127.0.0.1", ports[c]) for c in ("etcd", "apiserver")}
        forwards.update({host: (NODE_IP, node_port) for node_port, host in self.port_mappings.items()})
        node.start_publisher(forwards)
        etcd_url = f"http://127.0.0.1:{ports['etcd']}"
        processes.start("etcd", inside([
            binaries["etcd"], "--name=localkube", f"--data-dir={self.state_dir / 'etcd'}",
            f"--listen-client-urls={etcd_url}", f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{ports['etcd-peer']}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{ports['etcd-peer']}",
            f"--initial-cluster=localkube=http://127.0.0.1:{ports['etcd-peer']}",
            "--unsafe-no-fsync", "--log-level=warn",
        ]), self.state_dir)
        self._wait_http(f"{etcd_url}/health", "etcd", 30.0)
        # Writes to Secrets and Leases only (Metadata level: no data), so tests can tell which client wrote what.
        policy = self.state_dir / "audit-policy.yaml"
        policy.write_text(AUDIT_POLICY)
        (self.state_dir / "logs").mkdir(parents=True, exist_ok=True)
        processes.start("kube-apiserver", inside([
            binaries["kube-apiserver"], f"--etcd-servers={etcd_url}", *RealNode.apiserver_args(p),
            f"--audit-policy-file={policy}", f"--audit-log-path={self.audit_log}", "--audit-log-format=json",
            "--audit-log-mode=blocking", "--audit-log-maxsize=200",
            f"--secure-port={ports['apiserver']}",
            f"--cert-dir={self.state_dir / 'apiserver'}",
            f"--tls-cert-file={p / 'apiserver.crt'}", f"--tls-private-key-file={p / 'apiserver.key'}",
            f"--client-ca-file={p / 'client-ca.crt'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}", "--allow-privileged=true",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={p / 'service-account.pub'}",
            f"--service-account-signing-key-file={p / 'service-account.key'}",
            "--profiling=false", "--v=1",
            "--kubelet-preferred-address-types=InternalIP",
        ]), self.state_dir)
        # The controllers need the bootstrap RBAC roles that /readyz waits for.
        self._wait_http(f"https://127.0.0.1:{ports['apiserver']}/readyz", "kube-apiserver", timeout)
        for component, extra in (
            ("kube-controller-manager", [
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={p / 'service-account.key'}",
                f"--root-ca-file={p / 'serving-ca.crt'}",
                f"--cluster-signing-cert-file={p / 'client-ca.crt'}",
                f"--cluster-signing-key-file={p / 'client-ca.key'}",
            ]),
            ("kube-scheduler", []),
        ):
            kubeconfig = self.state_dir / f"{component}.kubeconfig"
            processes.start(component, inside([
                binaries[component], f"--kubeconfig={kubeconfig}", "--leader-elect=false",
                "--secure-port=0",  # nothing scrapes them here: no port to race for
                "--v=1", *extra,
            ]), self.state_dir)
        node.write_node_files(p, ports["apiserver"], write_kubeconfig, self.sync_frequency)
        node.start()
        node_addons.apply([str(path_of("kubectl")), f"--kubeconfig={self.kubeconfig}"])
        self.wait_ready(timeout)

    def _ports(self) -> dict[str, int]:
        """A restarted cluster keeps its ports (etcd's membership names them); a new one picks free ports."""
        path = self.state_dir / "ports.json"
        if path.exists():
            ports = json.loads(path.read_text())
            if all(_port_is_free(p) for p in ports.values()):
                return ports
            shutil.rmtree(self.state_dir / "etcd", ignore_errors=True)  # the old membership cannot move
        ports = {"etcd": free_port(), "etcd-peer": free_port(), "apiserver": free_port()}
        path.write_text(json.dumps(ports, indent=2))
        return ports

    def down(self) -> list[str]:
        """Stop the node, kill what its pods left (as deleting a kind node container does), stop the control plane,
        remove the node's cgroups and namespace; returns what had to be killed."""
        if not (self.state_dir / "pids").exists():
            return []
        node = self.node
        # The publisher goes early too: host clients' watches through it would hold the apiserver's shutdown.
        killed = processes.stop(self.state_dir, [NODE, PROVISIONER, PUBLISHER], grace_seconds=_GRACE, others=False)
        left_by_node = node.kill_processes()
        killed += processes.stop(self.state_dir, list(reversed(self.components)), grace_seconds=_GRACE)
        node.remove()
        if left_by_node:
            print(f"cluster {self.name}: {left_by_node} pod and shim processes killed with the node")
        return killed

    def stop_component(self, component: str) -> None:
        """Stop one control-plane process (etcd, kube-apiserver, ...) as its fault: the rest keep running."""
        if component not in self.components:
            raise ControlPlaneError(f"{component!r} is not a component of {self.name} ({', '.join(self.components)})")
        processes.stop(self.state_dir, [component], grace_seconds=_GRACE, others=False)

    def start_component(self, component: str, timeout: float = 120.0) -> None:
        """Start a stopped component again with the arguments it had, and wait until the cluster serves."""
        if not processes.alive(self.state_dir, component):
            processes.restart(component, self.state_dir)
        self.wait_ready(timeout)

    def container_processes(self, container_id: str) -> list[int]:
        """The host PIDs of one container, from a pod status' containerID (containerd://ID), first the oldest."""
        scheme, _, name = container_id.partition("://")
        if scheme != "containerd":
            raise ControlPlaneError(f"not a containerd container ID: {container_id!r}")
        return sorted(self.node.container_pids(name))

    def pod_processes(self) -> list[int]:
        return sorted(self.node.pod_pids())

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Ready = apiserver /readyz ok, the controller-manager made the default service account,
        and the node registered and is Ready."""
        deadline = time.monotonic() + timeout
        ports = json.loads((self.state_dir / "ports.json").read_text())
        base = f"https://127.0.0.1:{ports['apiserver']}"
        self._wait_http(f"{base}/readyz", "kube-apiserver", deadline - time.monotonic())
        self._wait_http(f"{base}/api/v1/namespaces/default/serviceaccounts/default", "kube-controller-manager",
                        deadline - time.monotonic())
        self._wait_node_ready(base, deadline)
        exited = {c for c in self.components if not processes.alive(self.state_dir, c)}
        if exited:
            raise ControlPlaneError(f"{', '.join(sorted(exited))} exited; see {self.state_dir / 'logs'}")

    def _wait_node_ready(self, base: str, deadline: float) -> None:
        """The real node Ready and a CoreDNS pod Ready (as a kind cluster is once created), both as reported since
        this node started: etcd keeps a restarted cluster's objects, with the old node's last word on them."""
        node_pid = self.state_dir / "pids" / f"{NODE}.pid"  # written when the node started
        since = (node_pid.stat().st_mtime if node_pid.exists() else 0.0) - 1.0  # API times are whole seconds

        def fresh_and_true(conditions: list[dict], stamp: str) -> bool:
            return any(c["type"] == "Ready" and c["status"] == "True" and
                       dt.datetime.fromisoformat(c[stamp].replace("Z", "+00:00")).timestamp() >= since
                       for c in conditions if c.get(stamp))

        def get(path: str) -> dict:
            with urllib.request.urlopen(f"{base}{path}", timeout=2, context=self._admin_tls()) as response:
                return json.load(response)

        def ready() -> bool:
            try:
                node = get("/api/v1/nodes/localkube")
                pods = get("/api/v1/namespaces/kube-system/pods?labelSelector=k8s-app%3Dkube-dns")["items"]
            except (urllib.error.URLError, OSError, KeyError):
                return False
            return (fresh_and_true(node["status"].get("conditions", []), "lastHeartbeatTime") and
                    any(fresh_and_true(p["status"].get("conditions", []), "lastTransitionTime") for p in pods))

        while not ready():
            if not processes.alive(self.state_dir, NODE):
                raise ControlPlaneError(f"the node exited; see {self.state_dir / 'logs'}")
            if time.monotonic() > deadline:
                raise ControlPlaneError(f"the node or CoreDNS is not Ready in time; see {self.state_dir / 'logs'}")
            time.sleep(0.5)

    def _wait_http(self, url: str, component: str, timeout: float) -> None:
        deadline = time.monotonic() + max(timeout, 1.0)
        last_error = ""
        while time.monotonic() < deadline:
            if not processes.alive(self.state_dir, component):
                raise ControlPlaneError(f"{component} exited; see {self.state_dir / 'logs' / (component + '.log')}")
            try:
                with urllib.request.urlopen(url, timeout=2, context=self._admin_tls()) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError) as error:
                last_error = str(error)
            time.sleep(0.25)
        raise ControlPlaneError(f"{component} not ready after {timeout:.0f}s ({last_error}); "
                                f"see {self.state_dir / 'logs'}")

    def _admin_tls(self) -> ssl.SSLContext | None:
        if not (self.pki_dir / "admin.crt").exists():
            return None
        context = ssl.create_default_context(cafile=str(self.pki_dir / "serving-ca.crt"))
        context.load_cert_chain(self.pki_dir / "admin.crt", self.pki_dir / "admin.key")
        return context

    def _write_pki(self, apiserver_port: int) -> None:
        """Fresh PKI on every start: certificates are cheap and nothing else refers to them."""
        self.pki_dir.mkdir(parents=True, exist_ok=True)
        serving_ca, client_ca = pki.new_ca("localkube-serving-ca"), pki.new_ca("localkube-client-ca")
        serving_ca.write(self.pki_dir, "serving-ca")
        client_ca.write(self.pki_dir, "client-ca")
        pki.issue(serving_ca, "kube-apiserver", server=True, ip_addresses=("127.0.0.1", "10.96.0.1", NODE_IP),
                  dns_names=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                             "kubernetes.default.svc.cluster.local")).write(self.pki_dir, "apiserver")
        pki.write_service_account_key(self.pki_dir)
        server = f"https://127.0.0.1:{apiserver_port}"
        users = {
            "admin": ("localkube-admin", ("system:masters",)),
            "kube-controller-manager": ("system:kube-controller-manager", ()),
            "kube-scheduler": ("system:kube-scheduler", ()),
        }
        for stem, (common_name, groups) in users.items():
            pair = pki.issue(client_ca, common_name, organizations=groups, client=True)
            cert_path, key_path = pair.write(self.pki_dir, stem)
            target = self.kubeconfig if stem == "admin" else self.state_dir / f"{stem}.kubeconfig"
            write_kubeconfig(target, self.context, server, self.pki_dir / "serving-ca.crt", cert_path, key_path)


def write_kubeconfig(path: Path, context: str, server: str, ca: Path, cert: Path, key: Path) -> None:
    """A self-contained kubeconfig (embedded data), so it can be copied anywhere."""
    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": context,
        "clusters": [{"name": context, "cluster": {"server": server, "certificate-authority-data": b64(ca)}}],
        "users": [{"name": context, "user": {"client-certificate-data": b64(cert), "client-key-data": b64(key)}}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
