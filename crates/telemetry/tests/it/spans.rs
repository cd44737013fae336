//! The tracer on scripted journals: retries, fallbacks and failures land on the right spans.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chassis_core::Observer;
use chassis_core::{AssistantMessage, Event, RunState, ToolCall, Usage};
use chassis_telemetry::Tracer;
use chassis_telemetry::proto::{Span, Value, attribute};
use serde_json::json;

const RUN: &str = "run_01jq8v6m2r9x4k7c3t5b1n0a2z";

/// A tracer with a clock that ticks 1 ms per reading, and the spans it finished.
fn tracer(capture: bool) -> (Tracer, Arc<Mutex<Vec<Span>>>) {
    let spans = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&spans);
    let clock = AtomicU64::new(1_700_000_000_000_000_000);
    let tracer = Tracer::new(capture, move |span| sink.lock().unwrap().push(span))
        .with_clock(move || clock.fetch_add(1_000_000, Ordering::Relaxed));
    (tracer, spans)
}

/// The scripted run's start: agent `desk` on `openai:gpt-4o-mini` with one read-only tool.
pub(crate) fn started() -> Event {
    chassis_testkit::start::RunStartBuilder::new().event()
}

/// Folds and observes `events` in order, each durable at once.
fn observe(tracer: &Tracer, events: &[Event]) {
    let mut state = RunState::default();
    for event in events {
        state.apply(event).expect("the script folds");
        tracer.on_event(RUN, &state, event);
        tracer.on_durable(RUN, state.seq());
    }
}

/// Folds and observes `events` in order without saying any is durable; returns the last seq.
fn observe_undurable(tracer: &Tracer, state: &mut RunState, events: &[Event]) -> u64 {
    for event in events {
        state.apply(event).expect("the script folds");
        tracer.on_event(RUN, state, event);
    }
    state.seq()
}

fn reply_with_call() -> Event {
    Event::ModelResponded {
        step: 1,
        model: "anthropic:claude-haiku-4-5".into(),
        message: AssistantMessage {
            content: None,
            tool_calls: vec![ToolCall {
                id: "call_1".into(),
                name: "lookup".into(),
                arguments: r#"{"q":"x"}"#.into(),
            }],
        },
        usage: Usage {
            input_tokens: 10,
            output_tokens: 3,
            cached_input_tokens: 4,
        },
        finish_reason: Some("tool_calls".into()),
        latency_ms: 5,
        cost_usd: Some(0.001),
    }
}

fn find<'a>(spans: &'a [Span], name: &str) -> &'a Span {
    spans
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no span {name} in {spans:#?}"))
}

fn string<'a>(span: &'a Span, key: &str) -> Option<&'a str> {
    match attribute(&span.attributes, key) {
        Some(Value::StringValue(s)) => Some(s),
        _ => None,
    }
}

