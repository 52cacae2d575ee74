"""The test-cluster guard refuses every kubeconfig that is not a local test cluster's."""

from __future__ import annotations

import base64

import pytest
import yaml

from localkube.guard import NotALocalTestCluster, assert_local_test_cluster
from localkube.pki import new_ca


def _kubeconfig(tmp_path, *, context="localkube-x", server="https://127.0.0.1:6443", ca: bytes = b""):
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "current-context": context,
        "contexts": [{"name": context, "context": {"cluster": "c", "user": "u"}}],
        "clusters": [{"name": "c", "cluster": {"server": server,
                                                "certificate-authority-data": base64.b64encode(ca).decode()}}],
    }))
    return path


@pytest.fixture
def serving_ca(tmp_path):
    cert_path, _ = new_ca("test").write(tmp_path, "ca")
    return cert_path


def test_accepts_the_local_cluster(tmp_path, serving_ca):
    path = _kubeconfig(tmp_path, ca=serving_ca.read_bytes())
    assert assert_local_test_cluster(path, serving_ca) == "localkube-x"


@pytest.mark.parametrize("changes, message", [
    ({"context": "prod-aks"}, "is not a localkube test cluster"),
    ({"server": "https://my-aks.hcp.westeurope.azmk8s.io:443"}, "not at loopback"),
    ({"server": "https://10.0.0.1:6443"}, "not at loopback"),
    ({"ca": b"-----BEGIN CERTIFICATE-----\nother\n"}, "does not trust"),
])
def test_refuses_anything_else(tmp_path, serving_ca, changes, message):
    kwargs = {"ca": serving_ca.read_bytes(), **changes}
    with pytest.raises(NotALocalTestCluster, match=message):
        assert_local_test_cluster(_kubeconfig(tmp_path, **kwargs), serving_ca)
