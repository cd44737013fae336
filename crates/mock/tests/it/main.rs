//! Integration tests: a real HTTP client against a real mock server on 127.0.0.1.

mod anthropic;
mod faults;
mod replies;
mod scripts;
mod stats;
mod streams;

use std::time::Duration;

use chassis_mock::{MockConfig, MockHandle, Script};
use serde_json::{Value, json};

/// A script with a tool-using scenario and a catch-all text scenario.
const SCRIPT: &str = r#"
[[scenario]]
name = "refund"
when_input_contains = "refund"
[[scenario.turn]]
tool_calls = [{ name = "read_file", arguments = { path = "notes.txt" } }]
[[scenario.turn]]
text = "The notes say: {last_tool_result}"

[[scenario]]
name = "chat"
[[scenario.turn]]
text = "hello, you said {input} (turn {turn})"
"#;

async fn serve(config: MockConfig, script: &str) -> MockHandle {
    let script = Script::from_toml_str(script).expect("test script is valid");
    chassis_mock::start(config, script, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("mock binds")
}

fn client() -> reqwest::Client {
    client_with_timeout(Duration::from_secs(10))
}

fn client_with_timeout(timeout: Duration) -> reqwest::Client {
    chassis_http::builder(chassis_http::HttpVersion::Auto)
        .no_proxy()
        .timeout(timeout)
        .build()
        .unwrap()
}

async fn post_chat(
    client: &reqwest::Client,
    mock: &MockHandle,
    messages: Value,
) -> reqwest::Result<reqwest::Response> {
    client
        .post(format!("{}/chat/completions", mock.base_url()))
        .json(&json!({ "model": "test-model", "messages": messages, "temperature": 0 }))
        .send()
        .await
}

/// Posts and returns the status and the parsed JSON body.
async fn chat(client: &reqwest::Client, mock: &MockHandle, messages: Value) -> (u16, Value) {
    let response = post_chat(client, mock, messages)
        .await
        .expect("request succeeds");
    let status = response.status().as_u16();
    let body = response.json().await.expect("body is JSON");
    (status, body)
}

fn user(text: &str) -> Value {
    json!({ "role": "user", "content": text })
}

fn message(body: &Value) -> &Value {
    &body["choices"][0]["message"]
}

async fn post_messages(
    client: &reqwest::Client,
    mock: &MockHandle,
    messages: Value,
) -> reqwest::Result<reqwest::Response> {
    client
        .post(format!("{}/v1/messages", mock.anthropic_base_url()))
        .header("x-api-key", "test-key")
        .header("anthropic-version", "2023-06-01")
        .json(&json!({ "model": "test-claude", "max_tokens": 256, "messages": messages }))
        .send()
        .await
}

/// Posts to the Anthropic endpoint and returns the status and the parsed JSON body.
async fn anthropic_chat(
    client: &reqwest::Client,
    mock: &MockHandle,
    messages: Value,
) -> (u16, Value) {
    let response = post_messages(client, mock, messages)
        .await
        .expect("request succeeds");
    let status = response.status().as_u16();
    let body = response.json().await.expect("body is JSON");
    (status, body)
}
