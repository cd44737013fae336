"""The sync client against a real `chassis serve`: start, stream, decide, cancel, errors."""

from __future__ import annotations

import uuid

import pytest

from chassis_client import (
    BadRequest,
    Client,
    Conflict,
    ConnectionLost,
    Delta,
    Event,
    Forbidden,
    InvalidRequest,
    NotFound,
    Status,
    Unauthorized,
)
from chassis_client._core import Framer

from .conftest import Server
from .proxy import CuttableProxy


def seqs(events: list[Event]) -> list[int]:
    return [e.seq for e in events]


def until_waiting(client: Client, run_id: str) -> None:
    run = client.wait(run_id, {Status.WAITING})
    assert run.waiting is not None and run.waiting.kind == "approval", run


def test_start_and_stream_to_completion(client: Client) -> None:
    created = client.start_run("payer", "talk to me", tags={"case": "stream"})
    assert created.status == Status.RUNNING and not created.existing

    events = list(client.stream(created.run_id))

    # Every journaled event once, in order, and the iterator ends after the terminal one.
    assert seqs(events) == list(range(1, len(events) + 1))
    assert events[0].kind == "run_started"
    assert events[-1].kind == "run_completed" and events[-1].terminal
    page = client.events(created.run_id)
    assert [(e.seq, e.kind) for e in page.events] == [(e.seq, e.kind) for e in events]
    assert page.ended and page.last_seq == events[-1].seq
    run = client.get_run(created.run_id)
    assert run.status == Status.COMPLETED and run.ended
    assert run.output == "Hello there, talk to me! This answer streams in pieces."
    assert run.tags == {"case": "stream"} and run.usage.steps == 1
    assert run.version == created.version

    # A stream started after a sequence number gives only what follows it.
    tail = list(client.stream(created.run_id, after=2))
    assert seqs(tail) == seqs(events)[2:]


def test_stream_resumes_after_a_forced_disconnect(server: Server, client: Client) -> None:
    host, _, port = server.url.removeprefix("http://").partition(":")
    proxy = CuttableProxy(host, int(port))
    try:
        via_proxy = server.client(url=proxy.url, reconnect_delay=0.05)
        created = client.start_run("payer", "invoice for the cut")
        received: list[Event] = []
        cuts = 0
        for event in via_proxy.stream(created.run_id):
            received.append(event)
            if event.kind == "run_waiting" and cuts == 0:
                # The run waits for a human: nothing more comes until the approval. Cut the
                # connection under the stream, then approve on another connection: the events
                # after the decision reach the stream only through its reconnection.
                cuts = proxy.cut()
                client.approve(created.run_id, "1.0")
        assert cuts == 1
        assert proxy.connections >= 2, "the stream reconnected"
        assert seqs(received) == list(range(1, len(received) + 1)), "no gap, no duplicate"
        kinds = [e.kind for e in received]
        assert kinds[-1] == "run_completed"
        assert kinds.index("approval_decided") > kinds.index("run_waiting")
        journal = client.events(created.run_id)
        assert [(e.seq, e.kind) for e in journal.events] == [(e.seq, e.kind) for e in received]
        via_proxy.close()
    finally:
        proxy.close()


def test_approvals_list_and_approve_wakes_the_run(server: Server, client: Client) -> None:
    created = client.start_run("payer", "invoice 7")
    until_waiting(client, created.run_id)

    items = [i for i in client.approvals() if i.run_id == created.run_id]
    assert len(items) == 1
    item = items[0]
    assert (item.kind, item.call_id, item.tool, item.risk) == ("approval", "1.0", "pay", "irreversible")
    assert item.args == {"amount": 150, "to": "acme"}
    assert item.input == "invoice 7"
    assert item.args_schema is not None and item.args_schema["required"] == ["amount", "to"]
    assert item.expires_at_ms is not None and not item.expired

    decided = client.approve(created.run_id, "1.0", args={"amount": 120, "to": "acme"}, note="capped")
    assert decided.woken and decided.run.run_id == created.run_id
    run = client.wait(created.run_id)
    assert run.status == Status.COMPLETED
    assert run.output == "result: paid 120 to acme"
    decision = next(e for e in client.events(created.run_id).events if e.kind == "approval_decided")
    # The identity journaled is the token's name, not anything the request said.
    assert (decision["by"], decision["note"], decision["approved"]) == ("approver-1", "capped", True)
    assert "acme 120" in server.ledger()
    assert not [i for i in client.approvals() if i.run_id == created.run_id]


def test_reject_gives_the_model_the_reason(server: Server, client: Client) -> None:
    created = client.start_run("payer", "invoice to reject")
    until_waiting(client, created.run_id)
    paid_before = len(server.ledger())

    decided = client.reject(created.run_id, "1.0", reason="not this month")
    assert decided.woken
    run = client.wait(created.run_id)
    assert run.status == Status.COMPLETED
    assert run.output is not None and "not this month" in run.output
    assert len(server.ledger()) == paid_before, "a rejected call never runs"


