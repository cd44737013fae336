"""The API's bodies as dataclasses, one per schema of `/openapi.json`.

Field names, which fields are required and their types follow the server's document; the test
`tests/test_openapi.py` fetches it from a real `chassis serve` and fails on any difference, so a
change of the API that is not made here too fails CI. A field the document does not require is
typed `X | None` and defaults to `None`.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

__all__ = [
    "AgentInfo",
    "Approve",
    "Cancel",
    "Cancelled",
    "DayStats",
    "HourStats",
    "Decided",
    "Delivery",
    "DeliveryState",
    "Delta",
    "Event",
    "EventPage",
    "Health",
    "InboxItem",
    "LimitApprove",
    "Me",
    "NewSchedule",
    "NewToken",
    "Outcome",
    "Problem",
    "Reject",
    "Resolve",
    "SendMessage",
    "ForkRun",
    "Forked",
    "Resume",
    "Role",
    "Run",
    "RunCreated",
    "RunList",
    "SCHEMAS",
    "ScheduleInfo",
    "StartRun",
    "Stats",
    "StatsRow",
    "Status",
    "StreamEvent",
    "StreamEventKind",
    "TERMINAL_KINDS",
    "TERMINAL_STATUSES",
    "TokenCreated",
    "TokenInfo",
    "ToolDecisions",
    "Usage",
    "Waiting",
]


class Status(enum.StrEnum):
    """Where a run is in its life."""

    RUNNING = "running"
    WAITING = "waiting"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_STATUSES = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED})

#: The events after which a run's journal never grows (its stream ends after one).
TERMINAL_KINDS = frozenset({"run_completed", "run_failed", "run_cancelled"})


class Outcome(enum.StrEnum):
    """How a human settles a call whose outcome is unknown."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    RETRY = "retry"


class Role(enum.StrEnum):
    """What a token may do; each role may do what the ones before it may."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    APPROVER = "approver"
    ADMIN = "admin"


def _json_name(f: dataclasses.Field[Any]) -> str:
    return f.metadata.get("json", f.name)


def _decode(tp: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return _decode(inner[0], value) if len(inner) == 1 else value
    if origin is list:
        (item,) = typing.get_args(tp)
        return [_decode(item, v) for v in value]
    if origin is dict:
        _, item = typing.get_args(tp)
        return {k: _decode(item, v) for k, v in value.items()}
    if isinstance(tp, type) and issubclass(tp, _Model):
        return tp.from_json(value)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            # A value this client does not know yet (a newer server): kept as the string.
            return value
    return value


def _encode(value: Any) -> Any:
    if isinstance(value, _Model):
        return value.to_json()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    return value


class _Model:
    """Decoding from and encoding to the API's JSON."""

    _hints: ClassVar[dict[str, Any] | None] = None

    @classmethod
    def hints(cls) -> dict[str, Any]:
        """The fields' types, resolved."""
        if cls.__dict__.get("_hints") is None:
            cls._hints = typing.get_type_hints(cls)
        return cls._hints  # type: ignore[return-value]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> typing.Self:
        """Reads the model from its JSON; fields the client does not know are ignored."""
        hints = cls.hints()
        values = {
            f.name: _decode(hints[f.name], data.get(_json_name(f)))
            for f in dataclasses.fields(cls)  # type: ignore[arg-type]
        }
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        """The model as JSON, without the fields that are `None`."""
        return {
            _json_name(f): _encode(getattr(self, f.name))
            for f in dataclasses.fields(self)  # type: ignore[arg-type]
            if getattr(self, f.name) is not None
        }


# --- Requests ---------------------------------------------------------------------------------


@dataclass
class StartRun(_Model):
    """`POST /v1/runs`: start a run."""

    agent: str
    input: str
    vars: dict[str, Any] | None = None
    tags: dict[str, str] | None = None


@dataclass
class Resume(_Model):
    """`POST /v1/runs/{id}/resume`: limits to raise first, by name."""

    raise_: dict[str, Any] | None = field(default=None, metadata={"json": "raise"})


@dataclass
class Cancel(_Model):
    """`POST /v1/runs/{id}/cancel`."""

    reason: str


@dataclass
class SendMessage(_Model):
    """`POST /v1/runs/{id}/messages`: a thread's next user turn."""

    text: str


@dataclass
class Approve(_Model):
    """`POST /v1/runs/{id}/calls/{call}/approve`: edited arguments and a note, both optional."""

    args: dict[str, Any] | None = None
    note: str | None = None


@dataclass
class Reject(_Model):
    """`POST /v1/runs/{id}/calls/{call}/reject` and `.../limit/reject`."""

    reason: str
    note: str | None = None


