//! Limits across processes: a run that reaches one pauses (and `resume --raise` continues it)
//! or escalates to the approvals inbox (where a human raises or rejects it); each is journaled
//! with its figures and alerted (a log line, and a webhook POST retried in the background).
//! Usage and cost show in `runs` and `show`; bad limit configuration names the key.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use crate::util::{
    Mock, Output, assert_nothing_journaled, assert_well_formed, chassis, events, kinds, python,
    run, runs_json, show_json, toml_str, write,
};

/// Three steps: shout the input, shout it again, answer.
const SCRIPT: &str = r#"
[[scenario]]
name = "steps"
[[scenario.turn]]
tool_calls = [{ name = "shout", arguments = { text = "{input}" } }]
[[scenario.turn]]
tool_calls = [{ name = "shout", arguments = { text = "again: {last_tool_result}" } }]
[[scenario.turn]]
text = "done: {last_tool_result}"
"#;

const SHOUT_PY: &str = r#"
import json, sys
args = json.load(sys.stdin)
print(args["text"].upper())
"#;

/// The final answer for `input`.
fn answer(input: &str) -> String {
    format!("done: AGAIN: {}", input.to_uppercase())
}

/// An agent with one read-only tool, `limits` as its `[limits]` body and `extra` spec text,
/// on the mock model under the id `gpt-4o-mini` (priced by default).
struct Budget {
    _dir: TempDir,
    db: PathBuf,
    spec: PathBuf,
    _mock: Mock,
}

impl Budget {
    fn new(limits: &str, extra: &str) -> Budget {
        let mock = Mock::start(SCRIPT, Duration::ZERO);
        let dir = tempfile::tempdir().expect("temporary directory");
        let root = dir.path();
        write(root, "shout.py", SHOUT_PY);
        write(root, "prompt.md.j2", "You shout. Request: {{ input }}\n");
        let python = toml_str(python());
        let spec = write(
            root,
            "agent.toml",
            &format!(
                r#"[agent]
name = "budgeted"
prompt = "prompt.md.j2"

[model]
primary = "mock:gpt-4o-mini"
timeout = "60s"
max_tokens = 64

[providers.mock]
kind = "openai"
base_url = {base_url}

[limits]
{limits}

[[tools]]
name = "shout"
description = "Upper-cases a text"
command = [{python}, "-I", "shout.py"]
risk = "read_only"
timeout = "60s"
args_schema = {{ type = "object", required = ["text"], properties = {{ text = {{ type = "string" }} }} }}
{extra}"#,
                base_url = toml_str(&mock.base_url()),
            ),
        );
        Budget {
            db: root.join("j.db"),
            _dir: dir,
            spec,
            _mock: mock,
        }
    }

    /// `chassis run agent.toml --input INPUT` plus `args`.
    fn run(&self, input: &str, args: &[&str]) -> Output {
        run(chassis(&self.db)
            .env("BUDGET_HOOK_SECRET", "a-secret-of-sixteen-bytes-or-more")
            .arg("run")
            .arg(&self.spec)
            .args(["--input", input])
            .args(args))
    }

    /// Runs `input` with `--json`; asserts exit 3 and `status`; returns the run id.
    fn stopped_run(&self, input: &str, status: &str) -> String {
        let out = self.run(input, &["--json"]);
        out.expect_code(3);
        let reply = out.json();
        assert_eq!(reply["status"], status, "{out:#?}");
        assert_eq!(reply["output"], Value::Null, "{out:#?}");
        reply["run_id"].as_str().expect("run_id").to_string()
    }

    fn chassis(&self, args: &[&str]) -> Output {
        run(chassis(&self.db).args(args))
    }

    fn event_count(&self, run_id: &str) -> usize {
        events(&show_json(&self.db, run_id)).len()
    }

