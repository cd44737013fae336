//! `run`, `resume`, `runs` and `show` against the mock model: what they print, what they
//! journal, and how they refuse bad input.

use std::path::PathBuf;
use std::time::Duration;

use chassis_core::state::REFUSED_PREFIX;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::util::{
    Mock, Output, Recorder, assert_well_formed, chassis, events, kinds, python, run, runs_json,
    show_json, toml_str, write,
};

/// The model reads a note, has a command tool shout it, and answers with what came back.
/// Inputs naming a refusal case get a scenario with a call that must be refused. (The mock
/// answers a reply whose every call was refused by making that turn again, as a model
/// repairing its call would; a refusal is never its `{last_tool_result}`.)
const SCRIPT: &str = r#"
[[scenario]]
name = "unknown-tool"
when_input_contains = "unknown-tool"
[[scenario.turn]]
tool_calls = [{ name = "delete_everything", arguments = { really = true } }]
[[scenario.turn]]
text = "model saw: {last_tool_result}"

[[scenario]]
name = "invalid-args"
when_input_contains = "invalid-args"
[[scenario.turn]]
tool_calls = [
    { name = "append_line", arguments = { text = "{input}" } },
    { name = "shout", arguments = { text = "{input}" } },
]
[[scenario.turn]]
text = "model saw: {last_tool_result}"

[[scenario]]
name = "notes"
[[scenario.turn]]
tool_calls = [{ name = "read_file", arguments = { path = "note.txt" } }]
[[scenario.turn]]
tool_calls = [{ name = "shout", arguments = { text = "{last_tool_result}" } }]
[[scenario.turn]]
text = "The notes say: {last_tool_result}"
"#;

/// What the notes scenario answers.
const ANSWER: &str = "The notes say: HELLO FROM THE NOTES";

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

/// An agent with a file tool, a read-only command tool and an irreversible one, a journal,
/// and the mock model it talks to.
struct Desk {
    dir: TempDir,
    db: PathBuf,
    spec: PathBuf,
    mock: Mock,
}

impl Desk {
    /// The desk against the mock model.
    fn new() -> Desk {
        Desk::against(None)
    }

    /// The desk against the model at `base_url`, or the mock model when `None`.
    fn against(base_url: Option<String>) -> Desk {
        let mock = Mock::start(SCRIPT, Duration::ZERO);
        let base_url = base_url.unwrap_or_else(|| mock.base_url());
        let dir = tempfile::tempdir().expect("temporary directory");
        let root = dir.path();
        std::fs::create_dir(root.join("notes")).expect("notes directory");
        write(&root.join("notes"), "note.txt", "hello from the notes");
        write(root, "shout.py", SHOUT_PY);
        write(root, "append_line.py", APPEND_LINE_PY);
        write(
            root,
            "prompt.md.j2",
            "You answer from the notes. Request: {{ input }}\n",
        );
        let python = toml_str(python());
        let spec = write(
            root,
            "agent.toml",
            &format!(
                r#"[agent]
name = "notes-desk"
prompt = "prompt.md.j2"

[model]
primary = "mock:desk-model"
timeout = "60s"

[providers.mock]
kind = "openai"
base_url = {base_url}

[limits]
max_steps = 5

[[tools]]
use = "builtin:fs"
root = "notes"
only = ["read_file"]

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

[approvals.tools]
append_line = "auto"
"#,
                base_url = toml_str(&base_url),
            ),
        );
        Desk {
            db: root.join("j.db"),
            dir,
            spec,
            mock,
        }
    }

    /// `chassis run agent.toml --input INPUT` plus `args`.
    fn run(&self, input: &str, args: &[&str]) -> Output {
        run(chassis(&self.db)
            .arg("run")
            .arg(&self.spec)
            .args(["--input", input])
            .args(args))
    }

    fn ledger(&self) -> PathBuf {
        self.dir.path().join("ledger.txt")
    }
}

