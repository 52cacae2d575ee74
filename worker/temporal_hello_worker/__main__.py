"""`python -m temporal_hello_worker`: run the greeting worker until stopped."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from datetime import timedelta

from aiohttp import web
from temporalio.worker import Worker

from temporal_mtls_codec.config import codec_from_env

from .connection import connect, on_certificate_change
from .workflows import TASK_QUEUE, GreetingWorkflow, say_hello


def codec_health() -> dict:
    """With Key Vault keys: whether the last unwrap reached the vault (the worker keeps running on cached keys)."""
    status = getattr(getattr(codec_from_env(), "keys", None), "status", None)
    return {"keyVault": {"reachable": status.reachable, "lastError": status.last_error}} if status else {}


async def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    client = await connect()
    # On SIGTERM the worker stops polling and lets running activities finish this long (within the pod's grace).
    drain = timedelta(seconds=float(os.environ.get("HELLO_DRAIN_SECONDS", "20")))
    worker = Worker(client, task_queue=os.environ.get("HELLO_TASK_QUEUE", TASK_QUEUE),
                    workflows=[GreetingWorkflow], activities=[say_hello], graceful_shutdown_timeout=drain)

    async def reconnect() -> None:
        worker.client = await connect()  # the SDK swaps connections without dropping work

    health = web.Application()
    health.router.add_get("/healthz", lambda _: web.json_response({"status": "ok", **codec_health()}))
    runner = web.AppRunner(health)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", int(os.environ.get("HEALTH_PORT", "8081"))).start()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    watcher = asyncio.create_task(on_certificate_change(reconnect))
    logging.info("worker polling task queue %s", worker.task_queue)
    running, stopping = asyncio.create_task(worker.run()), asyncio.create_task(stop.wait())
    await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if not running.done():
        logging.info("stopping: no new tasks, draining running activities for up to %ss", drain.total_seconds())
        await worker.shutdown()
    await running  # a worker that failed by itself raises here: the process exits and the pod restarts
    watcher.cancel()
    await runner.cleanup()
    logging.info("worker stopped")


if __name__ == "__main__":
    asyncio.run(main())
    # Stopped cleanly and said so: exit now. The SDK's runtime threads can abort the interpreter's finalization
    # ("Fatal Python error: PyGILState_Release"), which would turn a clean drain into a crash (exit 134).
    logging.shutdown()
    os._exit(0)
