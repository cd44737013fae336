//! OpenAI-compatible chat completions (OpenAI, vLLM, Ollama, llama.cpp's server, most hosts).

use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use async_trait::async_trait;
use chassis_core::{AssistantMessage, Message, ToolCall, ToolDef, Usage};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use crate::assemble::{Draft, Events, bad_reply, error_event, invalid};
use crate::exchange::Endpoint;
use crate::{
    CallOptions, ChatRequest, ChatResponse, Error, ModelClient, ToolCallContent, ToolChoice, sse,
};

/// The host whose API documents `content: null` on an assistant message that only calls tools.
const OPENAI_HOST: &str = "api.openai.com";

/// A client for one OpenAI-compatible endpoint.
pub struct OpenAiClient {
    endpoint: Endpoint,
    api_key: Option<String>,
    options: CallOptions,
    /// `options.tool_call_content`, decided by host when unset.
    tool_call_content: ToolCallContent,
    /// Set once a streamed call that offered tools got a stream without a byte: from then on
    /// such calls are asked for whole answers, as servers that cannot stream tool calls need.
    whole_with_tools: AtomicBool,
}

impl OpenAiClient {
    /// A client for `base_url` (e.g. `https://api.openai.com/v1`).
    ///
    /// `name` labels errors; `api_key` is sent as a bearer token and never appears in errors.
    pub fn new(
        name: &str,
        base_url: &str,
        api_key: Option<String>,
        timeout: Duration,
    ) -> Result<OpenAiClient, Error> {
        Self::with_timeouts(name, base_url, api_key, crate::Timeouts::total(timeout))
    }

    /// Like [`Self::new`], with separate connect, total and idle timeouts.
    pub fn with_timeouts(
        name: &str,
        base_url: &str,
        api_key: Option<String>,
        timeouts: crate::Timeouts,
    ) -> Result<OpenAiClient, Error> {
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
    ) -> Result<OpenAiClient, Error> {
        let endpoint = Endpoint::new(
            name,
            &format!("{}/chat/completions", base_url.trim_end_matches('/')),
            timeouts,
            options,
        )?;
        let mut client = OpenAiClient {
            endpoint,
            api_key,
            options: CallOptions::default(),
            tool_call_content: ToolCallContent::Null,
            whole_with_tools: AtomicBool::new(false),
        };
        client.tool_call_content = client.decide_tool_call_content();
        Ok(client)
    }

    /// The same client phrasing its calls as `options` say (streaming, tool choice, content
    /// of tool-call messages).
    pub fn with_call_options(mut self, options: CallOptions) -> OpenAiClient {
        self.options = options;
        self.tool_call_content = self.decide_tool_call_content();
        self
    }

    fn decide_tool_call_content(&self) -> ToolCallContent {
        self.options.tool_call_content.unwrap_or_else(|| {
            if self.endpoint.url().host_str() == Some(OPENAI_HOST) {
                ToolCallContent::Null
            } else {
                ToolCallContent::Empty
            }
        })
    }
}

/// The request body, serialized straight from the borrowed context: no intermediate JSON tree,
/// no copy of the conversation.
#[derive(Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    messages: WireMessages<'a>,
    #[serde(skip_serializing_if = "WireTools::is_empty")]
    tools: WireTools<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<WireToolChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
}

#[derive(Serialize)]
struct StreamOptions {
    /// Asks for a last chunk carrying the usage, which streams otherwise leave out.
    include_usage: bool,
}

impl<'a> WireRequest<'a> {
    fn of(
        request: &'a ChatRequest<'_>,
        options: &'a CallOptions,
        content: ToolCallContent,
    ) -> WireRequest<'a> {
        WireRequest {
            model: &request.model,
            messages: WireMessages(&request.messages, content),
            tools: WireTools(&request.tools),
            // Sent whenever tools are offered: some servers ignore tools without it.
            tool_choice: (!request.tools.is_empty()).then(|| {
                WireToolChoice(crate::tool_choice_for(
                    &options.tool_choice,
                    &request.messages,
                ))
            }),
            max_tokens: request.max_tokens,
            temperature: request.temperature,
            stream: options.stream,
            stream_options: options.stream.then_some(StreamOptions {
                include_usage: true,
            }),
        }
    }
}

