//! OpenAI-compatible chat completions (OpenAI, vLLM, Ollama, llama.cpp's server, most hosts).

use std::time::Duration;

use async_trait::async_trait;
use chassis_core::{AssistantMessage, Message, ToolCall, ToolDef, Usage};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use crate::error::error_message;
use crate::{ChatRequest, ChatResponse, Error, ModelClient};

/// A client for one OpenAI-compatible endpoint.
pub struct OpenAiClient {
    name: String,
    http: crate::http::Lanes,
    /// Parsed once: every call posts here.
    url: reqwest::Url,
    api_key: Option<String>,
    timeout: Duration,
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
        let timeout = timeouts.total;
        let url = crate::http::endpoint(
            name,
            &format!("{}/chat/completions", base_url.trim_end_matches('/')),
        )?;
        let http = crate::http::Lanes::new(name, &url, timeouts, options)?;
        Ok(OpenAiClient {
            name: name.to_string(),
            http,
            url,
            api_key,
            timeout,
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
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
}

impl<'a> WireRequest<'a> {
    fn of(request: &'a ChatRequest<'_>) -> WireRequest<'a> {
        WireRequest {
            model: &request.model,
            messages: WireMessages(&request.messages),
            tools: WireTools(&request.tools),
            max_tokens: request.max_tokens,
            temperature: request.temperature,
        }
    }
}

struct WireMessages<'a>(&'a [Message]);

impl Serialize for WireMessages<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(WireMessage::of))
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
    fn of(message: &'a Message) -> WireMessage<'a> {
        match message {
            Message::System { content } => WireMessage::System { content },
            Message::User { content } => WireMessage::User { content },
            Message::Tool { call_id, content } => WireMessage::Tool {
                tool_call_id: call_id,
                content,
            },
            Message::Assistant(reply) => WireMessage::Assistant {
                content: reply.content.as_deref(),
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
    #[serde(default)]
    tool_calls: Vec<WireToolCall>,
}

#[derive(Deserialize)]
struct WireToolCall {
    id: String,
    function: WireFunction,
}

#[derive(Deserialize)]
struct WireFunction {
    name: String,
    #[serde(default)]
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

#[derive(Deserialize)]
struct WirePromptDetails {
    #[serde(default)]
    cached_tokens: u64,
}

#[async_trait]
impl ModelClient for OpenAiClient {
    async fn complete(&self, request: &ChatRequest<'_>) -> Result<ChatResponse, Error> {
        let lane = self.http.checkout();
        let mut call = lane
            .client()
            .post(self.url.clone())
            .json(&WireRequest::of(request));
        if let Some(key) = &self.api_key {
            call = call.bearer_auth(key);
        }
        let exchange = async {
            let response = call.send().await?;
            let status = response.status();
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| crate::error::parse_retry_after(v, std::time::SystemTime::now()));
            let body = response.bytes().await?;
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
            return Err(Error::Status {
                provider: self.name.clone(),
                status: status.as_u16(),
                message: error_message(&String::from_utf8_lossy(&body)),
                retry_after,
            });
        }
        let invalid = |message: String| Error::InvalidResponse {
            provider: self.name.clone(),
            message,
        };
        let wire: WireResponse = serde_json::from_slice(&body)
            .map_err(|e| invalid(format!("body is not a chat completion: {e}")))?;
        let choice = wire
            .choices
            .into_iter()
            .next()
            .ok_or_else(|| invalid("no choices in the response".to_string()))?;
        let message = AssistantMessage {
            content: choice.message.content.filter(|c| !c.is_empty()),
            tool_calls: choice
                .message
                .tool_calls
                .into_iter()
                .map(|c| ToolCall {
                    id: c.id,
                    name: c.function.name,
                    arguments: c.function.arguments,
                })
                .collect(),
        };
        if message.content.is_none() && message.tool_calls.is_empty() {
            return Err(invalid(
                "the reply has neither text nor tool calls".to_string(),
            ));
        }
        let usage = wire.usage.map_or(Usage::default(), |u| Usage {
            input_tokens: u.prompt_tokens,
            output_tokens: u.completion_tokens,
            cached_input_tokens: u.prompt_tokens_details.map_or(0, |d| d.cached_tokens),
        });
        Ok(ChatResponse {
            message,
            usage,
            model: wire.model.unwrap_or_else(|| request.model.to_string()),
            finish_reason: choice.finish_reason,
            served_by: format!("{}:{}", self.name, request.model),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_message_prefers_the_provider_text() {
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
        let wire = serde_json::to_value(WireMessage::of(&message)).unwrap();
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
    }
}
