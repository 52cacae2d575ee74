"""kopf settings: our own finalizer and progress annotations, Events for warnings only."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading

import kopf

from . import leader, metrics
from .api import GROUP, MANAGED_BY


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_) -> None:
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
    settings.posting.level = logging.WARNING
    # Sync handlers wait mostly on the API server: more threads than the default 6 keep bursts (500 clients) moving.
    settings.execution.max_workers = 16
    # The API server ends watches after a minute; the client gives up on a silent stream a bit later,
    # so a connection lost somewhere in between never leaves the operator deaf.
    settings.watching.server_timeout = 60
    settings.watching.client_timeout = 90
    settings.watching.connect_timeout = 10
    # Only the operator's own Secrets reach it (handlers/secrets.py): the API server filters, nothing else is sent.
    settings.watching.label_selectors["v1", "secrets"] = f"app.kubernetes.io/managed-by={MANAGED_BY}"
    # A per-object worker keeps its last event (a whole Secret, ~10 kB) until it idles out: 500 new clients' Secrets
    # held for kopf's default 5 s left the operator ~20 MiB larger (bench/scale.py); 1 s drops them sooner.
    settings.queueing.idle_timeout = 1.0


def run() -> None:
    from . import handlers  # noqa: F401  (registers the handlers)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # not a line per probe
    # The chart sets TMO_WATCH_NAMESPACES to the namespaces its Roles cover; unset or empty: cluster-wide.
    namespaces = [n.strip() for n in os.environ.get("TMO_WATCH_NAMESPACES", "").split(",") if n.strip()]
    # The chart's liveness and readiness probes GET /healthz; TMO_LIVENESS_ENDPOINT="" turns it off (local runs).
    liveness = os.environ.get("TMO_LIVENESS_ENDPOINT", "http://0.0.0.0:8080/healthz") or None
    # Prometheus scrapes :8081/metrics (the chart's metrics Service); TMO_METRICS_PORT="" turns it off.
    port = os.environ.get("TMO_METRICS_PORT", "8081")
    if port:
        metrics.serve(int(port))
    # Two replicas (the chart's default): only the holder of the Lease runs kopf; a standby waits here, answering
    # the probes, and runs no handler. Unset TMO_LEADER_ELECTION_LEASE (make run, tests): no election.
    election = leader.from_environment()
    # standalone: kopf's own peering is off; the Lease below is what keeps a second operator from handling.
    options = dict(standalone=True, clusterwide=not namespaces, namespaces=namespaces, liveness_endpoint=liveness)
    if election is None:
        kopf.run(**options)
        return
    with leader.standby_health(liveness):
        election.acquire()
    leader.current = election
    election.start_renewing()
    _lead(election, options)


def _lead(election: leader.Elector, options: dict) -> None:
    """kopf in a thread of its own; the main thread keeps the signals. On SIGTERM (pod deleted, rollout, drain):
    no write after it, the writes in flight finish, the Lease goes to the standby at once and the process exits,
    without waiting for kopf's graceful stop (daemons take up to 5 s; a restart resumes like after a kill)."""
    stop, signalled = threading.Event(), []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: (signalled.append(signum), stop.set()))

    def operator() -> None:
        try:
            asyncio.run(kopf.operator(**options))
        except BaseException:
            logging.getLogger(__name__).exception("kopf stopped")
        finally:
            stop.set()

    threading.Thread(target=operator, name="kopf", daemon=True).start()
    while not stop.wait(1):
        pass
    logging.getLogger(__name__).info("stopping (%s)", "signal %d" % signalled[0] if signalled else "kopf ended")
    election.release()
    logging.shutdown()
    os._exit(0 if signalled else 1)  # handler threads never run on