#[test]
fn retries_fallbacks_and_failures_land_on_their_spans() {
    let (tracer, spans) = tracer(false);
    observe(
        &tracer,
        &[
            started(),
            Event::ModelRequested {
                step: 1,
                model: "openai:gpt-4o-mini".into(),
                messages: 2,
            },
            Event::ModelAttemptFailed {
                step: 1,
                model: "openai:gpt-4o-mini".into(),
                attempt: 1,
                error: "openai: status 503".into(),
                delay_ms: Some(500),
            },
            Event::ModelFallback {
                step: 1,
                from: "openai:gpt-4o-mini".into(),
                to: "anthropic:claude-haiku-4-5".into(),
                reason: "unavailable".into(),
            },
            reply_with_call(),
            Event::ToolStarted {
                call_id: "call_1".into(),
                name: "lookup".into(),
                args: json!({ "q": "x" }),
                risk: chassis_core::RiskClass::ReadOnly,
                idempotency_key: "k".into(),
            },
            Event::ToolAttemptFailed {
                call_id: "call_1".into(),
                attempt: 1,
                error: "timeout".into(),
                delay_ms: 200,
            },
            Event::ToolFinished {
                call_id: "call_1".into(),
                ok: false,
                content: "lookup failed: secret detail".into(),
                latency_ms: 3,
            },
            Event::ModelRequested {
                step: 2,
                model: "openai:gpt-4o-mini".into(),
                messages: 4,
            },
            Event::ModelFailed {
                step: 2,
                model: "openai:gpt-4o-mini".into(),
                error: "every model failed".into(),
                unavailable: false,
            },
            Event::RunFailed {
                error: "every model failed".into(),
            },
        ],
    );
    let spans = spans.lock().unwrap().clone();
    assert_eq!(spans.len(), 4, "{spans:#?}");

    let first_chat = spans
        .iter()
        .find(|s| s.name == "chat gpt-4o-mini" && s.status.is_none())
        .unwrap();
    let events: Vec<&str> = first_chat.events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        events,
        ["chassis.model_attempt_failed", "chassis.model_fallback"]
    );
    assert_eq!(
        attribute(&first_chat.events[0].attributes, "attempt"),
        Some(&Value::IntValue(1))
    );
    assert_eq!(
        string(first_chat, "gen_ai.request.model"),
        Some("gpt-4o-mini")
    );
    assert_eq!(
        string(first_chat, "gen_ai.response.model"),
        Some("claude-haiku-4-5")
    );
    assert_eq!(
        string(first_chat, "gen_ai.provider.name"),
        Some("anthropic")
    );
    assert_eq!(
        attribute(
            &first_chat.attributes,
            "gen_ai.usage.cache_read.input_tokens"
        ),
        Some(&Value::IntValue(4))
    );

    let tool = find(&spans, "execute_tool lookup");
    assert_eq!(tool.events[0].name, "chassis.tool_attempt_failed");
    let status = tool.status.as_ref().unwrap();
    assert_eq!(status.code, 2);
    assert_eq!(
        status.message, "the tool failed",
        "content stays out without capture"
    );
    assert_eq!(string(tool, "error.type"), Some("tool_error"));
    assert_eq!(
        string(tool, "gen_ai.tool.description"),
        Some("Looks things up")
    );

    let failed_chat = spans
        .iter()
        .find(|s| s.name == "chat gpt-4o-mini" && s.status.is_some())
        .unwrap();
    assert_eq!(string(failed_chat, "error.type"), Some("model_error"));
    let root = find(&spans, "invoke_agent desk");
    assert_eq!(root.status.as_ref().unwrap().message, "every model failed");
    assert_eq!(string(root, "chassis.run.status"), Some("failed"));
    assert!(
        spans
            .iter()
            .all(|s| s.end_time_unix_nano > s.start_time_unix_nano)
    );
    assert!(!format!("{spans:?}").contains("secret detail"));
}

#[test]
fn spans_left_open_are_ended_as_interrupted() {
    let (tracer, spans) = tracer(true);
    observe(
        &tracer,
        &[
            started(),
            Event::ModelRequested {
                step: 1,
                model: "openai:gpt-4o-mini".into(),
                messages: 2,
            },
        ],
    );
    assert!(spans.lock().unwrap().is_empty(), "nothing ended yet");
    tracer.end_all();
    let spans = spans.lock().unwrap().clone();
    let chat = find(&spans, "chat gpt-4o-mini");
    assert_eq!(string(chat, "error.type"), Some("interrupted"));
    let input = string(chat, "gen_ai.input.messages").unwrap();
    assert!(
        input.contains("be brief") && input.contains("hello"),
        "{input}"
    );
    let root = find(&spans, "invoke_agent desk");
    assert_eq!(
        attribute(&root.attributes, "chassis.interrupted"),
        Some(&Value::BoolValue(true))
    );
}

/// A step observed but not yet journaled (a driver that dies or loses its lease before its
/// flush) is announced by no span: spans go out only once the events that end them are durable,
/// and what the run never journaled is dropped when the process lets go of the run.
#[test]
fn only_durable_events_become_spans() {
    let (tracer, spans) = tracer(true);
    let mut state = RunState::default();
    let started_at = observe_undurable(&tracer, &mut state, &[started()]);
    tracer.on_durable(RUN, started_at);
    let step = [
        Event::ModelRequested {
            step: 1,
            model: "openai:gpt-4o-mini".into(),
            messages: 2,
        },
        reply_with_call(),
    ];
    let replied = observe_undurable(&tracer, &mut state, &step);
    assert!(
        spans.lock().unwrap().is_empty(),
        "a chat span whose reply is not journaled went out: {:#?}",
        spans.lock().unwrap()
    );
    tracer.on_durable(RUN, replied);
    assert_eq!(
        spans.lock().unwrap().len(),
        1,
        "the chat span goes out once its reply is durable"
    );

    // The next step is observed, then the driver loses the run before its flush.
    let tool = [
        Event::ToolStarted {
            call_id: "1.0".into(),
            name: "lookup".into(),
            args: json!({ "q": "x" }),
            risk: chassis_core::RiskClass::ReadOnly,
            idempotency_key: "k".into(),
        },
        Event::ToolFinished {
            call_id: "1.0".into(),
            ok: true,
            content: "never journaled".into(),
            latency_ms: 3,
        },
    ];
    observe_undurable(&tracer, &mut state, &tool);
    tracer.on_released(RUN);
    tracer.end_all();
    let spans = spans.lock().unwrap().clone();
    assert!(
        !format!("{spans:?}").contains("never journaled")
            && spans.iter().all(|s| s.name != "execute_tool lookup"),
        "a tool span of events never journaled went out: {spans:#?}"
    );
    assert_eq!(
        tracer.runs_held(),
        0,
        "nothing of the run is kept once released"
    );
}

