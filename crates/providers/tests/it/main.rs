//! Integration tests: each model client against the in-process mock server over real HTTP.

mod clients;
mod compat;
mod headers;
mod http2;
mod streams;

use std::sync::Arc;
use std::time::Duration;

use chassis_core::{Message, ToolDef};
use chassis_mock::{FaultKind, MockConfig, MockHandle, Script};
use chassis_providers::{
    AnthropicClient, CallOptions, ChatRequest, ChatResponse, Deltas, Error, HttpOptions,
    ModelClient, OpenAiClient, Reporter, Timeouts,
};
use serde_json::json;

/// A tool-using scenario with two calls in one turn, a model that says nothing, and a
/// catch-all text scenario.
const SCRIPT: &str = r#"
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
when_input_contains = "silence"
[[scenario.turn]]
text = ""

[[scenario]]
[[scenario.turn]]
text = "hello, you said {input}"
"#;

/// The API key of every test client, to check that no error ever shows it.
const SECRET_KEY: &str = "sk-SECRET-123";

/// Which client a test runs against.
#[derive(Clone, Copy, Debug)]
enum Api {
    OpenAi,
    Anthropic,
}

async fn serve(config: MockConfig) -> MockHandle {
    let script = Script::from_toml_str(SCRIPT).expect("test script is valid");
    chassis_mock::start(config, script, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("mock binds")
}

/// A mock that injects `kind` into every request.
async fn serve_faulty(kind: FaultKind) -> MockHandle {
    serve(MockConfig {
        fault_rate: 1.0,
        faults: vec![kind],
        hang: Duration::from_secs(5),
        ..MockConfig::default()
    })
    .await
}

fn client_with_timeout(api: Api, mock: &MockHandle, timeout: Duration) -> Box<dyn ModelClient> {
    let key = Some(SECRET_KEY.to_owned());
    match api {
        Api::OpenAi => Box::new(OpenAiClient::new("mock", &mock.base_url(), key, timeout).unwrap()),
        Api::Anthropic => Box::new(
            AnthropicClient::new("mock", &mock.anthropic_base_url(), key, timeout).unwrap(),
        ),
    }
}

/// A client with these timeouts and call options.
fn client_with(
    api: Api,
    mock: &MockHandle,
    timeouts: Timeouts,
    options: CallOptions,
) -> Arc<dyn ModelClient> {
    let key = Some(SECRET_KEY.to_owned());
    let http = HttpOptions::default();
    match api {
        Api::OpenAi => Arc::new(
            OpenAiClient::with_options("mock", &mock.base_url(), key, timeouts, http)
                .unwrap()
                .with_call_options(options),
        ),
        Api::Anthropic => Arc::new(
            AnthropicClient::with_options("mock", &mock.anthropic_base_url(), key, timeouts, http)
                .unwrap()
                .with_call_options(options),
        ),
    }
}

fn client(api: Api, mock: &MockHandle) -> Box<dyn ModelClient> {
    client_with_timeout(api, mock, Duration::from_secs(10))
}

fn read_file_tool() -> ToolDef {
    // From JSON, so fields the runtime adds to `ToolDef` keep their defaults here.
    serde_json::from_value(json!({
        "name": "read_file",
        "description": "Reads a file",
        "parameters": {
            "type": "object",
            "properties": {"path": {"type": "string"}},
            "required": ["path"],
        },
        "risk": "read_only",
    }))
    .unwrap()
}

fn request(messages: Vec<Message>) -> ChatRequest<'static> {
    ChatRequest {
        model: "test-model".into(),
        messages: messages.into(),
        tools: vec![read_file_tool()].into(),
        max_tokens: None,
        temperature: Some(0.0),
        report: Reporter::default(),
        deltas: Deltas::default(),
    }
}

fn user(text: &str) -> Message {
    Message::User {
        content: text.to_owned(),
    }
}

/// One call that must fail; checks on the way that the error does not leak the key.
async fn fail(client: &dyn ModelClient, messages: Vec<Message>) -> Error {
    let err = match client.complete(&request(messages)).await {
        Ok(response) => panic!("expected an error, got {response:?}"),
        Err(err) => err,
    };
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("SECRET"), "the key leaked: {shown}");
    err
}

async fn succeed(client: &dyn ModelClient, messages: Vec<Message>) -> ChatResponse {
    client
        .complete(&request(messages))
        .await
        .expect("the call succeeds")
}
