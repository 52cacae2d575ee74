"""kopf settings: our own finalizer and progress annotations, Events for warnings only."""

from __future__ import annotations

import logging

import kopf

from .api import GROUP


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_) -> None:
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
    settings.posting.level = logging.WARNING
    # The API server ends watches after a minute; the client gives up on a silent stream a bit later,
    # so a connection lost somewhere in between never leaves the operator deaf.
    settings.watching.server_timeout = 60
    settings.watching.client_timeout = 90
    settings.watching.connect_timeout = 10


def run() -> None:
    from . import handlers  # noqa: F401  (registers the handlers)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    kopf.run(standalone=True, clusterwide=True)
