"""``make images``: the operator, worker and starter images, built from the Dockerfile without Docker, and the
Temporal server image (our build, server/), built from server/Containerfile.

    python -m localkube.images_build [--base auto|debian|IMAGE] [--builder buildah|podman|docker] [--force]
    python -m localkube.images_build kind-load [--name KIND_CLUSTER]

Tags are the charts' defaults, ``ghcr.io/temporal-mtls-operator/{operator,worker,starter}:<appVersion>``.
No network access happens inside a build: the project's and its dependencies' wheels are built on the
host (``pip wheel``, pinned to the versions in the project's virtualenv) and handed to the Dockerfile as
its whole build context (``wheelhouse/``), where pip installs them with ``--no-index``. When the
Dockerfile's default base (the official Python slim image) is not in local storage and cannot be
pulled, the base is built from Debian's packages with mmdebstrap (python3 from bookworm) and the run
says so. A content hash of every input (Dockerfile, pyproject.toml, the operator, worker and starter
sources, pinned versions, base image) is stored as an image label: with nothing changed a rerun only
compares hashes (seconds). Missing tools (podman buildah mmdebstrap runc uidmap) are installed with
apt-get on Debian-like machines, as CI starts from a fresh one.

``ghcr.io/temporal-mtls-operator/temporal-server:<version>``, one per supported Temporal release (1.31.4, 1.32.2),
is our ``temporal-server`` alone (from scratch, uid 1000, nothing to write): the tool cache's
``temporal-mtls-server`` binary of that release (``make tools`` builds it; built here when missing) at the stock
image's path ``/usr/local/bin/temporal-server``, with the host's CA bundle. Its inputs hash (the binary's content,
server/Containerfile, the files it adds) is a label too.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from . import toolchain
from .paths import REPO_ROOT, cache_dir

REGISTRY = "ghcr.io/temporal-mtls-operator"
# image name -> (Dockerfile target, chart whose appVersion tags it)
IMAGES = {"operator": "temporal-mtls-operator", "worker": "temporal-hello-world", "starter": "temporal-hello-world"}
DEFAULT_BASE = "docker.io/library/python:3.11-slim-bookworm"  # the Dockerfile's BASE_IMAGE default
DEBIAN_SUITE = "bookworm"  # python3 3.11, as the default base
INPUTS_LABEL = "dev.temporal-mtls-operator.inputs"
RECIPE = "1"  # bump when this module changes what goes into an image
# Debian packages this module and the local node's image runtime use (command -> package).
APT_PACKAGES = {"podman": "podman", "buildah": "buildah", "mmdebstrap": "mmdebstrap", "runc": "runc",
                "newuidmap": "uidmap"}
SOURCE_DIRS = ("operator", "worker", "starter", "codec")
# What the project's wheel is built from (pyproject.toml's package dirs; README.md is its long description).
WHEEL_SOURCES = ("pyproject.toml", "README.md", "operator", "worker", "starter", "codec", "tools/localkube")
MMDEBSTRAP_ARGS = (
    "--variant=essential", "--include=python3,ca-certificates",
    # merged /usr without the usrmerge package (which pulls in perl: 50 MB)
    "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
    *(f"--dpkgopt=path-exclude=/usr/share/{d}/*" for d in ("doc", "man", "info", "locale")),
)
BASE_CHANGES = ("ENV LANG=C.UTF-8", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                'CMD ["python3"]')
# buildah's and podman's defaults fail here: crun refuses hybrid cgroups, and default ulimits make
# runc fail ("error setting rlimit type 7").
CONTAINERS_CONF = '[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = "runc"\n'


# Our Temporal server build (server/): its image, the tool that holds its binary, what goes in beside it.
SERVER_IMAGE = f"{REGISTRY}/temporal-server"
SERVER_CONTAINERFILE = "server/Containerfile"
SERVER_RECIPE = "1"  # bump when build_server_image changes what goes into the image
SERVER_FILES = {  # path in the image -> content
    "etc/passwd": "root:x:0:0:root:/root:/sbin/nologin\ntemporal:x:1000:1000:temporal:/etc/temporal:/sbin/nologin\n",
    "etc/group": "root:x:0:\ntemporal:x:1000:\n",
}
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")  # Debian's; left out where the host has none


class ImageBuildError(RuntimeError):
    """An image could not be built; the message says why."""


def log(message: str) -> None:
    print(f"images: {message}", flush=True)


def images_dir() -> Path:
    return cache_dir() / "images"


def container_env() -> dict[str, str]:
    """Environment for buildah/podman: our containers.conf (runc, no default ulimits), chroot builds."""
    conf = images_dir() / "containers.conf"
    if not conf.exists() or conf.read_text() != CONTAINERS_CONF:
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text(CONTAINERS_CONF)
    return {**os.environ, "CONTAINERS_CONF": str(conf), "BUILDAH_ISOLATION": "chroot"}


def chart_version(chart: str) -> str:
    return str(yaml.safe_load((REPO_ROOT / "charts" / chart / "Chart.yaml").read_text())["appVersion"])


def image_refs() -> dict[str, str]:
    """Target -> the reference the chart uses by default (the Python images; see server_image_ref)."""
    return {name: f"{REGISTRY}/{name}:{chart_version(chart)}" for name, chart in IMAGES.items()}


def server_image_ref(version: str = toolchain.TEMPORAL_MTLS_SERVER_VERSION) -> str:
    """What a TemporalCluster with authorization runs: ghcr.io/temporal-mtls-operator/temporal-server:<version>."""
    return f"{SERVER_IMAGE}:{version}"


def server_image_refs() -> list[str]:
    """Every release's server image, oldest first."""
    return [server_image_ref(r.version) for r in toolchain.TEMPORAL_RELEASES]


