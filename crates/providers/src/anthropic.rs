//! Anthropic's Messages API (`POST /v1/messages`).
//!
//! The runtime's context maps onto it with three differences from OpenAI's format: system
//! prompts travel in a top-level `system` field, tool calls are `tool_use` content blocks whose
//! `input` is a JSON object rather than a string, and every result of one assistant turn must
//! come back as a `tool_result` block of the single user message that follows it.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use chassis_core::{AssistantMessage, Message, ToolCall, Usage};
use reqwest::header::HeaderValue;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::error::{error_message, truncate};
use crate::{ChatRequest, ChatResponse, Error, ModelClient};

/// The API version this client speaks, sent on every request.
const API_VERSION: &str = "2023-06-01";

/// The API requires `max_tokens`; this is used when the request leaves it unset.
const DEFAULT_MAX_TOKENS: u32 = 1024;

/// A client for Anthropic's Messages API or a compatible host.
pub struct AnthropicClient {
    name: String,
    http: crate::http::Lanes,
    /// Parsed once: every call posts here.
    url: reqwest::Url,
    /// Marked sensitive, as `bearer_auth` does: kept out of `Debug` output and HPACK tables.
    api_key: Option<HeaderValue>,
    timeout: Duration,
}

impl AnthropicClient {
    /// A client for `base_url` (e.g. `https://api.anthropic.com`; a trailing `/v1` is accepted).
    ///
    /// `name` labels errors; `api_key` is sent as `x-api-key` and never appears in errors. Fails
    /// with [`Error::Config`] when the key cannot be a header value (e.g. it holds a newline).
    pub fn new(
        name: &str,
        base_url: &str,
        api_key: Option<String>,
        timeout: Duration,
    ) -> Result<AnthropicClient, Error> {
        Self::with_timeouts(name, base_url, api_key, crate::Timeouts::total(timeout))
    }

    /// Like [`Self::new`], with separate connect, total and idle timeouts.
    pub fn with_timeouts(
        name: &str,
        base_url: &str,
        api_key: Option<String>,
        timeouts: crate::Timeouts,
    ) -> Result<AnthropicClient, Error> {
        Self::with_options(
            name,
            base_url,
            api_key,
            timeouts,
            crate::HttpOptions::default(),
        )
    }

    /// Like [`Self::with_timeouts`], with the HTTP protocol to speak.
    pub fn with_options(
        name: &str,
        base_url: &str,
        api_key: Option<String>,
        timeouts: crate::Timeouts,
        options: crate::HttpOptions,
    ) -> Result<AnthropicClient, Error> {
        let timeout = timeouts.total;
        let url = crate::http::endpoint(name, &messages_url(base_url))?;
        let http = crate::http::Lanes::new(name, &url, timeouts, options)?;
        let api_key = api_key
            .map(|key| {
                let mut value = HeaderValue::from_str(&key).map_err(|_| Error::Config {
                    provider: name.to_string(),
                    message: "the API key is not a valid HTTP header value".to_string(),
                })?;
                value.set_sensitive(true);
                Ok(value)
            })
            .transpose()?;
        Ok(AnthropicClient {
            name: name.to_string(),
            http,
            url,
            api_key,
            timeout,
        })
    }
}

/// The Messages endpoint under `base_url`, which official SDKs give without `/v1` and
/// OpenAI-style configurations often give with it.
fn messages_url(base_url: &str) -> String {
    let base = base_url.trim_end_matches('/');
    if base.ends_with("/v1") {
        format!("{base}/messages")
    } else {
        format!("{base}/v1/messages")
    }
}

/// The request body for `request`.
fn body(request: &ChatRequest<'_>) -> Value {
    let system: Vec<&str> = request
        .messages
        .iter()
        .filter_map(|m| match m {
            Message::System { content } => Some(content.as_str()),
            _ => None,
        })
        .collect();
    let mut body = json!({
        "model": request.model,
        "max_tokens": request.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
        "messages": wire_messages(&request.messages),
    });
    if !system.is_empty() {
        body["system"] = system.join("\n\n").into();
    }
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
            .iter()
            .map(|t| {
                json!({
                    "name": t.name,
                    "description": t.description,
                    "input_schema": t.parameters,
                })
            })
            .collect();
    }
    if let Some(temperature) = request.temperature {
        body["temperature"] = temperature.into();
    }
    body
}

