"""Leader election (leader.py) with a fake clock and an in-memory Lease: the cases a real API server cannot produce
on demand (a renew deadline passing, a frozen leader waking up, a conflicting write between read and update).
tests/cluster/test_operator_ha.py runs the real thing: two pods, a real Lease, a deleted and a frozen leader."""

from __future__ import annotations

import copy
import datetime as dt

import pytest

from temporal_mtls_operator import leader, metrics
from temporal_mtls_operator.leader import Conflict, Elector, NotLeader, Record, Timing


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds

    def wall(self) -> dt.datetime:
        return dt.datetime(2026, 12, 2, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=self.t)


class FakeLeases:
    """One Lease with resourceVersion preconditions, like the API server's optimistic concurrency."""

    namespace, name = "ops", "tmo-leader"

    def __init__(self) -> None:
        self.record: Record | None = None
        self.version = 0
        self.down = False  # every call fails (API server unreachable)
        self.writes: list[tuple[str, str]] = []  # (verb, holder)

    def _check(self) -> None:
        if self.down:
            raise ConnectionError("API server unreachable")

    def _store(self, record: Record, verb: str) -> Record:
        self.version += 1
        self.record = copy.copy(record)
        self.record.resource_version = str(self.version)
        self.writes.append((verb, record.holder))
        return copy.copy(self.record)

    def get(self) -> Record | None:
        self._check()
        return copy.copy(self.record) if self.record else None

    def create(self, record: Record) -> Record:
        self._check()
        if self.record is not None:
            raise Conflict("AlreadyExists")
        return self._store(record, "create")

    def replace(self, record: Record) -> Record:
        self._check()
        if self.record is None or record.resource_version != self.record.resource_version:
            raise Conflict("the object has been modified")
        return self._store(record, "update")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def leases() -> FakeLeases:
    return FakeLeases()


def elector(leases, clock, identity: str, lost: list | None = None, timing: Timing = Timing()) -> Elector:
    return Elector(leases, identity, timing, clock=clock, now=clock.wall, sleep=clock.sleep,
                   on_lost=(lost if lost is not None else []).append)


def test_the_first_takes_a_missing_lease_and_the_second_waits(leases, clock):
    a, b = elector(leases, clock, "tmo-a"), elector(leases, clock, "tmo-b")
    assert a.try_acquire_or_renew()
    assert leases.record.holder == "tmo-a" and leases.record.lease_duration == 15
    assert leases.record.transitions == 0
    assert not b.try_acquire_or_renew() and b.holder == "tmo-a"
    clock.sleep(2)
    assert a.try_acquire_or_renew()  # renewals keep it
    clock.sleep(14)
    assert not b.try_acquire_or_renew()  # b saw a renewal 14 s ago: not expired
    assert leases.writes == [("create", "tmo-a"), ("update", "tmo-a")]


def test_a_standby_takes_over_only_after_lease_duration_without_a_change(leases, clock):
    a, b = elector(leases, clock, "tmo-a"), elector(leases, clock, "tmo-b")
    a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()  # b first sees the record now (t0)
    clock.sleep(14.9)
    assert not b.try_acquire_or_renew()
    clock.sleep(0.2)  # 15.1 s of b's own clock without a change
    assert b.try_acquire_or_renew()
    assert leases.record.holder == "tmo-b" and leases.record.transitions == 1
    # The renewTime a standby sees is never compared with its clock: a leader whose clock is far ahead keeps the lease.
    a2 = elector(leases, clock, "tmo-c")
    leases.record.renew_time = clock.wall() + dt.timedelta(days=1)
    assert not a2.try_acquire_or_renew()


def test_acquire_blocks_until_the_holder_releases_and_then_takes_it_within_a_retry_period(leases, clock):
    a, b = elector(leases, clock, "tmo-a"), elector(leases, clock, "tmo-b")
    a.acquire()
    assert a.leading() and metrics.leader._value.get() == 1
    a.try_acquire_or_renew()
    assert a.release()
    assert leases.record.holder == "" and leases.record.lease_duration == 1
    started = clock()
    b.acquire()
    assert clock() - started < 2.5 and leases.record.holder == "tmo-b"  # at once (the first try), not after 15 s
    assert leases.record.transitions == 1


def test_a_restarted_container_of_the_holder_takes_its_own_lease_back_at_once(leases, clock):
    elector(leases, clock, "tmo-a").try_acquire_or_renew()
    again = elector(leases, clock, "tmo-a")  # same pod name, new process: the old one has exited
    assert again.try_acquire_or_renew() and leases.record.transitions == 0


