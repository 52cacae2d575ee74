"""Drive the worker package's greeting workflow from the test process, over mTLS.

    python hello_workflow.py start <workflow-id>   # start only (no worker yet)
    python hello_workflow.py finish <workflow-id>...  # run the worker until those workflows complete; print results

Run inside the node's network namespace; connection settings come from Temporal's environment
configuration (TEMPORAL_ADDRESS, TEMPORAL_TLS_*), as for any client.
"""

from __future__ import annotations

import asyncio
import sys

from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.worker import Worker

from temporal_hello_worker.connection import connect
from temporal_hello_worker.workflows import GreetingWorkflow, say_hello

TASK_QUEUE = "e2e-hello"


async def main(command: str, workflow_id: str, *more_ids: str) -> None:
    client = await connect()
    if command == "start":
        try:
            await client.start_workflow(GreetingWorkflow.run, "rollout", id=workflow_id, task_queue=TASK_QUEUE)
        except WorkflowAlreadyStartedError:
            pass  # an earlier try got through but its answer was lost: starting is idempotent by id
        print("started", flush=True)  # on its way before the SDK's exit (which may crash and lose a buffer)
        return
    async with Worker(client, task_queue=TASK_QUEUE, workflows=[GreetingWorkflow], activities=[say_hello]):
        for each in (workflow_id, *more_ids):  # one worker for all: their tasks run side by side
            print(await client.get_workflow_handle(each).result(), flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
