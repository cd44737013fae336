//! The OpenAI chat-completions wire format (`POST /v1/chat/completions`): the part of a request
//! the mock reads, and the completion and error bodies it writes.

use std::borrow::Cow;

use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};

use serde::de::IgnoredAny;
use serde_json::{Value, json};

use crate::dialect::{Dialect, Failure, Streaming, ToolUse, pieces};
use crate::reply::{Conversation, Reply, tokens};

/// The OpenAI chat-completions dialect.
pub(crate) struct OpenAi;

impl Dialect for OpenAi {
    type Request = ChatRequest;

    fn read(_headers: &HeaderMap, body: &[u8]) -> Result<ChatRequest, String> {
        serde_json::from_slice(body)
            .map_err(|err| format!("invalid chat completion request: {err}"))
    }

    fn model(request: &ChatRequest) -> Option<&str> {
        request.model.as_deref()
    }

    fn conversation(request: &ChatRequest) -> Conversation<'_> {
        request.conversation()
    }

    fn reply_body(id: u64, model: &str, conv: &Conversation<'_>, reply: &Reply) -> Vec<u8> {
        completion_body(id, model, conv.turn, reply, conv.prompt_chars)
    }

    fn stream(request: &ChatRequest) -> Option<Streaming> {
        (request.stream == Some(true)).then(|| Streaming {
            include_usage: request
                .stream_options
                .as_ref()
                .is_some_and(|o| o.include_usage == Some(true)),
            chunk_chars: 1,
        })
    }

    fn stream_events(
        id: u64,
        model: &str,
        conv: &Conversation<'_>,
        reply: &Reply,
        streaming: Streaming,
    ) -> Vec<Vec<u8>> {
        chunk_events(id, model, conv, reply, streaming)
    }

    fn tool_use(request: &ChatRequest) -> ToolUse {
        let tools = request.tools.as_ref().is_some_and(|t| !t.is_empty());
        ToolUse::of(tools, request.tool_choice.as_ref())
    }

    fn unstreamable(request: &ChatRequest) -> bool {
        Self::tool_use(request) == ToolUse::Auto
    }

    fn null_tool_call_content(request: &ChatRequest) -> Option<usize> {
        request.messages.iter().position(|m| {
            m.role == "assistant"
                && m.content.is_none()
                && m.tool_calls.as_ref().is_some_and(|c| !c.is_empty())
        })
    }

    fn error_body(failure: Failure, message: &str) -> Vec<u8> {
        let (kind, code) = match failure {
            Failure::InvalidRequest | Failure::NotFound => ("invalid_request_error", None),
            Failure::RateLimited => ("requests", Some("rate_limit_exceeded")),
            Failure::ServerError => ("server_error", None),
            Failure::ValidationCrash => ("internal_server_error", None),
            Failure::Unavailable => ("server_error", Some("service_unavailable")),
            Failure::Forbidden => ("permission_error", None),
        };
        error_body(message, kind, code)
    }
}

/// The fields of a chat-completions request the mock looks at; the rest is ignored.
#[derive(Deserialize)]
pub(crate) struct ChatRequest {
    #[serde(default)]
    model: Option<String>,
    messages: Vec<Message>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    tools: Option<Vec<IgnoredAny>>,
    #[serde(default)]
    tool_choice: Option<Value>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

#[derive(Deserialize)]
struct Message {
    role: String,
    #[serde(default)]
    content: Option<Content>,
    #[serde(default)]
    tool_calls: Option<Vec<IgnoredAny>>,
}

/// Message content: a string, or (newer clients) a list of typed parts.
#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Deserialize)]
struct Part {
    #[serde(default)]
    text: Option<String>,
}

impl Message {
    fn text(&self) -> Cow<'_, str> {
        match &self.content {
            None => Cow::Borrowed(""),
            Some(Content::Text(text)) => Cow::Borrowed(text),
            Some(Content::Parts(parts)) => {
                Cow::Owned(parts.iter().filter_map(|p| p.text.as_deref()).collect())
            }
        }
    }
}

