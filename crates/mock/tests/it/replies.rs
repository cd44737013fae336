//! Scripted replies: text, tool calls, turn selection, scenario matching, request errors.

use chassis_mock::{MockConfig, MockHandle};
use serde_json::{Value, json};

use crate::{SCRIPT, chat, client, message, serve, user};

#[tokio::test]
async fn text_reply_is_a_chat_completion() {
    let mock = serve(MockConfig::default(), SCRIPT).await;
    let (status, body) = chat(&client(), &mock, json!([user("hi there")])).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({
            "id": "chatcmpl-mock-1",
            "object": "chat.completion",
            "created": 0,
            "model": "test-model",
            "choices": [{
                "index": 0,
                "message": { "role": "assistant", "content": "hello, you said hi there (turn 0)" },
                "finish_reason": "stop"
            }],
            "usage": { "prompt_tokens": 2, "completion_tokens": 9, "total_tokens": 11 }
        })
    );
    mock.shutdown().await;
}

#[tokio::test]
async fn tool_call_then_text_with_the_tool_result() {
    let mock = serve(MockConfig::default(), SCRIPT).await;
    let client = client();
    let mut messages = vec![
        json!({ "role": "system", "content": "be helpful" }),
        user("I want a refund"),
    ];

    let (status, body) = chat(&client, &mock, Value::from(messages.clone())).await;
    assert_eq!(status, 200);
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
    let msg = message(&body);
    assert_eq!(msg["content"], Value::Null);
    let call = &msg["tool_calls"][0];
    assert_eq!(call["id"], "call_0_0");
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "read_file");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({ "path": "notes.txt" }));

    messages.push(msg.clone());
    messages
        .push(json!({ "role": "tool", "tool_call_id": "call_0_0", "content": "refund approved" }));
    let (status, body) = chat(&client, &mock, Value::from(messages)).await;
    assert_eq!(status, 200);
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(message(&body)["content"], "The notes say: refund approved");
    assert!(message(&body).get("tool_calls").is_none());
    mock.shutdown().await;
}

#[tokio::test]
async fn turn_is_the_number_of_assistant_messages() {
    let script = r#"
        [[scenario]]
        [[scenario.turn]]
        text = "one"
        [[scenario.turn]]
        text = "two"
        [[scenario.turn]]
        tool_calls = [{ name = "ls" }]
    "#;
    let mock = serve(MockConfig::default(), script).await;
    let client = client();
    let assistant = json!({ "role": "assistant", "content": "x" });
    let history = |n: usize| {
        let mut messages = vec![user("go")];
        messages.extend(std::iter::repeat_n(assistant.clone(), n));
        Value::from(messages)
    };

    let (_, body) = chat(&client, &mock, history(1)).await;
    assert_eq!(message(&body)["content"], "two");
    // Asking for the same turn again (a resumed client) gets the same reply.
    let (_, again) = chat(&client, &mock, history(1)).await;
    assert_eq!(message(&again)["content"], "two");

    let (_, body) = chat(&client, &mock, history(2)).await;
    assert_eq!(message(&body)["tool_calls"][0]["id"], "call_2_0");
    // The script ended in a tool-call turn, so later turns say it is exhausted.
    let (_, body) = chat(&client, &mock, history(3)).await;
    assert_eq!(message(&body)["content"], "mock script exhausted");
    mock.shutdown().await;
}

#[tokio::test]
async fn first_matching_scenario_wins() {
    let script = r#"
        [[scenario]]
        when_input_contains = "refund"
        [[scenario.turn]]
        text = "refund desk"
        [[scenario]]
        when_input_contains = "refund or exchange"
        [[scenario.turn]]
        text = "never reached"
        [[scenario]]
        when_input_contains = "exchange"
        [[scenario.turn]]
        text = "exchange desk"
    "#;
    let mock = serve(MockConfig::default(), script).await;
    let client = client();
    // Only the first user message counts, even if a later one matches another scenario.
    let (_, body) = chat(
        &client,
        &mock,
        json!([user("refund or exchange?"), user("exchange")]),
    )
    .await;
    assert_eq!(message(&body)["content"], "refund desk");
    let (_, body) = chat(&client, &mock, json!([user("an exchange please")])).await;
    assert_eq!(message(&body)["content"], "exchange desk");

    let (status, body) = chat(&client, &mock, json!([user("hello")])).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"hello\"")
    );
    mock.shutdown().await;
}

