//! Anthropic's Messages API (`POST /v1/messages`).
//!
//! The runtime's context maps onto it with three differences from OpenAI's format: system
//! prompts travel in a top-level `system` field, tool calls are `tool_use` content blocks whose
//! `input` is a JSON object rather than a string, and every result of one assistant turn must
//! come back as a `tool_result` block of the single user message that follows it.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use chassis_core::{AssistantMessage, Message, ToolCall, Usage};
use reqwest::header::HeaderValue;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::assemble::{Draft, Events, error_event, invalid};
use crate::exchange::Endpoint;
use crate::{CallOptions, ChatRequest, ChatResponse, Error, ModelClient, ToolChoice, sse};

/// The API version this client speaks, sent on every request.
const API_VERSION: &str = "2023-06-01";

/// The API requires `max_tokens`; this is used when the request leaves it unset.
const DEFAULT_MAX_TOKENS: u32 = 1024;

/// A client for Anthropic's Messages API or a compatible host.
pub struct AnthropicClient {
    endpoint: Endpoint,
    /// Marked sensitive, as `bearer_auth` does: kept out of `Debug` output and HPACK tables.
    api_key: Option<HeaderValue>,
    options: CallOptions,
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
        let endpoint = Endpoint::new(name, &messages_url(base_url), timeouts, options)?;
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
            endpoint,
            api_key,
            options: CallOptions::default(),
        })
    }

    /// The same client phrasing its calls as `options` say (streaming, tool choice; the
    /// content of tool-call messages is an OpenAI matter).
    pub fn with_call_options(mut self, options: CallOptions) -> AnthropicClient {
        self.options = options;
        self
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
fn body(request: &ChatRequest<'_>, options: &CallOptions) -> Value {
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
    if !request.tools.is_empty() {
        body["tool_choice"] = match crate::tool_choice_for(&options.tool_choice, &request.messages)
        {
            ToolChoice::Auto => json!({"type": "auto"}),
            ToolChoice::Required => json!({"type": "any"}),
            ToolChoice::None => json!({"type": "none"}),
            ToolChoice::Tool(name) => json!({"type": "tool", "name": name}),
        };
    }
    if let Some(temperature) = request.temperature {
        body["temperature"] = temperature.into();
    }
    if options.stream {
        body["stream"] = true.into();
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
        /// Compatible hosts sometimes leave it out; the runtime makes call ids unique itself.
        #[serde(default)]
        id: String,
        #[serde(default)]
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

#[derive(Clone, Copy, Default, Deserialize)]
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

/// Usage as a stream reports it: `message_start` opens it, each `message_delta` updates the
/// counts it carries (the output count is cumulative).
#[derive(Default, Deserialize)]
struct WireUsageDelta {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
}

impl WireUsage {
    fn update(&mut self, delta: &WireUsageDelta) {
        if let Some(n) = delta.input_tokens {
            self.input_tokens = n;
        }
        if let Some(n) = delta.output_tokens {
            self.output_tokens = n;
        }
        if delta.cache_creation_input_tokens.is_some() {
            self.cache_creation_input_tokens = delta.cache_creation_input_tokens;
        }
        if delta.cache_read_input_tokens.is_some() {
            self.cache_read_input_tokens = delta.cache_read_input_tokens;
        }
    }

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
#[cfg(test)]
fn assistant_reply(blocks: Vec<WireBlock>) -> Option<AssistantMessage> {
    let message = assistant_message_of(blocks);
    (message.content.is_some() || !message.tool_calls.is_empty()).then_some(message)
}

/// The reply carried by a parsed response, empty or not.
fn assistant_message_of(blocks: Vec<WireBlock>) -> AssistantMessage {
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
    AssistantMessage {
        content: (!text.is_empty()).then_some(text),
        tool_calls,
    }
}

/// One event of a Messages stream, by its `type`.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireEvent {
    MessageStart {
        message: WireStartMessage,
    },
    ContentBlockStart {
        index: u64,
        content_block: WireBlockStart,
    },
    ContentBlockDelta {
        index: u64,
        delta: WireBlockDelta,
    },
    ContentBlockStop {
        index: u64,
    },
    MessageDelta {
        #[serde(default)]
        delta: WireMessageDelta,
        #[serde(default)]
        usage: WireUsageDelta,
    },
    MessageStop,
    Ping,
    Error {
        error: WireStreamError,
    },
    /// Events added to the API later; a stream stays readable without them.
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct WireStartMessage {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireBlockStart {
    Text {
        #[serde(default)]
        text: String,
    },
    ToolUse {
        #[serde(default)]
        id: String,
        #[serde(default)]
        name: String,
        /// Empty in Anthropic's own streams (the input comes as deltas); some compatible
        /// hosts put the whole input here instead.
        #[serde(default)]
        input: Option<Value>,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireBlockDelta {
    TextDelta {
        text: String,
    },
    InputJsonDelta {
        partial_json: String,
    },
    /// Thinking, signatures, citations: not part of the reply the runtime keeps.
    #[serde(other)]
    Other,
}

#[derive(Default, Deserialize)]
struct WireMessageDelta {
    #[serde(default)]
    stop_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireStreamError {
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    message: String,
}

/// A tool-use block of the stream: which call of the reply it is, and the input its start
/// carried, if any.
struct ToolBlock {
    call: usize,
    start_input: Option<Value>,
}

/// What a Messages stream's events say.
struct MessageEvents<'a> {
    provider: &'a str,
    /// Tool-use blocks by content-block index.
    tools: HashMap<u64, ToolBlock>,
    usage: WireUsage,
}

impl MessageEvents<'_> {
    /// The arguments of a finished tool block, as the non-streamed reply would carry them:
    /// the concatenated `partial_json` as compact JSON, `{}` when there was none.
    fn settle(&self, block: &ToolBlock, draft: &mut Draft) {
        let raw = draft.args(block.call).unwrap_or("").trim().to_string();
        let settled = if raw.is_empty() {
            match &block.start_input {
                Some(input @ Value::Object(map)) if !map.is_empty() => input.to_string(),
                _ => "{}".to_string(),
            }
        } else {
            match serde_json::from_str::<Value>(&raw) {
                Ok(value) => value.to_string(),
                // Broken JSON stays visible as such, for the toolbox to refuse.
                Err(_) => raw,
            }
        };
        draft.set_args(block.call, settled);
    }
}

impl Events for MessageEvents<'_> {
    fn apply(&mut self, event: &sse::Event, draft: &mut Draft) -> Result<bool, Error> {
        let wire: WireEvent = serde_json::from_str(&event.data).map_err(|e| {
            invalid(
                self.provider,
                format!("a stream event is not a Messages event: {e}"),
            )
        })?;
        match wire {
            WireEvent::MessageStart { message } => {
                draft.model = message.model.filter(|m| !m.is_empty());
                if let Some(usage) = message.usage {
                    self.usage = usage;
                }
            }
            WireEvent::ContentBlockStart {
                index,
                content_block,
            } => match content_block {
                WireBlockStart::Text { text } => draft.text(&text),
                WireBlockStart::ToolUse { id, name, input } => {
                    let call = self.tools.len();
                    draft.call_id(call, &id);
                    draft.call_name(call, &name);
                    self.tools.insert(
                        index,
                        ToolBlock {
                            call,
                            start_input: input,
                        },
                    );
                }
                WireBlockStart::Other => {}
            },
            WireEvent::ContentBlockDelta { index, delta } => match delta {
                WireBlockDelta::TextDelta { text } => draft.text(&text),
                WireBlockDelta::InputJsonDelta { partial_json } => {
                    let Some(block) = self.tools.get(&index) else {
                        return Err(invalid(
                            self.provider,
                            format!("input_json_delta for block {index}, which is not a tool_use"),
                        ));
                    };
                    draft.call_args(block.call, &partial_json);
                }
                WireBlockDelta::Other => {}
            },
            WireEvent::ContentBlockStop { index } => {
                if let Some(block) = self.tools.get(&index) {
                    self.settle(block, draft);
                }
            }
            WireEvent::Ping | WireEvent::Other => {}
            WireEvent::MessageDelta { delta, usage } => {
                if delta.stop_reason.is_some() {
                    draft.finish_reason = delta.stop_reason;
                }
                self.usage.update(&usage);
            }
            WireEvent::MessageStop => {
                // Blocks a host never stopped; settling a stopped one again changes nothing.
                for block in self.tools.values() {
                    self.settle(block, draft);
                }
                draft.usage = self.usage.usage();
                return Ok(true);
            }
            WireEvent::Error { error } => {
                return Err(error_event(self.provider, &error.kind, &error.message));
            }
        }
        Ok(false)
    }
}

impl AnthropicClient {
    /// A message read whole.
    fn whole(&self, request: &ChatRequest<'_>, body: &[u8]) -> Result<ChatResponse, Error> {
        let provider = self.endpoint.provider();
        let wire: WireResponse = serde_json::from_slice(body)
            .map_err(|e| invalid(provider, format!("body is not a Messages API reply: {e}")))?;
        crate::assemble::whole(
            provider,
            request,
            assistant_message_of(wire.content),
            wire.usage.map_or(Usage::default(), |u| u.usage()),
            wire.model,
            wire.stop_reason,
        )
    }
}

#[async_trait]
impl ModelClient for AnthropicClient {
    async fn complete(&self, request: &ChatRequest<'_>) -> Result<ChatResponse, Error> {
        let body = body(request, &self.options);
        let prepare = |call: reqwest::RequestBuilder| {
            let call = call.header("anthropic-version", API_VERSION).json(&body);
            match &self.api_key {
                Some(key) => call.header("x-api-key", key.clone()),
                None => call,
            }
        };
        self.endpoint
            .call(prepare, |answer| async move {
                let provider = answer.provider().to_string();
                if !answer.is_event_stream() {
                    let limit = self.options.max_reply_bytes;
                    return self.whole(request, &answer.bytes(limit).await?);
                }
                let events = MessageEvents {
                    provider: &provider,
                    tools: HashMap::new(),
                    usage: WireUsage::default(),
                };
                let draft = Draft::new(request.deltas.clone());
                let limit = self.options.max_reply_bytes;
                let draft = crate::assemble::read_stream(answer, events, draft, limit).await?;
                draft.finish(&provider, request)
            })
            .await
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
            deltas: crate::Deltas::default(),
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

    fn body_of(request: &ChatRequest<'_>) -> Value {
        body(
            request,
            &CallOptions {
                stream: false,
                ..CallOptions::default()
            },
        )
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
        let body = body_of(&request(vec![
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

        let without = body_of(&request(vec![Message::User {
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
        let body = body_of(&req);
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
    fn tool_choice_and_stream() {
        let mut req = request(vec![Message::User {
            content: "hi".into(),
        }]);
        let choice = |req: &ChatRequest<'_>, tool_choice: ToolChoice| {
            body(
                req,
                &CallOptions {
                    tool_choice,
                    ..CallOptions::default()
                },
            )
        };
        // No tools offered: no tool_choice, which the API would refuse without tools.
        let plain = choice(&req, ToolChoice::Required);
        assert!(plain.get("tool_choice").is_none());
        assert_eq!(plain["stream"], true);
        let tool: ToolDef = serde_json::from_value(json!({
            "name": "t", "description": "d", "parameters": {"type": "object"}, "risk": "read_only",
        }))
        .unwrap();
        req.tools = vec![tool].into();
        assert_eq!(
            choice(&req, ToolChoice::Auto)["tool_choice"],
            json!({"type": "auto"})
        );
        assert_eq!(
            choice(&req, ToolChoice::Required)["tool_choice"],
            json!({"type": "any"})
        );
        assert_eq!(
            choice(&req, ToolChoice::None)["tool_choice"],
            json!({"type": "none"})
        );
        assert_eq!(
            choice(&req, ToolChoice::Tool("t".into()))["tool_choice"],
            json!({"type": "tool", "name": "t"})
        );
        assert!(body_of(&req).get("stream").is_none());
        // Once the model has called a tool, it may answer.
        let mut messages = req.messages.to_vec();
        messages.push(Message::Assistant(chassis_core::AssistantMessage {
            content: None,
            tool_calls: vec![chassis_core::ToolCall {
                id: "c".into(),
                name: "t".into(),
                arguments: "{}".into(),
            }],
        }));
        req.messages = messages.into();
        assert_eq!(
            choice(&req, ToolChoice::Required)["tool_choice"],
            json!({"type": "auto"})
        );
    }

    /// Feeds `events` (type, JSON) through a stream reader into a response.
    fn streamed(events: &[Value]) -> Result<ChatResponse, Error> {
        let mut reader = MessageEvents {
            provider: "a",
            tools: HashMap::new(),
            usage: WireUsage::default(),
        };
        let mut draft = Draft::new(crate::Deltas::default());
        for data in events {
            let event = sse::Event {
                name: data["type"].as_str().unwrap_or("").to_string(),
                data: data.to_string(),
            };
            if reader.apply(&event, &mut draft)? {
                return draft.finish("a", &request(Vec::new()));
            }
        }
        panic!("the stream never completed")
    }

    #[test]
    fn a_stream_assembles_like_the_whole_reply() {
        let response = streamed(&[
            json!({"type": "message_start", "message": {"model": "claude-x", "usage": {"input_tokens": 10, "cache_read_input_tokens": 90, "output_tokens": 1}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hmm"}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "ping"}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Let me "}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "look."}}),
            json!({"type": "content_block_stop", "index": 1}),
            json!({"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "read_file", "input": {}}}),
            json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{\"path\": "}}),
            json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "\"a\"}"}}),
            json!({"type": "content_block_stop", "index": 2}),
            json!({"type": "content_block_start", "index": 3, "content_block": {"type": "tool_use", "name": "ls", "input": {}}}),
            json!({"type": "content_block_stop", "index": 3}),
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 5}}),
            json!({"type": "message_stop"}),
        ])
        .unwrap();
        assert_eq!(response.model, "claude-x");
        assert_eq!(response.finish_reason.as_deref(), Some("tool_use"));
        assert_eq!(
            (
                response.usage.input_tokens,
                response.usage.output_tokens,
                response.usage.cached_input_tokens
            ),
            (100, 5, 90)
        );
        assert_eq!(response.message.content.as_deref(), Some("Let me look."));
        assert_eq!(
            response.message.tool_calls,
            vec![
                ToolCall {
                    id: "toolu_1".into(),
                    name: "read_file".into(),
                    arguments: r#"{"path":"a"}"#.into(),
                },
                // No id: it parses, with an empty id.
                ToolCall {
                    id: String::new(),
                    name: "ls".into(),
                    arguments: "{}".into(),
                },
            ]
        );
    }

    #[test]
    fn an_error_event_fails_the_stream() {
        let err = streamed(&[
            json!({"type": "message_start", "message": {"model": "m"}}),
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        ])
        .unwrap_err();
        assert!(err.is_transient(), "{err:?}");
        assert!(err.to_string().contains("Overloaded"), "{err}");
        let err = streamed(&[
            json!({"type": "message_start", "message": {"model": "m"}}),
            json!({"type": "message_stop"}),
        ])
        .unwrap_err();
        assert!(matches!(err, Error::BadReply { .. }), "{err:?}");
    }

    #[test]
    fn tool_use_without_an_id_parses() {
        let wire: WireResponse = serde_json::from_value(json!({
            "content": [{"type": "tool_use", "name": "ls", "input": {}}],
        }))
        .unwrap();
        let reply = assistant_reply(wire.content).unwrap();
        assert_eq!(reply.tool_calls[0].id, "");
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
        use crate::error::error_message;
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
