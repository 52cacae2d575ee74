"""Leader election on a ``coordination.k8s.io/v1`` Lease, with client-go's semantics (tools/leaderelection).

The chart runs two operator pods; only the one holding the Lease runs kopf (handlers, timers, daemons). The other
waits in :meth:`Elector.acquire`, answering the chart's probes itself, and runs nothing else.

- A standby takes the Lease when its holder is empty (released) or when the record it last saw (resourceVersion) has
  not changed for ``leaseDurationSeconds`` of the standby's own monotonic clock (no clock comparison across pods).
- The leader renews every ``retry_period``. It has lost the Lease, and the process exits at once (os._exit: no
  handler thread gets another request out), when another holder is seen or when ``renew_deadline`` has passed since
  its last successful renew. ``renew_deadline < lease_duration``: it stops before any standby can take over.
- Every write of the operator (kube.py) passes :func:`writing`: a write after the renew deadline ends the process
  instead of reaching the API server. That covers a frozen leader (SIGSTOP, a stalled node) that wakes up: its
  monotonic clock has moved on, so its first write attempt exits. Writes in flight are counted, and a graceful
  stop (SIGTERM: kopf returns) waits for them, then releases the Lease (holder empty, like client-go's
  ``ReleaseOnCancel``) so the standby takes over within one retry period.
- The holder identity is the pod name; ``temporal_mtls_operator_leader`` is 1 on the leader, 0 on a standby.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http.server
import logging
import os
import random
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlsplit

from . import metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Timing:
    """client-go's defaults (and its checks): lease 15 s, renew deadline 10 s, retry every 2 s."""

    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not self.lease_duration > self.renew_deadline:
            raise ValueError(f"leaseDurationSeconds ({self.lease_duration}) must be greater than "
                             f"renewDeadlineSeconds ({self.renew_deadline})")
        if not self.renew_deadline > 1.2 * self.retry_period:
            raise ValueError(f"renewDeadlineSeconds ({self.renew_deadline}) must be greater than 1.2 x "
                             f"retryPeriodSeconds ({self.retry_period})")
        if self.retry_period < 1 or self.lease_duration != int(self.lease_duration):
            raise ValueError("retryPeriodSeconds must be at least 1 and leaseDurationSeconds a whole number")


class Conflict(Exception):
    """The Lease changed since it was read (409), or someone created it first."""


class NotLeader(RuntimeError):
    """A write was attempted without holding the Lease (only raised where ``on_lost`` does not end the process)."""


@dataclass
class Record:
    """The Lease as the election sees it."""

    holder: str
    lease_duration: int
    acquire_time: dt.datetime | None
    renew_time: dt.datetime | None
    transitions: int
    resource_version: str = ""


class LeaseApi:
    """get/create/replace of one Lease through the kubernetes client (CoordinationV1Api)."""

    def __init__(self, namespace: str, name: str, api_client=None, timeout: float = 5.0,
                 user_agent: str = "") -> None:
        from kubernetes import client, config  # noqa: PLC0415
        if api_client is None:
            config.load_config()
            api_client = client.ApiClient()
        if user_agent:
            api_client.user_agent = user_agent
        self.namespace, self.name, self.timeout = namespace, name, timeout
        self._client = client
        self._api = client.CoordinationV1Api(api_client)

    def get(self) -> Record | None:
        from kubernetes.client.rest import ApiException  # noqa: PLC0415
        try:
            lease = self._api.read_namespaced_lease(self.name, self.namespace, _request_timeout=self.timeout)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        spec = lease.spec
        return Record(spec.holder_identity or "", spec.lease_duration_seconds or 0, spec.acquire_time,
                      spec.renew_time, spec.lease_transitions or 0, lease.metadata.resource_version)

    def _body(self, record: Record):
        c = self._client
        return c.V1Lease(metadata=c.V1ObjectMeta(name=self.name, namespace=self.namespace,
                                                  resource_version=record.resource_version or None),
                         spec=c.V1LeaseSpec(holder_identity=record.holder,
                                            lease_duration_seconds=record.lease_duration,
                                            acquire_time=record.acquire_time, renew_time=record.renew_time,
                                            lease_transitions=record.transitions))

    def _call(self, method, *args) -> Record:
        from kubernetes.client.rest import ApiException  # noqa: PLC0415
        try:
            lease = method(*args, _request_timeout=self.timeout)
        except ApiException as error:
            if error.status == 409:
                raise Conflict(error.reason) from None
            raise
        return Record(lease.spec.holder_identity or "", lease.spec.lease_duration_seconds or 0,
                      lease.spec.acquire_time, lease.spec.renew_time, lease.spec.lease_transitions or 0,
                      lease.metadata.resource_version)

    def create(self, record: Record) -> Record:
        return self._call(self._api.create_namespaced_lease, self.namespace, self._body(record))

    def replace(self, record: Record) -> Record:
        """An update with the read resourceVersion as precondition: a concurrent change is a Conflict."""
        return self._call(self._api.replace_namespaced_lease, self.name, self.namespace, self._body(record))


