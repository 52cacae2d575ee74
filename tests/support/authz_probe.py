"""Make each call of the authorization matrix once with one client certificate, straight through the SDK's gRPC
service client, and print what the server answered as JSON: {"call": "allowed" | "STATUS: message"}.

    python authz_probe.py prepare <namespace> <workflow-id>...   # start the workflows the calls act on
    python authz_probe.py probe <namespace> <workflow-id> [call...]

Run inside the node's network namespace; the connection and certificate come from Temporal's environment
configuration (TEMPORAL_ADDRESS, TEMPORAL_TLS_*). Every call is made even after one is refused.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import sys
import uuid

from google.protobuf.duration_pb2 import Duration
from temporalio.api.common.v1 import WorkflowExecution, WorkflowType
from temporalio.api.namespace.v1 import UpdateNamespaceInfo
from temporalio.api.query.v1 import WorkflowQuery
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import (
    DescribeNamespaceRequest, DescribeWorkflowExecutionRequest, ListNamespacesRequest, ListWorkflowExecutionsRequest,
    PollWorkflowTaskQueueRequest, QueryWorkflowRequest, RegisterNamespaceRequest, RespondWorkflowTaskCompletedRequest,
    SignalWorkflowExecutionRequest, StartWorkflowExecutionRequest, TerminateWorkflowExecutionRequest,
    UpdateNamespaceRequest)
from temporalio.service import RPCError

from temporal_hello_worker.connection import connect

CALLS = ("health", "list_namespaces", "describe_namespace", "register_namespace", "update_namespace", "start", "list",
         "describe", "query", "signal", "poll_complete", "terminate")
TIMEOUT = dt.timedelta(seconds=10)


async def run_call(service, call: str, namespace: str, workflow_id: str) -> None:
    execution = WorkflowExecution(workflow_id=workflow_id)
    identity = f"authz-probe-{workflow_id}"
    if call == "health":
        await service.check_health(timeout=TIMEOUT)
    elif call == "list_namespaces":
        await service.workflow_service.list_namespaces(ListNamespacesRequest(), timeout=TIMEOUT)
    elif call == "describe_namespace":
        await service.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace=namespace), timeout=TIMEOUT)
    elif call == "register_namespace":
        await service.workflow_service.register_namespace(RegisterNamespaceRequest(
            namespace=f"{workflow_id}-ns", workflow_execution_retention_period=Duration(seconds=86400)),
            timeout=TIMEOUT)
    elif call == "update_namespace":
        await service.workflow_service.update_namespace(UpdateNamespaceRequest(
            namespace=namespace, update_info=UpdateNamespaceInfo(description=f"touched by {identity}")),
            timeout=TIMEOUT)
    elif call == "start":
        await service.workflow_service.start_workflow_execution(start_request(namespace, f"{workflow_id}-started"),
                                                                timeout=TIMEOUT)
    elif call == "list":
        await service.workflow_service.list_workflow_executions(ListWorkflowExecutionsRequest(namespace=namespace),
                                                                timeout=TIMEOUT)
    elif call == "describe":
        await service.workflow_service.describe_workflow_execution(DescribeWorkflowExecutionRequest(
            namespace=namespace, execution=execution), timeout=TIMEOUT)
    elif call == "query":
        # No worker answers it: an allowed query ends in Temporal's own answer about the workflow, never PermissionDenied.
        await service.workflow_service.query_workflow(QueryWorkflowRequest(
            namespace=namespace, execution=execution, query=WorkflowQuery(query_type="__stack_trace")),
            timeout=dt.timedelta(seconds=3))
    elif call == "signal":
        await service.workflow_service.signal_workflow_execution(SignalWorkflowExecutionRequest(
            namespace=namespace, workflow_execution=execution, signal_name="probe", identity=identity,
            request_id=str(uuid.uuid4())), timeout=TIMEOUT)
    elif call == "poll_complete":
        task = await service.workflow_service.poll_workflow_task_queue(PollWorkflowTaskQueueRequest(
            namespace=namespace, task_queue=TaskQueue(name=workflow_id), identity=identity), timeout=TIMEOUT)
        if not task.task_token:
            raise RuntimeError("the poll returned no task")
        await service.workflow_service.respond_workflow_task_completed(RespondWorkflowTaskCompletedRequest(
            namespace=namespace, task_token=task.task_token, identity=identity), timeout=TIMEOUT)
    elif call == "terminate":
        await service.workflow_service.terminate_workflow_execution(TerminateWorkflowExecutionRequest(
            namespace=namespace, workflow_execution=execution, reason="authorization matrix", identity=identity),
            timeout=TIMEOUT)
    else:
        raise ValueError(f"unknown call {call}")


def start_request(namespace: str, workflow_id: str) -> StartWorkflowExecutionRequest:
    # Its task queue is its id: the poll of that workflow's probe finds exactly its first task.
    return StartWorkflowExecutionRequest(namespace=namespace, workflow_id=workflow_id,
                                         workflow_type=WorkflowType(name="AuthorizationProbe"),
                                         task_queue=TaskQueue(name=workflow_id), request_id=str(uuid.uuid4()),
                                         identity="authz-probe")


async def main(command: str, namespace: str, *args: str) -> None:
    client = await connect()
    service = client.service_client
    if command == "prepare":
        for workflow_id in args:
            await service.workflow_service.start_workflow_execution(start_request(namespace, workflow_id),
                                                                    timeout=TIMEOUT)
        print(json.dumps({"prepared": list(args)}), flush=True)
        return
    workflow_id, calls = args[0], args[1:] or CALLS
    answers = {}
    for call in calls:
        try:
            await run_call(service, call, namespace, workflow_id)
            answers[call] = "allowed"
        except RPCError as error:
            answers[call] = f"{error.status.name}: {error.message}"
        except Exception as error:  # noqa: BLE001 (reported, the next call still made)
            answers[call] = f"{type(error).__name__}: {error}"
    print(json.dumps(answers), flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
    os._exit(0)  # the answer is out (flushed); the SDK's runtime can crash while the interpreter finalizes