/// `tool_choice`: `"auto"`, `"required"`, `"none"` or the function to call.
struct WireToolChoice<'a>(&'a ToolChoice);

impl Serialize for WireToolChoice<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            ToolChoice::Auto => serializer.serialize_str("auto"),
            ToolChoice::Required => serializer.serialize_str("required"),
            ToolChoice::None => serializer.serialize_str("none"),
            ToolChoice::Tool(name) => serde_json::json!({
                "type": "function",
                "function": {"name": name},
            })
            .serialize(serializer),
        }
    }
}

struct WireMessages<'a>(&'a [Message], ToolCallContent);

impl Serialize for WireMessages<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|m| WireMessage::of(m, self.1)))
    }
}

#[derive(Serialize)]
#[serde(tag = "role", rename_all = "lowercase")]
enum WireMessage<'a> {
    System {
        content: &'a str,
    },
    User {
        content: &'a str,
    },
    Assistant {
        content: Option<&'a str>,
        #[serde(skip_serializing_if = "WireCalls::is_empty")]
        tool_calls: WireCalls<'a>,
    },
    Tool {
        tool_call_id: &'a str,
        content: &'a str,
    },
}

impl<'a> WireMessage<'a> {
    fn of(message: &'a Message, empty: ToolCallContent) -> WireMessage<'a> {
        match message {
            Message::System { content } => WireMessage::System { content },
            Message::User { content } => WireMessage::User { content },
            Message::Tool { call_id, content } => WireMessage::Tool {
                tool_call_id: call_id,
                content,
            },
            Message::Assistant(reply) => WireMessage::Assistant {
                content: match (reply.content.as_deref(), empty) {
                    (Some(text), _) => Some(text),
                    (None, ToolCallContent::Null) => None,
                    (None, ToolCallContent::Empty) => Some(""),
                },
                tool_calls: WireCalls(&reply.tool_calls),
            },
        }
    }
}

struct WireCalls<'a>(&'a [ToolCall]);

impl WireCalls<'_> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for WireCalls<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|call| WireCall {
            id: &call.id,
            kind: "function",
            function: WireCallFunction {
                name: &call.name,
                arguments: &call.arguments,
            },
        }))
    }
}

#[derive(Serialize)]
struct WireCall<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: WireCallFunction<'a>,
}

#[derive(Serialize)]
struct WireCallFunction<'a> {
    name: &'a str,
    arguments: &'a str,
}

struct WireTools<'a>(&'a [ToolDef]);

impl WireTools<'_> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for WireTools<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|tool| WireTool {
            kind: "function",
            function: WireToolFunction {
                name: &tool.name,
                description: &tool.description,
                parameters: &tool.parameters,
            },
        }))
    }
}

#[derive(Serialize)]
struct WireTool<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    function: WireToolFunction<'a>,
}

#[derive(Serialize)]
struct WireToolFunction<'a> {
    name: &'a str,
    description: &'a str,
    parameters: &'a Value,
}

