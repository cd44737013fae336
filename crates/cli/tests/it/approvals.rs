//! Human approval of irreversible calls across processes: `chassis run` stops as waiting,
//! `chassis approvals` lists what waits, `approve` (optionally with edited arguments) or
//! `reject` decides, `resume` (or `--resume`) continues; who decided, and their note, are
//! journaled. Bad `[approvals]` configuration is refused before anything is journaled.

use std::path::PathBuf;
use std::time::Duration;

use chassis_core::state::REJECTED_PREFIX;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::util::{
    Mock, Output, assert_nothing_journaled, assert_well_formed, chassis, events, kinds, python,
    run, show_json, toml_str, write,
};

/// The model says why, then asks to append its input to the ledger; then it answers with
/// what the tool (or the human's rejection) said. Inputs naming `deny-case` also shout.
const SCRIPT: &str = r#"
[[scenario]]
name = "deny"
when_input_contains = "deny-case"
[[scenario.turn]]
tool_calls = [
    { name = "append_line", arguments = { line = "{input}" } },
    { name = "shout", arguments = { text = "{input}" } },
]
[[scenario.turn]]
text = "model saw: {last_tool_result}"

[[scenario]]
name = "ledger"
[[scenario.turn]]
text = "Recording the payment in the ledger."
tool_calls = [{ name = "append_line", arguments = { line = "{input}" } }]
[[scenario.turn]]
text = "model saw: {last_tool_result}"
"#;

const SHOUT_PY: &str = r#"
import json, sys
args = json.load(sys.stdin)
print(args["text"].upper())
"#;

const APPEND_LINE_PY: &str = r#"
import json, sys
args = json.load(sys.stdin)
with open("ledger.txt", "a") as ledger:
    ledger.write(args["line"] + "\n")
print("appended")
"#;

/// An agent with an irreversible ledger tool and a read-only one, under the default approval
/// policy (irreversible calls wait for a human) plus `extra` spec text.
struct Office {
    dir: TempDir,
    db: PathBuf,
    spec: PathBuf,
    _mock: Mock,
}

impl Office {
    fn new(extra: &str) -> Office {
        let mock = Mock::start(SCRIPT, Duration::ZERO);
        let dir = tempfile::tempdir().expect("temporary directory");
        let root = dir.path();
        write(root, "shout.py", SHOUT_PY);
        write(root, "append_line.py", APPEND_LINE_PY);
        write(
            root,
            "prompt.md.j2",
            "You keep the ledger. Request: {{ input }}\n",
        );
        let python = toml_str(python());
        let spec = write(
            root,
            "agent.toml",
            &format!(
                r#"[agent]
name = "ledger-keeper"
prompt = "prompt.md.j2"

[model]
primary = "mock:ledger-model"
timeout = "60s"

[providers.mock]
kind = "openai"
base_url = {base_url}

[limits]
max_steps = 5

[[tools]]
name = "shout"
description = "Upper-cases a text"
command = [{python}, "-I", "shout.py"]
risk = "read_only"
timeout = "60s"
args_schema = {{ type = "object", required = ["text"], properties = {{ text = {{ type = "string" }} }} }}

[[tools]]
name = "append_line"
description = "Appends a line to the ledger"
command = [{python}, "-I", "append_line.py"]
risk = "irreversible"
timeout = "60s"
args_schema = {{ type = "object", required = ["line"], additionalProperties = false, properties = {{ line = {{ type = "string" }} }} }}
{extra}"#,
                base_url = toml_str(&mock.base_url()),
            ),
        );
        Office {
            db: root.join("j.db"),
            dir,
            spec,
            _mock: mock,
        }
    }

    /// `chassis run agent.toml --input INPUT --json`.
    fn run_json(&self, input: &str) -> Output {
        run(chassis(&self.db)
            .arg("run")
            .arg(&self.spec)
            .args(["--input", input, "--json"]))
    }

    /// Starts a run that must stop waiting for approval; returns its id and the pending call.
    fn waiting_run(&self, input: &str) -> (String, String) {
        let out = self.run_json(input);
        out.expect_code(3);
        let reply = out.json();
        assert_eq!(reply["status"], "waiting", "{out:#?}");
        assert_eq!(reply["output"], Value::Null, "{out:#?}");
        let run_id = reply["run_id"].as_str().expect("run_id").to_string();
        let item = self
            .inbox()
            .into_iter()
            .find(|i| i["run_id"] == run_id.as_str())
            .unwrap_or_else(|| panic!("run {run_id} is not in the inbox"));
        let call_id = item["call_id"].as_str().expect("call_id").to_string();
        (run_id, call_id)
    }

