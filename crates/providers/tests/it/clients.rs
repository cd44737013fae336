//! The same behaviour from both clients: replies, tool round trips, and every failure mapped
//! to the right error.

use std::time::Duration;

use chassis_core::{Message, ToolCall};
use chassis_mock::FaultKind;
use chassis_providers::Error;
use serde_json::Value;

use crate::{
    Api, MockConfig, client, client_with_timeout, fail, serve, serve_faulty, succeed, user,
};

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

async fn text_reply(api: Api) {
    let mock = serve(MockConfig::default()).await;
    let system = Message::System {
        content: "be brief".to_owned(),
    };
    let response = succeed(&*client(api, &mock), vec![system, user("hi")]).await;
    assert_eq!(
        response.message.content.as_deref(),
        Some("hello, you said hi")
    );
    assert!(response.message.tool_calls.is_empty());
    assert_eq!(response.model, "test-model");
    assert_eq!(response.served_by, "mock:test-model");
    let expected_stop = match api {
        Api::OpenAi => "stop",
        Api::Anthropic => "end_turn",
    };
    assert_eq!(response.finish_reason.as_deref(), Some(expected_stop));
    assert!(response.usage.input_tokens > 0 && response.usage.output_tokens > 0);
    assert_eq!(mock.stats().requests, 1);
    mock.shutdown().await;
}
for_both_apis!(text_reply);

async fn tool_call_round_trip(api: Api) {
    let mock = serve(MockConfig::default()).await;
    let client = client(api, &mock);
    let mut messages = vec![user("I want a refund")];

    let first = succeed(&*client, messages.clone()).await;
    assert_eq!(first.message.content, None);
    let calls = &first.message.tool_calls;
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].name, "read_file");
    let args: Value = serde_json::from_str(&calls[0].arguments).unwrap();
    assert_eq!(args, serde_json::json!({"path": "notes.txt"}));
    assert_ne!(calls[0].id, calls[1].id);
    let expected_stop = match api {
        Api::OpenAi => "tool_calls",
        Api::Anthropic => "tool_use",
    };
    assert_eq!(first.finish_reason.as_deref(), Some(expected_stop));

    // Both results go back; the Anthropic mock refuses them unless they share one message.
    messages.push(Message::Assistant(first.message.clone()));
    for (call, result) in calls.iter().zip(["see policy", "refund approved"]) {
        messages.push(Message::Tool {
            call_id: call.id.clone(),
            content: result.to_owned(),
        });
    }
    let second = succeed(&*client, messages).await;
    assert_eq!(
        second.message.content.as_deref(),
        Some("The notes say: refund approved")
    );
    assert!(second.message.tool_calls.is_empty());
    assert_eq!(mock.stats().by_turn.get(&1), Some(&1));
    mock.shutdown().await;
}
for_both_apis!(tool_call_round_trip);

async fn rate_limit_carries_retry_after(api: Api) {
    let mock = serve_faulty(FaultKind::RateLimited).await;
    let err = fail(&*client(api, &mock), vec![user("hi")]).await;
    match &err {
        Error::Status {
            provider,
            status,
            message,
            retry_after,
        } => {
            assert_eq!(provider, "mock");
            assert_eq!(*status, 429);
            assert_eq!(*retry_after, Some(1));
            assert!(message.contains("Rate limit reached"), "{message}");
        }
        other => panic!("expected a status error, got {other:?}"),
    }
    assert!(err.is_transient());
    mock.shutdown().await;
}
for_both_apis!(rate_limit_carries_retry_after);

async fn server_errors_are_transient(api: Api) {
    for (kind, expected) in [(FaultKind::ServerError, 500), (FaultKind::Unavailable, 503)] {
        let mock = serve_faulty(kind).await;
        let err = fail(&*client(api, &mock), vec![user("hi")]).await;
        assert!(
            matches!(err, Error::Status { status, retry_after: None, .. } if status == expected),
            "{err:?}"
        );
        assert!(err.is_transient(), "{err:?}");
        assert!(
            err.to_string()
                .starts_with(&format!("mock: HTTP {expected}: "))
        );
        mock.shutdown().await;
    }
}
for_both_apis!(server_errors_are_transient);

/// A client makes one attempt: a failure the Retry layer would retry (429, 5xx, a cut
/// connection, a body that does not parse) reaches the server once.
async fn a_client_makes_exactly_one_attempt(api: Api) {
    for kind in [
        FaultKind::RateLimited,
        FaultKind::ServerError,
        FaultKind::Unavailable,
        FaultKind::Cut,
        FaultKind::Malformed,
    ] {
        let mock = serve_faulty(kind).await;
        let err = fail(&*client(api, &mock), vec![user("hi")]).await;
        assert!(err.is_transient(), "{kind:?}: {err:?}");
        let stats = mock.stats();
        assert_eq!(stats.requests, 1, "{kind:?}: {stats:?}");
        assert_eq!(stats.faults.values().sum::<u64>(), 1, "{kind:?}: {stats:?}");
        mock.shutdown().await;
    }
}
for_both_apis!(a_client_makes_exactly_one_attempt);

async fn hang_times_out(api: Api) {
    let mock = serve_faulty(FaultKind::Hang).await;
    let client = client_with_timeout(api, &mock, Duration::from_millis(300));
    // The mock would answer after its hang: a call that did not time out would succeed.
    let err = fail(&*client, vec![user("hi")]).await;
    assert!(
        matches!(err, Error::Timeout { seconds, .. } if (seconds - 0.3).abs() < 1e-9),
        "{err:?}"
    );
    assert!(err.is_transient());
    mock.shutdown().await;
}
for_both_apis!(hang_times_out);

async fn cut_is_a_connection_error(api: Api) {
    let mock = serve_faulty(FaultKind::Cut).await;
    let err = fail(&*client(api, &mock), vec![user("hi")]).await;
    assert!(matches!(err, Error::Connection { .. }), "{err:?}");
    assert!(err.is_transient());
    // The URL is not part of the message.
    assert!(!err.to_string().contains("127.0.0.1"), "{err}");
    mock.shutdown().await;
}
for_both_apis!(cut_is_a_connection_error);

async fn malformed_is_an_invalid_response(api: Api) {
    let mock = serve_faulty(FaultKind::Malformed).await;
    let err = fail(&*client(api, &mock), vec![user("hi")]).await;
    assert!(matches!(err, Error::InvalidResponse { .. }), "{err:?}");
    mock.shutdown().await;
}
for_both_apis!(malformed_is_an_invalid_response);

async fn bad_args_never_become_an_arguments_object(api: Api) {
    let mock = serve_faulty(FaultKind::BadArgs).await;
    let response = succeed(&*client(api, &mock), vec![user("hi")]).await;
    let ToolCall {
        name, arguments, ..
    } = &response.message.tool_calls[0];
    assert_eq!(name, "read_file");
    // OpenAI: not JSON at all. Anthropic: JSON, but a string where an object belongs.
    let parsed = serde_json::from_str::<Value>(arguments);
    assert!(!matches!(parsed, Ok(Value::Object(_))), "{arguments}");
    mock.shutdown().await;
}
for_both_apis!(bad_args_never_become_an_arguments_object);

async fn refused_connection_hides_the_key(api: Api) {
    // A port that was just free: nothing listens there now.
    let mock = serve(MockConfig::default()).await;
    let client = client(api, &mock);
    mock.shutdown().await;
    let err = fail(&*client, vec![user("hi")]).await;
    assert!(matches!(err, Error::Connection { .. }), "{err:?}");
}
for_both_apis!(refused_connection_hides_the_key);