    /// `chassis approvals --json`, parsed.
    fn inbox(&self) -> Vec<Value> {
        let out = self.chassis(&["approvals", "--json"]);
        out.expect_code(0);
        match out.json() {
            Value::Array(items) => items,
            other => panic!("approvals --json printed {other}, not an array"),
        }
    }
}

/// The events of `kind`.
fn of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["kind"] == kind).collect()
}

/// Asserts the one `limit_reached` event of `events` is `max_steps` at 1 with `action`.
#[track_caller]
fn assert_steps_limit_reached(events: &[Value], action: &str) {
    let reached = of_kind(events, "limit_reached");
    assert_eq!(reached.len(), 1, "{events:#?}");
    let hit = reached[0];
    assert_eq!(hit["limit"], "max_steps");
    assert_eq!(hit["value"], 1.0);
    assert_eq!(hit["used"], 1.0, "one step was used: {hit}");
    assert_eq!(
        hit["projected"], 2.0,
        "the next step would be the second: {hit}"
    );
    assert_eq!(hit["action"], action);
}

#[test]
fn a_paused_run_continues_once_resume_raises_the_limit() {
    let budget = Budget::new("max_steps = 1\non_limit = \"pause\"", "");
    let input = "pause me";
    let run_id = budget.stopped_run(input, "paused");
    let show = show_json(&budget.db, &run_id);
    assert_eq!(show["status"], "paused");
    let journal = events(&show);
    assert_well_formed(journal);
    assert_steps_limit_reached(journal, "pause");
    let paused = of_kind(journal, "run_paused");
    assert_eq!(paused.len(), 1, "{journal:#?}");
    assert!(
        paused[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains(&format!("chassis resume {run_id} --raise max_steps="))),
        "the reason says how to continue: {paused:#?}"
    );
    assert_eq!(
        of_kind(journal, "model_requested").len(),
        1,
        "the second model call was not made: {journal:#?}"
    );
    // A run paused at a limit waits for a human: it is listed, with what to raise.
    let inbox = budget.inbox();
    assert_eq!(inbox.len(), 1, "{inbox:#?}");
    assert_eq!(
        (inbox[0]["kind"].as_str(), inbox[0]["tool"].as_str()),
        (Some("paused"), Some("max_steps"))
    );

    // Bad raises are usage errors that journal nothing.
    let before = budget.event_count(&run_id);
    let out = budget.chassis(&["resume", &run_id, "--raise", "max_bananas=3"]);
    out.expect_code(2);
    assert!(
        out.stderr.contains("unknown limit `max_bananas`")
            && out.stderr.contains("known: max_steps, max_model_calls")
            && out.stderr.contains("max_cost_usd"),
        "names the limit and lists the known ones: {out:#?}"
    );
    for (raise, needle) in [
        ("max_steps=-1", "must be greater than zero"),
        ("max_steps=0", "must be greater than zero"),
        ("max_steps=lots", "`lots` is not a number"),
        ("max_steps", "expected LIMIT=VALUE"),
        ("max_wall_time=10 parsecs", "max_wall_time"),
    ] {
        let out = budget.chassis(&["resume", &run_id, "--raise", raise]);
        out.expect_code(2);
        assert!(
            out.stderr.contains(&format!("--raise {raise}")) && out.stderr.contains(needle),
            "{raise}: {out:#?}"
        );
    }
    assert_eq!(
        budget.event_count(&run_id),
        before,
        "bad raises journal nothing"
    );

    // Resuming without a raise meets the same limit again: still paused.
    let out = budget.chassis(&["resume", &run_id, "--json"]);
    out.expect_code(3);
    assert_eq!(out.json()["status"], "paused");

    let out = budget.chassis(&[
        "resume",
        &run_id,
        "--raise",
        "max_steps=10",
        "--by",
        "ops",
        "--json",
    ]);
    out.expect_code(0);
    let reply = out.json();
    assert_eq!(reply["status"], "completed");
    assert_eq!(reply["output"], answer(input));

    let show = show_json(&budget.db, &run_id);
    let events = events(&show);
    assert_well_formed(events);
    let raised = of_kind(events, "limit_raised");
    assert_eq!(raised.len(), 1, "{events:#?}");
    assert_eq!(raised[0]["limit"], "max_steps");
    assert_eq!(raised[0]["value"], 10.0);
    assert_eq!(raised[0]["by"], "ops");
    assert_eq!(show["steps"], 3);
    assert_eq!(kinds(events).last(), Some(&"run_completed"));
}

