"""The asynchronous client: the same methods as `Client`, awaited."""

from __future__ import annotations

import asyncio
import time
from typing import Any, AsyncIterator, Literal, Mapping, overload

import httpx

from . import _core as core
from . import models as m
from .errors import ConnectionLost, ServerError, Unavailable, error_for

__all__ = ["AsyncClient"]


class AsyncClient:
    """An asyncio client of `chassis serve` (see `Client`; every method is awaited, and
    `stream` and `iter_runs` are async iterators).

    `url` is the server's base URL, or the login URL it prints (`http://HOST:PORT/#token=…`),
    which carries the token too; otherwise `token` (or `CHASSIS_TOKEN`) is sent as
    `Authorization: Bearer TOKEN`. `CHASSIS_URL` is read when `url` is not given.

    A refused request raises a `ChassisError` subclass (`NotFound`, `Conflict`, …) with the
    problem's `status`, `title`, `detail` and `field`.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        reconnect_delay: float = 0.2,
        max_reconnect_wait: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url, self.token = core.split_url(url, token)
        self.reconnect_delay = reconnect_delay
        self.max_reconnect_wait = max_reconnect_wait
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers=core.headers(self.token),
            timeout=timeout,
            transport=transport,
        )

    async def close(self) -> None:
        """Closes the connections."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _do(self, call: core.Call) -> Any:
        response = await self._http.request(
            call.method,
            call.path,
            params=call.params or None,
            json=call.body,
            headers=call.headers or None,
        )
        return call.answer(response)

    # --- System --------------------------------------------------------------------------------

    async def health(self) -> m.Health:
        """`GET /healthz`: the process answers (no token needed)."""
        return await self._do(core.health())

    async def ready(self) -> m.Health:
        """`GET /readyz`: the journal answers."""
        return await self._do(core.ready())

    async def me(self) -> m.Me:
        """Who this client's token is."""
        return await self._do(core.me())

    async def openapi(self) -> dict[str, Any]:
        """The API's OpenAPI document."""
        return await self._do(core.openapi())

    # --- Agents --------------------------------------------------------------------------------

    async def agents(self) -> list[m.AgentInfo]:
        """The agents on offer, with their versions."""
        return await self._do(core.agents())

    async def reload_agents(self) -> list[m.AgentInfo]:
        """Loads the agents directory again (admin)."""
        return await self._do(core.reload_agents())

    # --- Runs ----------------------------------------------------------------------------------

    async def start_run(
        self,
        agent: str,
        input: str,
        vars: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> m.RunCreated:
        """Starts a run of `agent` on `input`; workers drive it. The same `idempotency_key`
        returns the run it first started (`existing` is then true)."""
        return await self._do(core.start_run(agent, input, vars, tags, idempotency_key))

    async def get_run(self, run_id: str) -> m.Run:
        """A run: status, output, usage against limits, what it waits for."""
        return await self._do(core.get_run(run_id))

    async def list_runs(
        self,
        *,
        status: m.Status | str | None = None,
        agent: str | None = None,
        version: str | None = None,
        tag: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        cursor: str | None = None,
        limit: int | None = None,
        forked_from: str | None = None,
    ) -> m.RunList:
        """One page of runs, newest first; pass its `next` as `cursor` for the next page (or use
        `iter_runs`). `status` may also be `queued`; `tag` is `KEY=VALUE`; `forked_from` lists the
        forks of a run."""
        return await self._do(
            core.list_runs(
                status=status,
                agent=agent,
                version=version,
                tag=tag,
                since_ms=since_ms,
                until_ms=until_ms,
                cursor=cursor,
                limit=limit,
                forked_from=forked_from,
            )
        )

    async def iter_runs(self, **filters: Any) -> AsyncIterator[m.Run]:
        """Every run the filters of `list_runs` match, newest first, page after page."""
        cursor = filters.pop("cursor", None)
        while True:
            page = await self.list_runs(cursor=cursor, **filters)
            for run in page.runs:
                yield run
            if not page.next:
                return
            cursor = page.next

    async def events(self, run_id: str, after: int | None = None, limit: int | None = None) -> m.EventPage:
        """A run's journaled events after sequence number `after`, as a page."""
        return await self._do(core.events(run_id, after, limit))

    async def trace(self, run_id: str) -> dict[str, Any]:
        """A run's timeline as JSON."""
        return await self._do(core.trace(run_id))

    @overload
    def stream(
        self, run_id: str, after: int | None = None, *, deltas: Literal[False] = False
    ) -> AsyncIterator[m.Event]: ...

    @overload
    def stream(
        self, run_id: str, after: int | None = None, *, deltas: Literal[True]
    ) -> AsyncIterator[m.Event | m.Delta]: ...

    async def stream(
        self, run_id: str, after: int | None = None, *, deltas: bool = False
    ) -> AsyncIterator[m.Event] | AsyncIterator[m.Event | m.Delta]:
        """Follows a run: each journaled event once it is durable, in order, until the run's
        terminal event (`run_completed`, `run_failed` or `run_cancelled`), then the iterator
        ends.

        When the connection drops (a restart, a proxy, a network fault) it reconnects with
        `Last-Event-ID` set to the last event seen, so no event is missed or repeated; it gives
        up with `ConnectionLost` after `max_reconnect_wait` seconds without a connection.
        Heartbeats are skipped; with `deltas=True` the pieces of model answers are given too
        (`Delta`, not journaled: a client that reconnects may miss some).
        """
        cursor = core.Cursor(run_id, after, deltas)
        failing_since: float | None = None
        delay = self.reconnect_delay
        while not cursor.done:
            try:
                cursor.connections += 1
                async with self._http.stream(
                    "GET",
                    cursor.path,
                    headers=cursor.request_headers(),
                    timeout=httpx.Timeout(self._http.timeout.connect, read=core.STREAM_READ_TIMEOUT),
                ) as response:
                    if response.status_code >= 400:
                        await response.aread()
                        raise error_for(response)
                    framer = core.Framer()
                    async for line in response.aiter_lines():
                        message = framer.feed(line)
                        if message is None:
                            continue
                        item = cursor.take(message)
                        failing_since, delay = None, self.reconnect_delay
                        if item is not None:
                            yield item
                        if cursor.done:
                            return
                # The server closed the stream before the run ended (it is shutting down): a
                # breath before reconnecting, so a server that keeps doing so is not hammered.
                await asyncio.sleep(self.reconnect_delay)
            except (httpx.TransportError, Unavailable, ServerError) as error:
                # Dropped or refused for now: try again from the last event seen.
                now = time.monotonic()
                failing_since = failing_since or now
                if now - failing_since > self.max_reconnect_wait:
                    raise ConnectionLost(
                        0, "Connection lost", f"stream of {run_id}: {error}"
                    ) from error
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def wait(
        self,
        run_id: str,
        statuses: set[m.Status | str] | None = None,
        *,
        timeout: float = 60.0,
        interval: float = 0.1,
    ) -> m.Run:
        """Polls the run until its status is one of `statuses` (by default: ended); raises
        `TimeoutError` after `timeout` seconds."""
        wanted = {m.Status(s) for s in statuses} if statuses else m.TERMINAL_STATUSES
        deadline = time.monotonic() + timeout
        while True:
            run = await self.get_run(run_id)
            if run.status in wanted:
                return run
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} is {run.status}, not {sorted(wanted)}")
            await asyncio.sleep(interval)

    async def resume(self, run_id: str, raises: Mapping[str, Any] | None = None) -> m.Decided:
        """Continues a stopped run, raising limits first (`{"max_steps": 20}`,
        `{"max_wall_time": "30m"}`)."""
        return await self._do(core.resume(run_id, raises))

    async def cancel(self, run_id: str, reason: str) -> m.Cancelled:
        """Cancels a run: it stops at its next safe point, with who (the token's name) and why
        journaled. A run that has ended raises `Conflict`."""
        return await self._do(core.cancel(run_id, reason))

    async def send_message(self, run_id: str, text: str) -> m.Decided:
        """Continues a completed run with a new user message (a thread's next turn), journaled
        with the token's name; a worker answers it with the whole conversation as context. A run
        without an answer to continue (running, waiting, paused, failed, cancelled) raises
        `Conflict`; an empty message `InvalidRequest`."""
        return await self._do(core.send_message(run_id, text))

    async def fork(self, run_id: str, at: int, input: str | None = None) -> m.Forked:
        """A new run whose history is the first `at` events of `run_id` (nothing of them runs
        again), then `input` as a user message if given; the workers drive it from there."""
        return await self._do(core.fork(run_id, at, input))

    # --- Approvals -----------------------------------------------------------------------------

    async def approvals(self) -> list[m.InboxItem]:
        """Everything waiting for a human, oldest first."""
        return await self._do(core.approvals())

    async def approve(
        self,
        run_id: str,
        call: str,
        args: Mapping[str, Any] | None = None,
        note: str | None = None,
    ) -> m.Decided:
        """Approves a pending call (`STEP.INDEX`), optionally with edited arguments (checked
        against the tool's schema: `InvalidRequest` if they fail it)."""
        return await self._do(core.approve(run_id, call, args, note))

    async def reject(self, run_id: str, call: str, reason: str, note: str | None = None) -> m.Decided:
        """Rejects a pending call; the model gets `reason` as the call's result."""
        return await self._do(core.reject(run_id, call, reason, note))

    async def resolve(
        self,
        run_id: str,
        call: str,
        outcome: m.Outcome | str,
        result: str | None = None,
        reason: str | None = None,
        note: str | None = None,
    ) -> m.Decided:
        """Settles a call whose outcome is unknown: `succeeded` (with the `result` the model
        sees), `failed` (with a `reason`) or `retry`."""
        return await self._do(core.resolve(run_id, call, outcome, result, reason, note))

    async def approve_limit(self, run_id: str, raises: Mapping[str, Any]) -> m.Decided:
        """Raises the limits a run stopped at (`{"max_steps": 20}`); the run continues."""
        return await self._do(core.approve_limit(run_id, raises))

    async def reject_limit(self, run_id: str, reason: str, note: str | None = None) -> m.Decided:
        """Refuses an escalated limit: the run fails with `reason`."""
        return await self._do(core.reject_limit(run_id, reason, note))

    # --- Stats and tokens ----------------------------------------------------------------------

    async def stats(
        self,
        *,
        agent: str | None = None,
        version: str | None = None,
        since_ms: int | None = None,
        include_eval: bool | None = None,
    ) -> m.Stats:
        """Rates, cost and time per agent version and per day; decisions per tool."""
        return await self._do(
            core.stats(agent=agent, version=version, since_ms=since_ms, include_eval=include_eval)
        )

    async def create_token(self, name: str, role: m.Role | str) -> m.TokenCreated:
        """Makes a token (admin); its value is in this answer only."""
        return await self._do(core.create_token(name, role))

    async def tokens(self) -> list[m.TokenInfo]:
        """Every token, revoked ones too (admin)."""
        return await self._do(core.tokens())

    async def schedules(self) -> list[m.ScheduleInfo]:
        """Every schedule, oldest first."""
        return await self._do(core.schedules())

    async def create_schedule(
        self,
        agent: str,
        cron: str,
        input: str,
        *,
        timezone: str | None = None,
        overlap: str | None = None,
        catch_up: str | None = None,
    ) -> m.ScheduleInfo:
        """Starts `agent` on `cron` (operator); each slot fires once, on any worker or server."""
        schedule = m.NewSchedule(
            agent=agent,
            cron=cron,
            input=input,
            timezone=timezone,
            overlap=overlap,
            catch_up=catch_up,
        )
        return await self._do(core.create_schedule(schedule))

    async def remove_schedule(self, schedule_id: str) -> None:
        """Removes a schedule (operator); the runs it started stay."""
        await self._do(core.remove_schedule(schedule_id))

    async def outbox(
        self,
        *,
        status: m.DeliveryState | str | None = None,
        run: str | None = None,
        limit: int | None = None,
    ) -> list[m.Delivery]:
        """Webhook deliveries, newest first (admin): pending, delivered or failed."""
        return await self._do(
            core.outbox(status=None if status is None else str(status), run=run, limit=limit)
        )

    async def revoke_token(self, name: str) -> None:
        """Revokes a token (admin)."""
        await self._do(core.revoke_token(name))