def _exit_now(reason: str) -> None:
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            handler.flush()
    os._exit(1)  # the kubelet restarts the container: it comes back as a standby


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Elector:
    def __init__(self, api, identity: str, timing: Timing = Timing(), *, clock: Callable[[], float] = time.monotonic,
                 now: Callable[[], dt.datetime] = _utcnow, sleep: Callable[[float], None] = time.sleep,
                 on_lost: Callable[[str], None] = _exit_now) -> None:
        self.api, self.identity, self.timing = api, identity, timing
        self._clock, self._now, self._sleep, self._on_lost = clock, now, sleep, on_lost
        self._observed: Record | None = None
        self._observed_at = 0.0       # when (our monotonic clock) the observed record last changed
        self._renewed_at = -float("inf")  # when the last successful acquire/renew was sent
        self._leading = self._stopping = self._lost = False
        self._inflight = 0
        self._cond = threading.Condition()
        metrics.leader.set(0)

    # -- one round, like client-go's tryAcquireOrRenew -------------------------------------------------------------

    def try_acquire_or_renew(self) -> bool:
        sent, wall = self._clock(), self._now()
        mine = Record(self.identity, int(self.timing.lease_duration), wall, wall, 0)
        current = self.api.get()
        if current is None:
            try:
                self._observe(self.api.create(mine), sent)
            except Conflict:
                return False
            self._renewed_at = sent
            return True
        if self._observed is None or current.resource_version != self._observed.resource_version:
            self._observe(current, self._clock())
        if (current.holder and current.holder != self.identity
                and self._observed_at + (current.lease_duration or self.timing.lease_duration) > self._clock()):
            return False  # held by someone else, and not expired as far as we have seen
        if current.holder == self.identity:
            mine.acquire_time, mine.transitions = current.acquire_time, current.transitions
        else:
            mine.transitions = current.transitions + 1
        mine.resource_version = current.resource_version
        try:
            self._observe(self.api.replace(mine), sent)
        except Conflict:
            return False
        self._renewed_at = sent
        return True

    def _observe(self, record: Record, at: float) -> None:
        self._observed, self._observed_at = record, at

    @property
    def holder(self) -> str:
        """Who holds the Lease as last seen ('' when released or never seen)."""
        return self._observed.holder if self._observed else ""

    # -- standby ---------------------------------------------------------------------------------------------------

    def acquire(self) -> None:
        """Block until this process holds the Lease (client-go's acquire loop, jittered retries)."""
        log.info("standby: waiting for Lease %s/%s as %s", self.api.namespace, self.api.name, self.identity)
        seen = None
        while True:
            try:
                if self.try_acquire_or_renew():
                    break
            except Exception as error:  # noqa: BLE001 (unreachable API server: keep trying)
                log.warning("standby: cannot read or take the Lease: %s", error)
            if self.holder != seen:
                seen = self.holder
                log.info("standby: the Lease is held by %s", seen or "nobody")
            self._sleep(self.timing.retry_period * (1 + 0.2 * random.random()))
        with self._cond:
            self._leading = True
        metrics.leader.set(1)
        log.info("leader: acquired Lease %s/%s as %s (transitions %d)", self.api.namespace, self.api.name,
                 self.identity, self._observed.transitions if self._observed else 0)

    # -- leader ----------------------------------------------------------------------------------------------------

    def leading(self) -> bool:
        """Holding the Lease right now: renewed within the renew deadline, not stopping, not lost."""
        return (self._leading and not self._stopping and not self._lost
                and self._clock() - self._renewed_at < self.timing.renew_deadline)

    def renew_once(self) -> bool:
        """One renew round; False once the Lease is lost (``on_lost`` has been called)."""
        if self._stopping or self._lost:
            return not self._lost
        try:
            renewed = self.try_acquire_or_renew()
        except Exception as error:  # noqa: BLE001
            log.warning("leader: renewing the Lease failed: %s", error)
            renewed = False
        if renewed and self._clock() - self._renewed_at < self.timing.renew_deadline:
            return True
        if self.holder and self.holder != self.identity:
            return self.lose(f"the Lease is held by {self.holder}")
        if self._clock() - self._renewed_at >= self.timing.renew_deadline:
            return self.lose(f"not renewed within the renew deadline ({self.timing.renew_deadline:g}s)")
        return True  # a failed round within the deadline: the next one may succeed

    def lose(self, reason: str) -> bool:
        with self._cond:
            if self._lost:
                return False
            self._lost, self._leading = True, False
        metrics.leader.set(0)
        log.critical("leader: lost Lease %s/%s (%s): exiting at once, without another write", self.api.namespace,
                     self.api.name, reason)
        self._on_lost(reason)
        return False

    def renew_forever(self) -> None:
        while not self._stopping and not self._lost:
            self._sleep(self.timing.retry_period)
            # A process frozen (SIGSTOP) past its deadline notices here, before renewing.
            if not self._stopping and self._clock() - self._renewed_at >= self.timing.renew_deadline:
                self.lose(f"not renewed within the renew deadline ({self.timing.renew_deadline:g}s)")
                return
            self.renew_once()

    def start_renewing(self) -> threading.Thread:
        thread = threading.Thread(target=self.renew_forever, name="lease-renewer", daemon=True)
        thread.start()
        return thread

    @contextlib.contextmanager
    def writing(self):
        """Around one write: refused (the process exits) unless the Lease is held; counted while in flight."""
        with self._cond:
            if not self.leading():
                if not self._stopping:
                    self.lose("a write was attempted after the renew deadline")
                raise NotLeader(f"{self.identity} does not hold the Lease: write refused")
            self._inflight += 1
        try:
            yield
        finally:
            with self._cond:
                self._inflight -= 1
                self._cond.notify_all()

    def release(self, wait: float = 10.0) -> bool:
        """Graceful stop: refuse new writes, wait for those in flight, then empty the holder (if still ours)."""
        with self._cond:
            was_leading = self._leading and not self._lost
            self._stopping = True
            self._cond.wait_for(lambda: self._inflight == 0, wait)
        metrics.leader.set(0)
        if not was_leading or self._clock() - self._renewed_at >= self.timing.renew_deadline:
            return False
        try:
            current = self.api.get()
            if current is None or current.holder != self.identity:
                return False
            wall = self._now()
            self.api.replace(Record("", 1, wall, wall, current.transitions, current.resource_version))
        except Exception as error:  # noqa: BLE001 (the standby takes over when the Lease expires)
            log.warning("leader: releasing the Lease failed: %s", error)
            return False
        log.info("leader: released Lease %s/%s", self.api.namespace, self.api.name)
        return True


