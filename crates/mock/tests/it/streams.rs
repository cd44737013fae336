//! Streamed answers in both dialects, the faults that strike midway, and the rules of real
//! servers the mock can enforce.

use std::time::Duration;

use chassis_mock::{FaultKind, MockConfig, MockHandle, ToolsWithoutChoice};
use serde_json::{Value, json};

use crate::{client, client_with_timeout, serve, user};

/// Two tool calls in one turn (so OpenAI's chunks interleave them), then text.
const TOOLS: &str = r#"
[[scenario]]
when_input_contains = "refund"
[[scenario.turn]]
tool_calls = [
  { name = "read_file", arguments = { path = "notes.txt" } },
  { name = "read_file", arguments = { path = "policy.txt" } },
]
[[scenario.turn]]
text = "The notes say: {last_tool_result}"

[[scenario]]
[[scenario.turn]]
text = "hello, you said {input}"
"#;

fn tool() -> Value {
    json!({"type": "function", "function": {"name": "read_file", "parameters": {"type": "object"}}})
}

async fn post_openai(
    client: &reqwest::Client,
    mock: &MockHandle,
    body: Value,
) -> reqwest::Result<reqwest::Response> {
    client
        .post(format!("{}/chat/completions", mock.base_url()))
        .json(&body)
        .send()
        .await
}

async fn post_anthropic(
    client: &reqwest::Client,
    mock: &MockHandle,
    body: Value,
) -> reqwest::Result<reqwest::Response> {
    client
        .post(format!("{}/v1/messages", mock.anthropic_base_url()))
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()
        .await
}

fn openai_stream(input: &str, include_usage: bool) -> Value {
    json!({
        "model": "test-model", "messages": [user(input)], "stream": true,
        "stream_options": {"include_usage": include_usage},
    })
}

fn anthropic_stream(input: &str) -> Value {
    json!({"model": "test-claude", "max_tokens": 64, "messages": [user(input)], "stream": true})
}

/// The `data:` payloads of a server-sent event stream (with their `event:` names).
fn events(text: &str) -> Vec<(String, String)> {
    text.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let mut name = String::new();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    name = v.to_owned();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data.push_str(v);
                }
            }
            (name, data)
        })
        .collect()
}

fn json_events(text: &str) -> Vec<Value> {
    events(text)
        .into_iter()
        .filter(|(_, data)| data != "[DONE]")
        .map(|(_, data)| serde_json::from_str(&data).unwrap())
        .collect()
}