    /// `chassis approvals --json`, parsed.
    fn inbox(&self) -> Vec<Value> {
        let out = run(chassis(&self.db).args(["approvals", "--json"]));
        out.expect_code(0);
        match out.json() {
            Value::Array(items) => items,
            other => panic!("approvals --json printed {other}, not an array"),
        }
    }

    /// `chassis ARGS…` against this office's journal.
    fn chassis(&self, args: &[&str]) -> Output {
        run(chassis(&self.db).args(args))
    }

    fn ledger(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.path().join("ledger.txt")).ok()
    }

    fn event_count(&self, run_id: &str) -> usize {
        events(&show_json(&self.db, run_id)).len()
    }
}

/// The events of `kind`.
fn of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["kind"] == kind).collect()
}

#[test]
fn an_irreversible_call_waits_is_listed_and_runs_once_approved_with_edited_arguments() {
    let office = Office::new("");
    let input = "pay 5 to bob";
    let (run_id, call_id) = office.waiting_run(input);
    assert_eq!(office.ledger(), None, "nothing ran before approval");

    // The inbox holds the tool, its arguments, its risk class and the context.
    let inbox = office.inbox();
    assert_eq!(inbox.len(), 1, "{inbox:#?}");
    let item = &inbox[0];
    assert_eq!(item["kind"], "approval");
    assert_eq!(item["agent"], "ledger-keeper");
    assert_eq!(item["tool"], "append_line");
    assert_eq!(item["args"], json!({ "line": input }));
    assert_eq!(item["risk"], "irreversible");
    assert_eq!(item["reason"], "Recording the payment in the ledger.");
    let context = item["context"].as_array().expect("context is an array");
    assert!(
        context
            .iter()
            .any(|l| l.as_str().is_some_and(|l| l.contains(input))),
        "the context shows the conversation: {context:#?}"
    );
    let show = show_json(&office.db, &run_id);
    assert_eq!(show["status"], "waiting");
    let requested = of_kind(events(&show), "approval_requested");
    assert_eq!(requested.len(), 1, "{show:#}");
    assert_eq!(requested[0]["call_id"], call_id.as_str());
    assert_eq!(requested[0]["risk"], "irreversible");
    assert_eq!(requested[0]["args"], json!({ "line": input }));

    // The text listing names the run, the call and how to decide.
    let listing = office.chassis(&["approvals"]);
    listing.expect_code(0);
    assert!(
        listing.stdout.contains(&run_id)
            && listing.stdout.contains(&call_id)
            && listing.stdout.contains("append_line (irreversible)")
            && listing
                .stdout
                .contains(&format!("chassis approve {run_id} {call_id}")),
        "{listing:#?}"
    );

    // Edited arguments that are not JSON, or do not match the schema: nothing is recorded.
    let before = office.event_count(&run_id);
    let out = office.chassis(&["approve", &run_id, &call_id, "--args", "{bad}"]);
    out.expect_code(2);
    assert!(
        out.stderr.contains("--args")
            && out.stderr.contains("not valid JSON")
            && out.stderr.contains("nothing was recorded"),
        "{out:#?}"
    );
    let out = office.chassis(&["approve", &run_id, &call_id, "--args", r#"{"line": 5}"#]);
    out.expect_code(2);
    assert!(
        out.stderr.contains("do not match its schema")
            && out.stderr.contains("nothing was recorded"),
        "{out:#?}"
    );
    assert_eq!(
        office.event_count(&run_id),
        before,
        "a refused --args journals nothing"
    );
    assert_eq!(office.inbox().len(), 1, "the approval still waits");

    // Approve with edited arguments, then continue in another process.
    let edited = "pay 4 to bob";
    let out = office.chassis(&[
        "approve",
        &run_id,
        &call_id,
        "--args",
        &json!({ "line": edited }).to_string(),
        "--by",
        "alice",
        "--note",
        "capped at 4",
    ]);
    out.expect_code(3);
    assert!(
        out.stderr
            .contains(&format!("approved {call_id} in run {run_id} (by alice)"))
            && out.stderr.contains(&format!("chassis resume {run_id}")),
        "{out:#?}"
    );
    assert_eq!(
        office.ledger(),
        None,
        "approving does not run the call by itself"
    );
    // Decided, but nothing drives it yet: it stays listed until something moves it.
    let inbox = office.inbox();
    assert_eq!(inbox.len(), 1, "{inbox:#?}");
    assert_eq!(
        (inbox[0]["kind"].as_str(), inbox[0]["run_id"].as_str()),
        (Some("ready"), Some(run_id.as_str()))
    );

    let out = office.chassis(&["resume", &run_id, "--json"]);
    out.expect_code(0);
    let reply = out.json();
    assert_eq!(reply["status"], "completed");
    assert_eq!(reply["output"], "model saw: appended");
    assert_eq!(
        office.ledger().as_deref(),
        Some(format!("{edited}\n").as_str()),
        "the edited line, once"
    );

    let show = show_json(&office.db, &run_id);
    let events = events(&show);
    assert_well_formed(events);
    let decided = of_kind(events, "approval_decided");
    assert_eq!(decided.len(), 1, "{events:#?}");
    let decided = decided[0];
    assert_eq!(decided["call_id"], call_id.as_str());
    assert_eq!(decided["approved"], true);
    assert_eq!(decided["by"], "alice");
    assert_eq!(decided["note"], "capped at 4");
    assert_eq!(decided["args"], json!({ "line": edited }));
    assert!(
        decided["at_ms"].as_u64().is_some_and(|t| t > 0),
        "{decided}"
    );
    let started = of_kind(events, "tool_started");
    assert_eq!(started.len(), 1, "the tool ran once: {events:#?}");
    assert_eq!(started[0]["args"], json!({ "line": edited }));

    // Resuming again appends nothing and runs nothing.
    office.chassis(&["resume", &run_id]).expect_code(0);
    assert_eq!(
        office.ledger().as_deref(),
        Some(format!("{edited}\n").as_str())
    );
}

#[test]
fn a_rejection_with_resume_gives_the_model_the_reason_and_runs_nothing() {
    let office = Office::new("");
    let (run_id, call_id) = office.waiting_run("pay 500 to mallory");

    let out = office.chassis(&[
        "reject",
        &run_id,
        &call_id,
        "--reason",
        "no, mallory is not a vendor",
        "--by",
        "bob",
        "--resume",
    ]);
    out.expect_code(0);
    assert_eq!(
        out.stdout,
        format!(
            "model saw: {REJECTED_PREFIX}bob rejected this call: no, mallory is not a vendor\n"
        ),
        "the model got the reason as the tool's result: {out:#?}"
    );
    assert_eq!(office.ledger(), None, "a rejected call never runs");

    let show = show_json(&office.db, &run_id);
    assert_eq!(show["status"], "completed");
    let events = events(&show);
    assert_well_formed(events);
    let decided = of_kind(events, "approval_decided");
    assert_eq!(decided.len(), 1, "{events:#?}");
    assert_eq!(decided[0]["approved"], false);
    assert_eq!(decided[0]["by"], "bob");
    assert_eq!(decided[0]["reason"], "no, mallory is not a vendor");
    assert!(of_kind(events, "tool_started").is_empty(), "{events:#?}");
    assert_eq!(office.inbox(), Vec::<Value>::new());
}

#[test]
fn the_decider_defaults_to_the_os_user() {
    let office = Office::new("");
    let (run_id, call_id) = office.waiting_run("pay 1 to carol");
    let out = run(chassis(&office.db)
        .args(["approve", &run_id, &call_id, "--resume"])
        .env("USER", "os-user-dora")
        .env_remove("LOGNAME"));
    out.expect_code(0);
    assert_eq!(out.stdout, "model saw: appended\n", "{out:#?}");
    assert!(out.stderr.contains("(by os-user-dora)"), "{out:#?}");
    assert_eq!(office.ledger().as_deref(), Some("pay 1 to carol\n"));

    let show = show_json(&office.db, &run_id);
    let decided = of_kind(events(&show), "approval_decided");
    assert_eq!(decided.len(), 1, "{show:#}");
    assert_eq!(decided[0]["by"], "os-user-dora");
    assert_eq!(decided[0]["approved"], true);
    assert!(decided[0].get("note").is_none(), "no note given: {show:#}");
    assert!(decided[0].get("args").is_none(), "no edited args: {show:#}");
}

#[test]
fn deciding_an_unknown_call_names_the_pending_ones_and_records_nothing() {
    let office = Office::new("");
    let (run_id, call_id) = office.waiting_run("pay 2 to erin");
    let before = office.event_count(&run_id);
    for verb in [
        &["approve", &run_id, "call_nope"][..],
        &["reject", &run_id, "call_nope", "--reason", "x"][..],
    ] {
        let out = office.chassis(verb);
        out.expect_code(2);
        assert_eq!(out.stdout, "", "{verb:?}: {out:#?}");
        assert!(
            out.stderr.contains("no call call_nope awaiting a decision")
                && out.stderr.contains(&format!("pending: {call_id}")),
            "{verb:?}: {out:#?}"
        );
    }
    let out = office.chassis(&["approve", "run_nonexistent", &call_id]);
    out.expect_code(2);
    assert!(out.stderr.contains("run_nonexistent"), "{out:#?}");
    assert_eq!(office.event_count(&run_id), before, "nothing was journaled");
    assert_eq!(office.inbox().len(), 1, "the approval still waits");
    assert_eq!(office.ledger(), None);

    // Once decided, the call cannot be decided again.
    office
        .chassis(&["approve", &run_id, &call_id, "--by", "alice"])
        .expect_code(3);
    let out = office.chassis(&["reject", &run_id, &call_id, "--reason", "too late"]);
    out.expect_code(2);
    assert!(
        out.stderr.contains("is not waiting for approval"),
        "{out:#?}"
    );
}

#[test]
fn a_deny_override_keeps_the_tool_from_ever_running() {
    let office = Office::new("\n[approvals.tools]\nappend_line = \"deny\"\n");
    let out = office.run_json("deny-case pay 9 to frank");
    out.expect_code(0);
    let reply = out.json();
    assert_eq!(
        reply["output"], "model saw: DENY-CASE PAY 9 TO FRANK",
        "the other call of the same reply ran: {out:#?}"
    );
    assert_eq!(office.ledger(), None, "a denied tool never runs");
    assert_eq!(
        office.inbox(),
        Vec::<Value>::new(),
        "denied calls do not wait"
    );

    let show = show_json(&office.db, reply["run_id"].as_str().expect("run_id"));
    let events = events(&show);
    assert_well_formed(events);
    assert!(
        !kinds(events).contains(&"approval_requested"),
        "{events:#?}"
    );
    let refused = of_kind(events, "tool_refused");
    assert_eq!(refused.len(), 1, "{events:#?}");
    assert_eq!(refused[0]["name"], "append_line");
    assert!(
        refused[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("approval policy") && e.contains("denies `append_line`")),
        "{refused:#?}"
    );
    let started = of_kind(events, "tool_started");
    assert_eq!(started.len(), 1, "{events:#?}");
    assert_eq!(started[0]["name"], "shout");
}

#[test]
fn bad_approval_configuration_names_the_key_and_journals_nothing() {
    let cases = [
        (
            "\n[approvals.tools]\nnope = \"auto\"\n",
            &["approvals.tools.nope", "no tool `nope`", "append_line"][..],
        ),
        (
            "\n[approvals.tools]\nappend_line = \"sometimes\"\n",
            &["approvals.tools.append_line", "unknown action `sometimes`"][..],
        ),
        (
            "\n[approvals]\nirreversible = \"maybe\"\n",
            &["approvals.irreversible", "unknown action `maybe`"][..],
        ),
        (
            "\n[[approvals.rules]]\ntool = \"append_line\"\narg = \"line\"\nop = \"~\"\nvalue = 1\naction = \"require\"\n",
            &["approvals.rules[0].op", "unknown comparison `~`"][..],
        ),
        (
            "\n[[approvals.rules]]\ntool = \"ghost\"\narg = \"amount\"\nop = \">\"\nvalue = 1\naction = \"require\"\n",
            &["approvals.rules[0].tool", "no tool `ghost`"][..],
        ),
        (
            "\n[approvals]\ntimeout = \"10 parsecs\"\n",
            &["approvals.timeout"][..],
        ),
        (
            "\n[approvals]\non_timeout = \"shrug\"\n",
            &["approvals.on_timeout", "unknown action `shrug`"][..],
        ),
    ];
    for (extra, needles) in cases {
        let office = Office::new(extra);
        let out = office.run_json("pay 3 to gina");
        assert_eq!(out.code, Some(2), "{extra}: {out:#?}");
        assert_eq!(out.stdout, "", "{extra}: {out:#?}");
        for needle in needles {
            assert!(
                out.stderr.contains(needle),
                "{extra}: must say {needle:?}: {out:#?}"
            );
        }
        assert_nothing_journaled(&office.db);
        assert_eq!(office.ledger(), None);
    }
}

/// `--json` on a decision: without `--resume` the run as it stands and whether the decision
/// woke it; with `--resume` the run's outcome, as `chassis run --json` prints it.
#[test]
fn decisions_print_json_for_scripts() {
    let office = Office::new("");
    let (run_id, call_id) = office.waiting_run("pay 5 to bob");
    let out = office.chassis(&["approve", &run_id, &call_id, "--by", "alice", "--json"]);
    out.expect_code(3);
    let decided = out.json();
    assert_eq!(decided["woken"], true, "{out:#?}");
    assert_eq!(decided["run"]["run_id"], run_id.as_str(), "{out:#?}");
    assert_eq!(decided["run"]["agent"], "ledger-keeper", "{out:#?}");
    assert_eq!(office.ledger(), None, "approving alone runs nothing");

    let (second, call) = office.waiting_run("pay 500 to mallory");
    let out = office.chassis(&[
        "reject",
        &second,
        &call,
        "--reason",
        "not a vendor",
        "--resume",
        "--json",
    ]);
    out.expect_code(0);
    let outcome = out.json();
    assert_eq!(outcome["run_id"], second.as_str(), "{out:#?}");
    assert_eq!(outcome["status"], "completed", "{out:#?}");

    let unknown = office.chassis(&["resolve", &run_id, "call_nope", "--failed", "--json"]);
    assert_ne!(unknown.code, Some(0), "{unknown:#?}");
    assert!(
        unknown.stdout.is_empty(),
        "a refused decision prints no JSON: {unknown:#?}"
    );
}

/// A run journals its agent's path relative to the journal's project, so a project moved as a
/// whole keeps working: the decision and the resume happen at the new place and the tool runs
/// there. A journal moved alone finds the agent with `resume --agent PATH`.
#[test]
fn a_moved_project_resumes_its_runs_and_resume_agent_points_at_a_moved_spec() {
    let office = Office::new("");
    let (first, first_call) = office.waiting_run("pay 1 to amy");
    let (second, second_call) = office.waiting_run("pay 2 to ben");
    let show = show_json(&office.db, &first);
    assert_eq!(events(&show)[0]["spec_path"], "agent.toml", "{show:#}");

    let old = office.dir.path().to_path_buf();
    let moved = old.with_extension("moved");
    std::fs::rename(&old, &moved).expect("move the project");
    let db = moved.join("j.db");
    let at = |args: &[&str]| run(chassis(&db).args(args));
    at(&["approve", &first, &first_call]).expect_code(3);
    let out = at(&["resume", &first, "--json"]);
    out.expect_code(0);
    assert_eq!(out.json()["output"], "model saw: appended", "{out:#?}");
    assert_eq!(
        std::fs::read_to_string(moved.join("ledger.txt"))
            .ok()
            .as_deref(),
        Some("pay 1 to amy\n"),
        "the tool ran in the moved project"
    );

    // The journal alone, elsewhere: the agent is where --agent says.
    let elsewhere = tempfile::tempdir().expect("temporary directory");
    let lone = elsewhere.path().join("j.db");
    // The journal is in WAL mode: what was last committed may still be in its `-wal` file.
    std::fs::copy(&db, &lone).expect("copy the journal");
    let wal = moved.join("j.db-wal");
    if wal.exists() {
        std::fs::copy(&wal, elsewhere.path().join("j.db-wal")).expect("copy the journal's WAL");
    }
    let at = |args: &[&str]| run(chassis(&lone).args(args));
    at(&["approve", &second, &second_call]).expect_code(3);
    let missing = at(&["resume", &second, "--agent", "/no/such/agent.toml"]);
    missing.expect_code(2);
    assert!(
        missing.stderr.contains("--agent /no/such/agent.toml"),
        "{missing:#?}"
    );
    let agent = moved.join("agent.toml");
    let out = at(&[
        "resume",
        &second,
        "--agent",
        agent.to_str().unwrap(),
        "--json",
    ]);
    out.expect_code(0);
    assert_eq!(out.json()["output"], "model saw: appended", "{out:#?}");
    assert_eq!(
        std::fs::read_to_string(moved.join("ledger.txt"))
            .ok()
            .as_deref(),
        Some("pay 1 to amy\npay 2 to ben\n"),
        "the second call ran once, beside the agent"
    );
    std::fs::rename(&moved, &old).expect("move back for cleanup");
}

/// Every node of a trace, depth first.
fn trace_nodes(nodes: &[Value]) -> Vec<&Value> {
    let mut out = Vec::new();
    for node in nodes {
        out.push(node);
        if let Some(children) = node["children"].as_array() {
            out.extend(trace_nodes(children));
        }
    }
    out
}

/// `trace` after a run was approved and resumed in another process: the tool call that ran
/// after the resume shows its outcome and sits inside the step that asked for it, after the
/// wait, at the time it ran.
#[test]
fn trace_shows_a_call_resumed_in_another_process_with_its_outcome() {
    let office = Office::new("");
    let (run_id, call_id) = office.waiting_run("pay 3 to cy");
    office
        .chassis(&["approve", &run_id, &call_id])
        .expect_code(3);
    office.chassis(&["resume", &run_id]).expect_code(0);

    let out = office.chassis(&["trace", &run_id, "--json"]);
    out.expect_code(0);
    let trace = out.json();
    let top = trace["nodes"].as_array().expect("nodes");
    let all = trace_nodes(top);
    let tools: Vec<&&Value> = all.iter().filter(|n| n["kind"] == "tool").collect();
    assert_eq!(tools.len(), 1, "{trace:#}");
    let tool = tools[0];
    assert_eq!(tool["title"], "append_line", "{trace:#}");
    assert_eq!(tool["ok"], true, "the outcome is shown: {trace:#}");
    assert!(tool["duration_ms"].is_u64(), "{trace:#}");
    let step = top
        .iter()
        .find(|n| {
            n["kind"] == "step"
                && n["children"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|c| c["kind"] == "tool"))
        })
        .unwrap_or_else(|| panic!("the tool sits in its step: {trace:#}"));
    assert_eq!(step["attrs"]["step"], 1, "{trace:#}");
    let resumed = top
        .iter()
        .find(|n| n["kind"] == "resumed")
        .expect("a resume node");
    assert!(
        tool["start_ms"].as_u64() >= resumed["start_ms"].as_u64(),
        "the call ran after the resume: {trace:#}"
    );
    let text = office.chassis(&["trace", &run_id]);
    text.expect_code(0);
    assert!(!text.stdout.contains("append_line  ?"), "{text:#?}");
}

#[test]
fn a_decision_that_resumes_the_run_exports_its_spans() {
    // `approve --resume` and `reject --resume` drive the run in their own process: its spans
    // are exported from there like those of `run` and `resume`.
    let office = Office::new("");
    let receiver = crate::observability::Receiver::start();
    let decide = |args: &[&str]| {
        let out = run(chassis(&office.db)
            .args(args)
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint())
            .env("OTEL_BSP_SCHEDULE_DELAY", "10"));
        out.expect_code(0);
    };
    let (approved, call) = office.waiting_run("pay 100 to alice");
    decide(&["approve", &approved, &call, "--by", "ann", "--resume"]);
    let spans = receiver.spans();
    let names: Vec<&str> = spans.iter().map(|(name, _)| name.as_str()).collect();
    assert!(
        names.contains(&"execute_tool append_line"),
        "the approved call's span: {names:?}"
    );
    assert!(names.contains(&"invoke_agent ledger-keeper"), "{names:?}");

    let (rejected, call) = office.waiting_run("pay 500 to mallory");
    decide(&["reject", &rejected, &call, "--reason", "no", "--resume"]);
    let after = receiver.spans();
    assert!(
        after.len() > spans.len(),
        "the rejected run's resume exported spans too: {after:?}"
    );
    assert_eq!(office.ledger().as_deref(), Some("pay 100 to alice\n"));
}