impl ChatRequest {
    fn conversation(&self) -> Conversation<'_> {
        let mut input = None;
        let mut last_tool_result = Cow::Borrowed("");
        let mut last_user = Cow::Borrowed("");
        let mut turns = crate::reply::TurnCounter::default();
        let mut prompt_chars = 0;
        for message in &self.messages {
            let text = message.text();
            prompt_chars += text.chars().count();
            match message.role.as_str() {
                "user" => {
                    if input.is_none() {
                        input = Some(text.clone());
                    } else {
                        turns.user(&text);
                    }
                    // A user message that only carries tool results has no text of its own, and a
                    // note about left-out steps is chassis's, not the user's.
                    if !text.is_empty() && !text.starts_with(crate::reply::STEPS_NOTE_PREFIX) {
                        last_user = text;
                    }
                }
                "assistant" => turns.assistant(),
                "tool" => {
                    turns.tool_result(&text);
                    // A refused call's error is not a result the script can build on.
                    if !text.starts_with(crate::reply::REFUSED_PREFIX) {
                        last_tool_result = text;
                    }
                }
                _ => {}
            }
        }
        Conversation {
            input: input.unwrap_or(Cow::Borrowed("")),
            last_tool_result,
            last_user,
            turn: turns.finish(),
            prompt_chars,
        }
    }
}

#[derive(Serialize)]
struct Completion<'a> {
    id: String,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [Choice<'a>; 1],
    usage: Usage,
}

#[derive(Serialize)]
struct Choice<'a> {
    index: u32,
    message: AssistantMessage<'a>,
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct AssistantMessage<'a> {
    role: &'static str,
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<ToolCall<'a>>,
}

#[derive(Serialize)]
struct ToolCall<'a> {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    function: Function<'a>,
}

#[derive(Serialize)]
struct Function<'a> {
    name: &'a str,
    arguments: &'a str,
}

#[derive(Serialize)]
struct Usage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
}

/// Serializes a `chat.completion` object for `reply`.
fn completion_body(id: u64, model: &str, turn: u32, reply: &Reply, prompt_chars: usize) -> Vec<u8> {
    let tool_calls: Vec<ToolCall<'_>> = reply
        .tool_calls
        .iter()
        .enumerate()
        .map(|(i, call)| ToolCall {
            id: format!("call_{turn}_{i}"),
            kind: "function",
            function: Function {
                name: &call.name,
                arguments: &call.arguments,
            },
        })
        .collect();
    let prompt_tokens = tokens(prompt_chars);
    let completion_tokens = reply.completion_tokens();
    let finish_reason = if tool_calls.is_empty() {
        "stop"
    } else {
        "tool_calls"
    };
    let completion = Completion {
        id: format!("chatcmpl-mock-{id}"),
        object: "chat.completion",
        created: 0,
        model,
        choices: [Choice {
            index: 0,
            message: AssistantMessage {
                role: "assistant",
                content: reply.content.as_deref(),
                tool_calls,
            },
            finish_reason,
        }],
        usage: Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
        },
    };
    serde_json::to_vec(&completion).expect("a completion always serializes")
}