#[test]
fn an_escalated_limit_is_an_inbox_request_a_human_raises() {
    let budget = Budget::new("max_steps = 1\non_limit = { max_steps = \"escalate\" }", "");
    let input = "escalate me";
    let run_id = budget.stopped_run(input, "waiting");
    let show = show_json(&budget.db, &run_id);
    assert_steps_limit_reached(events(&show), "escalate");

    let inbox = budget.inbox();
    assert_eq!(inbox.len(), 1, "{inbox:#?}");
    let item = &inbox[0];
    assert_eq!(item["kind"], "limit");
    assert_eq!(item["call_id"], "limit");
    assert_eq!(item["tool"], "max_steps");
    assert_eq!(item["run_id"], run_id.as_str());
    assert_eq!(item["args"]["value"], 1.0);
    assert!(
        item["reason"]
            .as_str()
            .is_some_and(|r| r.contains("limit request")),
        "{item:#}"
    );
    let listing = budget.chassis(&["approvals"]);
    listing.expect_code(0);
    assert!(
        listing.stdout.contains(&format!(
            "chassis approve {run_id} limit --raise max_steps=VALUE"
        )),
        "{listing:#?}"
    );

    // Approving needs a raise of the limit the run waits on; refusals journal nothing.
    let before = budget.event_count(&run_id);
    for (args, needle) in [
        (&["approve", &run_id, "limit"][..], "needs --raise"),
        (
            &["approve", &run_id, "limit", "--raise", "max_cost_usd=1.0"][..],
            "waits on max_steps",
        ),
        (
            &["approve", &run_id, "limit", "--raise", "max_bananas=2"][..],
            "unknown limit `max_bananas`",
        ),
    ] {
        let out = budget.chassis(args);
        out.expect_code(2);
        assert!(out.stderr.contains(needle), "{args:?}: {out:#?}");
    }
    assert_eq!(
        budget.event_count(&run_id),
        before,
        "refusals journal nothing"
    );

    let out = budget.chassis(&[
        "approve",
        &run_id,
        "limit",
        "--raise",
        "max_steps=10",
        "--by",
        "lead",
        "--resume",
    ]);
    out.expect_code(0);
    assert_eq!(out.stdout, format!("{}\n", answer(input)), "{out:#?}");
    assert_eq!(budget.inbox(), Vec::<Value>::new());

    let show = show_json(&budget.db, &run_id);
    assert_eq!(show["status"], "completed");
    let events = events(&show);
    assert_well_formed(events);
    let raised = of_kind(events, "limit_raised");
    assert_eq!(raised.len(), 1, "{events:#?}");
    assert_eq!(raised[0]["limit"], "max_steps");
    assert_eq!(raised[0]["value"], 10.0);
    assert_eq!(raised[0]["by"], "lead");
}

#[test]
fn a_rejected_limit_request_fails_the_run_with_the_reason() {
    let budget = Budget::new("max_steps = 1\non_limit = { max_steps = \"escalate\" }", "");
    let run_id = budget.stopped_run("reject me", "waiting");
    let out = budget.chassis(&[
        "reject",
        &run_id,
        "limit",
        "--reason",
        "this costs too much",
        "--by",
        "cfo",
    ]);
    out.expect_code(1);
    assert!(out.stderr.contains("has failed"), "{out:#?}");
    assert_eq!(budget.inbox(), Vec::<Value>::new());

    let show = show_json(&budget.db, &run_id);
    assert_eq!(show["status"], "failed");
    let events = events(&show);
    assert_well_formed(events);
    let failed = of_kind(events, "run_failed");
    assert_eq!(failed.len(), 1, "{events:#?}");
    let error = failed[0]["error"]
        .as_str()
        .expect("run_failed has an error");
    assert!(
        error.contains("max_steps")
            && error.contains("cfo")
            && error.contains("this costs too much"),
        "{error}"
    );
    assert!(of_kind(events, "limit_raised").is_empty(), "{events:#?}");

    // The run has ended: resume reports the failure.
    let out = budget.chassis(&["resume", &run_id, "--json"]);
    out.expect_code(1);
    assert_eq!(out.json()["status"], "failed");
}

