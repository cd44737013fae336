//! Real runs exported over OTLP/HTTP to a receiver: the span tree, its GenAI attributes, and a
//! resumed run continuing the same trace.

use std::sync::Arc;

use chassis_core::Observer;
use chassis_core::{Event, LimitName, RunStatus};
use chassis_telemetry::ids;
use chassis_telemetry::proto::{Span, Value, attribute};
use chassis_telemetry::{ExportConfig, Exporter, Tracer};

use crate::agent::{Desk, NOTE};
use crate::receiver::Receiver;

/// An exporter to `receiver` and a tracer feeding it.
fn tracer(receiver: &Receiver, capture: bool, extra: &[(&str, &str)]) -> (Arc<Tracer>, Exporter) {
    let endpoint = receiver.endpoint();
    let extra: Vec<(String, String)> = extra
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let config = ExportConfig::from_vars(|name| {
        if name == "OTEL_EXPORTER_OTLP_ENDPOINT" {
            return Some(endpoint.clone());
        }
        if name == "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT" {
            return Some(capture.to_string());
        }
        extra
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    })
    .unwrap()
    .expect("an endpoint is configured");
    let exporter = Exporter::start(config).unwrap();
    let sink = exporter.clone();
    (
        Arc::new(Tracer::new(capture, move |span| sink.send(span))),
        exporter,
    )
}

fn text<'a>(span: &'a Span, key: &str) -> &'a str {
    match attribute(&span.attributes, key) {
        Some(Value::StringValue(s)) => s,
        other => panic!("span {}: {key} is {other:?}, not a string", span.name),
    }
}

fn int(span: &Span, key: &str) -> i64 {
    match attribute(&span.attributes, key) {
        Some(Value::IntValue(n)) => *n,
        other => panic!("span {}: {key} is {other:?}, not an int", span.name),
    }
}