/// The `chat.completion.chunk` events of a streamed `reply`: the role, the text in pieces, the
/// tool calls with their arguments in pieces (interleaved across calls, each piece naming its
/// call by `index`), the finish reason, the usage when asked for, and `[DONE]`.
fn chunk_events(
    id: u64,
    model: &str,
    conv: &Conversation<'_>,
    reply: &Reply,
    streaming: Streaming,
) -> Vec<Vec<u8>> {
    let id = format!("chatcmpl-mock-{id}");
    let chunk = |choices: Value| {
        let mut chunk = json!({
            "id": id, "object": "chat.completion.chunk", "created": 0, "model": model,
            "choices": choices,
        });
        if streaming.include_usage {
            chunk["usage"] = Value::Null;
        }
        chunk
    };
    let delta = |delta: Value, finish: Option<&str>| {
        chunk(json!([{"index": 0, "delta": delta, "finish_reason": finish}]))
    };
    let mut events = vec![delta(
        json!({"role": "assistant", "content": if reply.content.is_some() { json!("") } else { Value::Null }}),
        None,
    )];
    for piece in pieces(
        reply.content.as_deref().unwrap_or(""),
        streaming.chunk_chars,
    ) {
        events.push(delta(json!({"content": piece}), None));
    }
    let calls: Vec<Vec<&str>> = reply
        .tool_calls
        .iter()
        .map(|c| pieces(&c.arguments, streaming.chunk_chars))
        .collect();
    let rounds = calls.iter().map(|p| p.len().max(1)).max().unwrap_or(0);
    for round in 0..rounds {
        for (i, (call, args)) in reply.tool_calls.iter().zip(&calls).enumerate() {
            let piece = args.get(round).copied();
            let call_delta = match (round, piece) {
                (0, piece) => json!({
                    "index": i, "id": format!("call_{}_{i}", conv.turn), "type": "function",
                    "function": {"name": call.name, "arguments": piece.unwrap_or("")},
                }),
                (_, Some(piece)) => json!({"index": i, "function": {"arguments": piece}}),
                (_, None) => continue,
            };
            events.push(delta(json!({"tool_calls": [call_delta]}), None));
        }
    }
    let finish = if reply.tool_calls.is_empty() {
        "stop"
    } else {
        "tool_calls"
    };
    events.push(delta(json!({}), Some(finish)));
    if streaming.include_usage {
        let prompt_tokens = tokens(conv.prompt_chars);
        let completion_tokens = reply.completion_tokens();
        let mut last = chunk(json!([]));
        last["usage"] = json!({
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        });
        events.push(last);
    }
    let mut events: Vec<Vec<u8>> = events
        .into_iter()
        .map(|event| format!("data: {event}\n\n").into_bytes())
        .collect();
    events.push(b"data: [DONE]\n\n".to_vec());
    events
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

/// Serializes an OpenAI-style error: `{"error":{"message":..,"type":..,"param":null,"code":..}}`.
fn error_body(message: &str, kind: &str, code: Option<&str>) -> Vec<u8> {
    let body = ErrorBody {
        error: ErrorDetail {
            message,
            kind,
            param: None,
            code,
        },
    };
    serde_json::to_vec(&body).expect("an error body always serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::ReplyCall;

    fn request(json: &str) -> ChatRequest {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn conversation_reads_roles() {
        let req = request(
            r#"{"model":"m","messages":[
                {"role":"system","content":"sys"},
                {"role":"user","content":"first"},
                {"role":"assistant","content":null,"tool_calls":[{"id":"a","type":"function","function":{"name":"x","arguments":"{}"}}]},
                {"role":"tool","tool_call_id":"a","content":"one"},
                {"role":"assistant","content":"hm"},
                {"role":"tool","tool_call_id":"b","content":[{"type":"text","text":"tw"},{"type":"text","text":"o"}]},
                {"role":"user","content":"second"}
            ],"temperature":0.2,"tools":[]}"#,
        );
        let conv = req.conversation();
        assert_eq!(conv.input, "first");
        assert_eq!(conv.last_tool_result, "two");
        assert_eq!(conv.turn, 2);
        assert_eq!(conv.prompt_chars, "sysfirstonehmtwosecond".len());
    }

    #[test]
    fn completion_shape() {
        let reply = Reply {
            content: None,
            tool_calls: vec![ReplyCall {
                name: "ls".into(),
                arguments: r#"{"p":1}"#.into(),
            }],
        };
        let body = completion_body(3, "gpt", 1, &reply, 9);
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "id": "chatcmpl-mock-3",
                "object": "chat.completion",
                "created": 0,
                "model": "gpt",
                "choices": [{
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": null,
                        "tool_calls": [{
                            "id": "call_1_0",
                            "type": "function",
                            "function": {"name": "ls", "arguments": "{\"p\":1}"}
                        }]
                    },
                    "finish_reason": "tool_calls"
                }],
                "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
            })
        );
    }
}
