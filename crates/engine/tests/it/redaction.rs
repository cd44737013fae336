//! Secrets never reach the journal: every string of every event is redacted, whatever the
//! variant, the field, the nesting (JSON arguments, JSON text in a string) or the escaping.

use std::collections::BTreeMap;
use std::sync::Arc;

use chassis_core::approvals::{ApprovalPolicy, Op, Rule, Verdict};
use chassis_core::{
    AssistantMessage, Event, LimitAction, LimitName, Limits, Price, RiskClass, RunStart, ToolCall,
    ToolDef, Usage,
};
use chassis_engine::Redactor;
use serde_json::{Value, json};

const SECRET: &str = "sk-live-9f8e7d6c5b4a/x";
const PATTERN_HIT: &str = "tok_ABCDEFGHIJKLMNOPQRST";

fn redactor() -> Redactor {
    Redactor::new([SECRET.to_string()])
        .with_patterns(["tok_[A-Z]{20}"])
        .unwrap()
}

/// One event of every variant, every optional field present and every list non-empty, so
/// that every string field exists to plant a secret in.
fn one_of_each() -> Vec<Event> {
    let args = json!({"path": "a.txt", "nested": {"list": ["x", 1]}});
    let tool = ToolDef {
        name: "read_file".into(),
        description: "reads".into(),
        parameters: json!({"type": "object", "properties": {"path": {"type": "string"}}}),
        risk: RiskClass::ReadOnly,
        idempotent: false,
        max_attempts: 3,
    };
    let start = RunStart {
        agent: "desk".into(),
        spec_path: "/srv/agent.toml".into(),
        input: "hello".into(),
        system: "be brief".into(),
        model: "openai:m".into(),
        fallbacks: vec!["openai:n".into()],
        tools: Arc::from(vec![tool]),
        limits: Limits::default(),
        max_tokens: 10,
        prices: BTreeMap::from([(
            "openai:m".to_string(),
            Price {
                input: 1.0,
                cached_input: 0.5,
                output: 2.0,
            },
        )]),
        at_ms: 1,
        park_retry_ms: 30_000,
        forked_from: None,
        context: Default::default(),
        version: "0123456789ab".into(),
        version_label: Some("v1".into()),
        approvals: ApprovalPolicy {
            tools: BTreeMap::from([("read_file".to_string(), Verdict::Auto)]),
            rules: vec![Rule {
                tool: "read_file".into(),
                arg: "path".into(),
                op: Op::Eq,
                value: json!("x"),
                verdict: Verdict::Require,
            }],
            ..ApprovalPolicy::default()
        },
        tags: BTreeMap::from([("suite".to_string(), "s".to_string())]),
        max_repairs: 2,
    };
    let events = vec![
        Event::RunStarted(Box::new(start)),
        Event::ModelRequested {
            step: 1,
            model: "openai:m".into(),
            messages: 2,
        },
        Event::ModelResponded {
            step: 1,
            model: "m".into(),
            message: AssistantMessage {
                content: Some("thinking".into()),
                tool_calls: vec![ToolCall {
                    id: "c1".into(),
                    name: "read_file".into(),
                    arguments: r#"{"path":"a.txt"}"#.into(),
                }],
            },
            usage: Usage::default(),
            finish_reason: Some("stop".into()),
            latency_ms: 1,
            cost_usd: Some(0.1),
        },
        Event::ModelAttemptFailed {
            step: 1,
            model: "openai:m".into(),
            attempt: 1,
            error: "boom".into(),
            delay_ms: Some(1),
        },
        Event::ModelCircuitOpen {
            step: 1,
            model: "openai:m".into(),
        },
        Event::ModelFallback {
            step: 1,
            from: "openai:m".into(),
            to: "openai:n".into(),
            reason: "down".into(),
        },
        Event::ModelFailed {
            step: 1,
            model: "openai:m".into(),
            error: "boom".into(),
            unavailable: false,
        },
        Event::ContextCompacted {
            from_seq: 3,
            to_seq: 4,
            summary: SECRET.into(),
            model: SECRET.into(),
            usage: Default::default(),
            cost_usd: None,
        },
        Event::ModelSwitched {
            index: 1,
            model: "openai:n".into(),
            reason: "bad calls".into(),
        },
        Event::ToolRefused {
            call_id: "c1".into(),
            name: "nope".into(),
            error: "unknown".into(),
        },
        Event::ToolStarted {
            call_id: "c1".into(),
            name: "read_file".into(),
            args: args.clone(),
            risk: RiskClass::ReadOnly,
            idempotency_key: "k".into(),
        },
        Event::ToolFinished {
            call_id: "c1".into(),
            ok: true,
            content: "text".into(),
            latency_ms: 1,
        },
        Event::ToolAttemptFailed {
            call_id: "c1".into(),
            attempt: 1,
            error: "boom".into(),
            delay_ms: 1,
        },
        Event::ApprovalRequested {
            call_id: "c1".into(),
            tool: "read_file".into(),
            args: args.clone(),
            risk: RiskClass::Irreversible,
            reason: Some("because".into()),
            context: vec!["user: hi".into()],
            at_ms: 1,
            expires_at_ms: Some(2),
        },
        Event::ApprovalDecided {
            call_id: "c1".into(),
            approved: true,
            args: Some(args.clone()),
            by: "alice".into(),
            note: Some("ok".into()),
            reason: Some("fine".into()),
            at_ms: 1,
        },
        Event::ApprovalEscalated {
            call_id: "c1".into(),
            at_ms: 1,
        },
        Event::OutcomeResolved {
            call_id: "c1".into(),
            resolution: "succeeded".into(),
            by: "alice".into(),
            note: Some("done".into()),
            at_ms: 1,
            content: Some("it happened".into()),
        },
        Event::ToolOutcomeUnknown {
            call_id: "c1".into(),
            name: "read_file".into(),
        },
        Event::LimitReached {
            limit: LimitName::MaxSteps,
            value: 1.0,
            used: 1.0,
            projected: 2.0,
            action: LimitAction::Pause,
        },
        Event::LimitRaised {
            limit: LimitName::MaxSteps,
            value: 2.0,
            by: "alice".into(),
        },
        Event::RunWaiting {
            reason: "approval".into(),
            at_ms: 1,
        },
        Event::RunPaused {
            reason: "down".into(),
            at_ms: 1,
        },
        Event::RunResumed { at_ms: 1 },
        Event::RunCompleted {
            output: "answer".into(),
        },
        Event::RunFailed {
            error: "boom".into(),
        },
        Event::LimitRejected {
            limit: LimitName::MaxSteps,
            by: "alice".into(),
            reason: "too dear".into(),
            at_ms: 1,
        },
        Event::CancelRequested {
            by: "alice".into(),
            reason: "wrong order".into(),
            at_ms: 1,
        },
        Event::ResumeRequested {
            by: "alice".into(),
            at_ms: 1,
        },
        Event::UserMessage {
            text: "and the invoice?".into(),
            by: "alice".into(),
            at_ms: 1,
        },
        Event::RunCancelled {
            by: "alice".into(),
            reason: "wrong order".into(),
            at_ms: 1,
        },
    ];
    for event in &events {
        covered(event);
    }
    events
}