/// The events of `kind`.
fn of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["kind"] == kind).collect()
}

#[test]
fn run_prints_exactly_the_answer_and_journals_every_step() {
    let desk = Desk::new();
    let out = desk.run("what do the notes say?", &[]);
    out.expect_code(0);
    assert_eq!(
        out.stdout,
        format!("{ANSWER}\n"),
        "stdout is the answer only"
    );
    // The process closed its journal rather than abandoning it: the WAL is folded into the
    // file, and the next process has none to read back.
    let wal = desk.db.with_extension("db-wal");
    assert!(!wal.exists(), "{} was left behind", wal.display());

    let runs = runs_json(&desk.db, &[]);
    assert_eq!(runs.len(), 1, "{runs:#?}");
    let row = &runs[0];
    assert_eq!(row["agent"], "notes-desk");
    assert_eq!(row["status"], "completed");
    let run_id = row["run_id"].as_str().expect("run_id is a string");

    let show = show_json(&desk.db, run_id);
    assert_eq!(show["run_id"], run_id);
    assert_eq!(show["status"], "completed");
    assert_eq!(show["output"], ANSWER);
    let events = events(&show);
    assert_well_formed(events);
    assert_eq!(row["events"], events.len(), "runs counts every event");
    assert_eq!(
        kinds(events),
        [
            "run_started",
            "model_requested",
            "model_responded",
            "tool_started",
            "tool_finished",
            "model_requested",
            "model_responded",
            "tool_started",
            "tool_finished",
            "model_requested",
            "model_responded",
            "run_completed",
        ]
    );
    assert_eq!(events[0]["input"], "what do the notes say?");
    let started = of_kind(events, "tool_started");
    assert_eq!(started[0]["name"], "read_file");
    assert_eq!(started[0]["args"], json!({ "path": "note.txt" }));
    assert_eq!(started[1]["name"], "shout");
    assert_eq!(started[1]["risk"], "read_only");
    assert_eq!(
        started[1]["args"],
        json!({ "text": "hello from the notes" })
    );
    let finished = of_kind(events, "tool_finished");
    assert_eq!(finished[0]["ok"], true);
    assert_eq!(finished[0]["content"], "hello from the notes");
    assert_eq!(finished[1]["content"], "HELLO FROM THE NOTES");
    assert_eq!(of_kind(events, "run_completed")[0]["output"], ANSWER);

    let turns = desk.mock.turns("what do the notes say?");
    assert_eq!(
        turns,
        [(0, 1), (1, 1), (2, 1)].into(),
        "one model call per step"
    );
}

#[test]
fn run_json_prints_one_object_and_runs_lists_runs_newest_first() {
    let desk = Desk::new();
    let plain = desk.run("first", &["-q"]);
    plain.expect_code(0);
    assert_eq!(plain.stdout, format!("{ANSWER}\n"));
    assert_eq!(plain.stderr, "", "-q prints no progress");

    let out = desk.run("second", &["--json"]);
    out.expect_code(0);
    assert_eq!(out.stdout.lines().count(), 1, "one line: {out:#?}");
    let reply = out.json();
    let object = reply.as_object().expect("a JSON object");
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["output", "reason", "run_id", "status"]);
    assert_eq!(reply["status"], "completed");
    assert_eq!(reply["output"], ANSWER);
    assert_eq!(reply["reason"], Value::Null);
    let run_id = reply["run_id"].as_str().expect("run_id is a string");
    assert!(run_id.starts_with("run_"), "{run_id}");

    let runs = runs_json(&desk.db, &[]);
    assert_eq!(runs.len(), 2, "{runs:#?}");
    assert_eq!(runs[0]["run_id"], run_id, "newest first: {runs:#?}");
    assert_eq!(show_json(&desk.db, run_id)["events"][0]["input"], "second");
    assert!(runs.iter().all(|r| r["status"] == "completed"), "{runs:#?}");
    assert_eq!(runs_json(&desk.db, &["--status", "completed"]).len(), 2);
    assert_eq!(
        runs_json(&desk.db, &["--status", "waiting"]),
        Vec::<Value>::new()
    );
    let newest = runs_json(&desk.db, &["--limit", "1"]);
    assert_eq!(newest.len(), 1);
    assert_eq!(newest[0]["run_id"], run_id);
}

