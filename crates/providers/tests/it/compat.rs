//! OpenAI-compatible servers as they are: a mock enforcing their rules (tools ignored without
//! tool_choice, no `content: null`, a User-Agent), refused requests that are not outages, and
//! a model that says nothing.

use std::sync::Arc;
use std::time::Duration;

use chassis_core::Message;
use chassis_mock::{MockConfig, MockHandle};
use chassis_providers::{
    Breaker, BreakerConfig, BreakerState, CallEvent, CallOptions, CircuitBreaker, Error, Fallback,
    Link, ModelClient, Retry, RetryPolicy, Timeouts, ToolCallContent, USER_AGENT,
};

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

fn timeouts() -> Timeouts {
    Timeouts::total(Duration::from_secs(10))
}

/// llama-cpp-python's rules (tools ignored without `tool_choice`, HTTP 500 for `content:
/// null`), and a User-Agent required.
async fn strict() -> MockHandle {
    serve(MockConfig {
        require_user_agent: true,
        ..MockConfig::llama_cpp()
    })
    .await
}

/// Fast retries, as the engine stacks them over every client.
fn retrying(client: Arc<dyn ModelClient>) -> Retry<Arc<dyn ModelClient>> {
    let policy = RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(1),
        ..RetryPolicy::default()
    };
    Retry::new(client, policy, "mock:test-model")
}

async fn a_strict_server_takes_a_whole_tool_round_trip(api: Api) {
    for stream in [true, false] {
        let mock = strict().await;
        let options = CallOptions {
            stream,
            ..CallOptions::default()
        };
        let client = retrying(client_with(api, &mock, timeouts(), options));
        let mut messages = vec![user("I want a refund")];
        let asked = request(messages.clone());
        let first = client.complete(&asked).await.unwrap();
        assert_eq!(first.message.content, None);
        assert_eq!(first.message.tool_calls.len(), 2);
        // llama-cpp-python cannot stream an automatic tool choice: the empty stream is one
        // failed attempt, and the calls with tools go unstreamed from then on.
        let unstreamable = stream && matches!(api, Api::OpenAi);
        let failed = asked.report.drain();
        match &failed[..] {
            [] => assert!(!unstreamable),
            [CallEvent::AttemptFailed { error, .. }] => {
                assert!(unstreamable, "{error}");
                assert_eq!(
                    error,
                    "mock: connection failed: the stream ended before any event (calls with tools are sent unstreamed from now on)"
                );
            }
            other => panic!("{other:?}"),
        }
        // The assistant message goes back with no text: `""` here, not `null`.
        messages.push(Message::Assistant(first.message.clone()));
        for call in &first.message.tool_calls {
            messages.push(Message::Tool {
                call_id: call.id.clone(),
                content: "done".to_owned(),
            });
        }
        let second = client.complete(&request(messages)).await.unwrap();
        assert_eq!(
            second.message.content.as_deref(),
            Some("The notes say: done")
        );
        let stats = mock.stats();
        let sent = if unstreamable { 3 } else { 2 };
        assert_eq!(stats.requests, sent, "stream {stream}");
        assert_eq!(stats.by_user_agent, [(USER_AGENT.to_owned(), sent)].into());
        mock.shutdown().await;
    }
}
for_both_apis!(a_strict_server_takes_a_whole_tool_round_trip);

#[tokio::test]
async fn null_content_refused_with_500_is_a_refused_request_not_an_outage() {
    let mock = strict().await;
    let client = client_with(
        Api::OpenAi,
        &mock,
        timeouts(),
        CallOptions {
            stream: false,
            tool_call_content: Some(ToolCallContent::Null),
            ..CallOptions::default()
        },
    );
    let first = client
        .complete(&request(vec![user("refund")]))
        .await
        .unwrap();
    let mut messages = vec![user("refund"), Message::Assistant(first.message.clone())];
    for call in &first.message.tool_calls {
        messages.push(Message::Tool {
            call_id: call.id.clone(),
            content: "done".to_owned(),
        });
    }
    let err = client.complete(&request(messages)).await.unwrap_err();
    assert!(matches!(err, Error::Request { status: 500, .. }), "{err:?}");
    assert!(!err.is_transient() && !err.is_unavailable() && !err.is_retryable());
    let text = err.to_string();
    assert!(
        text.starts_with(
            "mock: HTTP 500: the request was refused: 1 validation error:\n  {'type': 'string_type'"
        ),
        "{text}"
    );
    assert!(!text.contains("SECRET"), "{text}");
    mock.shutdown().await;
}

