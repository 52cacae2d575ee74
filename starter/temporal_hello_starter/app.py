"""The starter HTTP service: start greeting workflows and read their results."""

from __future__ import annotations

import asyncio
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


def task_queue() -> str:
    return os.environ.get("HELLO_TASK_QUEUE", TASK_QUEUE)


async def info(request: web.Request) -> web.Response:
    client = request.app[CLIENT]
    return web.json_response({"service": "temporal-hello-starter", "namespace": client.namespace,
                              "taskQueue": task_queue(), "endpoints": ["/workflow/start?name=&wait=true",
                                                                       "/workflow/{id}", "/healthz", "/readyz"]})


async def start(request: web.Request) -> web.Response:
    name, workflow_id = request.query.get("name", "World"), f"greeting-{uuid.uuid4()}"
    deadline = asyncio.get_running_loop().time() + float(request.query.get("timeout", "60"))
    # The client is read again on each try: a certificate change swaps it (see _connect).
    handle = await _through_restarts(lambda: _start_once(request.app[CLIENT], workflow_id, name), deadline)
    body = {"workflowId": handle.id, "runId": handle.result_run_id}
    if request.query.get("wait", "").lower() in ("1", "true", "yes"):
        body["result"] = await _through_restarts(
            lambda: request.app[CLIENT].get_workflow_handle(workflow_id).result(), deadline)
    return web.json_response(body)


async def _start_once(client: Client, workflow_id: str, name: str):
    try:
        return await client.start_workflow("GreetingWorkflow", name, id=workflow_id, task_queue=task_queue())
    except WorkflowAlreadyStartedError:  # an earlier try got through before the connection dropped
        return client.get_workflow_handle(workflow_id)


async def _through_restarts(call, deadline: float):
    """``call()`` until ``deadline``, again while the server is unavailable: a restart (a CA rotation rolls the one
    server pod) outlasts the SDK's own retries, and the workflow id makes a repeated start harmless."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            return await asyncio.wait_for(call(), max(0.1, deadline - loop.time()))
        except RPCError as error:
            # The SDK ends its own retries with UNAVAILABLE, or UNKNOWN "transport error" (reset mid-handshake).
            if error.status not in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.UNKNOWN) or loop.time() + 1 > deadline:
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


def create_app() -> web.Application:
    app = web.Application()
    app.on_startup.append(_connect)
    app.router.add_get("/", info)
    app.router.add_get("/workflow/start", start)
    app.router.add_get("/workflow/{workflow_id}", status)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app
