"""The asyncio client: the same flow as the sync one, start → stream → approve → completion."""

from __future__ import annotations

import asyncio

import pytest

from chassis_client import AsyncClient, Conflict, Event, NotFound, Status

from .conftest import Server
from .proxy import CuttableProxy


async def approve_while_streaming(server: Server) -> tuple[list[Event], int]:
    host, _, port = server.url.removeprefix("http://").partition(":")
    proxy = CuttableProxy(host, int(port))
    try:
        async with (
            AsyncClient(server.url, token=server.approver) as client,
            AsyncClient(proxy.url, token=server.approver, reconnect_delay=0.05) as follower,
        ):
            created = await client.start_run("payer", "async invoice")
            assert created.status == Status.RUNNING
            received: list[Event] = []
            async for event in follower.stream(created.run_id):
                received.append(event)
                if event.kind == "run_waiting":
                    inbox = [i for i in await client.approvals() if i.run_id == created.run_id]
                    assert [i.call_id for i in inbox] == ["1.0"]
                    proxy.cut()
                    decided = await client.approve(created.run_id, "1.0", note="async")
                    assert decided.woken
            run = await client.get_run(created.run_id)
            assert run.status == Status.COMPLETED and run.output == "result: paid 150 to acme"
            with pytest.raises(Conflict):
                await client.cancel(created.run_id, reason="too late")
            # The answered run continues as a thread.
            decided = await client.send_message(created.run_id, "and the receipt?")
            assert decided.woken or decided.run.status == Status.COMPLETED
            with pytest.raises(NotFound):
                await client.get_run("run_00000000000000000000000000")
            runs = [r.run_id async for r in client.iter_runs(agent="payer", limit=1)]
            assert created.run_id in runs
            return received, proxy.connections
    finally:
        proxy.close()


def test_async_client_starts_streams_and_approves(server: Server) -> None:
    received, connections = asyncio.run(approve_while_streaming(server))
    assert [e.seq for e in received] == list(range(1, len(received) + 1))
    assert received[-1].kind == "run_completed"
    assert "approval_decided" in [e.kind for e in received]
    assert connections >= 2, "the stream reconnected after the cut"
