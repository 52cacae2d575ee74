"""The starter HTTP service: start greeting workflows and read their results."""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid

from aiohttp import web
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from temporal_hello_worker.connection import connect, on_certificate_change
from temporal_hello_worker.workflows import TASK_QUEUE

CLIENT = web.AppKey("client", Client)
log = logging.getLogger(__name__)


def task_queue() -> str:
    return os.environ.get("HELLO_TASK_QUEUE", TASK_QUEUE)


async def info(request: web.Request) -> web.Response:
    client = request.app[CLIENT]
    return web.json_response({"service": "temporal-hello-starter", "namespace": client.namespace,
                              "taskQueue": task_queue(), "endpoints": ["/workflow/start?name=&wait=true&namespace=",
                                                                       "/workflow/{id}", "/healthz", "/readyz"]})


async def start(request: web.Request) -> web.Response:
    name, workflow_id = request.query.get("name", "World"), f"greeting-{uuid.uuid4()}"
    try:
        deadline = asyncio.get_running_loop().time() + float(request.query.get("timeout", "60"))
    except ValueError:
        raise web.HTTPBadRequest(text="timeout: a number of seconds") from None
    namespace = request.query.get("namespace")
    # The client is read again on each try: a certificate change swaps it (see _connect).
    handle = await _through_restarts(lambda: _start_once(_client(request, namespace), workflow_id, name), deadline,
                                     f"starting {workflow_id}")
    body = {"workflowId": handle.id, "runId": handle.result_run_id}
    if request.query.get("wait", "").lower() in ("1", "true", "yes"):
        body["result"] = await _through_restarts(
            lambda: _client(request, namespace).get_workflow_handle(workflow_id).result(), deadline,
            f"the result of {workflow_id}")
    return web.json_response(body)


def _client(request: web.Request, namespace: str | None) -> Client:
    """The app's client, or one on the same connection for another Temporal namespace (``?namespace=``): the
    server decides whether this certificate may use it."""
    client = request.app[CLIENT]
    if not namespace or namespace == client.namespace:
        return client
    config = client.config()
    return Client(client.service_client, namespace=namespace, data_converter=config["data_converter"],
                  interceptors=config["interceptors"])


async def _start_once(client: Client, workflow_id: str, name: str):
    try:
        return await client.start_workflow("GreetingWorkflow", name, id=workflow_id, task_queue=task_queue())
    except WorkflowAlreadyStartedError:  # an earlier try got through before the connection dropped
        return client.get_workflow_handle(workflow_id)


# A server restart ends a call with these (the SDK's own retries end with UNAVAILABLE, or UNKNOWN "transport
# error" when reset mid-handshake; a call in flight as the server stops can end CANCELLED or DEADLINE_EXCEEDED).
RETRIED = frozenset({RPCStatusCode.UNAVAILABLE, RPCStatusCode.UNKNOWN, RPCStatusCode.CANCELLED,
                     RPCStatusCode.DEADLINE_EXCEEDED})
# One try waits at most this long: a call stuck on a connection the restart left behind (or on the client a
# certificate change replaced) is abandoned and tried again on the current client.
ATTEMPT_SECONDS = 10.0


async def _through_restarts(call, deadline: float, what: str = "a call"):
    """``call()`` until ``deadline``, again while the server is unavailable: a restart (a CA rotation rolls the one
    server pod) outlasts the SDK's own retries, and the workflow id makes a repeated start harmless."""
    loop = asyncio.get_running_loop()
    while True:
        remaining = deadline - loop.time()
        try:
            return await asyncio.wait_for(call(), max(0.1, min(remaining, ATTEMPT_SECONDS)))
        except asyncio.TimeoutError:
            if remaining <= ATTEMPT_SECONDS:
                raise
            log.warning("%s took over %.0f s; trying again", what, ATTEMPT_SECONDS)
        except RPCError as error:
            if error.status not in RETRIED or loop.time() + 1 > deadline:
                raise
            await asyncio.sleep(1)


async def status(request: web.Request) -> web.Response:
    handle = request.app[CLIENT].get_workflow_handle(request.match_info["workflow_id"])
    description = await handle.describe()
    body = {"workflowId": handle.id, "status": description.status.name if description.status else "UNKNOWN"}
    if description.status == WorkflowExecutionStatus.COMPLETED:
        body["result"] = await handle.result()
    return web.json_response(body)


async def healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


# A server restart (a CA rotation rolls it; SQLite allows one pod) takes seconds and the SDK rides through it:
# unready only when Temporal stayed unreachable this long, or the Service would refuse every start meanwhile.
OUTAGE_SECONDS = 30.0
LAST_HEALTHY = web.AppKey("last_healthy", list)


async def readyz(request: web.Request) -> web.Response:
    last_healthy = request.app[LAST_HEALTHY]
    try:
        # within the probe's 1 s timeout
        await asyncio.wait_for(request.app[CLIENT].service_client.check_health(), 0.8)
        last_healthy[0] = time.monotonic()
    except Exception as error:
        if time.monotonic() - last_healthy[0] > OUTAGE_SECONDS:
            return web.json_response({"status": "unavailable", "error": type(error).__name__}, status=503)
        return web.json_response({"status": "ready", "temporal": "unreachable for now"})
    return web.json_response({"status": "ready"})


async def _connect(app: web.Application) -> None:
    app[CLIENT] = await connect()
    app[LAST_HEALTHY] = [time.monotonic()]  # connected just now

    async def reconnect() -> None:
        app[CLIENT] = await connect()

    app["watcher"] = asyncio.create_task(on_certificate_change(reconnect))


def http_status(status: RPCStatusCode) -> int:
    """503 for what a restart causes (retried until the deadline), 403 for what this certificate may not do."""
    if status in RETRIED:
        return 503
    return {RPCStatusCode.PERMISSION_DENIED: 403, RPCStatusCode.UNAUTHENTICATED: 401}.get(status, 502)


@web.middleware
async def explain_failures(request: web.Request, handler) -> web.StreamResponse:
    """A failed call answers with what failed (Temporal's status and message, or the timeout), not a bare 500."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except asyncio.TimeoutError:
        log.warning("%s timed out waiting for Temporal", request.path)
        return web.json_response({"error": "timed out waiting for Temporal"}, status=504)
    except RPCError as error:
        log.warning("%s: Temporal answered %s: %s", request.path, error.status.name, error.message)
        return web.json_response({"error": "Temporal refused the call", "status": error.status.name,
                                  "message": error.message}, status=http_status(error.status))
    except Exception as error:
        log.exception("%s failed", request.path)
        return web.json_response({"error": type(error).__name__, "message": str(error)[:500]}, status=500)


def create_app() -> web.Application:
    app = web.Application(middlewares=[explain_failures])
    app.on_startup.append(_connect)
    app.router.add_get("/", info)
    app.router.add_get("/workflow/start", start)
    app.router.add_get("/workflow/{workflow_id}", status)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app