/// Through the layers the engine stacks (retry, breaker, fallback): the validation 500 is
/// sent once, the breaker does not count it, and the chain's failure is no outage.
#[tokio::test]
async fn a_validation_500_is_sent_once_and_parks_nothing() {
    let mock = strict().await;
    let options = CallOptions {
        stream: false,
        tool_call_content: Some(ToolCallContent::Null),
        ..CallOptions::default()
    };
    let client = client_with(Api::OpenAi, &mock, timeouts(), options);
    let breaker = Arc::new(Breaker::new(
        "local".to_owned(),
        BreakerConfig {
            threshold: 1,
            ..BreakerConfig::default()
        },
    ));
    let guarded = CircuitBreaker::new(client, Arc::clone(&breaker), "local", "local:m");
    let policy = RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(1),
        ..RetryPolicy::default()
    };
    let chain = Fallback::new(vec![Link {
        label: "local:m".to_owned(),
        model: "test-model".to_owned(),
        client: Arc::new(Retry::new(guarded, policy, "local:m")),
    }]);
    let first = chain
        .complete(&request(vec![user("refund")]))
        .await
        .unwrap();
    let mut messages = vec![user("refund"), Message::Assistant(first.message.clone())];
    for call in &first.message.tool_calls {
        messages.push(Message::Tool {
            call_id: call.id.clone(),
            content: "done".to_owned(),
        });
    }
    let request = request(messages);
    let err = chain.complete(&request).await.unwrap_err();
    assert!(!err.is_unavailable(), "{err:?}");
    assert!(
        err.to_string()
            .contains("mock: HTTP 500: the request was refused: 1 validation error"),
        "{err}"
    );
    assert_eq!(mock.stats().requests, 2);
    assert_eq!(breaker.state(), BreakerState::Closed);
    let events = request.report.drain();
    assert!(
        matches!(&events[..], [CallEvent::AttemptFailed { delay: None, .. }]),
        "{events:?}"
    );
    mock.shutdown().await;
}

