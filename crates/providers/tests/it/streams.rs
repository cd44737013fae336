//! Streamed calls: the same response as a whole one, deltas as they come, and every way a
//! stream breaks as a failed attempt that the Retry layer makes again whole.

use std::sync::Arc;
use std::time::Duration;

use chassis_core::ToolCall;
use chassis_mock::{FaultKind, MockConfig, MockHandle};
use chassis_providers::cassette::{Recorder, Recording, Replay};
use chassis_providers::{
    CallEvent, CallOptions, ChatResponse, Delta, DeltaLog, Error, ModelClient, Retry, RetryPolicy,
    Timeouts,
};
use serde_json::Value;

use crate::{Api, client_with, request, serve, user};

/// Runs the `async fn $test(api: Api)` above it once per client.
macro_rules! for_both_apis {
    ($test:ident) => {
        mod $test {
            use super::*;

            #[tokio::test]
            async fn openai() {
                $test(Api::OpenAi).await;
            }

            #[tokio::test]
            async fn anthropic() {
                $test(Api::Anthropic).await;
            }
        }
    };
}

fn streaming(stream: bool) -> CallOptions {
    CallOptions {
        stream,
        ..CallOptions::default()
    }
}

fn timeouts() -> Timeouts {
    Timeouts::total(Duration::from_secs(10))
}

/// One call with a delta log; the response and what the log saw.
async fn call(client: &dyn ModelClient, input: &str) -> (Result<ChatResponse, Error>, DeltaLog) {
    let log = DeltaLog::default();
    let mut request = request(vec![user(input)]);
    request.deltas = log.deltas();
    (client.complete(&request).await, log)
}

/// The text and the arguments of each tool call as the deltas showed them.
fn shown(deltas: &[Delta]) -> (String, Vec<(String, String)>) {
    let mut text = String::new();
    let mut calls: Vec<(String, String)> = Vec::new();
    for delta in deltas {
        match delta {
            Delta::Text(piece) => text.push_str(piece),
            Delta::ToolCallStarted { index, name } => {
                assert_eq!(*index, calls.len(), "calls start in order: {deltas:?}");
                calls.push((name.clone(), String::new()));
            }
            Delta::ToolArgs { index, arguments } => calls[*index].1.push_str(arguments),
            Delta::Abandoned => panic!("nothing was abandoned: {deltas:?}"),
        }
    }
    (text, calls)
}

/// A reply past `max_reply_bytes`, whole or streamed, fails the attempt naming the size and the
/// setting; reading stops there. One within it is read as usual.
async fn a_reply_past_its_size_limit_is_refused(api: Api) {
    let mock = serve(MockConfig::default()).await;
    for stream in [true, false] {
        let options = CallOptions {
            stream,
            max_reply_bytes: 64 * 1024,
            ..CallOptions::default()
        };
        let client = client_with(api, &mock, timeouts(), options);
        let (small, _) = call(&*client, "hi there").await;
        assert!(small.is_ok(), "stream {stream}: {small:?}");
        // The mock repeats the input: a reply of 200 kB.
        let (large, _) = call(&*client, &"x".repeat(200 * 1024)).await;
        let error = large.expect_err("the reply is too large").to_string();
        assert!(
            error.contains("larger than 65536 bytes") && error.contains("max_reply_bytes"),
            "stream {stream}: {error}"
        );
    }
    mock.shutdown().await;
}
for_both_apis!(a_reply_past_its_size_limit_is_refused);

async fn streamed_text_is_the_whole_reply(api: Api) {
    let mock = serve(MockConfig::default()).await;
    let streamed = client_with(api, &mock, timeouts(), streaming(true));
    let whole = client_with(api, &mock, timeouts(), streaming(false));
    let (response, log) = call(&*streamed, "hi there").await;
    let response = response.unwrap();
    let (reference, _) = call(&*whole, "hi there").await;
    let reference = reference.unwrap();
    assert_eq!(
        response.message.content.as_deref(),
        Some("hello, you said hi there")
    );
    assert_eq!(response.message, reference.message);
    assert_eq!(response.finish_reason, reference.finish_reason);
    assert_eq!(response.model, reference.model);
    // The usage comes from the stream's last chunk (OpenAI) or its message events (Anthropic).
    assert_eq!(response.usage, reference.usage);
    assert!(response.usage.input_tokens > 0 && response.usage.output_tokens > 0);
    let deltas = log.take();
    let texts = deltas
        .iter()
        .filter(|d| matches!(d, Delta::Text(_)))
        .count();
    assert!(texts > 1, "the text came in pieces: {deltas:?}");
    assert_eq!(shown(&deltas).0, "hello, you said hi there");
    mock.shutdown().await;
}
for_both_apis!(streamed_text_is_the_whole_reply);

