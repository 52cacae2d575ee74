"""Tool pins, cache layout and user overrides (no builds here)."""

from __future__ import annotations

import pytest

from localkube import toolchain


def test_every_binary_has_an_override_variable():
    assert toolchain.override_variable("kube-apiserver") == "TMO_KUBE_APISERVER"
    assert toolchain.override_variable("lowkey-vault-app.jar") == "TMO_LOWKEY_VAULT_APP_JAR"
    names = [toolchain.override_variable(b) for b in toolchain.BINARY_TO_TOOL]
    assert len(names) == len(set(names))


def test_a_users_binary_is_used_as_it_is(tmp_path, monkeypatch):
    helm = tmp_path / "helm"
    helm.write_text("#!/bin/sh\n")
    monkeypatch.setenv("TMO_HELM", str(helm))
    monkeypatch.setenv("TMO_CACHE_DIR", str(tmp_path / "empty-cache"))
    assert toolchain.path_of("helm") == helm
    assert not (tmp_path / "empty-cache").exists()  # nothing was built


def test_a_missing_override_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TMO_ETCD", str(tmp_path / "nope"))
    with pytest.raises(toolchain.ToolError, match="TMO_ETCD=.* is not a file"):
        toolchain.path_of("etcd")


def test_cache_is_keyed_by_version(tmp_path, monkeypatch):
    monkeypatch.setenv("TMO_CACHE_DIR", str(tmp_path))
    tool = toolchain.BINARY_TO_TOOL["kube-apiserver"]
    assert tool.home == tmp_path / "tools" / f"kubernetes-{toolchain.KUBERNETES_VERSION}"


def test_kubernetes_staging_modules_are_pinned_to_the_matching_minor():
    recipe = toolchain.BINARY_TO_TOOL["kube-apiserver"].recipe
    assert recipe.replaces["k8s.io/client-go"] == "k8s.io/client-go@v0.37.2"
    assert "gitVersion=v1.37.2" in recipe.ldflags


def test_node_dns_answers_service_names_and_nothing_else():
    import struct

    from localkube.node.dns import answer

    def query(name: str, qtype: int = 1) -> bytes:
        labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
        return struct.pack("!HHHHHH", 42, 0x0100, 1, 0, 0, 0) + labels + b"\0" + struct.pack("!HH", qtype, 1)

    known = {"web.apps.svc.cluster.local": "10.96.0.9"}
    found = answer(query("web.apps.svc.cluster.local"), known.get)
    assert found[:2] == b"\x00\x2a" and found[3] & 0x0F == 0 and found[-4:] == bytes([10, 96, 0, 9])
    missing = answer(query("example.com"), known.get)
    assert missing[3] & 0x0F == 3 and struct.unpack("!H", missing[6:8])[0] == 0  # NXDOMAIN, no answer
    ipv6 = answer(query("web.apps.svc.cluster.local", 28), known.get)
    assert ipv6[3] & 0x0F == 0 and struct.unpack("!H", ipv6[6:8])[0] == 0  # NODATA for AAAA