def test_renew_deadline_passing_loses_the_lease_before_any_standby_can_take_it(leases, clock):
    lost: list[str] = []
    a, b = elector(leases, clock, "tmo-a", lost), elector(leases, clock, "tmo-b")
    a.acquire()
    assert not b.try_acquire_or_renew()
    leases.down = True  # the leader cannot reach the API server; the standby (elsewhere) still can
    for _ in range(4):
        clock.sleep(2)
        assert a.renew_once() and a.leading()  # failed rounds within the deadline
    clock.sleep(2)  # 10 s since the last renew
    assert not a.renew_once() and not a.leading()
    assert lost == ["not renewed within the renew deadline (10s)"]
    assert metrics.leader._value.get() == 0
    leases.down = False
    # 10 s after the last renew the leader has stopped; the standby takes over only after 15 s.
    assert not b.try_acquire_or_renew()
    clock.sleep(5.1)
    assert b.try_acquire_or_renew()


def test_another_holder_seen_loses_the_lease_at_once(leases, clock):
    lost: list[str] = []
    a = elector(leases, clock, "tmo-a", lost)
    a.acquire()
    leases.record.holder = "tmo-b"  # taken (someone judged it expired)
    leases.version += 1
    leases.record.resource_version = str(leases.version)
    clock.sleep(2)
    assert not a.renew_once()
    assert lost == ["the Lease is held by tmo-b"]
    with pytest.raises(NotLeader):
        with a.writing():
            pytest.fail("a write after losing the lease")


def test_a_conflicting_update_between_read_and_write_is_not_a_renewal(leases, clock):
    lost: list[str] = []
    a = elector(leases, clock, "tmo-a", lost)
    a.acquire()
    real = leases.replace

    def racing(record):
        leases.record.holder, leases.record.resource_version = "tmo-b", "99"  # b wrote after a's read
        leases.version = 99
        return real(record)

    leases.replace = racing
    clock.sleep(2)
    assert not a.try_acquire_or_renew()
    leases.replace = real
    assert not a.renew_once() and lost == ["the Lease is held by tmo-b"]


def test_a_frozen_leader_that_wakes_up_writes_nothing(leases, clock):
    """SIGSTOP: no thread runs, the monotonic clock goes on. On SIGCONT the first write attempt ends the process,
    whichever thread runs first, and so does the renewer's first look at the clock."""
    lost: list[str] = []
    a = elector(leases, clock, "tmo-a", lost)
    a.acquire()
    with a.writing():
        pass  # a write while leading goes ahead
    clock.sleep(17)  # frozen
    with pytest.raises(NotLeader):
        with a.writing():
            pytest.fail("a write after the renew deadline")
    assert lost == ["a write was attempted after the renew deadline"]
    assert leases.writes == [("create", "tmo-a")]  # and it did not renew either

    lost2: list[str] = []
    b = elector(FakeLeases(), clock, "tmo-b", lost2)
    b.acquire()
    clock.sleep(11)  # frozen inside the renewer's sleep
    b.renew_forever()
    assert lost2 == ["not renewed within the renew deadline (10s)"]
    assert b.api.writes == [("create", "tmo-b")]


def test_release_waits_for_writes_in_flight_and_refuses_new_ones(leases, clock):
    a = elector(leases, clock, "tmo-a")
    a.acquire()
    order = []
    with a.writing():
        order.append("write in flight")
        a._cond.wait_for = lambda predicate, timeout: order.append(f"release waits ({a._inflight})") or True
        a.release()
    assert order == ["write in flight", "release waits (1)"]
    assert leases.record.holder == ""
    with pytest.raises(NotLeader):
        with a.writing():
            pass


def test_release_leaves_a_lease_someone_else_holds(leases, clock):
    a = elector(leases, clock, "tmo-a")
    a.acquire()
    leases.record.holder = "tmo-b"
    assert not a.release() and leases.record.holder == "tmo-b"


def test_no_election_means_every_write_goes_ahead(monkeypatch):
    monkeypatch.setattr(leader, "current", None)
    with leader.writing():
        pass
    monkeypatch.delenv("TMO_LEADER_ELECTION_LEASE", raising=False)
    assert leader.from_environment() is None


@pytest.mark.parametrize("timing, message", [
    ((10, 10, 2), "must be greater than renewDeadlineSeconds"),
    ((15, 2, 2), "must be greater than 1.2 x"),
    ((15.5, 10, 2), "whole number"),
])
def test_timings_follow_client_go_checks(timing, message):
    with pytest.raises(ValueError, match=message):
        Timing(*timing)


def test_standby_health_answers_the_probe_path_and_frees_the_port():
    import socket
    import urllib.error
    import urllib.request
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with leader.standby_health(f"http://127.0.0.1:{port}/healthz"):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
            assert answer.status == 200 and answer.read() == b"standby\n"
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/other", timeout=5)
    with socket.socket() as again:  # kopf's liveness endpoint takes the port next
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))