/// Fails to compile when a variant is added: add it to [`one_of_each`] too.
fn covered(event: &Event) {
    match event {
        Event::RunStarted(_)
        | Event::ModelRequested { .. }
        | Event::ModelResponded { .. }
        | Event::ModelAttemptFailed { .. }
        | Event::ModelCircuitOpen { .. }
        | Event::ModelFallback { .. }
        | Event::ModelFailed { .. }
        | Event::ModelSwitched { .. }
        | Event::ContextCompacted { .. }
        | Event::ToolRefused { .. }
        | Event::ToolStarted { .. }
        | Event::ToolFinished { .. }
        | Event::ToolAttemptFailed { .. }
        | Event::ApprovalRequested { .. }
        | Event::ApprovalDecided { .. }
        | Event::ApprovalEscalated { .. }
        | Event::OutcomeResolved { .. }
        | Event::ToolOutcomeUnknown { .. }
        | Event::LimitReached { .. }
        | Event::LimitRaised { .. }
        | Event::RunWaiting { .. }
        | Event::RunPaused { .. }
        | Event::RunResumed { .. }
        | Event::RunCompleted { .. }
        | Event::RunFailed { .. }
        | Event::LimitRejected { .. }
        | Event::CancelRequested { .. }
        | Event::ResumeRequested { .. }
        | Event::UserMessage { .. }
        | Event::RunCancelled { .. } => {}
    }
}

