"""Every image a pod of the real node runs, as OCI archives in the tool cache, imported into containerd.

Ours (`make images`, buildah's storage) are exported with `buildah push oci-archive:`. The third-party ones are
written from the cache's own builds (oci_archive.py), one layer each; what differs from upstream is said per image.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from pathlib import Path
from typing import Callable

from .. import images_build, toolchain
from ..paths import cache_dir, cache_lock
from .layout import SANDBOX_IMAGE
from .oci_archive import ImageFile, ImageSpec, write

RECIPE = "1"  # bump when an image below changes shape
COREDNS_IMAGE = f"registry.k8s.io/coredns/coredns:v{toolchain.COREDNS_VERSION}"
UI_VERSION = "2.55.0"
_PASSWD = ImageFile("etc/passwd", content=b"root:x:0:0:root:/root:/sbin/nologin\n"
                                          b"nobody:x:65534:65534:nobody:/:/sbin/nologin\n")
_GROUP = ImageFile("etc/group", content=b"root:x:0:\nnobody:x:65534:\n")


def archive_dir() -> Path:
    return cache_dir() / "images" / "node"


def pause_image() -> ImageSpec:
    # Upstream: the same pause.c, built statically, uid 65535. Same here.
    return ImageSpec(SANDBOX_IMAGE, (ImageFile("pause", toolchain.path_of("pause"), mode=0o755),),
                     entrypoint=("/pause",), user="65535:65535")


def coredns_image() -> ImageSpec:
    # Upstream: distroless static (nonroot user, CA bundle). Here: the binary alone, run as root (port 53 needs
    # no NET_BIND_SERVICE then); there is no upstream resolver to need CA certificates.
    return ImageSpec(COREDNS_IMAGE, (ImageFile("coredns", toolchain.path_of("coredns"), mode=0o755), _PASSWD, _GROUP),
                     entrypoint=("/coredns",))


def ui_image() -> ImageSpec:
    # Upstream (alpine): /home/ui-server/{ui-server, config/docker.yaml, start-ui-server.sh}, ENTRYPOINT the script,
    # which execs `./ui-server --env docker start`. Here: no shell nor alpine, the entrypoint is that exec itself.
    home = toolchain.path_of("temporal-ui-server").parent.parent
    return ImageSpec(
        f"docker.io/temporalio/ui:{UI_VERSION}",
        (ImageFile("home/ui-server/ui-server", home / "bin" / "temporal-ui-server", mode=0o755),
         ImageFile("home/ui-server/config/docker.yaml", home / "config" / "docker.yaml"),
         ImageFile("etc/ssl/certs/ca-certificates.crt", images_build.CA_BUNDLE), _PASSWD, _GROUP),
        entrypoint=("./ui-server", "--env", "docker", "start"), working_dir="/home/ui-server", user="1000:1000")


def busybox_image() -> ImageSpec:
    # Upstream: a static busybox 1.37 with every applet in /bin, CMD sh. Here: Debian's busybox-static (bookworm's
    # 1.35) with the applets it lists, under the name the tests use.
    applets = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True, check=True).stdout.split()
    return ImageSpec("docker.io/library/busybox:1.37",
                     (ImageFile("bin/busybox", Path("/bin/busybox"), mode=0o755),
                      *(ImageFile(f"bin/{a}", link_to="busybox") for a in applets if a != "busybox"), _PASSWD, _GROUP),
                     cmd=("sh",))


# busybox applets an admin-tools container may call (upstream is alpine, whose shell is busybox too).
_APPLETS = ("sh", "cp", "cat", "ls", "env", "mkdir", "echo", "sleep", "tail", "test", "[", "grep", "sed", "rm",
            "mv", "chmod", "id", "true", "false", "printf", "head", "wc", "tr", "cut", "date", "hostname")


def admin_tools_image(release: toolchain.TemporalRelease = toolchain.TEMPORAL_RELEASES[0]) -> ImageSpec:
    # Upstream (alpine): the temporal CLI, temporal-sql-tool and the SQL schemas under /etc/temporal/schema, and
    # more (tctl, cassandra/elasticsearch tools) that nothing here uses. Here: busybox's shell, the CLI, the SQL tool
    # of that release and, for the first release, the PostgreSQL schema files (the operator's Job uses the tool's
    # embedded ones, --schema-name); command `tail -f /dev/null` as upstream's (the operator always sets one).
    first = release == toolchain.TEMPORAL_RELEASES[0]
    sql_tool = toolchain.path_of("temporal-sql-tool" if first else f"temporal-sql-tool-{release.minor}")
    sql_home = sql_tool.parent.parent
    schema = [ImageFile(f"etc/temporal/schema/{f.relative_to(sql_home / 'schema')}", f)
              for f in sorted((sql_home / "schema").rglob("*")) if f.is_file()] if first else []
    return ImageSpec(
        f"docker.io/temporalio/admin-tools:{release.version}",
        (ImageFile("bin/busybox", Path("/bin/busybox"), mode=0o755),
         *(ImageFile(f"bin/{a}", link_to="busybox") for a in _APPLETS),
         ImageFile("usr/local/bin/temporal", toolchain.path_of("temporal"), mode=0o755),
         ImageFile("usr/local/bin/temporal-sql-tool", sql_tool, mode=0o755),
         *schema, ImageFile("etc/ssl/certs/ca-certificates.crt", images_build.CA_BUNDLE), _PASSWD, _GROUP),
        cmd=("tail", "-f", "/dev/null"))


LOWKEY_VAULT_VERSION = "7.3.74"


def lowkey_vault_archive(log: Callable[[str], None]) -> Path:
    """nagyesta/lowkey-vault: Java needs glibc, so this one is layered with buildah on the Debian base of
    `make images` (committed straight to an archive).

    Upstream: eclipse-temurin JRE (alpine), /lowkey-vault.jar, ENTRYPOINT sh -c 'java ${JAVA_OPTS} -jar
    /lowkey-vault.jar ${LOWKEY_ARGS}'. Here: the same entrypoint and jar path; the JDK of TMO_JAVA_HOME (Temurin 25)
    at upstream's /opt/java/openjdk on Debian bookworm (dash as sh).
    """
    jar, java_home = toolchain.path_of("lowkey-vault.jar"), toolchain.java_home()
    toolchain.java_binary()  # one line when the JDK is missing
    reference = f"docker.io/nagyesta/lowkey-vault:{LOWKEY_VAULT_VERSION}"
    base = images_build.build_debian_base("buildah")
    key = hashlib.sha256(f"{RECIPE}:{base}:{jar.stat().st_mtime_ns}:{jar.stat().st_size}:{java_home}".encode())
    archive = archive_dir() / f"{_slug(reference)}-{key.hexdigest()[:12]}.tar"
    if archive.exists():
        return archive
    log(f"[node images] {reference}: buildah from {base} + {java_home} + {jar.name}")
    env = images_build.container_env()
    run = lambda *argv: subprocess.run(["buildah", *argv], check=True, capture_output=True, text=True,  # noqa: E731
                                       env=env).stdout.strip()
    container = run("from", "--pull=never", base)
    try:
        run("copy", container, str(java_home), "/opt/java/openjdk")
        run("copy", "--chmod", "0644", container, str(jar), "/lowkey-vault.jar")
        run("config", "--env", "JAVA_HOME=/opt/java/openjdk",
            "--env", "PATH=/opt/java/openjdk/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--entrypoint", '["sh", "-c", "java ${JAVA_OPTS} -jar /lowkey-vault.jar ${LOWKEY_ARGS}"]', "--cmd", "",
            container)
        archive.parent.mkdir(parents=True, exist_ok=True)
        partial = archive.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        run("commit", "--quiet", container, f"oci-archive:{partial}:{reference}")
        partial.rename(archive)
        _drop_older(archive)
    finally:
        subprocess.run(["buildah", "rm", container], capture_output=True, env=env)
    return archive


POSTGRES_BINDIR = Path(f"/usr/lib/postgresql/{toolchain.POSTGRES_MAJOR}/bin")
_POSTGRES_TREES = (Path(f"/usr/lib/postgresql/{toolchain.POSTGRES_MAJOR}"),
                   Path(f"/usr/share/postgresql/{toolchain.POSTGRES_MAJOR}"), Path("/usr/share/zoneinfo"))
_POSTGRES_APPLETS = ("sh", "id", "mkdir", "chmod", "mktemp", "cat", "echo", "printf", "ls", "rm")


def _shared_libraries(binaries: list[Path]) -> set[str]:
    """Every library the dynamic loader resolves for these (ldd), the loader itself included."""
    found: set[str] = set()
    for binary in binaries:
        out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True).stdout
        for line in out.splitlines():
            parts = line.split()
            path = parts[2] if "=>" in parts and len(parts) > 2 else parts[0] if parts and parts[0].startswith("/") \
                else ""
            if path.startswith("/"):
                found.add(path)
    return found


def postgres_image() -> ImageSpec:
    # Upstream (Debian bookworm): postgresql-15 at /usr/lib/postgresql/15/bin, user postgres (uid 999),
    # ENTRYPOINT docker-entrypoint.sh, CMD postgres, PGDATA /var/lib/postgresql/data. Here: Debian's same
    # postgresql-15 files from this machine (apt-get installed by make tools) with their libraries (ldd), busybox as
    # sh, glibc's getent and libnss-wrapper for a uid without an entry, and tools/localkube/postgres-entrypoint.sh
    # (the official entrypoint in short: POSTGRES_PASSWORD/USER/DB, initdb on an empty PGDATA, args to postgres).
    bindir = toolchain.postgres_bindir()
    tree_files = [f for tree in _POSTGRES_TREES for f in sorted(tree.rglob("*")) if f.is_file() or f.is_symlink()]
    elf = [f for f in tree_files if f.suffix == ".so" or f.parent == bindir]
    libraries = _shared_libraries([*elf, Path("/usr/bin/getent"), toolchain._NSS_WRAPPER])
    files = [ImageFile(str(f).lstrip("/"), link_to=os.readlink(f)) if f.is_symlink() else
             ImageFile(str(f).lstrip("/"), f, mode=0o755 if os.access(f, os.X_OK) else 0o644) for f in tree_files]
    files += [ImageFile(lib.lstrip("/"), Path(lib).resolve(), mode=0o755) for lib in sorted(libraries)
              if not any(lib.startswith(str(t)) for t in _POSTGRES_TREES)]
    entrypoint = Path(__file__).resolve().parent.parent / "postgres-entrypoint.sh"
    return ImageSpec(
        "docker.io/library/postgres:15",
        (*files, ImageFile("usr/bin/getent", Path("/usr/bin/getent"), mode=0o755),
         ImageFile(str(toolchain._NSS_WRAPPER).lstrip("/"), toolchain._NSS_WRAPPER, mode=0o755),
         ImageFile("bin/busybox", Path("/bin/busybox"), mode=0o755),
         *(ImageFile(f"bin/{a}", link_to="busybox") for a in _POSTGRES_APPLETS),
         ImageFile("usr/local/bin/docker-entrypoint.sh", content=entrypoint.read_bytes(), mode=0o755),  # any clone
         ImageFile("etc/passwd", content=_PASSWD.content + b"postgres:x:999:999:PostgreSQL:/var/lib/postgresql:/bin/sh\n"),
         ImageFile("etc/group", content=_GROUP.content + b"postgres:x:999:\n"),
         ImageFile("var/lib/postgresql/.keep", content=b""), ImageFile("var/run/postgresql/.keep", content=b"")),
        entrypoint=("sh", "/usr/local/bin/docker-entrypoint.sh", str(bindir)), cmd=("postgres",),
        env=(f"PATH={bindir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
             "LD_LIBRARY_PATH=/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu",
             "PGDATA=/var/lib/postgresql/data", "LANG=C.UTF-8"))


def python_archive(log: Callable[[str], None]) -> Path:
    """python:3.11-slim (tests and chart hooks run it): the Debian bookworm base of `make images` (python3 3.11)
    with upstream's `python` name. Upstream builds CPython into /usr/local; here Debian's python3, no pip."""
    reference = "docker.io/library/python:3.11-slim"
    base = images_build.build_debian_base("buildah")
    archive = archive_dir() / f"{_slug(reference)}-{hashlib.sha256(f'{RECIPE}:{base}'.encode()).hexdigest()[:12]}.tar"
    if archive.exists():
        return archive
    log(f"[node images] {reference}: {base} + /usr/local/bin/python")
    env = images_build.container_env()
    run = lambda *argv: subprocess.run(["buildah", *argv], check=True, capture_output=True, text=True,  # noqa: E731
                                       env=env).stdout.strip()
    container = run("from", "--pull=never", base)
    try:
        root = Path(run("mount", container))
        (root / "usr/local/bin").mkdir(parents=True, exist_ok=True)
        (root / "usr/local/bin/python").symlink_to("/usr/bin/python3")
        run("umount", container)
        run("config", "--cmd", '["python3"]', container)
        archive.parent.mkdir(parents=True, exist_ok=True)
        partial = archive.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        run("commit", "--quiet", container, f"oci-archive:{partial}:{reference}")
        partial.rename(archive)
        _drop_older(archive)
    finally:
        subprocess.run(["buildah", "rm", container], capture_output=True, env=env)
    return archive


def temporal_server_image(release: toolchain.TemporalRelease = toolchain.TEMPORAL_RELEASES[0]) -> ImageSpec:
    # Upstream (alpine): /usr/local/bin/temporal-server, tctl, dockerize, /etc/temporal/entrypoint.sh rendering a
    # config template, user temporal (uid 1000). Here, as our server image (server/Containerfile): the cached stock
    # build at the same path, the CA bundle, uid 1000, workdir /etc/temporal; no shell, entrypoint script or
    # template (the operator always gives the command and a rendered config file).
    return ImageSpec(
        f"docker.io/temporalio/server:{release.version}",
        (ImageFile("usr/local/bin/temporal-server", toolchain.path_of(
            "temporal-server" if release == toolchain.TEMPORAL_RELEASES[0] else f"temporal-server-{release.minor}"),
            mode=0o755),
         ImageFile("etc/ssl/certs/ca-certificates.crt", images_build.CA_BUNDLE),
         ImageFile("etc/passwd", content=_PASSWD.content + b"temporal:x:1000:1000:temporal:/etc/temporal:/sbin/nologin\n"),
         ImageFile("etc/group", content=_GROUP.content + b"temporal:x:1000:\n"),
         ImageFile("etc/temporal/.keep", content=b"")),
        entrypoint=("/usr/local/bin/temporal-server",), cmd=("start",), user="1000:1000", working_dir="/etc/temporal")


THIRD_PARTY: tuple[Callable[[], ImageSpec], ...] = (
    pause_image, coredns_image, ui_image, busybox_image, admin_tools_image, postgres_image, temporal_server_image,
    *(lambda release=release: admin_tools_image(release) for release in toolchain.TEMPORAL_RELEASES[1:]),
    *(lambda release=release: temporal_server_image(release) for release in toolchain.TEMPORAL_RELEASES[1:]))


def _slug(reference: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "_", reference)


def _drop_older(archive: Path) -> None:
    """One archive per image name: an image rebuilt (new ID or inputs) replaces its older archive."""
    stem = archive.name.rsplit("-", 1)[0]
    for older in archive.parent.glob(f"{stem}-*.tar"):
        if older != archive and older.name.rsplit("-", 1)[0] == stem:
            older.unlink(missing_ok=True)


def _spec_key(spec: ImageSpec) -> str:
    """Changes with the recipe and with any file's identity (tool dirs are immutable per version)."""
    digest = hashlib.sha256(RECIPE.encode() + repr(spec).encode())
    for item in spec.files:
        if item.source:
            stat = item.source.stat()
            digest.update(f"{item.source}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:12]


def built_archive(spec: ImageSpec, log: Callable[[str], None]) -> Path:
    archive = archive_dir() / f"{_slug(spec.reference)}-{_spec_key(spec)}.tar"
    if not archive.exists():
        log(f"[node images] {spec.reference}: writing {archive.name}")
        write(spec, archive)
        _drop_older(archive)
    return archive


def exported_archive(reference: str, log: Callable[[str], None]) -> Path | None:
    """An image of `make images` as an OCI archive, re-exported only when its image ID changed; None if not built."""
    env = images_build.container_env()
    found = subprocess.run(["buildah", "images", "--noheading", "--no-trunc", "--format", "{{.ID}}", reference],
                           capture_output=True, text=True, env=env)
    image_id = found.stdout.split()[0].split(":")[-1][:12] if found.returncode == 0 and found.stdout.strip() else ""
    if not image_id:
        log(f"[node images] {reference}: not in local storage (make images builds it)")
        return None
    archive = archive_dir() / f"{_slug(reference)}-{image_id}.tar"
    if not archive.exists():
        log(f"[node images] {reference}: buildah push oci-archive:{archive.name}")
        archive.parent.mkdir(parents=True, exist_ok=True)
        partial = archive.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        subprocess.run(["buildah", "push", "--quiet", "--disable-compression", reference,
                        f"oci-archive:{partial}:{reference}"], check=True, capture_output=True, env=env)
        partial.rename(archive)
        _drop_older(archive)
    return archive


def all_archives(log: Callable[[str], None] = print) -> list[Path]:
    """What the node imports before its kubelet starts: the third-party images, then ours."""
    with cache_lock("node-images"):  # one writer of an archive at a time
        return _archives(log)


def _archives(log: Callable[[str], None]) -> list[Path]:
    archives = []
    for make in THIRD_PARTY:
        try:
            archives.append(built_archive(make(), log))
        except toolchain.ToolError as error:  # e.g. the UI server not built: that image is simply absent
            log(f"[node images] skipped: {error}")
    for layered in (lowkey_vault_archive, python_archive):  # on the Debian base, with buildah
        try:
            archives.append(layered(log))
        except (toolchain.ToolError, images_build.ImageBuildError, subprocess.CalledProcessError) as error:
            log(f"[node images] {layered.__name__.removesuffix('_archive')} skipped: {str(error)[:300]}")
    for reference in [*images_build.image_refs().values(), *images_build.server_image_refs()]:
        archive = exported_archive(reference, log)
        if archive:
            archives.append(archive)
    return archives