/// Per-run state is dropped when a run stops here (waits, parks or ends) and its stop is
/// durable, so a long-lived worker's tracer holds only the runs it is driving.
#[test]
fn a_waiting_run_leaves_nothing_behind() {
    let (tracer, spans) = tracer(false);
    observe(
        &tracer,
        &[
            started(),
            Event::RunWaiting {
                reason: "approval of 1.0".into(),
                at_ms: 1_700_000_000_001,
            },
        ],
    );
    assert_eq!(tracer.runs_held(), 0);
    let spans = spans.lock().unwrap().clone();
    assert_eq!(find(&spans, "invoke_agent desk").status, None, "{spans:#?}");
}

/// A span as a person reads it: name, kind, parent, times relative to the trace's first
/// start, status, attributes (sorted) and events.
fn render(spans: &[Span]) -> String {
    use std::fmt::Write as _;

    let origin = spans
        .iter()
        .map(|s| s.start_time_unix_nano)
        .min()
        .unwrap_or(0);
    let name_of = |id: &[u8]| {
        spans
            .iter()
            .find(|s| s.span_id == id)
            .map_or("(outside)".to_string(), |s| s.name.clone())
    };
    let ms = |ns: u64| (ns - origin) / 1_000_000;
    let mut sorted: Vec<&Span> = spans.iter().collect();
    sorted.sort_by_key(|s| (s.start_time_unix_nano, s.end_time_unix_nano));
    let mut out = String::new();
    for span in sorted {
        let parent = if span.parent_span_id.is_empty() {
            "(root)".to_string()
        } else {
            name_of(&span.parent_span_id)
        };
        let status = span.status.as_ref().map_or("unset".to_string(), |s| {
            format!("code {} {:?}", s.code, s.message)
        });
        let _ = writeln!(
            out,
            "{} [kind {}] parent: {parent}; from {} to {} (ms); status {status}",
            span.name,
            span.kind,
            ms(span.start_time_unix_nano),
            ms(span.end_time_unix_nano),
        );
        let mut attributes: Vec<String> = span
            .attributes
            .iter()
            .map(|kv| {
                format!(
                    "{} = {:?}",
                    kv.key,
                    kv.value.as_ref().and_then(|v| v.value.as_ref())
                )
            })
            .collect();
        attributes.sort();
        for attribute in attributes {
            let _ = writeln!(out, "    {attribute}");
        }
        for event in &span.events {
            let mut fields: Vec<String> = event
                .attributes
                .iter()
                .map(|kv| {
                    format!(
                        "{}={:?}",
                        kv.key,
                        kv.value.as_ref().and_then(|v| v.value.as_ref())
                    )
                })
                .collect();
            fields.sort();
            let _ = writeln!(
                out,
                "    event {} at {} (ms): {}",
                event.name,
                ms(event.time_unix_nano),
                fields.join(", ")
            );
        }
    }
    out
}

/// The spans of a run whose tool call waits for a human's approval, then runs: the first
/// segment ends waiting with the request on it, the resume is a child of it. The decision is
/// journaled by whoever approved, without the lease: the driver that resumes folds it but
/// never observes it.
#[test]
fn spans_snapshot_of_a_run_with_an_approved_tool_call() {
    let (tracer, spans) = tracer(false);
    let at = chassis_testkit::start::STARTED_AT_MS;
    let decided = |event: &Event| matches!(event, Event::ApprovalDecided { .. });
    let mut state = RunState::default();
    for event in [
        started(),
        Event::ModelRequested {
            step: 1,
            model: "openai:gpt-4o-mini".into(),
            messages: 2,
        },
        reply_with_call(),
        Event::ApprovalRequested {
            call_id: "1.0".into(),
            tool: "lookup".into(),
            args: json!({ "q": "x" }),
            risk: chassis_core::RiskClass::ReadOnly,
            reason: None,
            context: Vec::new(),
            at_ms: at + 10,
            expires_at_ms: None,
        },
        Event::RunWaiting {
            reason: "call 1.0 waits for approval".into(),
            at_ms: at + 11,
        },
        Event::ApprovalDecided {
            call_id: "1.0".into(),
            approved: true,
            args: None,
            by: "ana".into(),
            note: Some("fine".into()),
            reason: None,
            at_ms: at + 20,
        },
        Event::RunResumed { at_ms: at + 21 },
        Event::ToolStarted {
            call_id: "1.0".into(),
            name: "lookup".into(),
            args: json!({ "q": "x" }),
            risk: chassis_core::RiskClass::ReadOnly,
            idempotency_key: format!("{RUN}/1.0"),
        },
        Event::ToolFinished {
            call_id: "1.0".into(),
            ok: true,
            content: "found x".into(),
            latency_ms: 3,
        },
        Event::ModelRequested {
            step: 2,
            model: "openai:gpt-4o-mini".into(),
            messages: 4,
        },
        Event::ModelResponded {
            step: 2,
            model: "openai:gpt-4o-mini".into(),
            message: AssistantMessage {
                content: Some("x is found".into()),
                tool_calls: Vec::new(),
            },
            usage: Usage {
                input_tokens: 20,
                output_tokens: 4,
                cached_input_tokens: 0,
            },
            finish_reason: None,
            latency_ms: 7,
            cost_usd: None,
        },
        Event::RunCompleted {
            output: "x is found".into(),
        },
    ] {
        state.apply(&event).expect("the script folds");
        if !decided(&event) {
            tracer.on_event(RUN, &state, &event);
            tracer.on_durable(RUN, state.seq());
        }
    }
    let spans = spans.lock().unwrap();
    chassis_testkit::snapshot::settings().bind(|| {
        chassis_testkit::insta::assert_snapshot!("spans_approved_tool_call", render(&spans));
    });
}

