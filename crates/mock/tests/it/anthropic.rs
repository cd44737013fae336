//! The Anthropic Messages endpoint: same script, faults and stats as the OpenAI one, its own
//! wire format.

use std::collections::BTreeMap;

use chassis_mock::{FaultKind, MockConfig, MockHandle};
use serde_json::{Value, json};

use crate::{SCRIPT, anthropic_chat, chat, client, post_messages, serve, user};

fn always(kind: FaultKind) -> MockConfig {
    MockConfig {
        fault_rate: 1.0,
        faults: vec![kind],
        ..MockConfig::default()
    }
}

async fn faulted(kind: FaultKind) -> (MockHandle, reqwest::Response) {
    let mock = serve(always(kind), SCRIPT).await;
    let response = post_messages(&client(), &mock, json!([user("hi")]))
        .await
        .expect("an HTTP response");
    (mock, response)
}

#[tokio::test]
async fn text_reply_is_a_message() {
    let mock = serve(MockConfig::default(), SCRIPT).await;
    let blocks = json!([{ "role": "user", "content": [{ "type": "text", "text": "hi there" }] }]);
    let (status, body) = anthropic_chat(&client(), &mock, blocks).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({
            "id": "msg_mock_1",
            "type": "message",
            "role": "assistant",
            "model": "test-claude",
            "content": [{ "type": "text", "text": "hello, you said hi there (turn 0)" }],
            "stop_reason": "end_turn",
            "stop_sequence": null,
            "usage": { "input_tokens": 2, "output_tokens": 9 }
        })
    );
    mock.shutdown().await;
}

#[tokio::test]
async fn tool_use_then_text_with_the_tool_result() {
    let mock = serve(MockConfig::default(), SCRIPT).await;
    let client = client();
    let mut messages = vec![user("I want a refund")];

    let (status, body) = anthropic_chat(&client, &mock, Value::from(messages.clone())).await;
    assert_eq!(status, 200);
    assert_eq!(body["stop_reason"], "tool_use");
    assert_eq!(
        body["content"],
        json!([{
            "type": "tool_use",
            "id": "toolu_0_0",
            "name": "read_file",
            "input": { "path": "notes.txt" }
        }])
    );

    messages.push(json!({ "role": "assistant", "content": body["content"] }));
    messages.push(json!({ "role": "user", "content": [{
        "type": "tool_result",
        "tool_use_id": "toolu_0_0",
        "content": [{ "type": "text", "text": "refund approved" }]
    }]}));
    let (status, body) = anthropic_chat(&client, &mock, Value::from(messages)).await;
    assert_eq!(status, 200);
    assert_eq!(body["stop_reason"], "end_turn");
    assert_eq!(
        body["content"],
        json!([{ "type": "text", "text": "The notes say: refund approved" }])
    );
    mock.shutdown().await;
}

#[tokio::test]
async fn bad_requests_get_anthropic_errors() {
    let mock = serve(MockConfig::default(), SCRIPT).await;
    let client = client();
    let url = format!("{}/v1/messages", mock.anthropic_base_url());

    // Tool results split over two user messages, as a client that does not merge them sends.
    let split = json!([
        user("refund"),
        { "role": "assistant", "content": [
            { "type": "tool_use", "id": "a", "name": "read_file", "input": {} },
            { "type": "tool_use", "id": "b", "name": "read_file", "input": {} }
        ]},
        { "role": "user", "content": [{ "type": "tool_result", "tool_use_id": "a", "content": "1" }] },
        { "role": "user", "content": [{ "type": "tool_result", "tool_use_id": "b", "content": "2" }] }
    ]);
    let (status, body) = anthropic_chat(&client, &mock, split).await;
    assert_eq!(status, 400);
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("without `tool_result` blocks"),
        "{message}"
    );

    let response = client
        .post(&url)
        .json(&json!({ "model": "m", "max_tokens": 5, "messages": [user("hi")] }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["error"]["message"],
        "anthropic-version: header is required"
    );

    let (status, body) = anthropic_chat(&client, &mock, json!("not a list")).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["type"], "invalid_request_error");

    let response = client
        .post(format!("{}/v1/complete", mock.anthropic_base_url()))
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "not_found_error");

    assert_eq!(mock.stats().requests, 3);
    mock.shutdown().await;
}

#[tokio::test]
async fn rate_limited_is_429_with_retry_after() {
    let config = MockConfig {
        retry_after_secs: 3,
        ..always(FaultKind::RateLimited)
    };
    let mock = serve(config, SCRIPT).await;
    let response = post_messages(&client(), &mock, json!([user("hi")]))
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "3");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert_eq!(mock.stats().faults["429"], 1);
    mock.shutdown().await;
}

#[tokio::test]
async fn server_error_is_500() {
    let (mock, response) = faulted(FaultKind::ServerError).await;
    assert_eq!(response.status(), 500);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "api_error");
    mock.shutdown().await;
}

#[tokio::test]
async fn unavailable_is_503() {
    let (mock, response) = faulted(FaultKind::Unavailable).await;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "overloaded_error");
    mock.shutdown().await;
}

#[tokio::test]
async fn cut_closes_the_connection_without_a_response() {
    let mock = serve(always(FaultKind::Cut), SCRIPT).await;
    let err = post_messages(&client(), &mock, json!([user("hi")]))
        .await
        .unwrap_err();
    assert!(err.status().is_none(), "{err:?}");
    assert!(!err.is_timeout(), "{err:?}");
    assert_eq!(mock.stats().faults["cut"], 1);
    mock.shutdown().await;
}

#[tokio::test]
async fn malformed_is_200_with_a_body_that_is_not_json() {
    let (mock, response) = faulted(FaultKind::Malformed).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(text.starts_with("{\"id\":\"msg_mock_1\""), "{text}");
    assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");
    mock.shutdown().await;
}

#[tokio::test]
async fn bad_args_is_a_tool_use_whose_input_is_a_string() {
    let (mock, response) = faulted(FaultKind::BadArgs).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["stop_reason"], "tool_use");
    let block = &body["content"][0];
    assert_eq!(block["type"], "tool_use");
    assert_eq!(block["name"], "read_file");
    // Not an object: the truncated arguments, as text.
    let input = block["input"].as_str().expect("input is a string");
    assert!(input.starts_with("{\"path\""), "{input}");
    assert!(serde_json::from_str::<Value>(input).is_err(), "{input}");
    mock.shutdown().await;
}

#[tokio::test]
async fn both_endpoints_count_in_the_same_stats() {
    let mock = serve(MockConfig::default(), SCRIPT).await;
    let client = client();
    let assistant = json!({ "role": "assistant", "content": "x" });
    anthropic_chat(&client, &mock, json!([user("alpha")])).await;
    anthropic_chat(
        &client,
        &mock,
        json!([user("alpha"), assistant, user("more")]),
    )
    .await;
    chat(&client, &mock, json!([user("alpha")])).await;
    let response = client
        .post(format!("{}/v1/messages", mock.anthropic_base_url()))
        .header("anthropic-version", "2023-06-01")
        .body("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);

    let stats = mock.stats();
    assert_eq!(stats.requests, 4);
    assert_eq!(stats.by_turn, BTreeMap::from([(0, 2), (1, 1)]));
    assert_eq!(
        stats.by_conversation,
        BTreeMap::from([("alpha".to_owned(), BTreeMap::from([(0, 2), (1, 1)]))])
    );
    mock.shutdown().await;
}