# -- tools -----------------------------------------------------------------------------------------

def _docker_engine() -> bool:
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0


def ensure_packages(commands: tuple[str, ...] = tuple(APT_PACKAGES)) -> None:
    """apt-get install what is missing (update once first), as CI's fresh machine needs."""
    missing = [APT_PACKAGES[c] for c in commands if not shutil.which(c)]
    if not missing:
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise ImageBuildError(f"missing {', '.join(missing)}: install them (Debian: apt-get install "
                              f"{' '.join(missing)}) or run as root on a Debian-like machine")
    log(f"apt-get install {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    started = time.monotonic()
    for argv in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", *missing]):
        result = subprocess.run(argv, capture_output=True, text=True, env=env)
        if result.returncode != 0:
            raise ImageBuildError(f"{' '.join(argv)} failed: {(result.stderr or result.stdout).strip()[-800:]}")
    log(f"installed {' '.join(missing)} in {time.monotonic() - started:.0f}s")


def choose_builder(requested: str | None) -> str:
    if requested:
        return requested
    if shutil.which("buildah"):
        return "buildah"
    if _docker_engine():
        return "docker"
    if shutil.which("podman"):
        return "podman"
    ensure_packages()
    return "buildah"


# -- image storage -----------------------------------------------------------------------------------

def _run(argv: list[str], what: str, env: dict | None = None, cwd: Path | None = None) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, env=env or container_env(), cwd=cwd)
    if result.returncode != 0:
        raise ImageBuildError(f"{what} failed ({' '.join(argv[:3])} ...): "
                              f"{(result.stderr or result.stdout).strip()[-1500:]}")
    return result.stdout


def inspect(ref: str, builder: str = "podman") -> dict | None:
    """The image's inspect record from local storage (never pulls), or None."""
    tool = "docker" if builder == "docker" else "podman"
    if not shutil.which(tool):
        return None
    result = subprocess.run([tool, "image", "inspect", ref], capture_output=True, text=True, env=container_env())
    if result.returncode != 0:
        return None
    records = json.loads(result.stdout or "[]")
    return records[0] if records else None


def labels(record: dict) -> dict[str, str]:
    return record.get("Labels") or (record.get("Config") or {}).get("Labels") or {}


# -- the base image ----------------------------------------------------------------------------------

def debian_base_ref() -> str:
    digest = hashlib.sha256("\n".join([DEBIAN_SUITE, *MMDEBSTRAP_ARGS, *BASE_CHANGES]).encode()).hexdigest()[:12]
    return f"localhost/temporal-mtls-operator/python-base:{DEBIAN_SUITE}-{digest}"


def build_debian_base(builder: str) -> str:
    ref = debian_base_ref()
    if inspect(ref, builder):
        return ref
    ensure_packages(("mmdebstrap",))
    log(f"building the base from Debian's packages: mmdebstrap {DEBIAN_SUITE} (python3, ca-certificates) -> {ref}")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tmo-base-") as tmp:
        tarball = Path(tmp) / "rootfs.tar"
        _run(["mmdebstrap", *MMDEBSTRAP_ARGS, DEBIAN_SUITE, str(tarball)], "mmdebstrap")
        tool = "docker" if builder == "docker" else "podman"
        _run([tool, "import", *(a for c in BASE_CHANGES for a in ("--change", c)), str(tarball), ref],
             f"{tool} import")
    log(f"base built in {time.monotonic() - started:.0f}s")
    return ref


