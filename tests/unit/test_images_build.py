"""make images (localkube.images_build) and the node's image runtime (localkube.node.oci), without a cluster."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
import yaml

from localkube import images_build
from localkube.node import oci
from localkube.node.containers import ConfigError
from localkube.node.pods import PodWorker

REPO = Path(__file__).resolve().parents[2]


def test_tags_are_the_charts_defaults():
    refs = images_build.image_refs()
    operator_values = yaml.safe_load((REPO / "charts/temporal-mtls-operator/values.yaml").read_text())
    hello_values = yaml.safe_load((REPO / "charts/temporal-hello-world/values.yaml").read_text())
    operator_chart = yaml.safe_load((REPO / "charts/temporal-mtls-operator/Chart.yaml").read_text())
    hello_chart = yaml.safe_load((REPO / "charts/temporal-hello-world/Chart.yaml").read_text())
    assert refs["operator"] == f"{operator_values['image']['repository']}:{operator_chart['appVersion']}"
    assert refs["worker"] == f"{hello_values['worker']['image']['repository']}:{hello_chart['appVersion']}"
    assert refs["starter"] == f"{hello_values['starter']['image']['repository']}:{hello_chart['appVersion']}"
    assert not operator_values["image"]["tag"] and not hello_values["worker"]["image"]["tag"]  # appVersion


def test_dockerfile_targets_base_and_user():
    text = (REPO / "Dockerfile").read_text()
    stages = re.findall(r"^FROM \S+ AS (\S+)$", text, re.M)
    assert {"operator", "worker", "starter"} <= set(stages)
    assert f"ARG BASE_IMAGE={images_build.DEFAULT_BASE}" in text
    assert re.search(r"^USER 1000:1000$", text, re.M)
    for label in ("source", "version", "licenses", "revision"):
        assert f"org.opencontainers.image.{label}=" in text
    # every entry point runs without a shell (exec form)
    assert len(re.findall(r'^ENTRYPOINT \["/opt/tmo/bin/python", "-m", "temporal_\w+"\]$', text, re.M)) == 3


def test_dockerignore_passes_only_the_distribution():
    lines = [l for l in (REPO / ".dockerignore").read_text().splitlines() if l and not l.startswith("#")]
    assert lines[0] == "*"
    assert "!pyproject.toml" in lines and "!operator/" in lines and "!wheelhouse/" in lines
    assert not any(l.startswith("!tests") or l.startswith("!.localkube") for l in lines)


def test_inputs_hash_follows_sources(tmp_path, monkeypatch):
    for name in ("Dockerfile", "pyproject.toml"):
        shutil.copy(REPO / name, tmp_path / name)
    for directory in images_build.SOURCE_DIRS:
        (tmp_path / directory / "pkg").mkdir(parents=True)
        (tmp_path / directory / "pkg" / "__init__.py").write_text("x = 1\n")
    monkeypatch.setattr(images_build, "REPO_ROOT", tmp_path)
    first = images_build.inputs_hash("base", ["a==1"], {"operator": "0.1.0"})
    assert images_build.inputs_hash("base", ["a==1"], {"operator": "0.1.0"}) == first
    (tmp_path / "worker" / "pkg" / "__pycache__").mkdir()
    (tmp_path / "worker" / "pkg" / "__pycache__" / "m.pyc").write_bytes(b"junk")
    assert images_build.inputs_hash("base", ["a==1"], {"operator": "0.1.0"}) == first  # bytecode is no input
    (tmp_path / "worker" / "pkg" / "__init__.py").write_text("x = 2\n")
    changed = images_build.inputs_hash("base", ["a==1"], {"operator": "0.1.0"})
    assert changed != first
    assert images_build.inputs_hash("other-base", ["a==1"], {"operator": "0.1.0"}) != changed
    assert images_build.inputs_hash("base", ["a==2"], {"operator": "0.1.0"}) != changed
    assert images_build.inputs_hash("base", ["a==1"], {"operator": "0.2.0"}) != changed


def test_debian_base_tag_follows_its_recipe(monkeypatch):
    first = images_build.debian_base_ref()
    assert first.startswith("localhost/temporal-mtls-operator/python-base:bookworm-")
    monkeypatch.setattr(images_build, "MMDEBSTRAP_ARGS", (*images_build.MMDEBSTRAP_ARGS, "--include=curl"))
    assert images_build.debian_base_ref() != first


def test_missing_packages_without_apt_say_what_to_install(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(images_build.os, "geteuid", lambda: 1000)
    with pytest.raises(images_build.ImageBuildError, match="apt-get install podman buildah"):
        images_build.ensure_packages()


# -- the node's side ---------------------------------------------------------------------------------

@pytest.fixture
def image(tmp_path) -> oci.Image:
    top, bottom = tmp_path / "top", tmp_path / "bottom"
    (bottom / "etc").mkdir(parents=True)
    (bottom / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n")
    (bottom / "etc/group").write_text("root:x:0:\napp:x:1000:\nextra:x:2000:\n")
    top.mkdir()
    return oci.Image(ref="example/app:1", id="abc", entrypoint=["/opt/bin/app"], cmd=["--serve"],
                     env=["PATH=/opt/bin:/usr/bin", "LANG=C.UTF-8", "MODE=image"], user="app",
                     working_dir="/srv", layers=[str(top), str(bottom)])


def worker(tmp_path, container: dict, pod_security: dict | None = None) -> PodWorker:
    pod = {"metadata": {"name": "p", "namespace": "ns", "uid": "0123456789ab-cdef"},
           "spec": {"containers": [container], "securityContext": pod_security or {}}}
    w = PodWorker.__new__(PodWorker)
    w.pod, w.netns, w.pod_ip = pod, "lkx-p0123", "10.244.0.9"
    w.volumes, w.pod_dir = {}, tmp_path / "node/pods/ns_p_uid"
    w.pod_dir.mkdir(parents=True, exist_ok=True)
    w.sources = None
    w.service_env = lambda namespace, links: {}
    return w


def test_command_and_args_follow_kubernetes_rules(tmp_path, image):
    def argv(**container):
        c = {"name": "c", "image": image.ref, **container}
        return oci.plan(worker(tmp_path, c), c, image, tmp_path / "runc").argv

    assert argv() == ["/opt/bin/app", "--serve"]
    assert argv(args=["--once"]) == ["/opt/bin/app", "--once"]
    assert argv(command=["python", "-c", "1"]) == ["python", "-c", "1"]  # CMD is dropped too
    assert argv(command=["echo"], args=["$(MODE)", "$$(MODE)"]) == ["echo", "image", "$(MODE)"]


def test_env_user_and_security_from_image_and_pod(tmp_path, image):
    container = {"name": "c", "image": image.ref, "env": [{"name": "MODE", "value": "pod"}],
                 "securityContext": {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                                     "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}}
    plan = oci.plan(worker(tmp_path, container, {"fsGroup": 3000}), container, image, tmp_path / "runc")
    assert plan.env["PATH"] == "/opt/bin:/usr/bin"  # the image's, not the node's virtualenv PATH
    assert plan.env["MODE"] == "pod" and plan.env["HOME"] == "/home/app" and plan.env["HOSTNAME"] == "p"
    assert (plan.run_as_user, plan.run_as_group, plan.supplemental_groups) == (1000, 1000, [3000])
    assert plan.working_dir == "/srv" and plan.read_only_root
    config = oci.runtime_config({**plan.__dict__, "scratch": str(tmp_path / "b")}, "/rootfs")
    assert config["root"] == {"path": "/rootfs", "readonly": True}
    assert config["process"]["noNewPrivileges"] is True
    assert config["process"]["capabilities"]["bounding"] == ["CAP_NET_BIND_SERVICE"]
    assert config["process"]["capabilities"]["effective"] == []  # non-root
    assert config["process"]["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [3000]}
    namespaces = {n["type"]: n.get("path") for n in config["linux"]["namespaces"]}
    assert namespaces["network"] == "/run/netns/lkx-p0123" and "pid" not in namespaces
    targets = [m["destination"] for m in config["mounts"]]
    assert "/etc/hosts" in targets and "/etc/resolv.conf" in targets


def test_run_as_user_overrides_image_user(tmp_path, image):
    container = {"name": "c", "image": image.ref}
    plan = oci.plan(worker(tmp_path, container, {"runAsUser": 0}), container, image, tmp_path / "runc")
    assert (plan.run_as_user, plan.run_as_group, plan.env["HOME"]) == (0, 0, "/root")
    root_image = oci.Image(**{**image.__dict__, "user": ""})
    with pytest.raises(ConfigError, match="runAsNonRoot and image will run as root"):
        oci.plan(worker(tmp_path, container, {"runAsNonRoot": True}), container, root_image, tmp_path / "runc")
    unknown = oci.Image(**{**image.__dict__, "user": "nobody-here"})
    with pytest.raises(ConfigError, match="not found in its /etc/passwd"):
        oci.plan(worker(tmp_path, container), container, unknown, tmp_path / "runc")


def test_disabled_by_environment(monkeypatch):
    monkeypatch.setenv("LOCALKUBE_RUN_IMAGES", "0")
    assert oci.LocalImages().lookup("ghcr.io/temporal-mtls-operator/operator:0.1.0") is None


# -- the server image ----------------------------------------------------------------------------------

def test_server_image_recipe():
    assert images_build.server_image_ref() == "ghcr.io/temporal-mtls-operator/temporal-server:1.31.4"
    text = (REPO / images_build.SERVER_CONTAINERFILE).read_text()
    assert re.search(r"^FROM scratch$", text, re.M) and re.search(r"^USER 1000:1000$", text, re.M)
    assert "COPY temporal-server /usr/local/bin/temporal-server" in text  # the stock image's path
    assert 'ENTRYPOINT ["/usr/local/bin/temporal-server"]' in text and "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" in text
    for label in ("source", "version", "licenses", "revision"):
        assert f"org.opencontainers.image.{label}=" in text
    assert "temporal:x:1000:1000:" in images_build.SERVER_FILES["etc/passwd"]


def test_server_inputs_hash_follows_the_binary_and_the_recipe(tmp_path, monkeypatch):
    (tmp_path / "server").mkdir()
    (tmp_path / images_build.SERVER_CONTAINERFILE).write_text("FROM scratch\n")
    monkeypatch.setattr(images_build, "REPO_ROOT", tmp_path)
    monkeypatch.setattr(images_build, "CA_BUNDLE", tmp_path / "ca.crt")
    binary = tmp_path / "temporal-mtls-server"
    binary.write_bytes(b"\x7fELF one")
    first = images_build.server_inputs_hash(binary)
    assert images_build.server_inputs_hash(binary) == first
    binary.write_bytes(b"\x7fELF two")
    second = images_build.server_inputs_hash(binary)
    assert second != first
    (tmp_path / "ca.crt").write_text("bundle")
    third = images_build.server_inputs_hash(binary)
    assert third != second
    (tmp_path / images_build.SERVER_CONTAINERFILE).write_text("FROM scratch\nUSER 1\n")
    assert images_build.server_inputs_hash(binary) != third


def test_server_image_runs_its_own_binary_under_runc(tmp_path):
    """From local storage the container's PATH is the image's: a bare temporal-server is /usr/local/bin's."""
    layer = tmp_path / "layer"
    (layer / "etc").mkdir(parents=True)
    (layer / "etc/passwd").write_text(images_build.SERVER_FILES["etc/passwd"])
    server = oci.Image(ref=images_build.server_image_ref(), id="abc", entrypoint=["/usr/local/bin/temporal-server"],
                       cmd=["start"], env=["PATH=/usr/local/bin"], user="1000:1000", working_dir="/etc/temporal",
                       layers=[str(layer)])
    container = {"name": "temporal", "image": server.ref,
                 "command": ["temporal-server", "--config-file", "/etc/temporal/config/config.yaml",
                             "--allow-no-auth", "start", "--service", "frontend"],
                 "securityContext": {"readOnlyRootFilesystem": True, "runAsNonRoot": True, "runAsUser": 1000,
                                     "runAsGroup": 1000, "allowPrivilegeEscalation": False,
                                     "capabilities": {"drop": ["ALL"]}}}
    plan = oci.plan(worker(tmp_path, container), container, server, tmp_path / "runc")
    assert plan.argv[0] == "temporal-server" and plan.env["PATH"] == "/usr/local/bin"
    assert (plan.run_as_user, plan.run_as_group, plan.read_only_root) == (1000, 1000, True)
    assert plan.env["HOME"] == "/etc/temporal"


def test_an_exec_probe_finds_runc_whatever_path_the_image_sets():
    # The probe runs with the container's environment; a scratch image's PATH does not reach the host's runc.
    prefix = oci.exec_prefix({"runc_root": "/run/x", "id": "c1"})
    assert os.path.isabs(prefix[0]) and prefix[1:] == ["--root", "/run/x", "exec", "c1"]