@dataclass
class Resolve(_Model):
    """`POST /v1/runs/{id}/calls/{call}/resolve`."""

    outcome: Outcome
    result: str | None = None
    reason: str | None = None
    note: str | None = None


@dataclass
class LimitApprove(_Model):
    """`POST /v1/runs/{id}/limit/approve`: the raised limits, by name."""

    raise_: dict[str, Any] = field(metadata={"json": "raise"})


@dataclass
class NewToken(_Model):
    """`POST /v1/tokens`."""

    name: str
    role: Role


# --- Responses --------------------------------------------------------------------------------


@dataclass
class Problem(_Model):
    """An error response (`application/problem+json`)."""

    type: str
    title: str
    status: int
    detail: str
    field: str | None = None


@dataclass
class RunCreated(_Model):
    """A run just started (or found again by its idempotency key)."""

    run_id: str
    status: Status
    version: str
    existing: bool


@dataclass
class ForkRun(_Model):
    """`POST /v1/runs/{id}/fork`: the first `at` events, then an optional user message."""

    at: int
    input: str | None = None


@dataclass
class Forked(_Model):
    """A fork just made: runnable at once, for the workers."""

    run_id: str
    forked_from: str
    at: int
    status: Status


@dataclass
class Usage(_Model):
    """What a run used so far."""

    steps: int
    model_calls: int
    tool_calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    unpriced_calls: int
    wall_ms: int


@dataclass
class Waiting(_Model):
    """What a stopped run waits for."""

    kind: str
    call_id: str | None = None
    reason: str | None = None
    wakes_at_ms: int | None = None


@dataclass
class Run(_Model):
    """A run."""

    run_id: str
    agent: str
    status: Status
    queued: bool
    version: str
    input: str
    tags: dict[str, str]
    usage: Usage
    limits: dict[str, float]
    events: int
    created_ms: int
    updated_ms: int
    turns: int
    version_label: str | None = None
    output: str | None = None
    reason: str | None = None
    waiting: Waiting | None = None
    driver: str | None = None
    forked_from: str | None = None
    forked_at: int | None = None

    @property
    def ended(self) -> bool:
        """Whether the run has ended (completed, failed or cancelled)."""
        return self.status in TERMINAL_STATUSES


@dataclass
class RunList(_Model):
    """A page of runs, newest first; `next` is the cursor of the next page."""

    runs: list[Run]
    next: str | None = None


@dataclass
class Event:
    """A journaled event: `seq`, `at_ms`, `kind`, and the fields of its kind in `data`.

    `event["call_id"]` reads a field of the event.
    """

    seq: int
    at_ms: int
    kind: str
    data: dict[str, Any]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Event:
        return cls(seq=data["seq"], at_ms=data.get("at_ms", 0), kind=data["kind"], data=dict(data))

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    @property
    def terminal(self) -> bool:
        """Whether the run ended with this event."""
        return self.kind in TERMINAL_KINDS


@dataclass
class Delta:
    """A piece of a model answer as it streams (not journaled: the answer's event follows)."""

    step: int
    kind: str
    index: int | None = None
    name: str | None = None
    text: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Delta:
        return cls(
            step=data["step"],
            kind=data["kind"],
            index=data.get("index"),
            name=data.get("name"),
            text=data.get("text"),
        )


class StreamEventKind(enum.StrEnum):
    """What an event of a run's stream is."""

    #: A journaled event: `data` is its JSON, `id` its sequence number.
    EVENT = "event"
    #: A piece of a model answer as it streams (not journaled; no `id` of its own).
    DELTA = "delta"
    #: The run's journal is gone; the stream ends.
    ERROR = "error"


@dataclass
class StreamEvent(_Model):
    """One Server-Sent Event of a run's stream, as framed on the wire."""

    event: StreamEventKind
    data: str
    id: str | None = None


@dataclass
class EventPage(_Model):
    """A page of a run's events."""

    events: list[Event]
    last_seq: int
    ended: bool

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EventPage:
        return cls(
            events=[Event.from_json(e) for e in data["events"]],
            last_seq=data["last_seq"],
            ended=data["ended"],
        )


@dataclass
class Cancelled(_Model):
    """What a cancel did: `cancelled` when it ended here, `cancelling` when its driver stops it."""

    run_id: str
    status: str
    driver: str | None = None


@dataclass
class Decided(_Model):
    """What a decision left the run at, and whether it woke the run."""

    run: Run
    woken: bool