#[test]
fn a_model_that_keeps_calling_an_unknown_tool_is_refused_each_time_then_given_up_on() {
    let desk = Desk::new();
    let input = "unknown-tool please";
    let out = desk.run(input, &["--json"]);
    out.expect_code(1);
    let reply = out.json();
    assert_eq!(reply["status"], "failed");
    assert_eq!(
        reply["reason"],
        "mock:desk-model made invalid tool calls 3 step(s) in a row (max_repairs = 2)"
    );

    let show = show_json(&desk.db, reply["run_id"].as_str().expect("run_id"));
    let events = events(&show);
    assert_well_formed(events);
    let attempt = ["model_requested", "model_responded", "tool_refused"];
    let mut expected = vec!["run_started"];
    for _ in 0..3 {
        expected.extend(attempt);
    }
    expected.push("run_failed");
    assert_eq!(kinds(events), expected, "no tool ever started");
    for refusal in of_kind(events, "tool_refused") {
        assert_eq!(refusal["name"], "delete_everything");
        assert_eq!(
            refusal["error"],
            "unknown tool `delete_everything`; available tools: read_file, shout, append_line"
        );
    }
    // The mock makes a turn again only when every tool message answering its last reply
    // carries chassis' refusal prefix: each refusal reached the model as its tool message.
    assert_eq!(desk.mock.turns(input), [(0, 3)].into());
    assert!(!desk.ledger().exists(), "no tool ran");
}

#[test]
fn a_call_with_invalid_arguments_is_refused_before_the_tool_runs() {
    let desk = Desk::new();
    let input = "invalid-args please";
    let out = desk.run(input, &["--json"]);
    out.expect_code(0);
    let reply = out.json();
    assert_eq!(
        reply["output"], "model saw: INVALID-ARGS PLEASE",
        "the valid call of the same reply ran: {out:#?}"
    );

    let show = show_json(&desk.db, reply["run_id"].as_str().expect("run_id"));
    let events = events(&show);
    assert_well_formed(events);
    assert_eq!(
        kinds(events),
        [
            "run_started",
            "model_requested",
            "model_responded",
            "tool_refused",
            "tool_started",
            "tool_finished",
            "model_requested",
            "model_responded",
            "run_completed",
        ]
    );
    let refusal = of_kind(events, "tool_refused")[0];
    assert_eq!(refusal["name"], "append_line");
    let error = refusal["error"].as_str().expect("refusal error");
    assert!(
        error.starts_with("arguments for `append_line` do not match its schema: "),
        "{error}"
    );
    assert!(
        error.contains("\"line\""),
        "names the missing field: {error}"
    );
    assert_eq!(of_kind(events, "tool_started")[0]["name"], "shout");
    assert!(
        !desk.ledger().exists(),
        "the irreversible tool must not run with invalid arguments"
    );
    assert_eq!(desk.mock.turns(input), [(0, 1), (1, 1)].into());
}