# -- the process-wide election (main.py) and the write guard kube.py uses -------------------------------------------

current: Elector | None = None


@contextlib.contextmanager
def writing():
    if current is None:  # no election (make run, tests): every write goes ahead
        yield
    else:
        with current.writing():
            yield


def from_environment() -> Elector | None:
    """The chart sets TMO_LEADER_ELECTION_LEASE (and the timings); unset or empty: no election."""
    name = os.environ.get("TMO_LEADER_ELECTION_LEASE", "").strip()
    if not name:
        return None
    namespace = os.environ.get("TMO_LEADER_ELECTION_NAMESPACE", "").strip() or _own_namespace()
    identity = os.environ.get("TMO_POD_NAME", "").strip() or os.uname().nodename
    timing = Timing(float(os.environ.get("TMO_LEASE_DURATION_SECONDS", "15")),
                    float(os.environ.get("TMO_RENEW_DEADLINE_SECONDS", "10")),
                    float(os.environ.get("TMO_RETRY_PERIOD_SECONDS", "2")))
    # A request may take at most half the margin the renew deadline leaves: a late answer never outlives the lease.
    api = LeaseApi(namespace, name, timeout=max(1.0, min(timing.retry_period, timing.renew_deadline / 2)),
                   user_agent=f"temporal-mtls-operator/{identity}")
    return Elector(api, identity, timing)


def _own_namespace() -> str:
    path = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        sys.exit("TMO_LEADER_ELECTION_LEASE is set but neither TMO_LEADER_ELECTION_NAMESPACE nor " + path)


@contextlib.contextmanager
def standby_health(liveness_endpoint: str | None):
    """While waiting for the Lease, answer the chart's probes (kopf's endpoint runs only on the leader)."""
    if not liveness_endpoint:
        yield
        return
    url = urlsplit(liveness_endpoint)

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            ok = self.path.split("?")[0] == (url.path or "/")
            self.send_response(200 if ok else 404)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"standby\n" if ok else b"")

        def log_message(self, *args):  # not a line per probe
            pass

    class Server(http.server.ThreadingHTTPServer):
        allow_reuse_address = daemon_threads = True  # kopf binds the same port once this one closes

    server = Server((url.hostname or "0.0.0.0", url.port or 80), Health)
    thread = threading.Thread(target=server.serve_forever, name="standby-health", daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