/// The `messages` array: system messages left out, consecutive tool results merged into one
/// user message, since the API wants every result of a turn in the message right after it.
fn wire_messages(messages: &[Message]) -> Vec<Value> {
    let mut wire: Vec<Value> = Vec::with_capacity(messages.len());
    let mut results: Vec<Value> = Vec::new();
    for message in messages {
        if let Message::Tool { call_id, content } = message {
            results
                .push(json!({"type": "tool_result", "tool_use_id": call_id, "content": content}));
            continue;
        }
        if !results.is_empty() {
            wire.push(json!({"role": "user", "content": std::mem::take(&mut results)}));
        }
        match message {
            Message::System { .. } | Message::Tool { .. } => {}
            Message::User { content } => wire.push(json!({"role": "user", "content": content})),
            Message::Assistant(reply) => wire.push(assistant_message(reply)),
        }
    }
    if !results.is_empty() {
        wire.push(json!({"role": "user", "content": results}));
    }
    wire
}

fn assistant_message(reply: &AssistantMessage) -> Value {
    let mut blocks = Vec::with_capacity(1 + reply.tool_calls.len());
    if let Some(text) = reply.content.as_deref().filter(|t| !t.is_empty()) {
        blocks.push(json!({"type": "text", "text": text}));
    }
    for call in &reply.tool_calls {
        blocks.push(json!({
            "type": "tool_use",
            "id": call.id,
            "name": call.name,
            "input": tool_input(&call.arguments),
        }));
    }
    json!({"role": "assistant", "content": blocks})
}

/// A call's raw arguments as the object the API requires. Arguments that are not a JSON object
/// were refused by the toolbox when the call was made (the model saw that refusal as the
/// result), so sending `{}` keeps the conversation valid without hiding anything.
fn tool_input(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(Value::Object(map)) => Value::Object(map),
        _ => Value::Object(Map::new()),
    }
}

#[derive(Deserialize)]
struct WireResponse {
    #[serde(default)]
    model: Option<String>,
    content: Vec<WireBlock>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireBlock {
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        /// Compatible hosts sometimes leave it out for tools without parameters.
        #[serde(default = "empty_object")]
        input: Value,
    },
    /// Thinking, citations and other blocks the runtime does not use.
    #[serde(other)]
    Other,
}

fn empty_object() -> Value {
    Value::Object(Map::new())
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
}

impl WireUsage {
    /// `input_tokens` leaves out cached prompt tokens; the runtime counts the whole prompt,
    /// as OpenAI's `prompt_tokens` does.
    fn usage(&self) -> Usage {
        Usage {
            input_tokens: self.input_tokens
                + self.cache_creation_input_tokens.unwrap_or(0)
                + self.cache_read_input_tokens.unwrap_or(0),
            output_tokens: self.output_tokens,
            cached_input_tokens: self.cache_read_input_tokens.unwrap_or(0),
        }
    }
}

/// The reply carried by a parsed response; `None` when it has neither text nor tool calls.
fn assistant_reply(blocks: Vec<WireBlock>) -> Option<AssistantMessage> {
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for block in blocks {
        match block {
            WireBlock::Text { text: part } => text.push_str(&part),
            WireBlock::ToolUse { id, name, input } => tool_calls.push(ToolCall {
                id,
                name,
                // Serializing a `Value` cannot fail; a non-object `input` stays visible as
                // such, for the toolbox to refuse.
                arguments: serde_json::to_string(&input).unwrap_or_default(),
            }),
            WireBlock::Other => {}
        }
    }
    let content = (!text.is_empty()).then_some(text);
    if content.is_none() && tool_calls.is_empty() {
        return None;
    }
    Some(AssistantMessage {
        content,
        tool_calls,
    })
}

#[async_trait]
impl ModelClient for AnthropicClient {
    async fn complete(&self, request: &ChatRequest<'_>) -> Result<ChatResponse, Error> {
        let lane = self.http.checkout();
        let mut call = lane
            .client()
            .post(self.url.clone())
            .header("anthropic-version", API_VERSION)
            .json(&body(request));
        if let Some(key) = &self.api_key {
            call = call.header("x-api-key", key.clone());
        }
        let exchange = async {
            let response = call.send().await?;
            let status = response.status();
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
            let body = response.text().await?;
            Ok::<_, reqwest::Error>((status, retry_after, body))
        };
        let (status, retry_after, body) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| Error::Timeout {
                provider: self.name.clone(),
                seconds: self.timeout.as_secs_f64(),
            })?
            .map_err(|e| crate::error::transport_error(&self.name, self.timeout, e))?;
        if !status.is_success() {
            let mut message = error_message(&body);
            let seconds = retry_after
                .as_deref()
                .and_then(|v| crate::parse_retry_after(v, SystemTime::now()));
            // A value that is neither seconds nor a date is still the provider's advice.
            if let (Some(raw), None) = (&retry_after, seconds) {
                message = format!("{message} (Retry-After: {})", truncate(raw.trim()));
            }
            return Err(Error::Status {
                provider: self.name.clone(),
                status: status.as_u16(),
                message,
                retry_after: seconds,
            });
        }
        let invalid = |message: String| Error::InvalidResponse {
            provider: self.name.clone(),
            message,
        };
        let wire: WireResponse = serde_json::from_str(&body)
            .map_err(|e| invalid(format!("body is not a Messages API reply: {e}")))?;
        let message = assistant_reply(wire.content)
            .ok_or_else(|| invalid("the reply has neither text nor tool calls".to_string()))?;
        Ok(ChatResponse {
            message,
            usage: wire.usage.map_or(Usage::default(), |u| u.usage()),
            model: wire.model.unwrap_or_else(|| request.model.to_string()),
            finish_reason: wire.stop_reason,
            served_by: format!("{}:{}", self.name, request.model),
        })
    }
}

