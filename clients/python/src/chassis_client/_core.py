"""What the sync and async clients share: requests as values, answers, the SSE framing and the
stream's cursor. Neither client does IO here."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping
from urllib.parse import parse_qs, quote, urlsplit, urlunsplit

import httpx

from . import models as m
from .errors import NotFound, error_for

DEFAULT_URL = "http://127.0.0.1:7700"

#: An idle stream gets a heartbeat every 15 s; this long without a byte means the connection
#: is dead, and the stream reconnects.
STREAM_READ_TIMEOUT = 45.0


def split_url(url: str | None, token: str | None) -> tuple[str, str | None]:
    """The base URL and the token: `chassis serve`'s login URL (`…/#token=chs_…`) carries both;
    otherwise `CHASSIS_URL` and `CHASSIS_TOKEN` are read."""
    url = url or os.environ.get("CHASSIS_URL") or DEFAULT_URL
    parts = urlsplit(url)
    # The token rides in the fragment (`#token=`), which browsers never send; `?token=` too.
    in_url = (parse_qs(parts.fragment) or parse_qs(parts.query)).get("token", [None])[0]
    base = urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
    return base, token or in_url or os.environ.get("CHASSIS_TOKEN")


def headers(token: str | None) -> dict[str, str]:
    out = {"User-Agent": "chassis-client-python/0.1", "Accept": "application/json"}
    if token:
        out["Authorization"] = f"Bearer {token}"
    return out


def seg(value: str) -> str:
    """A path segment, escaped."""
    return quote(str(value), safe="")


def _params(values: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        out[key] = str(value)
    return out


@dataclass
class Call:
    """One request and how its answer reads."""

    method: str
    path: str
    params: dict[str, Any] = field(default_factory=dict)
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    decode: Callable[[Any], Any] | None = None

    def answer(self, response: httpx.Response) -> Any:
        """The decoded answer, or the error the response stands for."""
        if response.status_code >= 400:
            raise error_for(response)
        if self.decode is None or response.status_code == 204:
            return None
        return self.decode(response.json())


def _many(cls: Any) -> Callable[[Any], Any]:
    return lambda items: [cls.from_json(i) for i in items]


# --- The calls, one per endpoint ---------------------------------------------------------------


def health() -> Call:
    return Call("GET", "/healthz", decode=m.Health.from_json)


def ready() -> Call:
    return Call("GET", "/readyz", decode=m.Health.from_json)


def me() -> Call:
    return Call("GET", "/v1/me", decode=m.Me.from_json)


def openapi() -> Call:
    return Call("GET", "/openapi.json", decode=lambda d: d)


def agents() -> Call:
    return Call("GET", "/v1/agents", decode=_many(m.AgentInfo))


def reload_agents() -> Call:
    return Call("POST", "/v1/agents/reload", decode=_many(m.AgentInfo))


def start_run(
    agent: str,
    input: str,
    vars: Mapping[str, Any] | None,
    tags: Mapping[str, str] | None,
    idempotency_key: str | None,
) -> Call:
    body = m.StartRun(
        agent=agent,
        input=input,
        vars=dict(vars) if vars is not None else None,
        tags=dict(tags) if tags is not None else None,
    )
    hdrs = {"Idempotency-Key": idempotency_key} if idempotency_key is not None else {}
    return Call("POST", "/v1/runs", body=body.to_json(), headers=hdrs, decode=m.RunCreated.from_json)


def list_runs(**filters: Any) -> Call:
    return Call("GET", "/v1/runs", params=_params(filters), decode=m.RunList.from_json)


def get_run(run_id: str) -> Call:
    return Call("GET", f"/v1/runs/{seg(run_id)}", decode=m.Run.from_json)


def events(run_id: str, after: int | None, limit: int | None) -> Call:
    return Call(
        "GET",
        f"/v1/runs/{seg(run_id)}/events",
        params=_params({"after": after, "limit": limit}),
        decode=m.EventPage.from_json,
    )


def trace(run_id: str) -> Call:
    return Call("GET", f"/v1/runs/{seg(run_id)}/trace", decode=lambda d: d)


def resume(run_id: str, raises: Mapping[str, Any] | None) -> Call:
    body = m.Resume(raise_=dict(raises) if raises else None)
    return Call(
        "POST", f"/v1/runs/{seg(run_id)}/resume", body=body.to_json(), decode=m.Decided.from_json
    )


def cancel(run_id: str, reason: str) -> Call:
    return Call(
        "POST",
        f"/v1/runs/{seg(run_id)}/cancel",
        body=m.Cancel(reason=reason).to_json(),
        decode=m.Cancelled.from_json,
    )


def send_message(run_id: str, text: str) -> Call:
    return Call(
        "POST",
        f"/v1/runs/{seg(run_id)}/messages",
        body=m.SendMessage(text=text).to_json(),
        decode=m.Decided.from_json,
    )


def fork(run_id: str, at: int, input: str | None) -> Call:
    return Call(
        "POST",
        f"/v1/runs/{seg(run_id)}/fork",
        body=m.ForkRun(at=at, input=input).to_json(),
        decode=m.Forked.from_json,
    )


def approvals() -> Call:
    return Call("GET", "/v1/approvals", decode=_many(m.InboxItem))


def _call_path(run_id: str, call: str, verb: str) -> str:
    return f"/v1/runs/{seg(run_id)}/calls/{seg(call)}/{verb}"


def approve(run_id: str, call: str, args: Mapping[str, Any] | None, note: str | None) -> Call:
    body = m.Approve(args=dict(args) if args is not None else None, note=note)
    return Call(
        "POST", _call_path(run_id, call, "approve"), body=body.to_json(), decode=m.Decided.from_json
    )


def reject(run_id: str, call: str, reason: str, note: str | None) -> Call:
    body = m.Reject(reason=reason, note=note)
    return Call(
        "POST", _call_path(run_id, call, "reject"), body=body.to_json(), decode=m.Decided.from_json
    )


def resolve(
    run_id: str,
    call: str,
    outcome: m.Outcome | str,
    result: str | None,
    reason: str | None,
    note: str | None,
) -> Call:
    body = m.Resolve(outcome=m.Outcome(outcome), result=result, reason=reason, note=note)
    return Call(
        "POST", _call_path(run_id, call, "resolve"), body=body.to_json(), decode=m.Decided.from_json
    )


def approve_limit(run_id: str, raises: Mapping[str, Any]) -> Call:
    return Call(
        "POST",
        f"/v1/runs/{seg(run_id)}/limit/approve",
        body=m.LimitApprove(raise_=dict(raises)).to_json(),
        decode=m.Decided.from_json,
    )


def reject_limit(run_id: str, reason: str, note: str | None) -> Call:
    return Call(
        "POST",
        f"/v1/runs/{seg(run_id)}/limit/reject",
        body=m.Reject(reason=reason, note=note).to_json(),
        decode=m.Decided.from_json,
    )


def stats(**filters: Any) -> Call:
    return Call("GET", "/v1/stats", params=_params(filters), decode=m.Stats.from_json)


def create_token(name: str, role: m.Role | str) -> Call:
    return Call(
        "POST",
        "/v1/tokens",
        body=m.NewToken(name=name, role=m.Role(role)).to_json(),
        decode=m.TokenCreated.from_json,
    )


def tokens() -> Call:
    return Call("GET", "/v1/tokens", decode=_many(m.TokenInfo))


def revoke_token(name: str) -> Call:
    return Call("DELETE", f"/v1/tokens/{seg(name)}")


def schedules() -> Call:
    return Call("GET", "/v1/schedules", decode=_many(m.ScheduleInfo))


def create_schedule(schedule: m.NewSchedule) -> Call:
    return Call(
        "POST", "/v1/schedules", body=schedule.to_json(), decode=m.ScheduleInfo.from_json
    )


def remove_schedule(schedule_id: str) -> Call:
    return Call("DELETE", f"/v1/schedules/{seg(schedule_id)}")


def outbox(**filters: Any) -> Call:
    return Call("GET", "/v1/outbox", params=_params(filters), decode=_many(m.Delivery))


# --- Streams -----------------------------------------------------------------------------------


class Framer:
    """Frames SSE lines into messages; comments (the heartbeats) are dropped."""

    def __init__(self) -> None:
        self._event: str | None = None
        self._data: list[str] = []
        self._id: str | None = None

    def feed(self, line: str) -> m.StreamEvent | None:
        if line == "":
            if not self._data:
                self._event, self._id = None, None
                return None
            message = m.StreamEvent.from_json(
                {"event": self._event or "message", "data": "\n".join(self._data), "id": self._id}
            )
            self._event, self._data, self._id = None, [], None
            return message
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        return None


class Cursor:
    """Where a stream is: the last journaled event seen, so a reconnection resumes after it
    (`Last-Event-ID`) and an event is never handed out twice."""

    def __init__(self, run_id: str, after: int | None, deltas: bool) -> None:
        self.path = f"/v1/runs/{seg(run_id)}/stream"
        self.run_id = run_id
        self.last = after
        self.deltas = deltas
        self.done = False
        #: Connections made, the first one included.
        self.connections = 0

    def request_headers(self) -> dict[str, str]:
        out = {"Accept": "text/event-stream"}
        if self.last is not None:
            out["Last-Event-ID"] = str(self.last)
        return out

    def take(self, message: m.StreamEvent) -> m.Event | m.Delta | None:
        """What `message` gives the caller, if anything."""
        if message.event == "event":
            event = m.Event.from_json(json.loads(message.data))
            if self.last is not None and event.seq <= self.last:
                return None
            self.last = event.seq
            if event.terminal:
                self.done = True
            return event
        if message.event == "delta":
            return m.Delta.from_json(json.loads(message.data)) if self.deltas else None
        if message.event == "error":
            # The run vanished under the stream (its journal was removed).
            self.done = True
            raise NotFound(404, "Not found", message.data)
        return None