#[tokio::test]
async fn content_parts_and_unknown_fields_are_accepted() {
    let mock = serve(MockConfig::default(), SCRIPT).await;
    let response = client()
        .post(format!("{}/chat/completions", mock.base_url()))
        .json(&json!({
            "model": "m",
            "messages": [{ "role": "user", "content": [{ "type": "text", "text": "parts" }] }],
            "tools": [{ "type": "function", "function": { "name": "x", "parameters": {} } }],
            "max_tokens": 10,
            "stream": false,
            "something_new": true
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(message(&body)["content"], "hello, you said parts (turn 0)");
    mock.shutdown().await;
}

#[tokio::test]
async fn bad_requests_get_openai_errors() {
    let mock = serve(MockConfig::default(), SCRIPT).await;
    let client = client();
    let url = format!("{}/chat/completions", mock.base_url());

    let response = client.post(&url).body("{not json").send().await.unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");

    let response = client
        .post(&url)
        .json(&json!({ "model": "m" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("messages"), "{message}");
    mock.shutdown().await;
}

#[tokio::test]
async fn models_lists_the_mock() {
    let mock = serve(MockConfig::default(), SCRIPT).await;
    let body: Value = client()
        .get(format!("{}/models", mock.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["object"], "list");
    assert_eq!(body["data"][0]["id"], "mock");
    assert_eq!(body["data"][0]["object"], "model");
    assert!(mock.base_url().starts_with("http://127.0.0.1:"));
    mock.shutdown().await;
}

/// Posts `body` to the OpenAI (`anthropic` false) or Anthropic endpoint; the status and the
/// body's text, byte for byte.
async fn post_raw(mock: &MockHandle, anthropic: bool, body: &Value) -> (u16, String) {
    let request = if anthropic {
        client()
            .post(format!("{}/v1/messages", mock.anthropic_base_url()))
            .header("x-api-key", "test-key")
            .header("anthropic-version", "2023-06-01")
    } else {
        client().post(format!("{}/chat/completions", mock.base_url()))
    };
    let response = request.json(body).send().await.expect("an HTTP response");
    let status = response.status().as_u16();
    (status, response.text().await.expect("a body"))
}

/// A request without `stream`, or with `stream: false`, gets one whole JSON body, byte for
/// byte what the mock answered before it could stream: text and tool calls, in both dialects.
/// The text bodies are those `text_reply_is_a_chat_completion` and `text_reply_is_a_message`
/// asserted before streaming existed; the tool-call bodies are what `completion_body` and
/// `message_body`, untouched by streaming, wrote then.
#[tokio::test]
async fn a_request_without_stream_gets_the_whole_bodies_it_always_had() {
    let mock = serve(MockConfig::default(), SCRIPT).await;
    let cases = [
        (false, "hi there"),
        (false, "I want a refund"),
        (true, "hi there"),
        (true, "I want a refund"),
    ];
    let mut n = 0;
    for (anthropic, input) in cases {
        for stream in [None, Some(false)] {
            let mut body = if anthropic {
                json!({ "model": "test-claude", "max_tokens": 256, "messages": [user(input)] })
            } else {
                json!({ "model": "test-model", "messages": [user(input)] })
            };
            if let Some(stream) = stream {
                body["stream"] = json!(stream);
            }
            n += 1;
            let (status, text) = post_raw(&mock, anthropic, &body).await;
            assert_eq!(status, 200, "{text}");
            let expected = match (anthropic, input) {
                (false, "hi there") => format!(
                    r#"{{"id":"chatcmpl-mock-{n}","object":"chat.completion","created":0,"model":"test-model","choices":[{{"index":0,"message":{{"role":"assistant","content":"hello, you said hi there (turn 0)"}},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":2,"completion_tokens":9,"total_tokens":11}}}}"#
                ),
                (false, _) => format!(
                    r#"{{"id":"chatcmpl-mock-{n}","object":"chat.completion","created":0,"model":"test-model","choices":[{{"index":0,"message":{{"role":"assistant","content":null,"tool_calls":[{{"id":"call_0_0","type":"function","function":{{"name":"read_file","arguments":"{{\"path\":\"notes.txt\"}}"}}}}]}},"finish_reason":"tool_calls"}}],"usage":{{"prompt_tokens":4,"completion_tokens":5,"total_tokens":9}}}}"#
                ),
                (true, "hi there") => format!(
                    r#"{{"id":"msg_mock_{n}","type":"message","role":"assistant","model":"test-claude","content":[{{"type":"text","text":"hello, you said hi there (turn 0)"}}],"stop_reason":"end_turn","stop_sequence":null,"usage":{{"input_tokens":2,"output_tokens":9}}}}"#
                ),
                (true, _) => format!(
                    r#"{{"id":"msg_mock_{n}","type":"message","role":"assistant","model":"test-claude","content":[{{"type":"tool_use","id":"toolu_0_0","name":"read_file","input":{{"path":"notes.txt"}}}}],"stop_reason":"tool_use","stop_sequence":null,"usage":{{"input_tokens":4,"output_tokens":5}}}}"#
                ),
            };
            assert_eq!(text, expected, "{anthropic} {input} {stream:?}");
        }
    }
    mock.shutdown().await;
}