/// A tool's progress is an event of its open `execute_tool` span; its words only with content
/// capture.
#[test]
fn tool_progress_is_an_event_of_the_tool_s_span() {
    use chassis_core::ToolProgress;
    for capture in [false, true] {
        let (tracer, spans) = tracer(capture);
        let started_call = Event::ToolStarted {
            call_id: "call_1".into(),
            name: "lookup".into(),
            args: json!({ "q": "x" }),
            risk: chassis_core::RiskClass::ReadOnly,
            idempotency_key: "k".into(),
        };
        let mut state = RunState::default();
        for event in [
            started(),
            Event::ModelRequested {
                step: 1,
                model: "openai:gpt-4o-mini".into(),
                messages: 2,
            },
            reply_with_call(),
            started_call,
        ] {
            state.apply(&event).unwrap();
            tracer.on_event(RUN, &state, &event);
        }
        tracer.on_tool_progress(
            RUN,
            "call_1",
            &ToolProgress {
                tool: "lookup".into(),
                progress: 3.0,
                total: Some(10.0),
                message: Some("page 3".into()),
            },
        );
        // A report for a call that is not open (late, or another run's) goes nowhere.
        tracer.on_tool_progress(
            RUN,
            "call_9",
            &ToolProgress {
                tool: "lookup".into(),
                progress: 1.0,
                total: None,
                message: None,
            },
        );
        let finished = Event::ToolFinished {
            call_id: "call_1".into(),
            ok: true,
            content: "found".into(),
            latency_ms: 3,
        };
        state.apply(&finished).unwrap();
        tracer.on_event(RUN, &state, &finished);
        tracer.on_durable(RUN, state.seq());
        let spans = spans.lock().unwrap().clone();
        let tool = find(&spans, "execute_tool lookup");
        let progress: Vec<_> = tool
            .events
            .iter()
            .filter(|e| e.name == "chassis.tool_progress")
            .collect();
        assert_eq!(progress.len(), 1, "{:#?}", tool.events);
        let attrs = &progress[0].attributes;
        assert_eq!(attribute(attrs, "progress"), Some(&Value::DoubleValue(3.0)));
        assert_eq!(attribute(attrs, "total"), Some(&Value::DoubleValue(10.0)));
        assert_eq!(
            attribute(attrs, "message"),
            capture
                .then(|| Value::StringValue("page 3".into()))
                .as_ref()
        );
    }
}

/// A cancelled run's segment ends with the cancel on it, in error, and the tracer lets the
/// run go (it used to stay open until the process stopped).
#[test]
fn a_cancelled_run_ends_its_segment() {
    let (tracer, spans) = tracer(false);
    observe(
        &tracer,
        &[
            started(),
            Event::CancelRequested {
                by: "ops".into(),
                reason: "wrong input".into(),
                at_ms: 1_700_000_000_100,
            },
            Event::RunCancelled {
                by: "ops".into(),
                reason: "wrong input".into(),
                at_ms: 1_700_000_000_200,
            },
        ],
    );
    let spans = spans.lock().unwrap().clone();
    let segment = find(&spans, "invoke_agent desk");
    assert_eq!(string(segment, "chassis.run.status"), Some("cancelled"));
    assert!(
        segment
            .events
            .iter()
            .any(|e| e.name == "chassis.run_cancelled"),
        "{segment:#?}"
    );
    assert_eq!(
        segment.status.as_ref().map(|s| s.message.as_str()),
        Some("cancelled by ops: wrong input")
    );
    assert_eq!(tracer.runs_held(), 0);
}