/// An OpenAI chat completion carrying `message`.
fn completion(message: Value) -> Value {
    json!({
        "id": "chatcmpl-recorded",
        "object": "chat.completion",
        "created": 0,
        "model": "recorded-model",
        "choices": [{ "index": 0, "message": message, "finish_reason": "stop" }],
        "usage": { "prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15 },
    })
}

#[test]
fn refused_calls_reach_the_model_as_their_tool_messages() {
    let call = |id: &str, name: &str, arguments: &str| json!({ "id": id, "type": "function", "function": { "name": name, "arguments": arguments } });
    let recorder = Recorder::start(vec![
        completion(json!({
            "role": "assistant",
            "content": null,
            "tool_calls": [
                call("call_a", "delete_everything", "{}"),
                call("call_b", "append_line", r#"{"text":"oops"}"#),
            ],
        })),
        completion(json!({ "role": "assistant", "content": "understood" })),
    ]);
    let desk = Desk::against(Some(recorder.base_url()));
    let out = desk.run("try things", &["--json"]);
    out.expect_code(0);
    let reply = out.json();
    assert_eq!(reply["output"], "understood");

    let show = show_json(&desk.db, reply["run_id"].as_str().expect("run_id"));
    let refusals = of_kind(events(&show), "tool_refused");
    assert_eq!(refusals.len(), 2, "{show:#}");
    let requests = recorder.requests();
    assert_eq!(requests.len(), 2, "one request per step");
    let messages = requests[1]["messages"]
        .as_array()
        .expect("the request has messages");
    let tool_messages: Vec<&Value> = messages.iter().filter(|m| m["role"] == "tool").collect();
    assert_eq!(tool_messages.len(), 2, "{messages:#?}");
    // Results go back under the provider's ids; the journal names calls by step and place.
    let asked: Vec<Value> = messages
        .iter()
        .filter(|m| m["role"] == "assistant")
        .flat_map(|m| m["tool_calls"].as_array().cloned().unwrap_or_default())
        .map(|call| call["id"].clone())
        .collect();
    for (index, (message, refusal)) in tool_messages.iter().zip(&refusals).enumerate() {
        assert_eq!(message["tool_call_id"], asked[index]);
        assert_eq!(refusal["call_id"], format!("1.{index}"));
        assert_eq!(
            message["content"],
            format!(
                "{REFUSED_PREFIX}{}",
                refusal["error"].as_str().expect("refusal error")
            ),
            "the model is told exactly what was journaled"
        );
    }
    assert!(
        refusals[0]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("unknown tool `delete_everything`")),
        "{refusals:#?}"
    );
    assert!(
        refusals[1]["error"]
            .as_str()
            .is_some_and(|e| e.contains("do not match its schema")),
        "{refusals:#?}"
    );
    assert!(!desk.ledger().exists(), "no tool ran");
}

#[test]
fn runs_with_an_unknown_status_is_a_usage_error() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let db = dir.path().join("j.db");
    let out = run(chassis(&db).args(["runs", "--status", "bogus"]));
    out.expect_code(2);
    assert_eq!(out.stdout, "");
    assert!(
        out.stderr.contains("--status") && out.stderr.contains("`bogus`"),
        "{out:#?}"
    );
    assert!(
        out.stderr.contains("completed"),
        "lists the valid statuses: {out:#?}"
    );
    assert!(!db.exists(), "a usage error creates no journal");
}

#[test]
fn show_and_resume_of_an_unknown_run_name_it() {
    let desk = Desk::new();
    desk.run("first", &["-q"]).expect_code(0);
    for command in ["show", "resume"] {
        let out = run(chassis(&desk.db).args([command, "run_nonexistent"]));
        out.expect_code(2);
        assert_eq!(out.stdout, "", "{command}: {out:#?}");
        assert!(
            out.stderr.contains("run run_nonexistent not found"),
            "{command}: {out:#?}"
        );
    }
    assert_eq!(runs_json(&desk.db, &[]).len(), 1, "nothing was added");
}

#[test]
fn show_and_runs_without_a_journal_say_where_they_looked() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let db = dir.path().join("j.db");
    for args in [&["runs"][..], &["show", "run_x"][..]] {
        let out = run(chassis(&db).args(args));
        out.expect_code(2);
        assert!(
            out.stderr.contains("no journal at") && out.stderr.contains(&db.display().to_string()),
            "{args:?}: {out:#?}"
        );
    }
    assert!(!db.exists(), "reading commands create no journal");
}

