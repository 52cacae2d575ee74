"""Run inside the node's network namespace by bench/authz.py (host paths, no cluster access).

    python authz_load.py latency ENDPOINTS_JSON COUNT      # interleaved StartWorkflowExecution on each endpoint
    python authz_load.py flip ENDPOINT_JSON allowed|denied  # try a start every 50 ms until it is allowed/refused

An endpoint is {"name", "address", "server_name", "ca", "cert", "key"} (file paths). Prints JSON.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from pathlib import Path

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode, TLSConfig


async def connect(endpoint: dict) -> Client:
    return await Client.connect(endpoint["address"], tls=TLSConfig(
        server_root_ca_cert=Path(endpoint["ca"]).read_bytes(), client_cert=Path(endpoint["cert"]).read_bytes(),
        client_private_key=Path(endpoint["key"]).read_bytes(), domain=endpoint["server_name"]))


async def start(client: Client) -> None:
    await client.start_workflow("BenchWorkflow", id=f"bench-{uuid.uuid4()}", task_queue="bench-authz")


async def latency(endpoints: list[dict], count: int) -> dict:
    clients = {e["name"]: await connect(e) for e in endpoints}
    for client in clients.values():  # warm up: connections, namespace caches
        for _ in range(20):
            await start(client)
    seconds: dict[str, list[float]] = {name: [] for name in clients}
    for _ in range(count):
        for name, client in clients.items():  # interleaved: both see the same machine at the same moment
            began = time.perf_counter()
            await start(client)
            seconds[name].append(time.perf_counter() - began)
    return seconds


async def flip(endpoint: dict, want: str) -> dict:
    client = await connect(endpoint)
    print(json.dumps({"ready": time.time()}), flush=True)
    deadline = time.monotonic() + 600  # bounded: a change that never arrives fails the run
    while time.monotonic() < deadline:
        try:
            await start(client)
            state = "allowed"
        except RPCError as error:
            if error.status != RPCStatusCode.PERMISSION_DENIED:
                raise
            state = "denied"
        if state == want:
            return {"flipped": time.time()}
        await asyncio.sleep(0.05)
    raise TimeoutError(f"the server never answered {want} within 600 s")


async def main(command: str, endpoints: str, arg: str) -> None:
    given = json.loads(endpoints)
    result = await (latency(given, int(arg)) if command == "latency" else flip(given, arg))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
    os._exit(0)  # the answer is out (flushed); the SDK's runtime can crash while the interpreter finalizes