#[tokio::test]
async fn openai_streams_text_in_chunks_with_a_final_usage_chunk() {
    let mock = serve(MockConfig::default(), TOOLS).await;
    let response = post_openai(&client(), &mock, openai_stream("hi there", true))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let text = response.text().await.unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let chunks = json_events(&text);
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    let pieces: Vec<&str> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .filter(|p| !p.is_empty())
        .collect();
    assert!(pieces.len() > 1, "{pieces:?}");
    assert!(pieces.iter().all(|p| p.chars().count() <= 8), "{pieces:?}");
    assert_eq!(pieces.concat(), "hello, you said hi there");
    let finish: Vec<&Value> = chunks
        .iter()
        .map(|c| &c["choices"][0]["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finish, [&json!("stop")]);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["completion_tokens"], 6);
    assert!(last["usage"]["prompt_tokens"].as_u64().unwrap() > 0);

    // Without include_usage, no usage chunk.
    let text = post_openai(&client(), &mock, openai_stream("hi", false))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(json_events(&text).iter().all(|c| c.get("usage").is_none()));
    mock.shutdown().await;
}

#[tokio::test]
async fn openai_interleaves_tool_call_arguments_by_index() {
    let mock = serve(MockConfig::default(), TOOLS).await;
    let mut body = openai_stream("refund", true);
    body["tools"] = json!([tool()]);
    let text = post_openai(&client(), &mock, body)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut order = Vec::new();
    let mut arguments = [String::new(), String::new()];
    let mut ids = Vec::new();
    for chunk in json_events(&text) {
        for call in chunk["choices"][0]["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let index = call["index"].as_u64().unwrap() as usize;
            order.push(index);
            if let Some(id) = call["id"].as_str() {
                ids.push(id.to_owned());
                assert_eq!(call["function"]["name"], "read_file");
            }
            arguments[index].push_str(call["function"]["arguments"].as_str().unwrap());
        }
    }
    assert_eq!(ids, ["call_0_0", "call_0_1"]);
    assert_eq!(&order[..4], [0, 1, 0, 1], "interleaved: {order:?}");
    let parsed: Vec<Value> = arguments
        .iter()
        .map(|a| serde_json::from_str(a).unwrap())
        .collect();
    assert_eq!(
        parsed,
        [json!({"path": "notes.txt"}), json!({"path": "policy.txt"})]
    );
    assert!(text.contains(r#""finish_reason":"tool_calls""#), "{text}");
    mock.shutdown().await;
}

#[tokio::test]
async fn anthropic_streams_messages_events() {
    let mock = serve(MockConfig::default(), TOOLS).await;
    let text = post_anthropic(&client(), &mock, anthropic_stream("refund"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events = events(&text);
    let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(&names[names.len() - 2..], ["message_delta", "message_stop"]);
    let data: Vec<Value> = events
        .iter()
        .map(|(_, d)| serde_json::from_str(d).unwrap())
        .collect();
    for (name, value) in names.iter().zip(&data) {
        assert_eq!(value["type"], *name);
    }
    let mut inputs = [String::new(), String::new()];
    for value in &data {
        if value["delta"]["type"] == "input_json_delta" {
            let index = value["index"].as_u64().unwrap() as usize;
            inputs[index].push_str(value["delta"]["partial_json"].as_str().unwrap());
        }
    }
    let deltas = data
        .iter()
        .filter(|v| v["delta"]["type"] == "input_json_delta")
        .count();
    assert!(deltas > 2, "arguments come in several pieces: {deltas}");
    assert_eq!(
        serde_json::from_str::<Value>(&inputs[1]).unwrap(),
        json!({"path": "policy.txt"})
    );
    let starts: Vec<&Value> = data
        .iter()
        .filter(|v| v["type"] == "content_block_start")
        .map(|v| &v["content_block"])
        .collect();
    assert_eq!(starts[0]["id"], "toolu_0_0");
    assert_eq!(starts[1]["name"], "read_file");
    let delta = &data[data.len() - 2];
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    assert!(delta["usage"]["output_tokens"].as_u64().unwrap() > 0);

    let text = post_anthropic(&client(), &mock, anthropic_stream("hi"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let said: String = json_events(&text)
        .iter()
        .filter_map(|v| v["delta"]["text"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(said, "hello, you said hi");
    assert!(text.contains("event: ping"), "{text}");
    mock.shutdown().await;
}

fn always(kind: FaultKind) -> MockConfig {
    MockConfig {
        fault_rate: 1.0,
        faults: vec![kind],
        stream_fault_after: 3,
        hang: Duration::from_secs(3),
        ..MockConfig::default()
    }
}

#[tokio::test]
async fn a_cut_stream_breaks_after_its_first_events() {
    for anthropic in [false, true] {
        let mock = serve(always(FaultKind::StreamCut), TOOLS).await;
        let mut response = if anthropic {
            post_anthropic(&client(), &mock, anthropic_stream("hi")).await
        } else {
            post_openai(&client(), &mock, openai_stream("hi", true)).await
        }
        .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-mock-fault"], "stream_cut");
        let mut received = Vec::new();
        let err = loop {
            match response.chunk().await {
                Ok(Some(chunk)) => received.extend_from_slice(&chunk),
                Ok(None) => panic!("the stream ended cleanly"),
                Err(err) => break err,
            }
        };
        assert!(
            err.is_body() || err.is_decode() || err.is_request(),
            "{err:?}"
        );
        let received = String::from_utf8(received).unwrap();
        assert_eq!(events(&received).len(), 3, "{received}");
        assert_eq!(mock.stats().faults["stream_cut"], 1);
        mock.shutdown().await;
    }
}

#[tokio::test]
async fn a_malformed_chunk_is_not_json_and_the_stream_goes_on() {
    let mock = serve(always(FaultKind::StreamMalformed), TOOLS).await;
    let text = post_openai(&client(), &mock, openai_stream("hi", true))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events = events(&text);
    assert!(
        serde_json::from_str::<Value>(&events[3].1).is_err(),
        "{text}"
    );
    assert!(
        events[..3]
            .iter()
            .all(|(_, d)| serde_json::from_str::<Value>(d).is_ok())
    );
    assert_eq!(events.last().unwrap().1, "[DONE]");
    mock.shutdown().await;
}

#[tokio::test]
async fn a_stalled_stream_outlasts_a_read_timeout() {
    let mock = serve(always(FaultKind::StreamStall), TOOLS).await;
    let client = chassis_http::builder(chassis_http::HttpVersion::Auto)
        .no_proxy()
        .read_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let mut response = post_openai(&client, &mock, openai_stream("hi", true))
        .await
        .unwrap();
    let mut received = Vec::new();
    let err = loop {
        match response.chunk().await {
            Ok(Some(chunk)) => received.extend_from_slice(&chunk),
            Ok(None) => panic!("the stream ended without stalling"),
            Err(err) => break err,
        }
    };
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(events(&String::from_utf8(received).unwrap()).len(), 3);
    mock.shutdown().await;
}

#[tokio::test]
async fn stream_faults_on_whole_answers_strike_as_their_likeness() {
    // A cut: no response at all.
    let mock = serve(always(FaultKind::StreamCut), TOOLS).await;
    let body = json!({"model": "m", "messages": [user("hi")]});
    let err = post_openai(&client(), &mock, body.clone())
        .await
        .unwrap_err();
    assert!(err.status().is_none() && !err.is_timeout(), "{err:?}");
    assert_eq!(mock.stats().faults["stream_cut"], 1);
    mock.shutdown().await;
    // Malformed: a body that is not JSON.
    let mock = serve(always(FaultKind::StreamMalformed), TOOLS).await;
    let text = post_openai(&client(), &mock, body.clone())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");
    mock.shutdown().await;
    // A stall: no answer within the timeout.
    let mock = serve(always(FaultKind::StreamStall), TOOLS).await;
    let err = post_openai(
        &client_with_timeout(Duration::from_millis(200)),
        &mock,
        body,
    )
    .await
    .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    mock.shutdown().await;
}

#[tokio::test]
async fn tool_choice_can_be_required() {
    let mock = serve(
        MockConfig {
            tools_without_choice: ToolsWithoutChoice::Refuse,
            ..MockConfig::default()
        },
        TOOLS,
    )
    .await;
    let mut body = json!({"model": "m", "messages": [user("refund")], "tools": [tool()]});
    let response = post_openai(&client(), &mock, body.clone()).await.unwrap();
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(
        error["error"]["message"],
        "tool_choice: required when tools are given"
    );
    body["tool_choice"] = json!("auto");
    let response = post_openai(&client(), &mock, body).await.unwrap();
    assert_eq!(response.status(), 200);
    // Without tools, no tool_choice is needed.
    let plain = json!({"model": "m", "messages": [user("hi")]});
    assert_eq!(
        post_openai(&client(), &mock, plain).await.unwrap().status(),
        200
    );

    let mut body = json!({
        "model": "m", "max_tokens": 9, "messages": [user("refund")],
        "tools": [{"name": "read_file", "input_schema": {"type": "object"}}],
    });
    let response = post_anthropic(&client(), &mock, body.clone())
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    body["tool_choice"] = json!({"type": "auto"});
    let response = post_anthropic(&client(), &mock, body).await.unwrap();
    assert_eq!(response.status(), 200);
    mock.shutdown().await;
}

/// The first choice's message of a chat completion, or the content blocks of a Messages reply.
async fn answered(response: reqwest::Response) -> Value {
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    if body["choices"].is_array() {
        body["choices"][0]["message"].clone()
    } else {
        body["content"].clone()
    }
}

#[tokio::test]
async fn tools_without_tool_choice_can_be_ignored_as_llama_cpp_does() {
    let mock = serve(MockConfig::llama_cpp(), TOOLS).await;
    let mut body = json!({"model": "m", "messages": [user("refund")], "tools": [tool()]});
    // Without tool_choice the scripted calls come back written out as text.
    let message = answered(post_openai(&client(), &mock, body.clone()).await.unwrap()).await;
    assert_eq!(message["tool_calls"], Value::Null, "{message}");
    let text = message["content"].as_str().unwrap();
    let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(
        first,
        json!({"name": "read_file", "arguments": {"path": "notes.txt"}})
    );
    // `none` drops them too; `auto` and `required` are heard.
    for (choice, calls) in [("none", 0), ("auto", 2), ("required", 2)] {
        body["tool_choice"] = json!(choice);
        let message = answered(post_openai(&client(), &mock, body.clone()).await.unwrap()).await;
        let made = message["tool_calls"].as_array().map_or(0, Vec::len);
        assert_eq!(made, calls, "{choice}: {message}");
    }

    let mut body = json!({
        "model": "m", "max_tokens": 9, "messages": [user("refund")],
        "tools": [{"name": "read_file", "input_schema": {"type": "object"}}],
    });
    let blocks = |content: &Value| {
        content
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["type"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let content = answered(
        post_anthropic(&client(), &mock, body.clone())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(blocks(&content), ["text"], "{content}");
    body["tool_choice"] = json!({"type": "none"});
    let content = answered(
        post_anthropic(&client(), &mock, body.clone())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(blocks(&content), ["text"], "{content}");
    body["tool_choice"] = json!({"type": "any"});
    let content = answered(post_anthropic(&client(), &mock, body).await.unwrap()).await;
    assert_eq!(blocks(&content), ["tool_use", "tool_use"], "{content}");
    mock.shutdown().await;
}

#[tokio::test]
async fn llama_cpp_cannot_stream_an_automatic_tool_choice() {
    let mock = serve(MockConfig::llama_cpp(), TOOLS).await;
    let mut body = openai_stream("refund", true);
    body["tools"] = json!([tool()]);
    body["tool_choice"] = json!("auto");
    let response = post_openai(&client(), &mock, body.clone()).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    assert_eq!(response.text().await.unwrap(), "");
    // Whole, or with a named tool, it answers.
    let mut whole = body.clone();
    whole["stream"] = json!(false);
    let message = answered(post_openai(&client(), &mock, whole).await.unwrap()).await;
    assert_eq!(message["tool_calls"].as_array().map(Vec::len), Some(2));
    body["tool_choice"] = json!({"type": "function", "function": {"name": "read_file"}});
    let text = post_openai(&client(), &mock, body)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("\"tool_calls\"") && text.ends_with("data: [DONE]\n\n"),
        "{text}"
    );
    mock.shutdown().await;
}

#[tokio::test]
async fn tool_choice_none_is_heard_by_every_mock() {
    let mock = serve(MockConfig::default(), TOOLS).await;
    let mut body = json!({"model": "m", "messages": [user("refund")], "tools": [tool()]});
    let message = answered(post_openai(&client(), &mock, body.clone()).await.unwrap()).await;
    assert_eq!(message["tool_calls"].as_array().map(Vec::len), Some(2));
    body["tool_choice"] = json!("none");
    let message = answered(post_openai(&client(), &mock, body).await.unwrap()).await;
    assert_eq!(message["tool_calls"], Value::Null, "{message}");
    assert!(message["content"].as_str().unwrap().contains("read_file"));
    mock.shutdown().await;
}

#[tokio::test]
async fn null_content_on_a_tool_call_message_can_crash_the_server() {
    let mock = serve(
        MockConfig {
            reject_null_tool_call_content: true,
            ..MockConfig::default()
        },
        TOOLS,
    )
    .await;
    let messages = |content: Value| {
        json!([
            user("refund"),
            {"role": "assistant", "content": content, "tool_calls": [
                {"id": "a", "type": "function", "function": {"name": "read_file", "arguments": "{}"}}
            ]},
            {"role": "tool", "tool_call_id": "a", "content": "ok"},
        ])
    };
    let response = post_openai(
        &client(),
        &mock,
        json!({"model": "m", "messages": messages(Value::Null)}),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 500);
    let error: Value = response.json().await.unwrap();
    let message = error["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with(
            "1 validation error:\n  {'type': 'string_type', 'loc': ('body', 'messages', 1,"
        ),
        "{message}"
    );
    let response = post_openai(
        &client(),
        &mock,
        json!({"model": "m", "messages": messages(json!(""))}),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    mock.shutdown().await;
}

#[tokio::test]
async fn a_user_agent_can_be_required() {
    let mock = serve(
        MockConfig {
            require_user_agent: true,
            ..MockConfig::default()
        },
        TOOLS,
    )
    .await;
    let body = json!({"model": "m", "messages": [user("hi")]});
    // reqwest sends no User-Agent unless told to.
    let response = post_openai(&client(), &mock, body.clone()).await.unwrap();
    assert_eq!(response.status(), 403);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["type"], "permission_error");
    let with = chassis_http::builder(chassis_http::HttpVersion::Auto)
        .no_proxy()
        .user_agent("test/1")
        .build()
        .unwrap();
    assert_eq!(post_openai(&with, &mock, body).await.unwrap().status(), 200);
    let stats = mock.stats();
    assert_eq!(stats.requests, 2);
    // Both counted by what they said, the refused one under "".
    assert_eq!(
        stats.by_user_agent,
        [("".to_owned(), 1), ("test/1".to_owned(), 1)].into()
    );
    mock.shutdown().await;
}
