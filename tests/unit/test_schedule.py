"""The Key Vault sync schedule: interval with jitter, exponential backoff capped at the interval, Retry-After."""

from temporal_mtls_operator.sources.schedule import SyncSchedule


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_new_resource_is_due_and_a_synced_one_waits_its_interval_with_jitter():
    clock = Clock()
    early, late = SyncSchedule(clock, rng=lambda: 0.0), SyncSchedule(clock, rng=lambda: 1.0)
    assert early.due("a")
    early.synced("a", 100)
    late.synced("a", 100)
    clock.now = 89.9
    assert not early.due("a")
    clock.now = 90.0
    assert early.due("a") and not late.due("a")  # -10 % and +10 %
    clock.now = 110.0
    assert late.due("a")


def test_failures_back_off_exponentially_up_to_the_interval_and_never_before_retry_after():
    clock = Clock()
    schedule = SyncSchedule(clock)
    assert [schedule.failed("a", 30) for _ in range(5)] == [5, 10, 20, 30, 30]
    assert schedule.failed("b", 300, retry_after=120) == 120
    schedule.synced("b", 300)
    assert schedule.failed("b", 300) == 5  # a success resets the backoff


def test_expedite_makes_it_due_at_once():
    clock = Clock()
    schedule = SyncSchedule(clock)
    schedule.synced("a", 300)
    assert not schedule.due("a")
    schedule.expedite("a")
    assert schedule.due("a")


def test_the_last_failure_is_kept_until_a_sync_succeeds():
    clock = Clock()
    schedule = SyncSchedule(clock)
    error = RuntimeError("vault down")
    schedule.failed("a", 60, error=error)
    assert schedule.last_error("a") is error
    schedule.synced("a", 60)
    assert schedule.last_error("a") is None
