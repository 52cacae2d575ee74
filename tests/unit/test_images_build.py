"""make images (localkube.images_build), without a cluster."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
import yaml

from localkube import images_build

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

