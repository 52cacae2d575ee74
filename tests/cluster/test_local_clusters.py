"""Several clusters run side by side on free ports, and `down` leaves no process behind."""

from __future__ import annotations

import json
import os
import shutil
import uuid

import pytest

from localkube.control_plane import ControlPlane
from localkube.guard import assert_local_test_cluster
from localkube.paths import state_root

pytestmark = pytest.mark.cluster


def test_a_second_cluster_runs_beside_the_first_and_stops_without_leftovers(local_cluster, kubectl):
    second = ControlPlane(state_root() / f"pytest-second-{uuid.uuid4().hex[:6]}")
    try:
        second.up()
        ports = [json.loads((c.state_dir / "ports.json").read_text()) for c in (local_cluster, second)]
        assert not set(ports[0].values()) & set(ports[1].values())
        assert assert_local_test_cluster(second.kubeconfig, second.pki_dir / "serving-ca.crt") == second.context
        pids = list(second.running().values())
        assert len(pids) == 4
    finally:
        killed = second.down()
    assert killed == [], f"ignored SIGTERM: {killed}"
    assert second.running() == {}
    assert not [pid for pid in pids if os.path.exists(f"/proc/{pid}")]
    # the first cluster is untouched
    assert kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"
    shutil.rmtree(second.state_dir)