#[derive(Deserialize)]
struct WireResponse {
    #[serde(default)]
    model: Option<String>,
    /// Required: a body without it is not a chat completion (an empty list is a model's
    /// empty answer).
    choices: Vec<WireChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireChoice {
    message: WireReply,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireReply {
    #[serde(default)]
    content: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    tool_calls: Vec<WireToolCall>,
}

#[derive(Deserialize)]
struct WireToolCall {
    /// Some servers leave it out or empty; the runtime makes call ids unique itself.
    #[serde(default)]
    id: Option<String>,
    function: WireFunction,
}

#[derive(Deserialize)]
struct WireFunction {
    #[serde(default, deserialize_with = "null_as_default")]
    name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    arguments: String,
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<WirePromptDetails>,
}

impl WireUsage {
    fn usage(&self) -> Usage {
        Usage {
            input_tokens: self.prompt_tokens,
            output_tokens: self.completion_tokens,
            cached_input_tokens: self
                .prompt_tokens_details
                .as_ref()
                .map_or(0, |d| d.cached_tokens),
        }
    }
}

#[derive(Deserialize)]
struct WirePromptDetails {
    #[serde(default)]
    cached_tokens: u64,
}

/// A field that some servers send as `null` where OpenAI leaves it out (llama-cpp-python's
/// chunks say `"tool_calls": null`), read as its default.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Option::unwrap_or_default)
}

/// One chunk of a streamed completion (`chat.completion.chunk`), or an error sent mid-stream.
#[derive(Deserialize)]
struct WireChunk {
    #[serde(default)]
    model: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    choices: Vec<WireChunkChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<WireStreamError>,
}

#[derive(Deserialize)]
struct WireChunkChoice {
    #[serde(default)]
    index: u32,
    #[serde(default)]
    delta: Option<WireDelta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireDelta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    tool_calls: Vec<WireCallDelta>,
}

#[derive(Deserialize)]
struct WireCallDelta {
    #[serde(default)]
    index: usize,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<WireFunctionDelta>,
}

#[derive(Deserialize)]
struct WireFunctionDelta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

#[derive(Deserialize)]
struct WireStreamError {
    #[serde(default)]
    message: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    code: Option<Value>,
}

/// What a completion stream's chunks say: `data:` lines of JSON, then `data: [DONE]`.
struct ChunkEvents<'a> {
    provider: &'a str,
    /// Whether any chunk carried the first choice; a stream without one has no reply.
    choices: bool,
}

impl Events for ChunkEvents<'_> {
    fn apply(&mut self, event: &sse::Event, draft: &mut Draft) -> Result<bool, Error> {
        let data = event.data.trim();
        if data == "[DONE]" {
            return Ok(true);
        }
        let chunk: WireChunk = serde_json::from_str(data).map_err(|e| {
            invalid(
                self.provider,
                format!("a stream chunk is not a completion chunk: {e}"),
            )
        })?;
        if let Some(error) = chunk.error {
            let code = error.code.as_ref().and_then(Value::as_str);
            let kind = error.kind.as_deref().or(code).unwrap_or("server_error");
            return Err(error_event(
                self.provider,
                kind,
                error.message.as_deref().unwrap_or(""),
            ));
        }
        if let Some(model) = chunk.model.filter(|m| !m.is_empty()) {
            draft.model = Some(model);
        }
        if let Some(usage) = &chunk.usage {
            draft.usage = usage.usage();
        }
        // Only the first choice is the reply (the runtime never asks for `n` > 1).
        for choice in chunk.choices.into_iter().filter(|c| c.index == 0) {
            self.choices = true;
            if let Some(delta) = choice.delta {
                if let Some(text) = &delta.content {
                    draft.text(text);
                }
                for call in delta.tool_calls {
                    if let Some(id) = call.id.as_deref() {
                        draft.call_id(call.index, id);
                    }
                    let function = call.function.unwrap_or(WireFunctionDelta {
                        name: None,
                        arguments: None,
                    });
                    draft.call_name(call.index, function.name.as_deref().unwrap_or(""));
                    draft.call_args(call.index, function.arguments.as_deref().unwrap_or(""));
                }
            }
            if let Some(reason) = choice.finish_reason {
                draft.finish_reason = Some(reason);
            }
        }
        Ok(false)
    }
}

impl OpenAiClient {
    /// A completion read whole.
    fn whole(&self, request: &ChatRequest<'_>, body: &[u8]) -> Result<ChatResponse, Error> {
        let provider = self.endpoint.provider();
        let wire: WireResponse = serde_json::from_slice(body)
            .map_err(|e| invalid(provider, format!("body is not a chat completion: {e}")))?;
        let choice = wire
            .choices
            .into_iter()
            .next()
            .ok_or_else(|| bad_reply(provider, "no choices in the response"))?;
        let message = AssistantMessage {
            content: choice.message.content.filter(|c| !c.is_empty()),
            tool_calls: choice
                .message
                .tool_calls
                .into_iter()
                .map(|c| ToolCall {
                    id: c.id.unwrap_or_default(),
                    name: c.function.name,
                    arguments: c.function.arguments,
                })
                .collect(),
        };
        crate::assemble::whole(
            provider,
            request,
            message,
            wire.usage.map_or(Usage::default(), |u| u.usage()),
            wire.model,
            choice.finish_reason,
        )
    }
}