/// JSON pointers of every string and every object key inside `value` (`kind` aside), each
/// with whether it is a key.
fn places(value: &Value, at: String, out: &mut Vec<(String, bool)>) {
    match value {
        Value::String(_) if at != "/kind" => out.push((at, false)),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                places(item, format!("{at}/{i}"), out);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                let pointer = format!("{at}/{}", key.replace('~', "~0").replace('/', "~1"));
                // Keys of the event's own object are field names, not data.
                if !at.is_empty() {
                    out.push((pointer.clone(), true));
                }
                places(item, pointer, out);
            }
        }
        _ => {}
    }
}

/// `value` with `text` written into the place at `pointer` (a string, or an object key).
fn plant(value: &Value, pointer: &str, is_key: bool, text: &str) -> Value {
    let mut value = value.clone();
    if is_key {
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        let key = key.replace("~1", "/").replace("~0", "~");
        let map = value.pointer_mut(parent).unwrap().as_object_mut().unwrap();
        let item = map.remove(&key).unwrap();
        map.insert(text.to_string(), item);
    } else {
        *value.pointer_mut(pointer).unwrap() = Value::String(text.to_string());
    }
    value
}

/// The ways a secret arrives: plain, inside JSON text escaped as an encoder may escape it,
/// and inside JSON text inside JSON text.
fn disguises() -> Vec<(String, String)> {
    let escaped = SECRET.replace('-', "\\u002d").replace('/', "\\/");
    let all_escaped: String = SECRET
        .chars()
        .map(|c| format!("\\u{:04x}", c as u32))
        .collect();
    let doc = format!(r#"{{"key":"{escaped}"}}"#);
    vec![
        ("plain".into(), format!("before {SECRET} after")),
        ("pattern".into(), format!("before {PATTERN_HIT} after")),
        ("escaped".into(), doc.clone()),
        (
            "every character escaped".into(),
            format!(r#"["{all_escaped}"]"#),
        ),
        (
            "twice".into(),
            serde_json::to_string(&json!({ "inner": doc })).unwrap(),
        ),
        (
            "pattern escaped".into(),
            format!(r#"{{"t":"tok\u005f{}"}}"#, &PATTERN_HIT[4..]),
        ),
    ]
}

/// Whether a secret can be read anywhere in `value`: in a string or a key as written, or in
/// the JSON a string or a key holds, decoded, however deep.
fn leaks(value: &Value) -> bool {
    let text_leaks = |text: &str| {
        text.contains(SECRET)
            || text.contains(PATTERN_HIT)
            || serde_json::from_str::<Value>(text).is_ok_and(|inner| leaks(&inner))
    };
    match value {
        Value::String(text) => text_leaks(text),
        Value::Array(items) => items.iter().any(leaks),
        Value::Object(map) => map.iter().any(|(k, v)| text_leaks(k) || leaks(v)),
        _ => false,
    }
}

/// [`leaks`] of an event as journaled.
fn event_leaks(event: &Event) -> bool {
    leaks(&serde_json::to_value(event).unwrap())
}

#[test]
fn a_secret_in_any_field_of_any_event_is_redacted() {
    let redactor = redactor();
    let mut planted = 0;
    let mut kinds = std::collections::BTreeSet::new();
    for event in one_of_each() {
        let value = serde_json::to_value(&event).unwrap();
        let mut at = Vec::new();
        places(&value, String::new(), &mut at);
        for (pointer, is_key) in at {
            for (how, text) in disguises() {
                // A place whose type is fixed (a risk class, a limit name) cannot hold text,
                // and a field name of a nested struct replaced is just an unknown field.
                let Ok(with_secret) =
                    serde_json::from_value::<Event>(plant(&value, &pointer, is_key, &text))
                else {
                    continue;
                };
                if !event_leaks(&with_secret) {
                    continue;
                }
                planted += 1;
                kinds.insert(event.kind());
                let redacted = redactor.redact_event(with_secret);
                let journaled = serde_json::to_string(&redacted).unwrap();
                assert!(
                    !event_leaks(&redacted),
                    "{} {pointer} ({how}) leaks: {journaled}",
                    event.kind()
                );
                assert!(journaled.contains("[REDACTED]"), "{journaled}");
                assert_eq!(redacted.kind(), event.kind());
            }
        }
    }
    // Every variant holds text somewhere but `run_resumed` and `limit_reached`.
    assert_eq!(kinds.len(), one_of_each().len() - 2, "{kinds:?}");
    assert!(planted > 300, "{planted}");
}

#[test]
fn human_decisions_are_redacted_before_they_are_journaled() {
    let redactor = redactor();
    let escaped = SECRET.replace('-', "\\u002d");
    let decided = Event::ApprovalDecided {
        call_id: "c1".into(),
        approved: true,
        args: Some(json!({ "to": SECRET, SECRET: 1, "json": format!("{{\"k\":\"{escaped}\"}}") })),
        by: "alice".into(),
        note: Some(format!("used {SECRET}")),
        reason: None,
        at_ms: 1,
    };
    let redacted = redactor.redact_event(decided);
    assert!(!event_leaks(&redacted), "{redacted:?}");
    let mut args = json!({ "token": PATTERN_HIT });
    assert!(redactor.redact_json(&mut args));
    assert_eq!(args, json!({ "token": "[REDACTED]" }));
}

#[test]
fn a_pattern_matching_a_word_of_the_format_still_redacts_the_rest() {
    // `read_only` is a risk class; a redactor that hides it cannot write the event back,
    // yet the secret beside it must go.
    let redactor = Redactor::new([SECRET.to_string()])
        .with_patterns(["read_only", "max_steps"])
        .unwrap();
    let started = Event::ToolStarted {
        call_id: "c1".into(),
        name: "read_only_tool".into(),
        args: json!({ "v": SECRET }),
        risk: RiskClass::ReadOnly,
        idempotency_key: "k".into(),
    };
    let Event::ToolStarted {
        name, args, risk, ..
    } = redactor.redact_event(started)
    else {
        panic!("not tool_started");
    };
    assert_eq!(risk, RiskClass::ReadOnly);
    assert_eq!(name, "[REDACTED]_tool");
    assert_eq!(args, json!({ "v": "[REDACTED]" }));
}

#[test]
fn escaped_secrets_in_text_are_redacted_with_their_escapes() {
    let redactor = redactor();
    let text = r#"{"a":"sk\u002dlive\u002d9f8e7d6c5b4a\/x","b":"C:\\dir"}"#;
    assert_eq!(redactor.redact(text), r#"{"a":"[REDACTED]","b":"C:\\dir"}"#);
    // Short values are never secrets: they would match ordinary text.
    assert!(Redactor::new(["short".to_string()]).is_empty());
}

/// `secret` written as a JSON encoder may write it: each character plain, as `\uXXXX`, or
/// (for `/`) as `\/`, chosen by `mask`.
fn encode(secret: &str, mask: &[bool]) -> String {
    secret
        .chars()
        .zip(mask.iter().cycle())
        .map(|(c, &escape)| match (c, escape) {
            ('/', true) => "\\/".to_string(),
            (c, true) => format!("\\u{:04x}", c as u32),
            (c, false) => c.to_string(),
        })
        .collect()
}

proptest::proptest! {
    /// Whatever surrounds it and however it is escaped, a planted secret is gone, and the
    /// redactor never panics on the text around it (lone backslashes, broken escapes,
    /// surrogates, multi-byte characters).
    #[test]
    fn a_secret_escaped_any_way_in_any_text_is_redacted(
        before in "(\\\\|u|[0-9a-f]|\"|é|😀|\\\\u[0-9a-fA-F]{0,4}|.){0,20}",
        after in "(\\\\|u|[0-9a-f]|\"|é|😀|\\\\u[0-9a-fA-F]{0,4}|.){0,20}",
        mask in proptest::collection::vec(proptest::bool::ANY, 1..8),
    ) {
        let redactor = redactor();
        let text = format!("{before}{}{after}", encode(SECRET, &mask));
        let redacted = redactor.redact(&text);
        let decoded: String = serde_json::from_str::<Value>(&format!("\"{}\"", redacted.replace('"', "'")))
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        proptest::prop_assert!(!redacted.contains(SECRET), "{text} -> {redacted}");
        proptest::prop_assert!(!decoded.contains(SECRET), "{text} -> {redacted}");
        proptest::prop_assert!(redacted.contains("[REDACTED]"));
    }

    #[test]
    fn text_without_secrets_is_left_alone(text in "\\PC{0,60}") {
        proptest::prop_assume!(!text.contains("sk-live") && !text.contains("tok_"));
        proptest::prop_assert_eq!(redactor().redact(&text), text);
    }
}

/// Keeps the deltas a run streams to its observers.
#[derive(Default)]
struct Watcher {
    deltas: std::sync::Mutex<Vec<chassis_core::observe::Delta>>,
}

impl chassis_core::Observer for Watcher {
    fn on_event(&self, _: &str, _: &chassis_core::RunState, _: &Event) {}
    fn wants_deltas(&self) -> bool {
        true
    }
    fn on_delta(&self, _: &str, _: u32, delta: &chassis_core::observe::Delta) {
        self.deltas.lock().unwrap().push(delta.clone());
    }
}

/// Text long enough that a stream shows some of it before it ends, whatever a pattern holds
/// back.
const FILLER: &str = "lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor \
    incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud \
    exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat. Duis aute irure dolor \
    in reprehenderit in voluptate velit esse cillum dolore eu fugiat nulla pariatur. Excepteur \
    sint occaecat cupidatat non proident, sunt in culpa qui officia deserunt mollit anim id est \
    laborum. ";

/// An answer streamed in eight-character pieces, a secret and a pattern's match cut across
/// them in its text and in a tool call's arguments: what observers (a terminal, the server's
/// stream, the console) see holds neither, yet adds up to the journaled answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_deltas_are_redacted_and_add_up_to_the_answer() {
    use chassis_core::observe::Delta;

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let script = format!(
        r#"
[[scenario]]
[[scenario.turn]]
text = "Looking {SECRET} up"
tool_calls = [{{ name = "read_file", arguments = {{ path = "{SECRET}/{PATTERN_HIT}.txt" }} }}]
[[scenario.turn]]
text = "{FILLER}the key is {SECRET}, the token {PATTERN_HIT}; {FILLER}nothing else"
"#
    );
    let mock =
        chassis_testkit::fixture::start_mock(&script, chassis_mock::MockConfig::default()).await;
    crate::write(&root.join("prompt.j2"), "Look it up.");
    crate::write(&root.join("data/note.txt"), "hello");
    let spec = chassis_testkit::fixture::agent_toml(
        "streamer",
        &mock.base_url(),
        "[redact]\npatterns = [\"tok_[A-Z]{20}\"]\n[[tools]]\nuse = \"builtin:fs\"\nroot = \"data\"\nonly = [\"read_file\"]\n",
    );
    crate::write(&root.join("agent.toml"), &spec);
    let agent = chassis_engine::Agent::load(&root.join("agent.toml"))
        .await
        .unwrap();
    let journal: Arc<dyn chassis_store::Journal> = Arc::new(
        chassis_store::SqliteJournal::open(&root.join("j.db"), chassis_store::Sync::Normal)
            .unwrap(),
    );
    let watcher = Arc::new(Watcher::default());
    let engine = chassis_engine::Engine::new(journal)
        .with_redactor(Arc::new(Redactor::new([SECRET.to_string()])))
        .with_observer(watcher.clone());
    let outcome = engine.start(&agent, "go").await.unwrap();
    assert_eq!(
        outcome.output.as_deref(),
        Some(
            format!("{FILLER}the key is [REDACTED], the token [REDACTED]; {FILLER}nothing else")
                .as_str()
        ),
        "{outcome:?}"
    );

    let deltas = watcher.deltas.lock().unwrap().clone();
    assert!(
        deltas.len() > 10,
        "the answers streamed in pieces: {deltas:?}"
    );
    for delta in &deltas {
        let shown = format!("{delta:?}");
        assert!(!shown.contains("sk-live"), "{shown}");
        assert!(!shown.contains("tok_ABC"), "{shown}");
    }
    let text: String = deltas
        .iter()
        .filter_map(|d| match d {
            Delta::Text(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        text,
        format!(
            "Looking [REDACTED] up{FILLER}the key is [REDACTED], the token [REDACTED]; {FILLER}nothing else"
        )
    );
    let args: String = deltas
        .iter()
        .filter_map(|d| match d {
            Delta::ToolArgs { arguments, .. } => Some(arguments.as_str()),
            _ => None,
        })
        .collect();
    let args: Value = serde_json::from_str(&args).unwrap();
    assert_eq!(args, json!({"path": "[REDACTED]/[REDACTED].txt"}));
    mock.shutdown().await;
}