def test_cancel_ends_a_waiting_run_and_a_second_cancel_conflicts(server: Server) -> None:
    with server.client(server.operator) as operator:
        created = operator.start_run("payer", "invoice to cancel")
        until_waiting(operator, created.run_id)

        cancelled = operator.cancel(created.run_id, reason="sent twice")
        # `cancelling` when the worker still held the run as it stopped to wait: it ends it.
        assert cancelled.run_id == created.run_id and cancelled.status in ("cancelled", "cancelling")
        run = operator.wait(created.run_id)
        assert run.status == Status.CANCELLED
        events = list(operator.stream(created.run_id))
        assert events[-1].kind == "run_cancelled"
        assert (events[-1]["by"], events[-1]["reason"]) == ("operator-1", "sent twice")

        with pytest.raises(Conflict) as error:
            operator.cancel(created.run_id, reason="again")
        assert error.value.status == 409 and error.value.type == "/problems/conflict"


def test_send_message_continues_a_completed_run(server: Server) -> None:
    with server.client(server.operator) as operator:
        created = operator.start_run("payer", "chat with me")
        assert operator.wait(created.run_id).output == "hi, chat with me"

        decided = operator.send_message(created.run_id, "and then?")
        # Woken, unless a worker was quicker still and has answered already.
        assert decided.run.run_id == created.run_id
        assert decided.woken or decided.run.status == Status.COMPLETED
        run = operator.wait(created.run_id)
        assert run.status == Status.COMPLETED and run.output == "turn 1: you said and then?"
        messages = [e for e in operator.events(created.run_id).events if e.kind == "user_message"]
        assert [(e["text"], e["by"]) for e in messages] == [("and then?", "operator-1")]

        with pytest.raises(InvalidRequest):
            operator.send_message(created.run_id, "  ")
        waiting = operator.start_run("payer", "invoice to message")
        until_waiting(operator, waiting.run_id)
        with pytest.raises(Conflict) as error:
            operator.send_message(waiting.run_id, "hurry")
        assert "waiting" in (error.value.detail or "")


def test_fork_continues_from_a_prefix_and_is_listed(server: Server) -> None:
    with server.client(server.operator) as operator:
        created = operator.start_run("payer", "chat to fork")
        operator.wait(created.run_id)
        length = operator.events(created.run_id).last_seq

        forked = operator.fork(created.run_id, at=length, input="once more")
        assert forked.forked_from == created.run_id and forked.at == length
        assert forked.status == Status.RUNNING
        run = operator.wait(forked.run_id)
        assert run.output == "turn 1: you said once more"
        listed = operator.list_runs(forked_from=created.run_id)
        assert [r.run_id for r in listed.runs] == [forked.run_id]
        with pytest.raises(InvalidRequest):
            operator.fork(created.run_id, at=length + 1)


def test_errors_raise_the_problem_they_are(server: Server, client: Client) -> None:
    with pytest.raises(NotFound) as missing:
        client.get_run("run_00000000000000000000000000")
    problem = missing.value
    assert (problem.status, problem.title, problem.type) == (404, "Not found", "/problems/not-found")
    assert "not found" in problem.detail and problem.problem["status"] == 404

    with pytest.raises(NotFound) as no_agent:
        client.start_run("nobody", "x")
    assert no_agent.value.field == "/agent"

    with pytest.raises(NotFound):
        list(client.stream("run_00000000000000000000000000"))

    created = client.start_run("payer", "invoice decided twice")
    until_waiting(client, created.run_id)
    with pytest.raises(InvalidRequest) as invalid:
        client.approve(created.run_id, "1.0", args={"amount": -5, "to": "acme"})
    assert invalid.value.status == 422 and invalid.value.field == "/args"
    client.approve(created.run_id, "1.0")
    with pytest.raises(Conflict) as twice:
        client.approve(created.run_id, "1.0")
    assert twice.value.status == 409 and twice.value.title == "State conflict"
    with pytest.raises(Conflict):
        client.resolve(created.run_id, "1.0", "succeeded", result="paid")  # its outcome is known

    with pytest.raises(BadRequest) as bad:
        client.list_runs(status="sleepy")
    assert bad.value.field == "status"
    with server.client(server.viewer) as viewer:
        assert viewer.get_run(created.run_id).run_id == created.run_id
        with pytest.raises(Forbidden) as forbidden:
            viewer.start_run("payer", "talk")
        assert forbidden.value.status == 403
    with server.client("chs_not_a_token") as stranger, pytest.raises(Unauthorized):
        stranger.get_run(created.run_id)
    client.wait(created.run_id)


def test_list_runs_filters_and_iterates_pages(client: Client) -> None:
    batch = uuid.uuid4().hex[:12]
    started = [client.start_run("payer", f"talk {i}", tags={"batch": batch}).run_id for i in range(3)]
    for run_id in started:
        client.wait(run_id)

    page = client.list_runs(tag=f"batch={batch}", limit=2)
    assert len(page.runs) == 2 and page.next
    rest = client.list_runs(tag=f"batch={batch}", limit=2, cursor=page.next)
    assert len(rest.runs) == 1 and rest.next is None
    every = [r.run_id for r in client.iter_runs(tag=f"batch={batch}", limit=1)]
    assert sorted(every) == sorted(started) and len(set(every)) == 3
    assert every == [r.run_id for r in page.runs + rest.runs], "newest first, the same order"
    completed = {r.run_id for r in client.iter_runs(tag=f"batch={batch}", status="completed", agent="payer")}
    assert completed == set(started)
    assert not client.list_runs(tag=f"batch={batch}", status="waiting").runs


