"""The starter's calls through a server restart, and what a failed call answers."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from temporalio.service import RPCError, RPCStatusCode

from temporal_hello_starter import app


def rpc_error(status: RPCStatusCode) -> RPCError:
    return RPCError(f"{status.name.lower()} from the server", status, b"")


class Calls:
    """Each call does the next step: an exception to raise, "hang" (never answers), or a value to return."""

    def __init__(self, *steps) -> None:
        self.steps, self.count = list(steps), 0

    async def __call__(self):
        step = self.steps[self.count]
        self.count += 1
        if step == "hang":
            await asyncio.Event().wait()
        if isinstance(step, BaseException):
            raise step
        return step


def through_restarts(calls: Calls, seconds: float):
    async def run():
        return await app._through_restarts(calls, asyncio.get_running_loop().time() + seconds)
    return asyncio.run(run())


@pytest.fixture
def fast(monkeypatch):
    """Retries without the 1 s pause, and a 0.2 s try."""
    real_sleep = asyncio.sleep
    monkeypatch.setattr(app.asyncio, "sleep", lambda seconds: real_sleep(0))
    monkeypatch.setattr(app, "ATTEMPT_SECONDS", 0.2)


@pytest.mark.parametrize("status", sorted(app.RETRIED))
def test_a_restart_status_is_tried_again(fast, status):
    calls = Calls(rpc_error(status), rpc_error(status), "started")
    assert through_restarts(calls, 30) == "started" and calls.count == 3


@pytest.mark.parametrize("status", [RPCStatusCode.INVALID_ARGUMENT, RPCStatusCode.NOT_FOUND,
                                    RPCStatusCode.PERMISSION_DENIED])
def test_any_other_status_is_raised_at_once(fast, status):
    calls = Calls(rpc_error(status), "never")
    with pytest.raises(RPCError) as raised:
        through_restarts(calls, 30)
    assert raised.value.status == status and calls.count == 1


def test_a_call_stuck_on_a_dead_connection_is_abandoned_and_tried_again(fast):
    calls = Calls("hang", "started")
    assert through_restarts(calls, 30) == "started" and calls.count == 2


def test_the_deadline_ends_the_tries(fast):
    calls = Calls(*["hang"] * 100)
    with pytest.raises(asyncio.TimeoutError):
        through_restarts(calls, 0.5)
    assert calls.count == 3  # 0.2 + 0.2 + the last 0.1


def test_unavailable_at_the_deadline_is_raised(fast):
    with pytest.raises(RPCError):
        through_restarts(Calls(*[rpc_error(RPCStatusCode.UNAVAILABLE)] * 100), 0.5)


def answers(failure: BaseException) -> tuple[int, dict]:
    async def fails(_: web.Request) -> web.Response:
        raise failure

    async def run():
        server = web.Application(middlewares=[app.explain_failures])
        server.router.add_get("/workflow/start", fails)
        async with TestClient(TestServer(server)) as client:
            response = await client.get("/workflow/start")
            return response.status, await response.json()
    return asyncio.run(run())


def test_a_failed_call_says_temporals_status_and_message():
    assert answers(rpc_error(RPCStatusCode.UNAVAILABLE)) == (503, {
        "error": "Temporal refused the call", "status": "UNAVAILABLE", "message": "unavailable from the server"})
    assert answers(rpc_error(RPCStatusCode.FAILED_PRECONDITION))[0] == 502


def test_a_call_this_certificate_may_not_make_is_forbidden_with_temporals_message():
    assert answers(rpc_error(RPCStatusCode.PERMISSION_DENIED)) == (403, {
        "error": "Temporal refused the call", "status": "PERMISSION_DENIED",
        "message": "permission_denied from the server"})


def test_a_timeout_is_a_gateway_timeout():
    assert answers(asyncio.TimeoutError()) == (504, {"error": "timed out waiting for Temporal"})


def test_anything_else_names_its_type():
    assert answers(ValueError("could not convert string to float: 'soon'")) == (500, {
        "error": "ValueError", "message": "could not convert string to float: 'soon'"})