#[test]
fn the_limit_request_of_an_ended_run_cannot_be_decided_again() {
    let budget = Budget::new("max_steps = 1\non_limit = { max_steps = \"escalate\" }", "");
    let decisions: [&[&str]; 2] = [
        &["reject", "RUN", "limit", "--reason", "again"],
        &["approve", "RUN", "limit", "--raise", "max_steps=10"],
    ];
    for (i, decision) in decisions.into_iter().enumerate() {
        let run_id = budget.stopped_run(&format!("end me {i}"), "waiting");
        budget
            .chassis(&["reject", &run_id, "limit", "--reason", "no", "--by", "cfo"])
            .expect_code(1);
        let before = budget.event_count(&run_id);

        // Refused, and the journal left as it was: replayable, still failed.
        let args: Vec<&str> = decision
            .iter()
            .map(|a| if *a == "RUN" { run_id.as_str() } else { a })
            .collect();
        let out = budget.chassis(&args);
        let show = show_json(&budget.db, &run_id);
        assert_eq!(
            (out.code, show["status"].as_str()),
            (Some(2), Some("failed")),
            "{decision:?} on an ended run must be refused: {out:#?} {show:#}"
        );
        assert_eq!(
            show["events"].as_array().map(Vec::len),
            Some(before),
            "{show:#}"
        );
    }
}

/// A webhook receiver on 127.0.0.1 that answers 500 to the first POST and 200 to later ones,
/// keeping every body.
struct Webhook {
    port: u16,
    bodies: Arc<Mutex<Vec<Value>>>,
}

impl Webhook {
    fn start() -> Webhook {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().expect("local address").port();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let seen = bodies.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
                let mut length = 0;
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    if line.trim_end().is_empty() {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':')
                        && name.eq_ignore_ascii_case("content-length")
                    {
                        length = value.trim().parse().unwrap_or(0);
                    }
                    head.push_str(&line);
                }
                if head.is_empty() {
                    continue;
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_err() {
                    continue;
                }
                let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let first = {
                    let mut bodies = seen.lock().expect("webhook lock");
                    bodies.push(value);
                    bodies.len() == 1
                };
                let status = if first {
                    "500 Internal Server Error"
                } else {
                    "200 OK"
                };
                let mut stream = stream;
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
            }
        });
        Webhook { port, bodies }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    fn bodies(&self) -> Vec<Value> {
        self.bodies.lock().expect("webhook lock").clone()
    }
}

#[test]
fn a_limit_reached_is_posted_to_the_webhook_and_retried_after_a_500() {
    let webhook = Webhook::start();
    let budget = Budget::new(
        "max_steps = 1\non_limit = \"pause\"",
        &format!(
            "\n[alerts]\nwebhook = {}\nsecret_env = \"BUDGET_HOOK_SECRET\"\n",
            toml_str(&webhook.url())
        ),
    );
    // The run completes (here: pauses) and exits; delivery is bounded, never blocking.
    let run_id = budget.stopped_run("alert me", "paused");

    let bodies = webhook.bodies();
    let alerts: Vec<&Value> = bodies
        .iter()
        .filter(|b| b["alert"] == "limit_reached")
        .collect();
    assert!(
        alerts.len() >= 2,
        "the alert was posted, refused with a 500, and posted again: {bodies:#?}"
    );
    for alert in &alerts {
        assert_eq!(alert["run_id"], run_id.as_str(), "{alert}");
        assert_eq!(alert["agent"], "budgeted", "{alert}");
        assert_eq!(alert["details"]["limit"], "max_steps", "{alert}");
        assert_eq!(alert["details"]["value"], 1.0, "{alert}");
        assert_eq!(alert["details"]["used"], 1.0, "{alert}");
        assert_eq!(alert["details"]["projected"], 2.0, "{alert}");
        assert_eq!(alert["details"]["action"], "pause", "{alert}");
        assert!(alert["at_ms"].as_u64().is_some_and(|t| t > 0), "{alert}");
    }
    assert_eq!(alerts[0], alerts[1], "the retry posts the same alert");
}