#[test]
fn resume_of_a_completed_run_prints_the_answer_and_appends_nothing() {
    let desk = Desk::new();
    let reply = desk.run("finish me", &["--json"]);
    reply.expect_code(0);
    let run_id = reply.json()["run_id"].as_str().expect("run_id").to_string();
    let before = show_json(&desk.db, &run_id);
    let requests = desk.mock.stats().requests;

    let out = run(chassis(&desk.db).args(["resume", &run_id]));
    out.expect_code(0);
    assert_eq!(out.stdout, format!("{ANSWER}\n"));

    let out = run(chassis(&desk.db).args(["resume", &run_id, "--json"]));
    out.expect_code(0);
    assert_eq!(
        out.json(),
        json!({ "run_id": run_id, "status": "completed", "output": ANSWER, "reason": null })
    );

    assert_eq!(
        show_json(&desk.db, &run_id),
        before,
        "resume appended to a completed run"
    );
    assert_eq!(
        desk.mock.stats().requests,
        requests,
        "resume called the model"
    );
}

/// A provider reporting the largest token counts there are (2^64-1) wraps nothing: the run's
/// usage saturates, and every reader of the journal shows it without overflowing.
#[test]
fn the_largest_token_counts_overflow_nothing() {
    let mut huge = completion(json!({ "role": "assistant", "content": "counted" }));
    huge["usage"] = json!({
        "prompt_tokens": u64::MAX,
        "completion_tokens": u64::MAX,
        "total_tokens": u64::MAX,
    });
    let recorder = Recorder::start(vec![huge]);
    let desk = Desk::against(Some(recorder.base_url()));
    let out = desk.run("count", &["--json"]);
    out.expect_code(0);
    let run_id = out.json()["run_id"].as_str().expect("run_id").to_string();
    let show = show_json(&desk.db, &run_id);
    assert_eq!(show["usage"]["input_tokens"], u64::MAX, "{show:#}");
    assert_eq!(show["usage"]["output_tokens"], u64::MAX, "{show:#}");
    for args in [
        vec!["runs"],
        vec!["runs", "--json"],
        vec!["runs", "--by-version"],
        vec!["show", &run_id],
        vec!["trace", &run_id],
        vec!["trace", &run_id, "--json"],
        vec!["stats"],
        vec!["stats", "--json"],
    ] {
        let out = run(chassis(&desk.db).args(&args));
        out.expect_code(0);
        assert!(!out.stderr.contains("panicked"), "{args:?}: {out:#?}");
    }
    let rows = runs_json(&desk.db, &[]);
    assert_eq!(rows[0]["input_tokens"], u64::MAX, "{rows:#?}");
}