@dataclass
class InboxItem(_Model):
    """One thing waiting for a human."""

    run_id: str
    agent: str
    kind: str
    call_id: str
    tool: str
    args: dict[str, Any]
    context: list[str]
    expired: bool
    escalated: bool
    risk: str | None = None
    reason: str | None = None
    requested_at_ms: int | None = None
    expires_at_ms: int | None = None
    idempotency_key: str | None = None
    input: str | None = None
    args_schema: dict[str, Any] | None = None


@dataclass
class AgentInfo(_Model):
    """An agent on offer."""

    name: str
    version: str
    model: str
    tools: list[str]
    spec_path: str
    version_label: str | None = None


@dataclass
class StatsRow(_Model):
    """Figures over a set of runs."""

    runs: int
    completed: int
    failed: int
    cancelled: int
    stopped: int
    escalated: int
    completion_rate: float
    error_rate: float
    escalation_rate: float
    avg_cost_usd: float
    avg_wall_ms: float
    avg_steps: float
    agent: str | None = None
    version: str | None = None


@dataclass
class ToolDecisions(_Model):
    """Approval figures of one tool."""

    tool: str
    requested: int
    approved: int
    edited: int
    rejected: int


@dataclass
class DayStats(_Model):
    """One day's figures."""

    day: str
    rows: list[StatsRow]


@dataclass
class HourStats(_Model):
    """One hour's figures."""

    hour: str
    rows: list[StatsRow]


@dataclass
class Stats(_Model):
    """`GET /v1/stats`."""

    total: StatsRow
    by_version: list[StatsRow]
    by_day: list[DayStats]
    tools: list[ToolDecisions]
    by_hour: list[HourStats] = dataclasses.field(default_factory=list)


@dataclass
class TokenCreated(_Model):
    """A token just made: shown this once."""

    name: str
    role: Role
    token: str


@dataclass
class TokenInfo(_Model):
    """A token as listed (never the token itself)."""

    name: str
    role: str
    created_ms: int
    revoked_ms: int | None = None


@dataclass
class Me(_Model):
    """Who the caller is."""

    name: str
    role: Role


@dataclass
class Health(_Model):
    """`GET /healthz`, `GET /readyz`."""

    status: str


#: Every schema of `/openapi.json` and what stands for it here (checked by the drift test).
class DeliveryState(enum.StrEnum):
    """Where a webhook delivery stands."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


@dataclass
class Delivery(_Model):
    """A webhook notification in the outbox, and its delivery so far (`GET /v1/outbox`)."""

    delivery_id: str
    run_id: str
    seq: int
    kind: str
    status: DeliveryState
    url: str
    secret_env: str
    attempts: int
    created_ms: int
    expires_ms: int
    body: Any
    next_attempt_ms: int | None = None
    done_ms: int | None = None
    last_error: str | None = None


@dataclass
class NewSchedule(_Model):
    """`POST /v1/schedules`: start an agent on a cron schedule."""

    agent: str
    cron: str
    input: str
    timezone: str | None = None
    overlap: str | None = None
    catch_up: str | None = None


@dataclass
class ScheduleInfo(_Model):
    """A schedule: an agent started by cron, fired once per slot by any worker or server."""

    schedule_id: str
    agent: str
    cron: str
    timezone: str
    input: str
    overlap: str
    catch_up: str
    created_ms: int
    next_slot_ms: int
    last_run_id: str | None = None


SCHEMAS: dict[str, type] = {
    "AgentInfo": AgentInfo,
    "Approve": Approve,
    "Cancel": Cancel,
    "Cancelled": Cancelled,
    "SendMessage": SendMessage,
    "ForkRun": ForkRun,
    "Forked": Forked,
    "DayStats": DayStats,
    "HourStats": HourStats,
    "Decided": Decided,
    "Delivery": Delivery,
    "DeliveryState": DeliveryState,
    "EventPage": EventPage,
    "EventRecord": Event,
    "Health": Health,
    "InboxItem": InboxItem,
    "LimitApprove": LimitApprove,
    "Me": Me,
    "NewSchedule": NewSchedule,
    "NewToken": NewToken,
    "Outcome": Outcome,
    "Problem": Problem,
    "Reject": Reject,
    "Resolve": Resolve,
    "Resume": Resume,
    "Role": Role,
    "Run": Run,
    "ScheduleInfo": ScheduleInfo,
    "RunCreated": RunCreated,
    "RunList": RunList,
    "StartRun": StartRun,
    "Stats": Stats,
    "StatsRow": StatsRow,
    "Status": Status,
    "StreamEvent": StreamEvent,
    "StreamEventKind": StreamEventKind,
    "TokenCreated": TokenCreated,
    "TokenInfo": TokenInfo,
    "ToolDecisions": ToolDecisions,
    "Usage": Usage,
    "Waiting": Waiting,
}
