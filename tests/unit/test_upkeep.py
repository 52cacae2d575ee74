"""When a settled resource is reconciled again: only when something calls for it."""

from __future__ import annotations

from temporal_mtls_operator.upkeep import Upkeep, frontend_trust, parse_time


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_settled_resource_waits_for_its_resync_and_anything_else_is_due_at_once():
    clock = Clock()
    upkeep = Upkeep(clock=clock, rng=lambda: 0.5, resync=600)
    assert upkeep.due("a", ready=True)  # never reconciled by this process
    upkeep.reconciled("a", ("uid", "ca-1", None, "720h"))
    token = ("uid", "ca-1", None, "720h")
    assert not upkeep.due("a", ready=True, token=token, now=1000.0, renew_at=2000.0)
    assert upkeep.due("a", ready=False, token=token)  # retries while not Ready
    assert upkeep.due("a", ready=True, token=("uid", "ca-2", None, "720h"))  # a new frontend CA
    assert upkeep.due("a", ready=True, token=("uid", "ca-1", "TrustingNewCA", "720h"))  # a rotation phase
    assert upkeep.due("a", ready=True, token=token, now=2000.0, renew_at=2000.0)  # the renewal window
    clock.now = 599.0
    assert not upkeep.due("a", ready=True, token=token, now=0.0)
    clock.now = 600.0
    assert upkeep.due("a", ready=True, token=token, now=0.0)  # the slow resync
    upkeep.forget("a")
    clock.now = 0.0
    assert upkeep.due("a", ready=True, token=token, now=0.0)


def test_resyncs_of_resources_created_together_spread_out():
    clock = Clock()
    spread = iter([0.0, 1.0])
    upkeep = Upkeep(clock=clock, rng=lambda: next(spread), resync=600)
    upkeep.reconciled("a")
    upkeep.reconciled("b")
    clock.now = 451.0
    assert upkeep.due("a", ready=True) and not upkeep.due("b", ready=True)


def test_frontend_trust_and_status_times():
    cluster = {"metadata": {"uid": "u1"}, "spec": {"mtls": {"renewBefore": "24h"}},
               "status": {"certificates": {"frontend-ca": {"sha256Fingerprint": "AB"}},
                          "caRotation": {"frontend": {"phase": "ReissuingLeaves"}}}}
    assert frontend_trust(cluster) == ("u1", "AB", "ReissuingLeaves", "24h")
    assert frontend_trust(None) == ()
    assert parse_time("1970-01-02T00:00:00Z") == 86400.0
    assert parse_time("soon") is None and parse_time(None) is None