/// `chassis send` continues a completed run: without `--resume` it only journals the message
/// (the run is running again, for a worker); `resume` (or `send --resume`) drives it, and each
/// request carries the whole conversation. A run without an answer is refused, naming why.
#[test]
fn send_continues_a_completed_run_with_the_whole_conversation() {
    let recorder = Recorder::start(vec![
        completion(json!({ "role": "assistant", "content": "first answer" })),
        completion(json!({ "role": "assistant", "content": "second answer" })),
        completion(json!({ "role": "assistant", "content": "third answer" })),
    ]);
    let desk = Desk::against(Some(recorder.base_url()));
    let out = desk.run("hello", &["--json"]);
    out.expect_code(0);
    let run_id = out.json()["run_id"].as_str().expect("run_id").to_string();

    let out = run(chassis(&desk.db).args([
        "send",
        &run_id,
        "--input",
        "and the invoice?",
        "--by",
        "alice",
        "--json",
    ]));
    out.expect_code(0);
    assert_eq!(out.json()["status"], "running", "{out:#?}");
    assert_eq!(show_json(&desk.db, &run_id)["status"], "running");
    let out = run(chassis(&desk.db).args(["resume", &run_id, "--json"]));
    out.expect_code(0);
    assert_eq!(out.json()["output"], "second answer");

    let out = run(chassis(&desk.db).args(["send", "last", "--input", "thanks", "--resume"]));
    out.expect_code(0);
    assert_eq!(out.stdout.trim(), "third answer");

    let requests = recorder.requests();
    assert_eq!(requests.len(), 3);
    let turns: Vec<(String, String)> = requests[2]["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| m["role"] != "system")
        .map(|m| {
            (
                m["role"].as_str().unwrap_or("").to_string(),
                m["content"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let expected = [
        ("user", "hello"),
        ("assistant", "first answer"),
        ("user", "and the invoice?"),
        ("assistant", "second answer"),
        ("user", "thanks"),
    ];
    assert_eq!(
        turns,
        expected.map(|(r, c)| (r.to_string(), c.to_string())),
        "{requests:#?}"
    );
    let show = show_json(&desk.db, &run_id);
    let messages = of_kind(events(&show), "user_message");
    assert_eq!(messages.len(), 2, "{show:#}");
    assert_eq!(messages[0]["by"], "alice");
    assert_well_formed(events(&show));

    // A run that has not answered yet is refused, naming its status; nothing is recorded.
    let out = run(chassis(&desk.db)
        .arg("submit")
        .arg(&desk.spec)
        .args(["--input", "queued"]));
    out.expect_code(0);
    let queued = out.stdout.trim().to_string();
    let out = run(chassis(&desk.db).args(["send", &queued, "--input", "more"]));
    out.expect_code(2);
    assert!(out.stderr.contains("is running"), "{out:#?}");
    assert_eq!(events(&show_json(&desk.db, &queued)).len(), 1);
}

/// `chassis fork` starts a run from a prefix of another: nothing copied is asked again, the
/// fork continues from there (with a new message here), and `runs --forked-from` lists it.
#[test]
fn fork_continues_from_a_prefix_and_is_listed_by_its_original() {
    let recorder = Recorder::start(vec![
        completion(json!({ "role": "assistant", "content": "first answer" })),
        completion(json!({ "role": "assistant", "content": "answer in the fork" })),
    ]);
    let desk = Desk::against(Some(recorder.base_url()));
    let out = desk.run("hello", &["--json"]);
    out.expect_code(0);
    let run_id = out.json()["run_id"].as_str().expect("run_id").to_string();
    let original = show_json(&desk.db, &run_id);
    let len = events(&original).len();

    let out = run(chassis(&desk.db).args([
        "fork",
        &run_id,
        "--at",
        &len.to_string(),
        "--input",
        "try again",
        "--resume",
        "--json",
    ]));
    out.expect_code(0);
    let fork = out.json()["run_id"].as_str().expect("run_id").to_string();
    assert_ne!(fork, run_id);
    assert_eq!(out.json()["output"], "answer in the fork");
    let requests = recorder.requests();
    assert_eq!(requests.len(), 2, "the copied answer was not asked again");
    let contents: Vec<&str> = requests[1]["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| m["role"] != "system")
        .map(|m| m["content"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(contents, ["hello", "first answer", "try again"]);
    let shown = show_json(&desk.db, &fork);
    assert_eq!(events(&shown)[0]["forked_from"]["run"], run_id.as_str());
    assert_eq!(events(&shown)[0]["forked_from"]["seq"], len);
    assert_well_formed(events(&shown));
    // The original is unchanged.
    assert_eq!(events(&show_json(&desk.db, &run_id)).len(), len);

    let rows = runs_json(&desk.db, &["--forked-from", &run_id]);
    let listed: Vec<&str> = rows.iter().filter_map(|r| r["run_id"].as_str()).collect();
    assert_eq!(listed, [fork.as_str()]);

    // Past the journal's end: a usage error naming the range; nothing is created.
    let out = run(chassis(&desk.db).args(["fork", &run_id, "--at", "99"]));
    out.expect_code(2);
    assert!(
        out.stderr.contains(&format!("has events 1 to {len}")),
        "{out:#?}"
    );
    assert_eq!(runs_json(&desk.db, &[]).len(), 2);
}