async fn streamed_tool_calls_are_assembled(api: Api) {
    let mock = serve(MockConfig {
        stream_chunk_chars: 5,
        ..MockConfig::default()
    })
    .await;
    let streamed = client_with(api, &mock, timeouts(), streaming(true));
    let whole = client_with(api, &mock, timeouts(), streaming(false));
    let (response, log) = call(&*streamed, "I want a refund").await;
    let response = response.unwrap();
    let reference = whole
        .complete(&request(vec![user("I want a refund")]))
        .await
        .unwrap();
    assert_eq!(response.message, reference.message);
    let calls: Vec<(&str, Value)> = response
        .message
        .tool_calls
        .iter()
        .map(
            |ToolCall {
                 name, arguments, ..
             }| { (name.as_str(), serde_json::from_str(arguments).unwrap()) },
        )
        .collect();
    assert_eq!(
        calls,
        [
            ("read_file", serde_json::json!({"path": "notes.txt"})),
            ("read_file", serde_json::json!({"path": "policy.txt"})),
        ]
    );
    assert_ne!(
        response.message.tool_calls[0].id,
        response.message.tool_calls[1].id
    );
    let deltas = log.take();
    let pieces = deltas
        .iter()
        .filter(|d| matches!(d, Delta::ToolArgs { index: 0, .. }))
        .count();
    assert!(pieces > 2, "the arguments came split: {deltas:?}");
    if matches!(api, Api::OpenAi) {
        // The mock interleaves the two calls' pieces; they are told apart by index.
        let order: Vec<usize> = deltas
            .iter()
            .filter_map(|d| match d {
                Delta::ToolArgs { index, .. } => Some(*index),
                _ => None,
            })
            .collect();
        assert_eq!(&order[..4], [0, 1, 0, 1], "{order:?}");
    }
    let (_, shown_calls) = shown(&deltas);
    assert_eq!(shown_calls.len(), 2);
    for ((name, arguments), call) in shown_calls.iter().zip(&response.message.tool_calls) {
        assert_eq!(name, &call.name);
        let shown: Value = serde_json::from_str(arguments).unwrap();
        let kept: Value = serde_json::from_str(&call.arguments).unwrap();
        assert_eq!(shown, kept);
    }
    mock.shutdown().await;
}
for_both_apis!(streamed_tool_calls_are_assembled);

/// A mock whose first answer breaks with `kind` after some text (seed 3 draws a fault, then
/// none).
async fn broken_once(kind: FaultKind) -> MockHandle {
    serve(MockConfig {
        seed: 3,
        fault_rate: 0.5,
        faults: vec![kind],
        // After some text in either dialect, before the stream is complete.
        stream_fault_after: 4,
        hang: Duration::from_secs(5),
        ..MockConfig::default()
    })
    .await
}

