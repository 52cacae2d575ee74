"""The original sample's greeting workflow and its hello activity."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow

TASK_QUEUE = "hello-world"


@activity.defn(name="SayHello")
async def say_hello(name: str) -> str:
    return f"Hello {name}!"


@workflow.defn(name="GreetingWorkflow")
class GreetingWorkflow:
    @workflow.run
    async def run(self, name: str) -> str:
        return await workflow.execute_activity(say_hello, name, start_to_close_timeout=timedelta(seconds=30))