fn named<'a>(spans: &'a [Span], name: &str) -> Vec<&'a Span> {
    spans.iter().filter(|s| s.name == name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_is_exported_as_a_genai_span_tree() {
    let receiver = Receiver::start().await;
    let desk = Desk::new("max_steps = 5").await;
    let (tracer, exporter) = tracer(
        &receiver,
        false,
        &[
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=desk"),
            ("OTEL_SERVICE_NAME", "desk-service"),
            ("OTEL_BSP_SCHEDULE_DELAY", "20"),
        ],
    );
    let engine = desk.engine(&[tracer.clone() as Arc<dyn Observer>]);
    let outcome = engine
        .start(&desk.agent().await, "summarize the note")
        .await
        .unwrap();
    assert_eq!(outcome.status, RunStatus::Completed, "{outcome:?}");
    exporter.flush().await;

    // The wire: OTLP/HTTP protobuf with the configured headers and resource.
    let requests = receiver.requests();
    assert!(!requests.is_empty(), "nothing was exported");
    for r in &requests {
        assert_eq!(r.path, "/v1/traces");
        let header = |n: &str| {
            r.headers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(header("content-type"), Some("application/x-protobuf"));
        assert_eq!(header("x-tenant"), Some("desk"));
    }
    let request = <chassis_telemetry::proto::ExportTraceServiceRequest as prost::Message>::decode(
        &requests[0].body[..],
    )
    .unwrap();
    let resource = request.resource_spans[0].resource.as_ref().unwrap();
    assert_eq!(
        attribute(&resource.attributes, "service.name"),
        Some(&Value::StringValue("desk-service".into()))
    );
    let scope = &request.resource_spans[0].scope_spans[0];
    assert_eq!(scope.scope.as_ref().unwrap().name, "chassis");
    assert!(
        scope
            .schema_url
            .starts_with("https://opentelemetry.io/schemas/")
    );

    // The tree: one root, two model calls and one tool call under it, all in the run's trace.
    let spans = receiver.spans();
    assert_eq!(spans.len(), 4, "{spans:#?}");
    let run_trace = ids::trace_id(&outcome.run_id).to_vec();
    assert!(spans.iter().all(|s| s.trace_id == run_trace));
    assert!(
        spans
            .iter()
            .all(|s| s.end_time_unix_nano >= s.start_time_unix_nano)
    );
    let root = named(&spans, "invoke_agent desk");
    assert_eq!(root.len(), 1);
    let root = root[0];
    assert!(root.parent_span_id.is_empty(), "the run span is the root");
    assert_eq!(root.span_id, ids::span_id(&outcome.run_id, 1).to_vec());
    assert_eq!(text(root, "gen_ai.operation.name"), "invoke_agent");
    assert_eq!(text(root, "gen_ai.agent.name"), "desk");
    assert_eq!(text(root, "gen_ai.agent.version"), "v1");
    assert_eq!(text(root, "chassis.run.id"), outcome.run_id);
    assert_eq!(text(root, "chassis.run.status"), "completed");
    let chats = named(&spans, "chat desk-model");
    assert_eq!(chats.len(), 2);
    let tools = named(&spans, "execute_tool read_file");
    assert_eq!(tools.len(), 1);
    let tool = tools[0];
    for child in chats.iter().chain(&tools) {
        assert_eq!(
            child.parent_span_id, root.span_id,
            "{} hangs off the run",
            child.name
        );
        assert!(child.start_time_unix_nano >= root.start_time_unix_nano);
        assert!(child.end_time_unix_nano <= root.end_time_unix_nano);
    }

    // Model calls: the GenAI client attributes.
    let mut chats = chats;
    chats.sort_by_key(|s| s.start_time_unix_nano);
    for (i, chat) in chats.iter().enumerate() {
        assert_eq!(chat.kind, 3, "a model call is a CLIENT span");
        assert_eq!(text(chat, "gen_ai.operation.name"), "chat");
        assert_eq!(text(chat, "gen_ai.provider.name"), "mock");
        assert_eq!(text(chat, "gen_ai.request.model"), "desk-model");
        assert_eq!(text(chat, "gen_ai.response.model"), "desk-model");
        assert!(int(chat, "gen_ai.usage.input_tokens") > 0);
        assert!(int(chat, "gen_ai.usage.output_tokens") > 0);
        assert_eq!(int(chat, "chassis.step"), i as i64 + 1);
        let Some(Value::ArrayValue(reasons)) =
            attribute(&chat.attributes, "gen_ai.response.finish_reasons")
        else {
            panic!("no finish reasons on {chat:?}")
        };
        assert_eq!(reasons.values.len(), 1);
    }

    // The tool call: name and id as journaled, between the two model calls.
    let records = desk.journal.load(&outcome.run_id).await.unwrap();
    let (seq, call_id) = records
        .iter()
        .find_map(|r| match &r.event {
            Event::ToolStarted { call_id, .. } => Some((r.seq, call_id.clone())),
            _ => None,
        })
        .unwrap();
    assert_eq!(tool.span_id, ids::span_id(&outcome.run_id, seq).to_vec());
    assert_eq!(text(tool, "gen_ai.operation.name"), "execute_tool");
    assert_eq!(text(tool, "gen_ai.tool.name"), "read_file");
    assert_eq!(text(tool, "chassis.call.id"), call_id);
    let provider_id = records
        .iter()
        .find_map(|r| match &r.event {
            Event::ModelResponded { message, .. } => {
                message.tool_calls.first().map(|c| c.id.clone())
            }
            _ => None,
        })
        .unwrap();
    assert_eq!(text(tool, "gen_ai.tool.call.id"), provider_id);
    assert!(chats[0].end_time_unix_nano <= tool.start_time_unix_nano);
    assert!(tool.end_time_unix_nano <= chats[1].start_time_unix_nano);

    // Content is not captured unless enabled: the note read by the tool is nowhere.
    for span in &spans {
        for key in [
            "gen_ai.input.messages",
            "gen_ai.output.messages",
            "gen_ai.tool.call.result",
        ] {
            assert!(
                attribute(&span.attributes, key).is_none(),
                "{key} on {}",
                span.name
            );
        }
    }
    for r in &requests {
        assert!(!String::from_utf8_lossy(&r.body).contains(NOTE));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_run_continues_the_same_trace() {
    let receiver = Receiver::start().await;
    let desk = Desk::new("max_steps = 1\non_limit = \"pause\"").await;

    // The first process: one step, then the step limit parks the run.
    let (first, exporter) = tracer(&receiver, false, &[]);
    let engine = desk.engine(&[first.clone() as Arc<dyn Observer>]);
    let outcome = engine.start(&desk.agent().await, "read it").await.unwrap();
    assert_eq!(outcome.status, RunStatus::Paused, "{outcome:?}");
    exporter.flush().await;
    let paused_spans = receiver.spans().len();

    // Another process (a new tracer, nothing shared) raises the limit and finishes the run.
    let (second, exporter) = tracer(&receiver, true, &[]);
    let engine = desk.engine(&[second.clone() as Arc<dyn Observer>]);
    let outcome = engine
        .raise_and_resume(&outcome.run_id, &[(LimitName::MaxSteps, 5.0)], "test")
        .await
        .unwrap();
    assert_eq!(outcome.status, RunStatus::Completed, "{outcome:?}");
    exporter.flush().await;

    let spans = receiver.spans();
    assert!(spans.len() > paused_spans);
    let run_trace = ids::trace_id(&outcome.run_id).to_vec();
    assert!(
        spans.iter().all(|s| s.trace_id == run_trace),
        "one trace across processes"
    );
    let mut segments = named(&spans, "invoke_agent desk");
    segments.sort_by_key(|s| s.start_time_unix_nano);
    assert_eq!(segments.len(), 2, "{segments:#?}");
    let (first, resumed) = (segments[0], segments[1]);
    assert!(first.parent_span_id.is_empty());
    assert_eq!(
        resumed.parent_span_id, first.span_id,
        "the resume hangs off the run's root"
    );
    assert_eq!(text(first, "chassis.run.status"), "paused");
    assert_eq!(text(resumed, "chassis.run.status"), "completed");
    let events: Vec<&str> = first.events.iter().map(|e| e.name.as_str()).collect();
    assert!(events.contains(&"chassis.limit_reached"), "{events:?}");
    assert!(events.contains(&"chassis.run_paused"), "{events:?}");
    let limit = first
        .events
        .iter()
        .find(|e| e.name == "chassis.limit_reached")
        .unwrap();
    assert_eq!(
        attribute(&limit.attributes, "limit"),
        Some(&Value::StringValue("max_steps".into()))
    );

    // The resumed model call carries content (capture on): the tool's result in its context.
    let chats: Vec<&Span> = named(&spans, "chat desk-model")
        .into_iter()
        .filter(|s| s.parent_span_id == resumed.span_id)
        .collect();
    assert_eq!(chats.len(), 1);
    let input = text(chats[0], "gen_ai.input.messages");
    let messages: serde_json::Value = serde_json::from_str(input).unwrap();
    assert_eq!(messages[0]["role"], "system");
    assert!(input.contains(NOTE), "{input}");
    let output: serde_json::Value =
        serde_json::from_str(text(chats[0], "gen_ai.output.messages")).unwrap();
    assert_eq!(output[0]["role"], "assistant");
    assert_eq!(output[0]["parts"][0]["type"], "text");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_json_is_the_otlp_json_mapping() {
    let receiver = Receiver::start().await;
    let (tracer, exporter) = tracer(
        &receiver,
        false,
        &[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")],
    );
    let started = chassis_testkit::start::RunStartBuilder::new()
        .models("mock:m", &[])
        .event();
    let state = chassis_core::RunState::fold([&started]).expect("a run_started folds");
    let run_id = "run_01jq0000000000000000000000";
    tracer.on_event(
        run_id,
        &state,
        &Event::RunCompleted {
            output: "ok".into(),
        },
    );
    tracer.on_durable(run_id, 1);
    exporter.flush().await;
    let requests = receiver.requests();
    assert_eq!(requests.len(), 1);
    let header = |n: &str| {
        requests[0]
            .headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(header("content-type").as_deref(), Some("application/json"));
    let body: serde_json::Value = serde_json::from_slice(&requests[0].body).unwrap();
    let span = &body["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
    assert_eq!(span["traceId"], ids::hex(&ids::trace_id(run_id)));
    assert_eq!(span["name"], "invoke_agent desk");
    assert!(span["startTimeUnixNano"].is_string());
}
