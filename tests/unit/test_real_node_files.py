"""The real node's pure parts: names, configuration files, image archives and which tools `make tools` builds."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import yaml

from localkube import toolchain
from localkube.kubelet_node import configs
from localkube.kubelet_node.layout import NodeLayout
from localkube.kubelet_node.oci_archive import ImageFile, ImageSpec, write


def test_the_node_namespace_keeps_its_name_scripts_enter(tmp_path):
    # `ip netns exec lk<6 hex of sha256(state dir)>-node`: the name scripts and docs have used since the first node
    digest = hashlib.sha256(str(tmp_path).encode()).hexdigest()[:6]
    assert NodeLayout(tmp_path).netns == f"lk{digest}-node" and NodeLayout(tmp_path).cgroup == f"lk{digest}"


def test_kubelet_config_answers_this_machines_obstacles(tmp_path):
    layout = NodeLayout(tmp_path)
    config = yaml.safe_load(configs.kubelet_yaml(layout, tmp_path / "ca.crt", "10s"))
    assert config["oomScoreAdj"] == 0 and config["protectKernelDefaults"] is True
    assert config["cgroupRoot"] == f"/{layout.cgroup}" and config["cgroupDriver"] == "cgroupfs"
    assert config["syncFrequency"] == "10s" and config["clusterDNS"] == ["10.96.0.10"]
    assert all(str(tmp_path) in config[k] for k in ("podLogsDir", "resolvConf"))
    # a socket path has at most 104 bytes: containerd's is in the node's private /run/containerd
    assert config["containerRuntimeEndpoint"] == "unix:///run/containerd/containerd.sock"


def test_containerd_and_cni_keep_their_state_under_the_state_dir(tmp_path):
    layout = NodeLayout(tmp_path)
    toml = configs.containerd_toml(layout)
    assert "restrict_oom_score_adj = true" in toml and "nri.v1.nri']\n    disable = true" in toml
    paths = [line.split("'")[1] for line in toml.splitlines() if "'/" in line]
    assert paths and all(p.startswith((str(tmp_path), "/usr/sbin", "/usr/lib/cni", "/run/containerd/")) for p in paths)
    cni = json.loads(configs.cni_conflist(layout))
    assert cni["plugins"][0]["ipam"]["dataDir"].startswith(str(tmp_path))


def test_kube_proxy_leaves_host_wide_settings_alone(tmp_path):
    config = yaml.safe_load(configs.kube_proxy_yaml(NodeLayout(tmp_path)))
    assert config["nodePortAddresses"] == ["primary"] and config["conntrack"]["maxPerCore"] == 0


def test_an_image_archive_names_its_image_and_its_layer_digest_matches(tmp_path):
    (tmp_path / "prog").write_bytes(b"#!/bin/sh\necho hi\n")
    spec = ImageSpec("docker.io/example/app:1", (ImageFile("usr/bin/app", tmp_path / "prog", mode=0o755),
                                                 ImageFile("bin/sh", link_to="busybox")),
                     entrypoint=("/usr/bin/app",), user="1000:1000")
    archive = tmp_path / "app.tar"
    write(spec, archive)
    with tarfile.open(archive) as tar:
        index = json.load(tar.extractfile("index.json"))
        entry = index["manifests"][0]
        assert entry["annotations"]["io.containerd.image.name"] == "docker.io/example/app:1"
        blob = lambda digest: tar.extractfile(f"blobs/sha256/{digest.split(':')[1]}").read()  # noqa: E731
        manifest = json.loads(blob(entry["digest"]))
        config = json.loads(blob(manifest["config"]["digest"]))
        layer = blob(manifest["layers"][0]["digest"])
    assert config["rootfs"]["diff_ids"] == [f"sha256:{hashlib.sha256(layer).hexdigest()}"]
    assert config["config"]["Entrypoint"] == ["/usr/bin/app"] and config["config"]["User"] == "1000:1000"
    with tarfile.open(fileobj=__import__("io").BytesIO(layer)) as files:
        assert files.getmember("usr/bin/app").mode == 0o755 and files.getmember("bin/sh").issym()
    write(spec, tmp_path / "again.tar")
    assert (tmp_path / "again.tar").read_bytes() == archive.read_bytes()  # same input, same image


def test_the_node_tools_are_built_by_a_plain_make_tools():
    node = {t.name for t in toolchain.NODE_TOOLS}
    assert node == {"kubelet", "containerd", "coredns", "pause"}
    assert all(toolchain.wanted_by_default(t) for t in toolchain.NODE_TOOLS)
    assert toolchain.override_variable("containerd-shim-runc-v2") == "TMO_CONTAINERD_SHIM_RUNC_V2"