async fn a_broken_stream_is_retried_whole(api: Api) {
    for (kind, what) in [
        (FaultKind::StreamCut, "connection"),
        (FaultKind::StreamStall, "stalled"),
        (FaultKind::StreamMalformed, "invalid"),
    ] {
        let mock = broken_once(kind).await;
        let client = client_with(
            api,
            &mock,
            Timeouts {
                connect: Duration::from_secs(5),
                total: Duration::from_secs(10),
                idle: Duration::from_millis(300),
            },
            streaming(true),
        );
        let retry = Retry::new(
            client,
            RetryPolicy {
                base_delay: Duration::from_millis(1),
                ..RetryPolicy::default()
            },
            "mock:test-model",
        );
        let log = DeltaLog::default();
        let mut request = request(vec![user("hi there")]);
        request.deltas = log.deltas();
        let response = retry.complete(&request).await.unwrap();
        // The second attempt's whole answer, never the first one's pieces.
        assert_eq!(
            response.message.content.as_deref(),
            Some("hello, you said hi there"),
            "{kind}"
        );
        let stats = mock.stats();
        assert_eq!(
            (stats.requests, stats.faults[kind.name()]),
            (2, 1),
            "{kind}"
        );
        let events = request.report.drain();
        let [
            CallEvent::AttemptFailed {
                attempt: 1,
                error,
                delay: Some(_),
                ..
            },
        ] = &events[..]
        else {
            panic!("{kind}: one failed attempt expected: {events:?}");
        };
        let expected = match what {
            "connection" => "connection failed",
            "stalled" => "the answer stalled: nothing received for 0.3s",
            _ => "invalid response",
        };
        assert!(error.contains(expected), "{kind}: {error}");
        // The first attempt showed some text, then was abandoned; the second showed it all.
        let deltas = log.take();
        let abandoned = deltas.iter().position(|d| *d == Delta::Abandoned);
        let Some(abandoned) = abandoned else {
            panic!("{kind}: no reset: {deltas:?}");
        };
        assert!(
            deltas[..abandoned]
                .iter()
                .any(|d| matches!(d, Delta::Text(_))),
            "{kind}: {deltas:?}"
        );
        assert_eq!(
            shown(&deltas[abandoned + 1..]).0,
            "hello, you said hi there"
        );
        mock.shutdown().await;
    }
}
for_both_apis!(a_broken_stream_is_retried_whole);

async fn a_stall_fails_on_the_idle_timeout(api: Api) {
    let mock = serve(MockConfig {
        fault_rate: 1.0,
        faults: vec![FaultKind::StreamStall],
        stream_fault_after: 4,
        hang: Duration::from_secs(5),
        ..MockConfig::default()
    })
    .await;
    let client = client_with(
        api,
        &mock,
        Timeouts {
            connect: Duration::from_secs(5),
            total: Duration::from_secs(10),
            idle: Duration::from_millis(250),
        },
        streaming(true),
    );
    let (result, log) = call(&*client, "hi").await;
    let err = result.unwrap_err();
    // The stall lasts 5 s and the total timeout is 10 s: only the idle timeout ends it so.
    assert!(
        matches!(err, Error::Stalled { seconds, .. } if (seconds - 0.25).abs() < 1e-9),
        "{err:?}"
    );
    assert!(err.is_transient() && err.is_unavailable());
    assert_eq!(log.take().last(), Some(&Delta::Abandoned));
    mock.shutdown().await;
}
for_both_apis!(a_stall_fails_on_the_idle_timeout);

async fn the_total_timeout_bounds_a_slow_stream(api: Api) {
    let mock = serve(MockConfig {
        fault_rate: 1.0,
        faults: vec![FaultKind::StreamStall],
        stream_fault_after: 4,
        hang: Duration::from_secs(5),
        ..MockConfig::default()
    })
    .await;
    let client = client_with(
        api,
        &mock,
        Timeouts {
            connect: Duration::from_secs(5),
            total: Duration::from_millis(400),
            idle: Duration::from_secs(5),
        },
        streaming(true),
    );
    let (result, log) = call(&*client, "hi").await;
    let err = result.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    // The attempt was cancelled by the timeout: what it showed is void all the same.
    assert_eq!(log.take().last(), Some(&Delta::Abandoned));
    mock.shutdown().await;
}
for_both_apis!(the_total_timeout_bounds_a_slow_stream);

async fn a_streamed_exchange_records_and_replays(api: Api) {
    let mock = serve(MockConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.json");
    let recorder = Arc::new(Recorder::create(&path).unwrap());
    let client = client_with(api, &mock, timeouts(), streaming(true));
    let recording = Recording::new(client, Arc::clone(&recorder));
    let (recorded, _) = call(&recording, "hi there").await;
    let recorded = recorded.unwrap();
    assert_eq!(recorder.len(), 1);
    mock.shutdown().await;

    let replay = Replay::load(&path).unwrap();
    let (replayed, log) = call(&replay, "hi there").await;
    let replayed = replayed.unwrap();
    assert_eq!(replayed.message, recorded.message);
    assert_eq!(replayed.usage, recorded.usage);
    assert_eq!(replayed.served_by, recorded.served_by);
    // No stream to replay: the recorded text reaches the deltas in one piece.
    assert_eq!(log.take(), [Delta::Text("hello, you said hi there".into())]);
}
for_both_apis!(a_streamed_exchange_records_and_replays);