#[test]
fn every_alert_is_a_log_line() {
    let budget = Budget::new("max_steps = 1\non_limit = \"pause\"", "");
    // The default filter (warn), text format.
    let out = budget.run("log me", &["--json"]);
    out.expect_code(3);
    let run_id = out.json()["run_id"].as_str().expect("run_id").to_string();
    let line = out
        .stderr
        .lines()
        .find(|l| l.contains("alert") && l.contains("limit_reached"))
        .unwrap_or_else(|| panic!("no alert line on stderr: {out:#?}"));
    assert!(line.contains("WARN") && line.contains(&run_id), "{line}");

    // JSON lines, with --log info.
    let out = budget.run(
        "log me as json",
        &["--json", "--log", "info", "--log-format", "json"],
    );
    out.expect_code(3);
    let run_id = out.json()["run_id"].as_str().expect("run_id").to_string();
    let alert = out
        .stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["message"] == "alert")
        .unwrap_or_else(|| panic!("no JSON alert line on stderr: {out:#?}"));
    assert_eq!(alert["alert"], "limit_reached", "{alert}");
    assert_eq!(alert["run_id"], run_id.as_str(), "{alert}");
    assert_eq!(alert["agent"], "budgeted", "{alert}");
    assert_eq!(alert["level"], "WARN", "{alert}");

    // An escalation and an approval request alert too.
    let budget = Budget::new("max_steps = 1\non_limit = \"escalate\"", "");
    let out = budget.run("escalate me", &["-q"]);
    out.expect_code(3);
    assert!(
        out.stderr
            .lines()
            .any(|l| l.contains("alert") && l.contains("limit_reached") && l.contains("escalate")),
        "{out:#?}"
    );
}