#[tokio::test]
async fn a_4xx_is_refused_once_and_not_retried() {
    let mock = serve(MockConfig::default()).await;
    let client = client_with(Api::Anthropic, &mock, timeouts(), CallOptions::default());
    let retry = Retry::new(client, RetryPolicy::default(), "mock:test-model");
    // A tool result answering no call: the Messages API refuses it with 400.
    let request = request(vec![
        user("hi"),
        Message::Tool {
            call_id: "nowhere".to_owned(),
            content: "x".to_owned(),
        },
    ]);
    let err = retry.complete(&request).await.unwrap_err();
    assert!(matches!(err, Error::Request { status: 400, .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("mock: HTTP 400: the request was refused: messages.1: unexpected"),
        "{err}"
    );
    assert_eq!(mock.stats().requests, 1);
    let events = request.report.drain();
    assert!(
        matches!(&events[..], [CallEvent::AttemptFailed { delay: None, .. }]),
        "{events:?}"
    );
    mock.shutdown().await;
}

/// A chain of two models that both answer nothing, each behind a breaker that would open at
/// the first counted failure.
async fn models_that_say_nothing_fail_the_call_without_parking(api: Api) {
    let mocks = [
        serve(MockConfig::default()).await,
        serve(MockConfig::default()).await,
    ];
    let mut links = Vec::new();
    let mut breakers = Vec::new();
    for (i, mock) in mocks.iter().enumerate() {
        let breaker = Arc::new(Breaker::new(
            format!("silent {i}"),
            BreakerConfig {
                threshold: 1,
                ..BreakerConfig::default()
            },
        ));
        breakers.push(Arc::clone(&breaker));
        let label = format!("m{i}:test-model");
        let client = client_with(api, mock, timeouts(), CallOptions::default());
        let guarded = CircuitBreaker::new(client, breaker, &format!("m{i}"), &label);
        let policy = RetryPolicy {
            max_attempts: 2,
            base_delay: Duration::from_millis(1),
            ..RetryPolicy::default()
        };
        links.push(Link {
            label: label.clone(),
            model: "test-model".to_owned(),
            client: Arc::new(Retry::new(guarded, policy, label)),
        });
    }
    let chain = Fallback::new(links);
    let request = request(vec![user("silence please")]);
    let err = chain.complete(&request).await.unwrap_err();
    let Error::Exhausted {
        summary,
        unavailable,
    } = &err
    else {
        panic!("{err:?}");
    };
    // Not an outage: the run fails rather than parks.
    assert!(!unavailable, "{summary}");
    assert!(!err.is_unavailable());
    assert!(
        summary
            .contains("the model gave no usable reply: the reply has neither text nor tool calls"),
        "{summary}"
    );
    // Each model was asked again (a model call is repeatable), then the chain moved on.
    for mock in &mocks {
        assert_eq!(mock.stats().requests, 2);
    }
    let events = request.report.drain();
    let failed = events
        .iter()
        .filter(|e| matches!(e, CallEvent::AttemptFailed { .. }))
        .count();
    let fallbacks = events
        .iter()
        .filter(|e| matches!(e, CallEvent::Fallback { .. }))
        .count();
    assert_eq!((failed, fallbacks), (4, 1), "{events:?}");
    // The endpoints answered: no breaker counted it.
    for breaker in &breakers {
        assert_eq!(breaker.state(), BreakerState::Closed);
    }
    for mock in mocks {
        mock.shutdown().await;
    }
}
for_both_apis!(models_that_say_nothing_fail_the_call_without_parking);

/// A chunk as llama-cpp-python 0.3.36 streams a named tool choice: the call's id and name
/// repeated in every chunk, beside a legacy `function_call`.
fn llama_cpp_chunk(arguments: &str) -> String {
    let id = "call__0_read_file_cmpl-ddd0619e";
    let arguments = serde_json::to_string(arguments).unwrap();
    format!(
        r#"{{"id": "chatcmpl-ddd0619e", "object": "chat.completion.chunk", "created": 1796623910, "model": "m", "choices": [{{"index": 0, "finish_reason": null, "logprobs": null, "delta": {{"role": null, "content": null, "function_call": {{"name": "read_file", "arguments": {arguments}}}, "tool_calls": [{{"index": 0, "id": "{id}", "type": "function", "function": {{"name": "read_file", "arguments": {arguments}}}}}]}}}}]}}"#
    )
}

/// llama-cpp-python's stream for a named tool choice, in its own words: `"tool_calls": null` in
/// the first and last chunks (where OpenAI leaves the field out), the name in every chunk.
#[tokio::test]
async fn a_llama_cpp_stream_of_a_tool_call_is_read() {
    let first = r#"{"id": "chatcmpl-ddd0619e", "object": "chat.completion.chunk", "created": 1796623910, "model": "m", "choices": [{"index": 0, "finish_reason": null, "logprobs": null, "delta": {"role": "assistant", "content": null, "function_call": null, "tool_calls": null}}]}"#;
    let last = r#"{"id": "chatcmpl-ddd0619e", "object": "chat.completion.chunk", "created": 1796623910, "model": "m", "choices": [{"index": 0, "finish_reason": "tool_calls", "logprobs": null, "delta": {"role": null, "content": null, "function_call": null, "tool_calls": null}}]}"#;
    let mut body = format!("data: {first}\r\n\r\n");
    for piece in ["{", " \"path\": \"note", ".txt\"", "}"] {
        body.push_str(&format!("data: {}\r\n\r\n", llama_cpp_chunk(piece)));
    }
    body.push_str(&format!("data: {last}\r\n\r\ndata: [DONE]\r\n\r\n"));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut received = Vec::new();
        let mut buf = [0u8; 8192];
        while !received.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "connection closed before the request head");
            received.extend_from_slice(&buf[..n]);
        }
        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\nconnection: close\r\n\r\n";
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(body.as_bytes()).await.unwrap();
    });
    let client =
        chassis_providers::OpenAiClient::new("local", &base, None, Duration::from_secs(10))
            .unwrap();
    let response = client
        .complete(&request(vec![user("read it")]))
        .await
        .unwrap();
    server.await.unwrap();
    assert_eq!(response.finish_reason.as_deref(), Some("tool_calls"));
    let calls = &response.message.tool_calls;
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].name, "read_file");
    assert_eq!(calls[0].id, "call__0_read_file_cmpl-ddd0619e");
    assert_eq!(calls[0].arguments, r#"{ "path": "note.txt"}"#);
}
