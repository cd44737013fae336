"""A real `chassis serve` for the tests and for schemathesis: the mock model and the server as processes of the
`chassis` binary (built by cargo beforehand, never by the tests), a temporary journal, an agent
whose tool waits for approval, and tokens of each role."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from contextlib import contextmanager
from typing import Iterator

import httpx

from chassis_client import Client

ROOT = Path(__file__).resolve().parents[3]

#: The mock model's replies: inputs with "talk" get an answer at once; inputs with "chat" too,
#: and each later turn of the thread echoes its message; every other input asks to pay, then
#: answers with what the tool (or the rejection) said.
SCRIPT = """
[[scenario]]
name = "chat"
when_input_contains = "chat"
[[scenario.turn]]
text = "hi, {input}"
[[scenario.turn]]
text = "turn {turn}: you said {last_user}"

[[scenario]]
name = "talk"
when_input_contains = "talk"
[[scenario.turn]]
text = "Hello there, {input}! This answer streams in pieces."

[[scenario]]
name = "pay"
[[scenario.turn]]
text = "The invoice is due, so I will pay it."
tool_calls = [{ name = "pay", arguments = { amount = 150, to = "acme" } }]
[[scenario.turn]]
text = "result: {last_tool_result}"
"""

PAY = """
import json, sys
args = json.load(sys.stdin)
with open(sys.argv[1], "a") as ledger:
    ledger.write("%s %s\\n" % (args["to"], args["amount"]))
print("paid %s to %s" % (args["amount"], args["to"]))
"""


def chassis_bin() -> str:
    path = os.environ.get("CHASSIS_BIN") or str(ROOT / "target" / "debug" / "chassis")
    if not Path(path).exists():
        raise SystemExit(f"no chassis binary at {path}: run `cargo build --bin chassis` or set CHASSIS_BIN")
    return path


def write_agent(
    directory: Path,
    model_url: str,
    ledger: Path,
    name: str = "payer",
    risk: str = "irreversible",
    limits: str = "max_steps = 5",
) -> None:
    """`payer`: an irreversible `pay` tool, which waits for a human's approval; other names
    with another risk and limits."""
    (directory / "tools").mkdir(parents=True)
    (directory / "prompt.j2").write_text("Pay what is due.")
    (directory / "tools" / "pay.py").write_text(PAY)
    (directory / "agent.toml").write_text(
        f"""
[agent]
name = "{name}"
prompt = "prompt.j2"
[model]
primary = "m:model"
[providers.m]
kind = "openai"
base_url = "{model_url}"
[[tools]]
name = "pay"
description = "Pay an invoice"
command = ["{sys.executable}", "tools/pay.py", "{ledger}"]
args_schema = {{ type = "object", properties = {{ amount = {{ type = "number", minimum = 0 }}, to = {{ type = "string" }} }}, required = ["amount", "to"], additionalProperties = false }}
risk = "{risk}"
[approvals]
timeout = "1h"
[limits]
{limits}
"""
    )


def first_line(process: subprocess.Popen[str], what: str, log: Path) -> str:
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if not line:
        process.kill()
        raise RuntimeError(f"{what} printed nothing; its log:\n{log.read_text()}")
    return line


@dataclass
class Server:
    """A running server, its tokens by role, and where its files are."""

    url: str
    bin: str
    db: Path
    root: Path
    admin: str
    operator: str
    approver: str
    viewer: str

    def client(self, token: str | None = None, url: str | None = None, **kwargs: object) -> Client:
        return Client(url or self.url, token=token or self.approver, **kwargs)  # type: ignore[arg-type]

    def ledger(self) -> list[str]:
        path = self.root / "ledger.txt"
        return path.read_text().splitlines() if path.exists() else []


def make_token(bin: str, db: Path, name: str, role: str) -> str:
    out = subprocess.run(
        [bin, "--db", str(db), "tokens", "create", "--name", name, "--role", role],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


@contextmanager
def running(root: Path, bin: str) -> Iterator[Server]:
    """The mock model and `chassis serve` as processes, with their files under `root`, until the
    block ends."""
    (root / "script.toml").write_text(SCRIPT)
    mock_log = root / "mock.log"
    mock = subprocess.Popen(
        [bin, "mock-model", "--script", str(root / "script.toml"), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=mock_log.open("w"),
        text=True,
    )
    # The same replies, each after half a second: long enough for a client to be following
    # the run when its answer streams.
    slow_log = root / "slow-mock.log"
    slow = subprocess.Popen(
        [bin, "mock-model", "--script", str(root / "script.toml"), "--port", "0", "--latency", "500ms"],
        stdout=subprocess.PIPE,
        stderr=slow_log.open("w"),
        text=True,
    )
    serve = None
    try:
        model_url = first_line(mock, "chassis mock-model", mock_log)
        slow_url = first_line(slow, "chassis mock-model --latency", slow_log)
        ledger = root / "ledger.txt"
        write_agent(root / "agents" / "payer", model_url, ledger)
        # Pays without asking, then stops at one step: a human raises the limit (or refuses).
        write_agent(
            root / "agents" / "stepper", model_url, ledger, "stepper", "read_only",
            'max_steps = 1\non_limit = "escalate"',
        )
        # The same, paused at the limit: `resume` with a raise continues it.
        write_agent(
            root / "agents" / "pauser", model_url, ledger, "pauser", "read_only",
            'max_steps = 1\non_limit = "pause"',
        )
        # Talks to the slow mock: its answers stream while a client follows.
        write_agent(root / "agents" / "talker", slow_url, ledger, "talker", "read_only")
        db = root / "journal.db"
        serve_log = root / "serve.log"
        serve = subprocess.Popen(
            [
                bin, "--db", str(db), "serve",
                "--addr", "127.0.0.1:0",
                "--agents", str(root / "agents"),
                "--poll-interval", "100ms",
            ],
            stdout=subprocess.PIPE,
            stderr=serve_log.open("w"),
            text=True,
        )
        # The login URL, with the first admin token: `http://127.0.0.1:PORT/#token=…`.
        login = first_line(serve, "chassis serve", serve_log)
        base, _, admin = login.partition("/#token=")
        deadline = time.monotonic() + 30
        while httpx.get(f"{base}/healthz").status_code != 200:
            assert time.monotonic() < deadline, "the server never answered /healthz"
            time.sleep(0.05)
        yield Server(
            url=base,
            bin=bin,
            db=db,
            root=root,
            admin=admin,
            operator=make_token(bin, db, "operator-1", "operator"),
            approver=make_token(bin, db, "approver-1", "approver"),
            viewer=make_token(bin, db, "viewer-1", "viewer"),
        )
    finally:
        for process in (serve, mock, slow):
            if process is not None:
                process.terminate()
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()


def main() -> None:
    """`python harness.py ROOT`: serves until SIGTERM; `ROOT/url` and `ROOT/token` (an admin's)
    are written once the server answers."""
    import signal

    root = Path(sys.argv[1])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with running(root, chassis_bin()) as server:
        (root / "token").write_text(server.admin)
        (root / "url").write_text(server.url)
        signal.pause()


if __name__ == "__main__":
    main()
