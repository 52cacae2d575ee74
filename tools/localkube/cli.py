"""``python -m localkube``: tools, up, down, status, kubeconfig."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Collection

from . import toolchain
from .kubelet_node import packages
from .control_plane import DEFAULT_SYNC_FREQUENCY, ControlPlane, ControlPlaneError, kind_port_mappings
from .paths import REPO_ROOT, state_root

NEEDS_ROOT = "needs root (network and mount namespaces for the local node); run with sudo"
CLUSTER_TOOLS = ("etcd", "kubernetes")  # what `up` starts besides the node (the project's own Python)


class PreflightError(RuntimeError):
    """This machine cannot do what was asked; the message says what to do."""


def _cached(tool: toolchain.Tool) -> bool:
    return all(os.environ.get(toolchain.override_variable(b)) for b in tool.binaries) or \
        (tool.home / ".complete").exists()


def _go_version() -> tuple[int, int] | None:
    """(major, minor) of the go on PATH; None without one ((99, 0) if it says something unexpected)."""
    if not shutil.which("go"):
        return None
    found = re.match(r"go(\d+)\.(\d+)", subprocess.run(["go", "env", "GOVERSION"], capture_output=True,
                                                        text=True).stdout.strip())
    return (int(found[1]), int(found[2])) if found else (99, 0)


def preflight(tool_names: Collection[str], root: bool) -> None:
    """Fail in one line before anything slow starts: not root, or Go missing for a Go tool not built yet."""
    if root and os.geteuid() != 0:
        raise PreflightError(NEEDS_ROOT)
    unbuilt = [t.name for t in toolchain.TOOLS
               if t.name in tool_names and isinstance(t.recipe, toolchain.GoBuild) and not _cached(t)]
    go = _go_version() if unbuilt else None
    if not unbuilt or (go and go >= (1, 26)):
        return
    found = f"go is go{go[0]}.{go[1]}" if go else "go is not on PATH"
    # sudo's secure_path usually drops /usr/local/go/bin from PATH.
    hint = ' (sudo resets PATH: sudo env PATH="$PATH" make ...)' if not go and os.environ.get("SUDO_USER") else ""
    raise PreflightError(f"{found} and {', '.join(unbuilt)} {'is' if len(unbuilt) == 1 else 'are'} not built yet: "
                         f"install Go 1.26 (https://go.dev/dl/), put it on PATH and run again{hint}")


def _cluster(args: argparse.Namespace) -> ControlPlane:
    # NodePorts are published on the host as kind-config.yaml's extraPortMappings say.
    return ControlPlane(Path(args.dir).resolve() if args.dir else state_root() / args.name,
                        kind_port_mappings(REPO_ROOT / "kind-config.yaml"), args.kubelet_sync_frequency)


def cmd_tools(args: argparse.Namespace) -> int:
    # The full set is what demo and test need, and they need root: say so before a long cold build.
    preflight(args.names or [t.name for t in toolchain.TOOLS if toolchain.wanted_by_default(t)], root=not args.names)
    toolchain.ensure_all(args.names or None)
    if not args.names:  # not Go or pip tools: the distribution's packages
        toolchain.ensure_chromium()
        packages.ensure()
    for tool in toolchain.TOOLS:
        if (args.names and tool.name not in args.names) or (not args.names and not toolchain.wanted_by_default(tool)):
            continue
        for binary in tool.binaries:
            if tool.optional and not args.names and not (tool.home / ".complete").exists():
                print(f"{binary:26} optional, not fetched (python -m localkube tools {tool.name})")
            else:
                print(f"{binary:26} {toolchain.path_of(binary)}")
    return 0


def cmd_versions(args: argparse.Namespace) -> int:
    """What each cached tool says of its own version (quoted in issue notes)."""
    commands = {
        "etcd": ["--version"], "kube-apiserver": ["--version"], "kube-controller-manager": ["--version"],
        "kube-scheduler": ["--version"], "kubectl": ["version", "--client"], "helm": ["version", "--short"],
        "temporal-server": ["--version"], "temporal": ["--version"],
    }
    for binary, flags in commands.items():
        result = subprocess.run([str(toolchain.path_of(binary)), *flags], capture_output=True, text=True)
        first = (result.stdout or result.stderr).strip().splitlines()
        print(f"{binary:26} {' | '.join(first[:2])}")
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    preflight(CLUSTER_TOOLS, root=True)
    cluster = _cluster(args)
    cluster.up(timeout=args.timeout)
    print(f"cluster {cluster.name} is ready\n  export KUBECONFIG={cluster.kubeconfig}")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    if args.all:  # make down/clean: a cluster left running would hold its namespaces, mounts and ports
        root = state_root()
        clusters = [ControlPlane(d) for d in sorted(root.iterdir()) if (d / "pids").is_dir()] if root.is_dir() else []
    else:
        clusters = [_cluster(args)]
    if any(c.running() for c in clusters) and os.geteuid() != 0:
        raise PreflightError(NEEDS_ROOT)
    status = 0
    for cluster in clusters:
        was_running = bool(cluster.running())
        killed = cluster.down()  # also for a stopped one: it clears namespaces a killed node left
        left = cluster.running()
        if was_running or killed or not args.all:
            print(f"cluster {cluster.name} stopped" +
                  (f" (killed after grace period: {', '.join(killed)})" if killed else ""))
        if left:
            print(f"still running in {cluster.name}: {left}", file=sys.stderr)
            status = 1
    return status


def cmd_which(args: argparse.Namespace) -> int:
    print(toolchain.path_of(args.binary))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo
    preflight([t.name for t in toolchain.TOOLS if toolchain.wanted_by_default(t)], root=True)
    if args.source == "azureKeyVault":
        try:
            toolchain.path_of("lowkey-vault.jar")
        except toolchain.ToolError as error:
            print(f"make demo: the Key Vault emulator is not available ({error}); "
                  "run the self-signed demo instead: make demo SOURCE=selfSigned", file=sys.stderr)
            return 2
    run_demo(_cluster(args), apps=not args.no_apps, source=args.source, postgres=args.postgres)
    return 0


def cmd_keyvault_certs(args: argparse.Namespace) -> int:
    """The emulator in the local cluster (started first when stopped: the sample's first command), filled like the
    original sample's make keyvault-certs."""
    from .demo import fill_vault
    cluster = _cluster(args)
    cluster.up()
    fill_vault(cluster, [str(toolchain.path_of("kubectl")), f"--kubeconfig={cluster.kubeconfig}"], *args.seed_args)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    cluster = _cluster(args)
    for name, pid in cluster.running().items():
        print(f"{name:26} pid {pid}")
    return 0 if cluster.running() else 3


def cmd_kubeconfig(args: argparse.Namespace) -> int:
    print(_cluster(args).kubeconfig)
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    """Shell exports that put the cached tools on PATH and point kubectl/helm at the cluster."""
    bins = sorted({str(toolchain.path_of(b, ensure=False).parent)
                   for t in toolchain.TOOLS if not t.optional for b in t.binaries})
    print(f"export KUBECONFIG={_cluster(args).kubeconfig}")
    print(f"export PATH={':'.join(bins)}:$PATH")
    return 0


def cmd_kubectl(args: argparse.Namespace) -> int:
    kubectl = str(toolchain.path_of("kubectl"))
    return subprocess.run([kubectl, f"--kubeconfig={_cluster(args).kubeconfig}", *args.kubectl_args]).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="localkube", description=__doc__)
    parser.add_argument("--name", default=os.environ.get("LOCALKUBE_NAME", "default"),
                        help="cluster name; state lives in .localkube/<name> (default: %(default)s)")
    parser.add_argument("--dir", help="explicit state directory (overrides --name)")
    parser.add_argument("--kubelet-sync-frequency", metavar="DURATION", default=DEFAULT_SYNC_FREQUENCY,
                        help="when starting: the kubelet's syncFrequency, how soon a changed Secret or ConfigMap "
                             "reaches a mounted volume (default %(default)s; the kubelet's own default is 1m; "
                             "LOCALKUBE_KUBELET_SYNC_FREQUENCY)")
    commands = parser.add_subparsers(dest="command", required=True)
    tools = commands.add_parser("tools", help="build or fetch the pinned tools into the cache")
    tools.add_argument("names", nargs="*", help="only these tools (optional ones included when named)")
    tools.set_defaults(run=cmd_tools)
    commands.add_parser("versions", help="print each tool's own version").set_defaults(run=cmd_versions)
    up = commands.add_parser("up", help="start the control plane and wait until ready")
    up.add_argument("--timeout", type=float, default=120.0)
    up.set_defaults(run=cmd_up)
    down = commands.add_parser("down", help="stop every process of the cluster")
    down.add_argument("--all", action="store_true", help="every cluster under the state root (.localkube/)")
    down.set_defaults(run=cmd_down)
    demo = commands.add_parser("demo", help="cluster, operator, example TemporalCluster, apps, curl the starter")
    demo.add_argument("--no-apps", action="store_true", help="stop after the TemporalCluster and namespace")
    demo.add_argument("--postgres", action="store_true",
                      help="PostgreSQL 15 (examples/postgres.yaml) and separately scaled services")
    demo.add_argument("--source", choices=("azureKeyVault", "selfSigned"), default="azureKeyVault",
                      help="where the certificates come from (default: %(default)s, the emulator in the cluster)")
    demo.set_defaults(run=cmd_demo)
    certs = commands.add_parser("keyvault-certs", help="run the Key Vault emulator in the cluster and fill it "
                                "(arguments go to python -m temporal_mtls_operator.keyvault)")
    certs.add_argument("seed_args", nargs=argparse.REMAINDER)
    certs.set_defaults(run=cmd_keyvault_certs)
    commands.add_parser("status", help="list the cluster's running processes").set_defaults(run=cmd_status)
    commands.add_parser("kubeconfig", help="print the kubeconfig path").set_defaults(run=cmd_kubeconfig)
    commands.add_parser("env", help="print exports for PATH and KUBECONFIG").set_defaults(run=cmd_env)
    which = commands.add_parser("which", help="print the path of a cached tool's binary")
    which.add_argument("binary", choices=sorted(toolchain.BINARY_TO_TOOL))
    which.set_defaults(run=cmd_which)
    kubectl = commands.add_parser("kubectl", help="run the cached kubectl against the cluster")
    kubectl.add_argument("kubectl_args", nargs=argparse.REMAINDER)
    kubectl.set_defaults(run=cmd_kubectl)
    args, passed_on = parser.parse_known_args(argv)
    # A REMAINDER positional takes nothing that starts with "--" (`keyvault-certs --client hello`): those come
    # back unparsed and are the wrapped command's, in their order.
    for name in ("seed_args", "kubectl_args"):
        if passed_on and hasattr(args, name):
            setattr(args, name, [*passed_on, *getattr(args, name)])
            passed_on = []
    if passed_on:
        parser.error(f"unrecognized arguments: {' '.join(passed_on)}")
    try:
        return args.run(args)
    except (PreflightError, toolchain.ToolError, ControlPlaneError, subprocess.CalledProcessError) as error:
        print(f"localkube: {error}", file=sys.stderr)
        return 2