def choose_base(requested: str, builder: str) -> tuple[str, str]:
    """(base reference, how it was chosen)."""
    if requested == "debian":
        return build_debian_base(builder), "built from Debian packages (--base debian)"
    if requested != "auto":
        if not inspect(requested, builder):
            _run([_pull_tool(builder), "pull", requested], f"pull of {requested}")
        return requested, "given"
    if inspect(DEFAULT_BASE, builder):
        return DEFAULT_BASE, "the Dockerfile's default, in local storage"
    if inspect(debian_base_ref(), builder):
        return debian_base_ref(), f"built earlier from Debian packages ({DEFAULT_BASE} was not in local storage)"
    tool = _pull_tool(builder)
    try:
        result = subprocess.run([tool, "pull", DEFAULT_BASE], capture_output=True, text=True, timeout=60,
                                env=container_env())
        reason = (result.stderr.strip().splitlines() or ["?"])[-1] if result.returncode else ""
    except subprocess.TimeoutExpired:
        reason = "no answer in 60 s"
    if not reason:
        return DEFAULT_BASE, "pulled"
    log(f"the default base {DEFAULT_BASE} cannot be pulled ({reason[:200]}); "
        f"building the base from Debian's packages instead (python3 from {DEBIAN_SUITE})")
    return build_debian_base(builder), "built from Debian packages (the default base cannot be pulled here)"


def _pull_tool(builder: str) -> str:
    return "docker" if builder == "docker" else "podman"


# -- wheels ------------------------------------------------------------------------------------------

def pinned_versions() -> list[str]:
    """The virtualenv's versions (what the tests run), as pip constraints; installers left out."""
    out = subprocess.run([sys.executable, "-m", "pip", "freeze", "--exclude-editable", "--disable-pip-version-check"],
                         capture_output=True, text=True, check=True).stdout
    return sorted(line for line in out.splitlines()
                  if "==" in line and line.split("==")[0].lower() not in ("pip", "setuptools", "wheel",
                                                                           "temporal-mtls-operator"))