#[cfg(test)]
mod tests {
    use chassis_core::ToolDef;

    use super::*;
    use crate::Reporter;

    fn request(messages: Vec<Message>) -> ChatRequest<'static> {
        ChatRequest {
            model: "claude-test".into(),
            messages: messages.into(),
            tools: Vec::new().into(),
            max_tokens: None,
            temperature: None,
            report: Reporter::default(),
        }
    }

    fn call(id: &str, arguments: &str) -> ToolCall {
        ToolCall {
            id: id.into(),
            name: "read_file".into(),
            arguments: arguments.into(),
        }
    }

    fn tool(call_id: &str, content: &str) -> Message {
        Message::Tool {
            call_id: call_id.into(),
            content: content.into(),
        }
    }

    #[test]
    fn urls_get_v1_messages_once() {
        assert_eq!(
            messages_url("https://api.anthropic.com"),
            "https://api.anthropic.com/v1/messages"
        );
        assert_eq!(
            messages_url("https://api.anthropic.com/"),
            "https://api.anthropic.com/v1/messages"
        );
        assert_eq!(
            messages_url("http://127.0.0.1:9/v1/"),
            "http://127.0.0.1:9/v1/messages"
        );
        assert_eq!(
            messages_url("https://proxy.example/anthropic"),
            "https://proxy.example/anthropic/v1/messages"
        );
    }

    #[test]
    fn a_key_that_cannot_be_a_header_is_a_config_error() {
        let bad = "sk-SECRET\nx".to_string();
        let err = AnthropicClient::new("a", "http://x", Some(bad), Duration::from_secs(1))
            .err()
            .unwrap();
        assert!(matches!(err, Error::Config { .. }), "{err:?}");
        assert!(!format!("{err} {err:?}").contains("SECRET"), "{err:?}");
    }

    #[test]
    fn system_messages_move_to_the_system_field() {
        let body = body(&request(vec![
            Message::System {
                content: "be brief".into(),
            },
            Message::User {
                content: "hi".into(),
            },
            Message::System {
                content: "no emoji".into(),
            },
        ]));
        assert_eq!(body["system"], "be brief\n\nno emoji");
        assert_eq!(body["messages"], json!([{"role": "user", "content": "hi"}]));
        assert_eq!(body["max_tokens"], DEFAULT_MAX_TOKENS);
        assert!(body.get("tools").is_none());
        assert!(body.get("temperature").is_none());

        let without = super::body(&request(vec![Message::User {
            content: "hi".into(),
        }]));
        assert!(without.get("system").is_none());
    }

    #[test]
    fn tools_max_tokens_and_temperature() {
        let mut req = request(vec![Message::User {
            content: "hi".into(),
        }]);
        // From JSON, so fields the runtime adds to `ToolDef` keep their defaults here.
        let tool: ToolDef = serde_json::from_value(json!({
            "name": "read_file",
            "description": "Reads a file",
            "parameters": {"type": "object", "properties": {"path": {"type": "string"}}},
            "risk": "read_only",
        }))
        .unwrap();
        req.tools = vec![tool].into();
        req.max_tokens = Some(77);
        req.temperature = Some(0.5);
        let body = body(&req);
        assert_eq!(
            body["tools"],
            json!([{
                "name": "read_file",
                "description": "Reads a file",
                "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}},
            }])
        );
        assert_eq!(body["max_tokens"], 77);
        assert_eq!(body["temperature"], 0.5);
        assert_eq!(body["model"], "claude-test");
    }

    #[test]
    fn tool_calls_become_tool_use_blocks() {
        let reply = AssistantMessage {
            content: Some("checking".into()),
            tool_calls: vec![
                call("c1", r#"{"path":"a"}"#),
                call("c2", r#"{"path":"#),
                call("c3", "[1]"),
            ],
        };
        assert_eq!(
            assistant_message(&reply),
            json!({"role": "assistant", "content": [
                {"type": "text", "text": "checking"},
                {"type": "tool_use", "id": "c1", "name": "read_file", "input": {"path": "a"}},
                {"type": "tool_use", "id": "c2", "name": "read_file", "input": {}},
                {"type": "tool_use", "id": "c3", "name": "read_file", "input": {}},
            ]})
        );
        let silent = AssistantMessage {
            content: Some(String::new()),
            tool_calls: vec![call("c1", "{}")],
        };
        assert_eq!(assistant_message(&silent)["content"][0]["type"], "tool_use");
    }

    #[test]
    fn consecutive_tool_results_share_one_user_message() {
        let wire = wire_messages(&[
            Message::User {
                content: "go".into(),
            },
            Message::Assistant(AssistantMessage {
                content: None,
                tool_calls: vec![call("a", "{}"), call("b", "{}")],
            }),
            tool("a", "one"),
            tool("b", "two"),
            Message::Assistant(AssistantMessage {
                content: None,
                tool_calls: vec![call("c", "{}")],
            }),
            tool("c", "three"),
            Message::User {
                content: "and?".into(),
            },
        ]);
        let roles: Vec<&str> = wire.iter().map(|m| m["role"].as_str().unwrap()).collect();
        assert_eq!(
            roles,
            ["user", "assistant", "user", "assistant", "user", "user"]
        );
        assert_eq!(
            wire[2]["content"],
            json!([
                {"type": "tool_result", "tool_use_id": "a", "content": "one"},
                {"type": "tool_result", "tool_use_id": "b", "content": "two"},
            ])
        );
        assert_eq!(
            wire[4]["content"],
            json!([{"type": "tool_result", "tool_use_id": "c", "content": "three"}])
        );
        assert_eq!(wire[5]["content"], "and?");
        // Results at the very end are flushed too.
        let trailing = wire_messages(&[tool("x", "r")]);
        assert_eq!(trailing.len(), 1);
        assert_eq!(trailing[0]["content"][0]["tool_use_id"], "x");
    }

    #[test]
    fn responses_map_text_and_tool_use() {
        let wire: WireResponse = serde_json::from_value(json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
            "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "s"},
                {"type": "text", "text": "Let me "},
                {"type": "text", "text": "look."},
                {"type": "tool_use", "id": "toolu_1", "name": "read_file", "input": {"path": "a"}},
                {"type": "tool_use", "id": "toolu_2", "name": "ls"}
            ],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 90}
        }))
        .unwrap();
        assert_eq!(wire.stop_reason.as_deref(), Some("tool_use"));
        let usage = wire.usage.as_ref().unwrap().usage();
        assert_eq!((usage.input_tokens, usage.output_tokens), (100, 5));
        let reply = assistant_reply(wire.content).unwrap();
        assert_eq!(reply.content.as_deref(), Some("Let me look."));
        assert_eq!(
            reply.tool_calls,
            vec![
                ToolCall {
                    id: "toolu_1".into(),
                    name: "read_file".into(),
                    arguments: r#"{"path":"a"}"#.into(),
                },
                ToolCall {
                    id: "toolu_2".into(),
                    name: "ls".into(),
                    arguments: "{}".into(),
                },
            ]
        );
    }

    #[test]
    fn a_string_input_stays_a_string() {
        let blocks = vec![WireBlock::ToolUse {
            id: "t".into(),
            name: "read_file".into(),
            input: Value::String("{\"broken\"".into()),
        }];
        let reply = assistant_reply(blocks).unwrap();
        // JSON, but not an object: the toolbox refuses it instead of running the tool.
        assert_eq!(reply.tool_calls[0].arguments, r#""{\"broken\"""#);
    }

    #[test]
    fn empty_replies_are_refused() {
        assert_eq!(assistant_reply(Vec::new()), None);
        assert_eq!(
            assistant_reply(vec![WireBlock::Text {
                text: String::new()
            }]),
            None
        );
    }

    #[test]
    fn error_message_prefers_the_provider_text() {
        assert_eq!(
            error_message(
                r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#
            ),
            "Overloaded"
        );
        assert_eq!(error_message("  upstream gone \n"), "upstream gone");
        assert_eq!(
            error_message(&"x".repeat(600)).chars().count(),
            crate::error::MAX_ERROR_TEXT + 1
        );
    }
}
