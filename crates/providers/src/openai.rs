//! OpenAI-compatible chat completions (OpenAI, vLLM, Ollama, llama.cpp's server, most hosts).

use std::time::Duration;

use async_trait::async_trait;
use chassis_core::{AssistantMessage, Message, ToolCall, Usage};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::error_message;
use crate::{ChatRequest, ChatResponse, Error, ModelClient};

/// A client for one OpenAI-compatible endpoint.
pub struct OpenAiClient {
    name: String,
    http: reqwest::Client,
    url: String,
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
        let timeout = timeouts.total;
        let http = timeouts.http_client(name)?;
        Ok(OpenAiClient {
            name: name.to_string(),
            http,
            url: format!("{}/chat/completions", base_url.trim_end_matches('/')),
            api_key,
            timeout,
        })
    }

    fn body(&self, request: &ChatRequest) -> Value {
        let messages: Vec<Value> = request.messages.iter().map(wire_message).collect();
        let mut body = json!({ "model": request.model, "messages": messages });
        if !request.tools.is_empty() {
            body["tools"] = request
                .tools
                .iter()
                .map(|t| {
                    json!({
                        "type": "function",
                        "function": {
                            "name": t.name,
                            "description": t.description,
                            "parameters": t.parameters,
                        }
                    })
                })
                .collect();
        }
        if let Some(max_tokens) = request.max_tokens {
            body["max_tokens"] = max_tokens.into();
        }
        if let Some(temperature) = request.temperature {
            body["temperature"] = temperature.into();
        }
        body
    }
}

fn wire_message(message: &Message) -> Value {
    match message {
        Message::System { content } => json!({"role": "system", "content": content}),
        Message::User { content } => json!({"role": "user", "content": content}),
        Message::Tool { call_id, content } => {
            json!({"role": "tool", "tool_call_id": call_id, "content": content})
        }
        Message::Assistant(reply) => {
            let mut value = json!({"role": "assistant", "content": reply.content});
            if !reply.tool_calls.is_empty() {
                value["tool_calls"] = reply
                    .tool_calls
                    .iter()
                    .map(|c| {
                        json!({
                            "id": c.id,
                            "type": "function",
                            "function": {"name": c.name, "arguments": c.arguments},
                        })
                    })
                    .collect();
            }
            value
        }
    }
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
    message: WireMessage,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireMessage {
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
    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, Error> {
        let mut call = self.http.post(&self.url).json(&self.body(request));
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
            return Err(Error::Status {
                provider: self.name.clone(),
                status: status.as_u16(),
                message: error_message(&body),
                retry_after,
            });
        }
        let invalid = |message: String| Error::InvalidResponse {
            provider: self.name.clone(),
            message,
        };
        let wire: WireResponse = serde_json::from_str(&body)
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
            model: wire.model.unwrap_or_else(|| request.model.clone()),
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
        let wire = wire_message(&message);
        assert_eq!(wire["tool_calls"][0]["function"]["name"], "read_file");
        assert_eq!(wire["content"], Value::Null);
    }
}