#[async_trait]
impl ModelClient for OpenAiClient {
    async fn complete(&self, request: &ChatRequest<'_>) -> Result<ChatResponse, Error> {
        let tools = !request.tools.is_empty();
        let whole;
        let options = if tools && self.options.stream && self.whole_with_tools.load(Relaxed) {
            whole = CallOptions {
                stream: false,
                ..self.options.clone()
            };
            &whole
        } else {
            &self.options
        };
        let body = WireRequest::of(request, options, self.tool_call_content);
        let prepare = |call: reqwest::RequestBuilder| {
            let call = call.json(&body);
            match &self.api_key {
                Some(key) => call.bearer_auth(key),
                None => call,
            }
        };
        self.endpoint
            .call(prepare, |answer| async move {
                let provider = answer.provider().to_string();
                if !answer.is_event_stream() {
                    // Not streamed (asked not to, or a server that ignores `stream`).
                    let limit = options.max_reply_bytes;
                    return self.whole(request, &answer.bytes(limit).await?);
                }
                let mut events = ChunkEvents {
                    provider: &provider,
                    choices: false,
                };
                let draft = Draft::new(request.deltas.clone());
                let limit = options.max_reply_bytes;
                let draft = match crate::assemble::read_stream(answer, &mut events, draft, limit)
                    .await
                {
                    Ok(draft) => draft,
                    Err(error) if tools && crate::assemble::is_empty_stream(&error) => {
                        // Still a failed attempt (the retry layer makes the call again), but
                        // the next one, and every later call with tools, is asked for whole.
                        if !self.whole_with_tools.swap(true, Relaxed) {
                            tracing::warn!(provider = %provider, "the server sent an empty stream for a call with tools; calls with tools are sent unstreamed from now on");
                        }
                        return Err(Error::Connection {
                            provider,
                            message: format!(
                                "{EMPTY_STREAM} (calls with tools are sent unstreamed from now on)",
                                EMPTY_STREAM = crate::assemble::EMPTY_STREAM
                            ),
                        });
                    }
                    Err(error) => return Err(error),
                };
                if !events.choices {
                    return Err(bad_reply(&provider, "no choices in the response"));
                }
                draft.finish(&provider, request)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_message_prefers_the_provider_text() {
        use crate::error::error_message;
        assert_eq!(
            error_message(r#"{"error":{"message":"slow down"}}"#),
            "slow down"
        );
        assert_eq!(error_message("  plain text "), "plain text");
        assert_eq!(
            error_message(&"x".repeat(600)).chars().count(),
            crate::error::MAX_ERROR_TEXT + 1
        );
    }

    #[test]
    fn assistant_messages_round_trip_tool_calls() {
        let message = Message::Assistant(AssistantMessage {
            content: None,
            tool_calls: vec![ToolCall {
                id: "c1".into(),
                name: "read_file".into(),
                arguments: "{\"path\":\"a\"}".into(),
            }],
        });
        let wire = serde_json::to_value(WireMessage::of(&message, ToolCallContent::Null)).unwrap();
        assert_eq!(
            wire,
            serde_json::json!({
                "role": "assistant",
                "content": null,
                "tool_calls": [{
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "read_file", "arguments": "{\"path\":\"a\"}"},
                }],
            })
        );
        let wire = serde_json::to_value(WireMessage::of(&message, ToolCallContent::Empty)).unwrap();
        assert_eq!(wire["content"], "");
    }

    #[test]
    fn tool_call_content_is_decided_by_host() {
        let content = |url: &str, set: Option<ToolCallContent>| {
            OpenAiClient::new("p", url, None, Duration::from_secs(1))
                .unwrap()
                .with_call_options(CallOptions {
                    tool_call_content: set,
                    ..CallOptions::default()
                })
                .tool_call_content
        };
        assert_eq!(
            content("https://api.openai.com/v1", None),
            ToolCallContent::Null
        );
        assert_eq!(
            content("http://127.0.0.1:8000/v1", None),
            ToolCallContent::Empty
        );
        assert_eq!(
            content("http://127.0.0.1:8000/v1", Some(ToolCallContent::Null)),
            ToolCallContent::Null
        );
        assert_eq!(
            content("https://api.openai.com/v1", Some(ToolCallContent::Empty)),
            ToolCallContent::Empty
        );
    }

    #[test]
    fn tool_choice_is_sent_with_tools_only() {
        let tool: ToolDef = serde_json::from_value(serde_json::json!({
            "name": "t", "description": "d", "parameters": {"type": "object"}, "risk": "read_only",
        }))
        .unwrap();
        let mut request = ChatRequest {
            model: "m".into(),
            messages: Vec::new().into(),
            tools: vec![tool].into(),
            max_tokens: None,
            temperature: None,
            report: crate::Reporter::default(),
            deltas: crate::Deltas::default(),
        };
        let body = |request: &ChatRequest<'_>, choice: ToolChoice, stream: bool| {
            let options = CallOptions {
                stream,
                tool_choice: choice,
                tool_call_content: None,
                ..CallOptions::default()
            };
            serde_json::to_value(WireRequest::of(request, &options, ToolCallContent::Null)).unwrap()
        };
        let auto = body(&request, ToolChoice::Auto, true);
        assert_eq!(auto["tool_choice"], "auto");
        assert_eq!(auto["stream"], true);
        assert_eq!(
            auto["stream_options"],
            serde_json::json!({"include_usage": true})
        );
        assert_eq!(
            body(&request, ToolChoice::Required, true)["tool_choice"],
            "required"
        );
        assert_eq!(
            body(&request, ToolChoice::None, true)["tool_choice"],
            "none"
        );
        assert_eq!(
            body(&request, ToolChoice::Tool("t".into()), false)["tool_choice"],
            serde_json::json!({"type": "function", "function": {"name": "t"}})
        );
        // Once the model has called a tool, it may answer.
        let mut answered = request.clone();
        answered.messages = vec![Message::Assistant(chassis_core::AssistantMessage {
            content: None,
            tool_calls: vec![chassis_core::ToolCall {
                id: "c".into(),
                name: "t".into(),
                arguments: "{}".into(),
            }],
        })]
        .into();
        assert_eq!(
            body(&answered, ToolChoice::Tool("t".into()), true)["tool_choice"],
            "auto"
        );
        let whole = body(&request, ToolChoice::Auto, false);
        assert!(whole.get("stream").is_none() && whole.get("stream_options").is_none());
        request.tools = Vec::new().into();
        assert!(
            body(&request, ToolChoice::Required, true)
                .get("tool_choice")
                .is_none()
        );
    }

    #[test]
    fn tool_calls_without_ids_parse() {
        let client = OpenAiClient::new("p", "http://h/v1", None, Duration::from_secs(1)).unwrap();
        let request = ChatRequest {
            model: "m".into(),
            messages: Vec::new().into(),
            tools: Vec::new().into(),
            max_tokens: None,
            temperature: None,
            report: crate::Reporter::default(),
            deltas: crate::Deltas::default(),
        };
        let body = serde_json::json!({"choices": [{"message": {"content": null, "tool_calls": [
            {"type": "function", "function": {"name": "a", "arguments": "{}"}},
            {"id": "", "type": "function", "function": {"name": "b", "arguments": "{}"}},
        ]}, "finish_reason": "tool_calls"}]});
        let response = client.whole(&request, body.to_string().as_bytes()).unwrap();
        let ids: Vec<&str> = response
            .message
            .tool_calls
            .iter()
            .map(|c| c.id.as_str())
            .collect();
        assert_eq!(ids, ["", ""]);

        let empty = serde_json::json!({"choices": [{"message": {"content": ""}}]});
        let err = client
            .whole(&request, empty.to_string().as_bytes())
            .unwrap_err();
        assert!(matches!(err, Error::BadReply { .. }), "{err:?}");
        let none = serde_json::json!({"choices": []});
        let err = client
            .whole(&request, none.to_string().as_bytes())
            .unwrap_err();
        assert!(matches!(err, Error::BadReply { .. }), "{err:?}");
        let garbage = client.whole(&request, b"<html>bad gateway").unwrap_err();
        assert!(
            matches!(garbage, Error::InvalidResponse { .. }),
            "{garbage:?}"
        );
        assert!(garbage.is_transient());
    }
}