def test_an_idempotency_key_starts_one_run(client: Client) -> None:
    key = f"key-{uuid.uuid4().hex}"
    first = client.start_run("payer", "talk once", idempotency_key=key)
    again = client.start_run("payer", "talk once", idempotency_key=key)
    assert again.run_id == first.run_id and again.existing and not first.existing
    client.wait(first.run_id)


def test_sse_framing_skips_comments_and_joins_data_lines() -> None:
    framer = Framer()
    got = [
        framer.feed(line)
        for line in [": heartbeat", "", "id: 7", "event: event", "data: {", "data: }", "", "event: delta", "data: x", ""]
    ]
    messages = [g for g in got if g is not None]
    assert [(x.event, x.data, x.id) for x in messages] == [("event", "{\n}", "7"), ("delta", "x", None)]


def test_the_login_url_carries_the_token(server: Server) -> None:
    for url in (f"{server.url}/#token={server.viewer}", f"{server.url}/?token={server.viewer}"):
        with Client(url) as client:
            assert client.base_url == server.url
            me = client.me()
            assert (me.name, me.role) == ("viewer-1", "viewer")


def test_a_stream_gives_up_when_the_server_stays_away(server: Server) -> None:
    proxy = CuttableProxy("127.0.0.1", 1)  # forwards to a port nobody listens on
    try:
        with server.client(url=proxy.url, reconnect_delay=0.05, max_reconnect_wait=0.5) as client:
            with pytest.raises(ConnectionLost) as lost:
                list(client.stream("run_00000000000000000000000000"))
            assert "stream of run_00000000000000000000000000" in lost.value.detail
    finally:
        proxy.close()


def test_a_limit_is_raised_or_refused_by_a_human(client: Client) -> None:
    raised = client.start_run("stepper", "invoice over the limit")
    run = client.wait(raised.run_id, {Status.WAITING})
    assert run.waiting is not None and run.waiting.kind == "limit", run
    assert [i.kind for i in client.approvals() if i.run_id == raised.run_id] == ["limit"]
    decided = client.approve_limit(raised.run_id, {"max_steps": 3})
    assert decided.woken and decided.run.limits["max_steps"] == 3
    done = client.wait(raised.run_id)
    assert (done.status, done.output) == (Status.COMPLETED, "result: paid 150 to acme")

    refused = client.start_run("stepper", "invoice refused at the limit")
    client.wait(refused.run_id, {Status.WAITING})
    client.reject_limit(refused.run_id, reason="enough for today")
    failed = client.wait(refused.run_id)
    assert failed.status == Status.FAILED
    assert failed.reason is not None and "enough for today" in failed.reason, failed

    with pytest.raises(Conflict):
        client.approve_limit(refused.run_id, {"max_steps": 9})
    with pytest.raises(BadRequest) as unknown:
        client.approve_limit(refused.run_id, {"max_bananas": 3})
    assert unknown.value.field == "/raise/max_bananas"


def test_resume_continues_a_paused_run_with_a_raise(client: Client) -> None:
    created = client.start_run("pauser", "invoice paused at the limit")
    paused = client.wait(created.run_id, {Status.PAUSED})
    assert paused.usage.steps == 1
    decided = client.resume(created.run_id, raises={"max_steps": 2, "max_wall_time": "2h"})
    assert decided.woken
    done = client.wait(created.run_id)
    assert (done.status, done.output) == (Status.COMPLETED, "result: paid 150 to acme")
    assert done.limits["max_steps"] == 2 and done.limits["max_wall_time"] == 2 * 3600 * 1000
    with pytest.raises(Conflict):
        client.resume(created.run_id)


def test_stream_gives_the_deltas_of_an_answer_before_its_event(client: Client) -> None:
    """With `deltas=True` the pieces of a streamed answer arrive before the answer is journaled
    (not durable: no sequence number), and they add up to the journaled answer."""
    created = client.start_run("talker", "talk slowly")
    got = list(client.stream(created.run_id, deltas=True))
    deltas = [x for x in got if isinstance(x, Delta)]
    events = [x for x in got if isinstance(x, Event)]
    assert deltas, got
    assert seqs(events) == list(range(1, len(events) + 1))
    responded = next(i for i, x in enumerate(got) if isinstance(x, Event) and x.kind == "model_responded")
    first_delta = next(i for i, x in enumerate(got) if isinstance(x, Delta))
    assert first_delta < responded, got
    text = "".join(d.text or "" for d in deltas if d.kind == "text")
    assert text == got[responded]["message"]["content"] == "Hello there, talk slowly! This answer streams in pieces."
