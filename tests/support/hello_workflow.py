"""A greeting workflow driven from the test process, over mTLS, from inside the node namespace.

    python hello_workflow.py start <workflow-id>   # start only (no worker yet)
    python hello_workflow.py finish <workflow-id>  # run a worker until that workflow completes; print result

Connection settings come from Temporal's environment configuration (TEMPORAL_ADDRESS,
TEMPORAL_TLS_*), as for any client.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.envconfig import ClientConfig
from temporalio.worker import Worker

TASK_QUEUE = "e2e-hello"


@activity.defn
async def greet(name: str) -> str:
    return f"Hello, {name}!"


@workflow.defn
class HelloWorkflow:
    @workflow.run
    async def run(self, name: str) -> str:
        return await workflow.execute_activity(greet, name, start_to_close_timeout=timedelta(seconds=30))


async def main(command: str, workflow_id: str) -> None:
    client = await Client.connect(**ClientConfig.load_client_connect_config())
    if command == "start":
        await client.start_workflow(HelloWorkflow.run, "rollout", id=workflow_id, task_queue=TASK_QUEUE)
        print("started")
        return
    async with Worker(client, task_queue=TASK_QUEUE, workflows=[HelloWorkflow], activities=[greet]):
        print(await client.get_workflow_handle(workflow_id).result())


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