def _source_files() -> list[Path]:
    files = [REPO_ROOT / "Dockerfile", REPO_ROOT / "pyproject.toml"]
    for directory in SOURCE_DIRS:
        for path in sorted((REPO_ROOT / directory).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and ".egg-info" not in str(path) \
                    and path.suffix != ".pyc":
                files.append(path)
    return files


def inputs_hash(base_id: str, constraints: list[str], versions: dict[str, str]) -> str:
    """Everything an image is made of. README.md and tools/localkube/ are left out on purpose:
    the wheel carries them, the image does not use them (localkube is removed in the Dockerfile)."""
    digest = hashlib.sha256()
    for part in (RECIPE, base_id, json.dumps(versions, sort_keys=True), *constraints):
        digest.update(part.encode() + b"\0")
    for path in _source_files():
        digest.update(str(path.relative_to(REPO_ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def python_minor(base_ref: str, builder: str) -> str | None:
    """The base's Python minor version, from the Debian base's suite or the official image's env."""
    if base_ref == debian_base_ref():
        return "3.11"
    record = inspect(base_ref, builder) or {}
    for item in (record.get("Config") or {}).get("Env") or []:
        if item.startswith("PYTHON_VERSION="):
            return ".".join(item.split("=", 1)[1].split(".")[:2])
    return None


def build_wheels(constraints: list[str], context: Path) -> None:
    """context/wheelhouse: pip, the project's wheel and every dependency's, built on the host."""
    deps_key = hashlib.sha256("\n".join(constraints).encode()
                              + (REPO_ROOT / "pyproject.toml").read_bytes()).hexdigest()[:16]
    deps = images_dir() / "wheels" / deps_key
    wheelhouse = context / "wheelhouse"
    wheelhouse.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="tmo-wheel-src-") as tmp:
        source = Path(tmp) / "src"  # a copy: setuptools' build/ in the checkout could hold deleted modules
        for name in WHEEL_SOURCES:
            origin = REPO_ROOT / name
            if origin.is_dir():
                shutil.copytree(origin, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
            else:
                source.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, source / name)
        pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "wheel", "--quiet"]
        if not (deps / ".complete").exists():
            started = time.monotonic()
            log("pip wheel: the dependencies' wheels (pinned to the virtualenv's versions)")
            shutil.rmtree(deps, ignore_errors=True)
            constraints_file = Path(tmp) / "constraints.txt"
            constraints_file.write_text("\n".join(constraints) + "\n")
            _run([*pip, "--wheel-dir", str(deps), "-c", str(constraints_file), str(source), "pip", "setuptools>=77"],
                 "pip wheel (dependencies)", env=dict(os.environ))
            for wheel in deps.glob("temporal_mtls_operator-*.whl"):
                wheel.unlink()  # built again below, from the current sources
            (deps / ".complete").touch()
            log(f"dependency wheels built in {time.monotonic() - started:.0f}s")
        # The project's own wheel, offline: setuptools comes from the wheels above.
        _run([*pip, "--no-deps", "--no-index", "--find-links", str(deps), "--wheel-dir", str(wheelhouse),
              str(source)], "pip wheel (project)", env=dict(os.environ))
    for wheel in deps.glob("*.whl"):
        os.link(wheel, wheelhouse / wheel.name)
    pips = sorted(wheelhouse.glob("pip-*.whl"))
    for extra in pips[:-1]:
        extra.unlink()


# -- the server image ----------------------------------------------------------------------------------

def server_inputs_hash(binary: Path, version: str = toolchain.TEMPORAL_MTLS_SERVER_VERSION) -> str:
    """Everything the server image is made of: the binary's bytes, the Containerfile, the files beside it."""
    digest = hashlib.sha256()
    for part in (SERVER_RECIPE, version, (REPO_ROOT / SERVER_CONTAINERFILE).read_text(),
                 json.dumps(SERVER_FILES, sort_keys=True)):
        digest.update(part.encode() + b"\0")
    for path in (binary, CA_BUNDLE):
        if path.is_file():
            with open(path, "rb") as file:
                digest.update(hashlib.file_digest(file, "sha256").digest())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def build_server_image(builder: str, release: toolchain.TemporalRelease = toolchain.TEMPORAL_RELEASES[0],
                       force: bool = False, revision: str = "unknown") -> bool:
    """One release's server image, unless its inputs are unchanged; True if it was built now."""
    ref = server_image_ref(release.version)
    try:
        # Built when not cached (about 1-2 min after make tools).
        binary = toolchain.path_of(toolchain.server_tool_name(release))
    except toolchain.ToolError as error:
        raise ImageBuildError(f"{ref}: {error}") from None
    digest = server_inputs_hash(binary, release.version)
    record = inspect(ref, builder)
    if not force and record and labels(record).get(INPUTS_LABEL) == digest:
        return False
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tmo-server-context-") as tmp:
        context = Path(tmp)
        shutil.copyfile(binary, context / "temporal-server")
        (context / "temporal-server").chmod(0o755)
        for name, content in SERVER_FILES.items():
            (context / name).parent.mkdir(parents=True, exist_ok=True)
            (context / name).write_text(content)
        if CA_BUNDLE.is_file():
            (context / "etc/ssl/certs").mkdir(parents=True)
            shutil.copyfile(CA_BUNDLE, context / "etc/ssl/certs/ca-certificates.crt")
        for path in context.rglob("*"):
            path.chmod(0o755 if path.is_dir() or path.name == "temporal-server" else 0o644)
        argv = [builder, "build" if builder != "buildah" else "bud", "--file", str(REPO_ROOT / SERVER_CONTAINERFILE),
                "--tag", ref, "--label", f"{INPUTS_LABEL}={digest}",
                "--build-arg", f"VERSION={release.version}", "--build-arg", f"REVISION={revision}"]
        if builder == "buildah":
            argv += ["--pull=never", "--isolation", "chroot", "--runtime", "runc"]
        elif builder == "podman":
            argv += ["--pull=never", "--runtime", "runc"]
        _run([*argv, str(context)], f"{builder} build of {ref}")
    log(f"built {ref} in {time.monotonic() - started:.0f}s (inputs {digest})")
    return True


# -- the build ---------------------------------------------------------------------------------------

def build(base: str = "auto", builder: str | None = None, force: bool = False) -> dict[str, dict]:
    started = time.monotonic()
    builder = choose_builder(builder)
    if builder != "docker":
        ensure_packages()  # runc, podman: the local node runs these images with them
    refs = image_refs()
    versions = {name: ref.rsplit(":", 1)[1] for name, ref in refs.items()}
    base_ref, how = choose_base(base, builder)
    base_record = inspect(base_ref, builder) or {}
    constraints = pinned_versions()
    digest = inputs_hash(base_record.get("Id", base_ref), constraints, versions)
    revision = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                              text=True).stdout.strip() or "unknown"
    server_built = any([build_server_image(builder, release, force, revision)  # a list: build every one
                        for release in toolchain.TEMPORAL_RELEASES])
    current = {name: inspect(ref, builder) for name, ref in refs.items()}
    if not force and all(r and labels(r).get(INPUTS_LABEL) == digest for r in current.values()):
        if server_built:
            _prune(builder)
        log(f"up to date (inputs {digest}, base {base_ref}: {how}); checked in {time.monotonic() - started:.1f}s")
        return _report(refs, builder, cached=True, server_cached=not server_built)
    log(f"building with {builder} (inputs {digest}); base {base_ref}: {how}")
    minor = python_minor(base_ref, builder)
    host_minor = f"{sys.version_info.major}.{sys.version_info.minor}"
    with tempfile.TemporaryDirectory(prefix="tmo-image-context-") as tmp:
        if minor == host_minor:
            context = Path(tmp)
            build_wheels(constraints, context)
        else:  # wheels built here would not fit the base's Python: the build makes them (needs PyPI)
            log(f"the base has Python {minor}, this host {host_minor}: the build fetches wheels itself")
            context = REPO_ROOT
        for name, ref in refs.items():
            step = time.monotonic()
            argv = [builder, "build" if builder != "buildah" else "bud", "--file", str(REPO_ROOT / "Dockerfile"),
                    "--target", name, "--tag", ref, "--label", f"{INPUTS_LABEL}={digest}",
                    "--build-arg", f"BASE_IMAGE={base_ref}", "--build-arg", f"VERSION={versions[name]}",
                    "--build-arg", f"REVISION={revision}"]
            if builder == "buildah":
                argv += ["--layers", "--pull=never", "--isolation", "chroot", "--runtime", "runc"]
            elif builder == "podman":
                argv += ["--layers", "--pull=never", "--runtime", "runc"]
            _run([*argv, str(context)], f"{builder} build of {ref}")
            log(f"built {ref} in {time.monotonic() - step:.0f}s")
    _prune(builder)
    log(f"done in {time.monotonic() - started:.0f}s")
    return _report(refs, builder, cached=False, server_cached=not server_built)


def _prune(builder: str) -> None:
    if builder != "docker":
        # Images a rebuild replaced, and their intermediate layers, are untagged and childless now:
        # without this every source change would leave about 250 MB behind (120 MB for the server image).
        subprocess.run(["podman", "image", "prune", "--force"], capture_output=True, env=container_env())


def _report(refs: dict[str, str], builder: str, cached: bool, server_cached: bool) -> dict[str, dict]:
    result = {}
    servers = {f"temporal-server:{ref.rsplit(':', 1)[1]}": ref for ref in server_image_refs()}
    for name, ref in [*refs.items(), *servers.items()]:
        if name in servers:
            cached = server_cached
        record = inspect(ref, builder) or {}
        size = int(record.get("Size") or 0)
        result[name] = {"ref": ref, "id": record.get("Id", "")[:12], "size_mb": round(size / 1e6, 1), "cached": cached}
        print(f"{ref:52} {result[name]['id']:12} {size / 1e6:7.1f} MB")
    return result


def kind_load(cluster: str) -> None:
    """Load the images (three Python ones, each release's server) into a kind cluster (kind on PATH): docker's
    store, or an archive."""
    for ref in [*image_refs().values(), *server_image_refs()]:
        if _docker_engine():
            subprocess.run(["kind", "load", "docker-image", ref, "--name", cluster], check=True)
            continue
        with tempfile.TemporaryDirectory() as tmp:
            archive = Path(tmp) / "image.tar"
            _run(["podman", "save", "--format", "docker-archive", "-o", str(archive), ref], f"podman save {ref}")
            subprocess.run(["kind", "load", "image-archive", str(archive), "--name", cluster], check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localkube.images_build", description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", default="build", choices=("build", "kind-load"))
    parser.add_argument("--base", default=os.environ.get("TMO_IMAGE_BASE", "auto"),
                        help="auto (default base if present or pullable, else Debian), debian, or an image reference")
    parser.add_argument("--builder", choices=("buildah", "podman", "docker"), help="default: buildah if present")
    parser.add_argument("--force", action="store_true", help="build even if the inputs did not change")
    parser.add_argument("--name", default="kind", help="kind cluster name (kind-load)")
    args = parser.parse_args(argv)
    try:
        if args.command == "kind-load":
            kind_load(args.name)
        else:
            build(args.base, args.builder, args.force)
    except ImageBuildError as error:
        print(f"images: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