#[test]
fn runs_and_show_report_usage_and_cost() {
    let budget = Budget::new("max_steps = 5", "");
    let input = "count me";
    let out = budget.run(input, &["--json"]);
    out.expect_code(0);
    let reply = out.json();
    assert_eq!(reply["output"], answer(input));
    let run_id = reply["run_id"].as_str().expect("run_id");

    let runs = runs_json(&budget.db, &[]);
    assert_eq!(runs.len(), 1, "{runs:#?}");
    let row = &runs[0];
    assert_eq!(row["steps"], 3, "{row:#}");
    let input_tokens = row["input_tokens"].as_u64().expect("input_tokens");
    let output_tokens = row["output_tokens"].as_u64().expect("output_tokens");
    assert!(input_tokens > 0 && output_tokens > 0, "{row:#}");
    let cost = row["cost_usd"].as_f64().expect("cost_usd is a number");
    assert!(cost > 0.0, "gpt-4o-mini has a default price: {row:#}");
    assert_eq!(row["unpriced_calls"], 0, "{row:#}");

    // Per run in show --json, and per step in its model_responded events, adding up.
    let show = show_json(&budget.db, run_id);
    assert_eq!(show["steps"], 3);
    assert_eq!(show["usage"]["input_tokens"], input_tokens);
    assert_eq!(show["usage"]["output_tokens"], output_tokens);
    assert_eq!(show["usage"]["cost_usd"], cost);
    assert_eq!(show["usage"]["model_calls"], 3);
    assert_eq!(show["usage"]["tool_calls"], 2);
    let responded = of_kind(events(&show), "model_responded");
    assert_eq!(responded.len(), 3);
    let step_cost: f64 = responded
        .iter()
        .map(|e| e["cost_usd"].as_f64().expect("each step is priced"))
        .sum();
    assert!((step_cost - cost).abs() < 1e-12, "{step_cost} vs {cost}");
    let step_input: u64 = responded
        .iter()
        .map(|e| {
            e["usage"]["input_tokens"]
                .as_u64()
                .expect("step input tokens")
        })
        .sum();
    assert_eq!(step_input, input_tokens);

    let out = budget.chassis(&["show", run_id]);
    out.expect_code(0);
    let usage = out
        .stdout
        .lines()
        .find(|l| l.starts_with("usage"))
        .unwrap_or_else(|| panic!("no usage line: {out:#?}"));
    assert!(
        usage.contains("3 step(s)")
            && usage.contains("3 model call(s)")
            && usage.contains("2 tool call(s)")
            && usage.contains(&format!(
                "{input_tokens} input + {output_tokens} output tokens"
            ))
            && usage.contains(&format!("${cost:.4}"))
            && !usage.contains("unknown price"),
        "{usage}"
    );

    let out = budget.chassis(&["runs"]);
    out.expect_code(0);
    let row = out
        .stdout
        .lines()
        .find(|l| l.starts_with(run_id))
        .unwrap_or_else(|| panic!("run not listed: {out:#?}"));
    assert!(
        row.contains(&format!("${cost:.4}"))
            && row.contains(&(input_tokens + output_tokens).to_string()),
        "{row}"
    );
}

#[test]
fn bad_limit_configuration_names_the_key_and_journals_nothing() {
    let cases: [(&str, &str, &[&str]); 8] = [
        (
            "max_cost_usd = -1",
            "",
            &["limits.max_cost_usd", "greater than zero"],
        ),
        (
            "max_cost_usd = 0.0",
            "",
            &["limits.max_cost_usd", "greater than zero"],
        ),
        (
            "max_steps = 0",
            "",
            &["limits.max_steps", "greater than zero"],
        ),
        (
            "max_wall_time = \"10 parsecs\"",
            "",
            &["limits.max_wall_time"],
        ),
        (
            "max_bananas = 3",
            "",
            &["LINE", "unknown field `max_bananas`"],
        ),
        (
            "on_limit = { max_bananas = \"pause\" }",
            "",
            &["limits.on_limit.max_bananas", "unknown limit `max_bananas`"],
        ),
        (
            "on_limit = \"shrug\"",
            "",
            &["limits.on_limit", "unknown action `shrug`"],
        ),
        (
            "max_steps = 3",
            "\n[alerts]\nwebhook = \"ftp://example.invalid/hook\"\n",
            &["alerts.webhook", "not an http:// or https:// URL"],
        ),
    ];
    for (limits, extra, needles) in cases {
        let budget = Budget::new(limits, extra);
        let spec = std::fs::read_to_string(&budget.spec).expect("read the spec");
        let line = spec
            .lines()
            .position(|l| l == limits)
            .map(|i| format!("line {}", i + 1))
            .expect("the limits line is in the spec");
        let out = budget.run("never runs", &[]);
        assert_eq!(out.code, Some(2), "{limits}: {out:#?}");
        assert_eq!(out.stdout, "", "{limits}: {out:#?}");
        assert!(
            out.stderr.contains(&budget.spec.display().to_string()),
            "{limits}: names the spec file: {out:#?}"
        );
        for needle in needles {
            let needle = needle.replace("LINE", &line);
            assert!(
                out.stderr.contains(&needle),
                "{limits}: must say {needle:?}: {out:#?}"
            );
        }
        assert_nothing_journaled(&budget.db);
    }
}
