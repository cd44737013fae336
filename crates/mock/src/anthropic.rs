//! The Anthropic Messages wire format (`POST /v1/messages`): the part of a request the mock
//! reads and checks, and the message and error bodies it writes.
//!
//! The checks are the ones a client is most likely to get wrong and the real API enforces: the
//! `anthropic-version` header, `max_tokens`, the two roles, and every `tool_use` answered by a
//! `tool_result` in the very next message.
//!
//! [`FaultKind::BadArgs`](crate::FaultKind::BadArgs) cannot make `input` invalid JSON, since it is
//! part of the body; instead `input` becomes a JSON *string* holding the truncated arguments
//! (e.g. `"{\"path\":\"notes.txt\""`) where an object belongs. A client that serializes `input` as
//! the call's arguments hands its tools a string, which fails validation against an object schema.

use std::borrow::Cow;

use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use serde::de::IgnoredAny;
use serde_json::json;

use crate::dialect::{Dialect, Failure, Streaming, ToolUse, pieces};
use crate::reply::{Conversation, Reply, tokens};

/// The header the real API requires on every request.
const VERSION_HEADER: &str = "anthropic-version";

/// The Anthropic Messages dialect.
pub(crate) struct Anthropic;

impl Dialect for Anthropic {
    type Request = MessagesRequest;

    fn read(headers: &HeaderMap, body: &[u8]) -> Result<MessagesRequest, String> {
        if !headers.contains_key(VERSION_HEADER) {
            return Err(format!("{VERSION_HEADER}: header is required"));
        }
        let request: MessagesRequest = serde_json::from_slice(body)
            .map_err(|err| format!("invalid messages request: {err}"))?;
        request.check()?;
        Ok(request)
    }

    fn model(request: &MessagesRequest) -> Option<&str> {
        Some(&request.model)
    }

    fn conversation(request: &MessagesRequest) -> Conversation<'_> {
        request.conversation()
    }

    fn reply_body(id: u64, model: &str, conv: &Conversation<'_>, reply: &Reply) -> Vec<u8> {
        message_body(id, model, conv.turn, reply, conv.prompt_chars)
    }

    fn stream(request: &MessagesRequest) -> Option<Streaming> {
        (request.stream == Some(true)).then_some(Streaming {
            include_usage: true,
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
        message_events(id, model, conv, reply, streaming)
    }

    fn tool_use(request: &MessagesRequest) -> ToolUse {
        let tools = request.tools.as_ref().is_some_and(|t| !t.is_empty());
        ToolUse::of(tools, request.tool_choice.as_ref())
    }

    fn error_body(failure: Failure, message: &str) -> Vec<u8> {
        let kind = match failure {
            Failure::InvalidRequest => "invalid_request_error",
            Failure::NotFound => "not_found_error",
            Failure::RateLimited => "rate_limit_error",
            Failure::ServerError | Failure::ValidationCrash => "api_error",
            Failure::Unavailable => "overloaded_error",
            Failure::Forbidden => "permission_error",
        };
        error_body(kind, message)
    }
}

/// The fields of a Messages request the mock looks at; the rest is ignored.
#[derive(Deserialize)]
pub(crate) struct MessagesRequest {
    model: String,
    max_tokens: u64,
    #[serde(default)]
    system: Option<Content>,
    messages: Vec<Message>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    tools: Option<Vec<IgnoredAny>>,
    #[serde(default)]
    tool_choice: Option<Value>,
}

#[derive(Deserialize)]
struct Message {
    role: String,
    content: Content,
}

/// Message content: a string, or a list of typed blocks.
#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Blocks(Vec<Block>),
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block {
    Text {
        text: String,
    },
    ToolUse {
        id: String,
    },
    ToolResult {
        tool_use_id: String,
        #[serde(default)]
        content: Option<Content>,
    },
    /// Images, documents, thinking: carried by real clients, meaningless to the script.
    #[serde(other)]
    Other,
}

impl Content {
    /// The text blocks, concatenated; tool results and other blocks are not text.
    fn text(&self) -> Cow<'_, str> {
        match self {
            Content::Text(text) => Cow::Borrowed(text),
            Content::Blocks(blocks) => {
                let mut texts = blocks.iter().filter_map(|block| match block {
                    Block::Text { text } => Some(text.as_str()),
                    _ => None,
                });
                match (texts.next(), texts.next()) {
                    (None, _) => Cow::Borrowed(""),
                    (Some(only), None) => Cow::Borrowed(only),
                    (Some(first), Some(second)) => {
                        let mut joined = format!("{first}{second}");
                        joined.extend(texts);
                        Cow::Owned(joined)
                    }
                }
            }
        }
    }

    fn blocks(&self) -> &[Block] {
        match self {
            Content::Text(_) => &[],
            Content::Blocks(blocks) => blocks,
        }
    }
}

impl Message {
    fn tool_use_ids(&self) -> impl Iterator<Item = &str> {
        self.content
            .blocks()
            .iter()
            .filter_map(|block| match block {
                Block::ToolUse { id } => Some(id.as_str()),
                _ => None,
            })
    }

    fn tool_result_ids(&self) -> impl Iterator<Item = &str> {
        self.content
            .blocks()
            .iter()
            .filter_map(|block| match block {
                Block::ToolResult { tool_use_id, .. } => Some(tool_use_id.as_str()),
                _ => None,
            })
    }
}

impl MessagesRequest {
    /// The rules of the real API that a client could break without a parse error.
    fn check(&self) -> Result<(), String> {
        if self.max_tokens == 0 {
            return Err("max_tokens: must be at least 1".to_owned());
        }
        if self.messages.is_empty() {
            return Err("messages: at least one message is required".to_owned());
        }
        for (i, message) in self.messages.iter().enumerate() {
            if message.role != "user" && message.role != "assistant" {
                return Err(format!(
                    "messages.{i}.role: expected \"user\" or \"assistant\", found {:?}",
                    message.role
                ));
            }
            let previous = i.checked_sub(1).map(|p| &self.messages[p]);
            for id in message.tool_result_ids() {
                let answered = previous.is_some_and(|p| {
                    p.role == "assistant" && p.tool_use_ids().any(|use_id| use_id == id)
                });
                if message.role != "user" || !answered {
                    return Err(format!(
                        "messages.{i}: unexpected `tool_use_id` found in `tool_result` blocks: {id}. \
                         Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
                    ));
                }
            }
            if message.role != "assistant" {
                continue;
            }
            let next = self.messages.get(i + 1).filter(|n| n.role == "user");
            let missing: Vec<&str> = message
                .tool_use_ids()
                .filter(|id| !next.is_some_and(|n| n.tool_result_ids().any(|r| r == *id)))
                .collect();
            if !missing.is_empty() {
                return Err(format!(
                    "messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: {}. \
                     Each `tool_use` block must have a corresponding `tool_result` block in the next message.",
                    missing.join(", ")
                ));
            }
        }
        Ok(())
    }

    fn conversation(&self) -> Conversation<'_> {
        let mut input = None;
        let mut last_tool_result = Cow::Borrowed("");
        let mut last_user = Cow::Borrowed("");
        let mut turns = crate::reply::TurnCounter::default();
        let mut prompt_chars = self
            .system
            .as_ref()
            .map_or(0, |system| system.text().chars().count());
        for message in &self.messages {
            let text = message.content.text();
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
                _ => {}
            }
            for block in message.content.blocks() {
                if let Block::ToolResult { content, .. } = block {
                    let result = content.as_ref().map_or(Cow::Borrowed(""), Content::text);
                    prompt_chars += result.chars().count();
                    turns.tool_result(&result);
                    // A refused call's error is not a result the script can build on.
                    if !result.starts_with(crate::reply::REFUSED_PREFIX) {
                        last_tool_result = result;
                    }
                }
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
struct MessageBody<'a> {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: Vec<OutBlock<'a>>,
    stop_reason: &'static str,
    stop_sequence: Option<&'static str>,
    usage: Usage,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OutBlock<'a> {
    Text {
        text: &'a str,
    },
    ToolUse {
        id: String,
        name: &'a str,
        input: Value,
    },
}

#[derive(Serialize)]
struct Usage {
    input_tokens: u64,
    output_tokens: u64,
}

/// Serializes a `message` object for `reply`.
fn message_body(id: u64, model: &str, turn: u32, reply: &Reply, prompt_chars: usize) -> Vec<u8> {
    let mut content = Vec::with_capacity(1 + reply.tool_calls.len());
    if let Some(text) = reply.content.as_deref() {
        content.push(OutBlock::Text { text });
    }
    for (i, call) in reply.tool_calls.iter().enumerate() {
        // Scripted arguments always parse; broken ones (bad_args) travel as a string.
        let input = serde_json::from_str(&call.arguments)
            .unwrap_or_else(|_| Value::String(call.arguments.clone()));
        content.push(OutBlock::ToolUse {
            id: format!("toolu_{turn}_{i}"),
            name: &call.name,
            input,
        });
    }
    let stop_reason = if reply.tool_calls.is_empty() {
        "end_turn"
    } else {
        "tool_use"
    };
    let message = MessageBody {
        id: format!("msg_mock_{id}"),
        kind: "message",
        role: "assistant",
        model,
        content,
        stop_reason,
        stop_sequence: None,
        usage: Usage {
            input_tokens: tokens(prompt_chars),
            output_tokens: reply.completion_tokens(),
        },
    };
    serde_json::to_vec(&message).expect("a message always serializes")
}

/// The events of a streamed `reply`: `message_start`, a text block whose text comes in
/// `text_delta` pieces, a `tool_use` block per call whose input comes in `input_json_delta`
/// pieces, `message_delta` with the stop reason and usage, and `message_stop`.
fn message_events(
    id: u64,
    model: &str,
    conv: &Conversation<'_>,
    reply: &Reply,
    streaming: Streaming,
) -> Vec<Vec<u8>> {
    let mut events = vec![json!({
        "type": "message_start",
        "message": {
            "id": format!("msg_mock_{id}"), "type": "message", "role": "assistant",
            "model": model, "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": tokens(conv.prompt_chars), "output_tokens": 1},
        },
    })];
    let mut index = 0;
    if let Some(text) = reply.content.as_deref() {
        events.push(json!({
            "type": "content_block_start", "index": index,
            "content_block": {"type": "text", "text": ""},
        }));
        events.push(json!({"type": "ping"}));
        for piece in pieces(text, streaming.chunk_chars) {
            events.push(json!({
                "type": "content_block_delta", "index": index,
                "delta": {"type": "text_delta", "text": piece},
            }));
        }
        events.push(json!({"type": "content_block_stop", "index": index}));
        index += 1;
    }
    for (i, call) in reply.tool_calls.iter().enumerate() {
        events.push(json!({
            "type": "content_block_start", "index": index,
            "content_block": {
                "type": "tool_use", "id": format!("toolu_{}_{i}", conv.turn),
                "name": call.name, "input": {},
            },
        }));
        // As in a whole reply: scripted arguments are an object, broken ones a JSON string.
        let input = serde_json::from_str::<Value>(&call.arguments)
            .unwrap_or_else(|_| Value::String(call.arguments.clone()))
            .to_string();
        for piece in pieces(&input, streaming.chunk_chars) {
            events.push(json!({
                "type": "content_block_delta", "index": index,
                "delta": {"type": "input_json_delta", "partial_json": piece},
            }));
        }
        events.push(json!({"type": "content_block_stop", "index": index}));
        index += 1;
    }
    let stop_reason = if reply.tool_calls.is_empty() {
        "end_turn"
    } else {
        "tool_use"
    };
    events.push(json!({
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": null},
        "usage": {"output_tokens": reply.completion_tokens()},
    }));
    events.push(json!({"type": "message_stop"}));
    events
        .into_iter()
        .map(|event| {
            let kind = event["type"].as_str().unwrap_or("").to_owned();
            format!("event: {kind}\ndata: {event}\n\n").into_bytes()
        })
        .collect()
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    message: &'a str,
}

/// Serializes an Anthropic-style error: `{"type":"error","error":{"type":..,"message":..}}`.
fn error_body(kind: &str, message: &str) -> Vec<u8> {
    let body = ErrorBody {
        kind: "error",
        error: ErrorDetail { kind, message },
    };
    serde_json::to_vec(&body).expect("an error body always serializes")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::reply::ReplyCall;

    fn headers() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(VERSION_HEADER, "2023-06-01".parse().unwrap());
        headers
    }

    fn read(body: &Value) -> Result<MessagesRequest, String> {
        Anthropic::read(&headers(), body.to_string().as_bytes())
    }

    #[test]
    fn conversation_reads_roles_and_blocks() {
        let request = read(&json!({
            "model": "claude", "max_tokens": 100,
            "system": [{"type": "text", "text": "sys"}],
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "fir"}, {"type": "text", "text": "st"}]},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "hm"},
                    {"type": "tool_use", "id": "a", "name": "x", "input": {}},
                    {"type": "tool_use", "id": "b", "name": "x", "input": {}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "a", "content": "one"},
                    {"type": "tool_result", "tool_use_id": "b", "content": [{"type": "text", "text": "two"}]}
                ]},
                {"role": "assistant", "content": "ok"},
                {"role": "user", "content": [{"type": "image", "source": {}}, {"type": "text", "text": "second"}]}
            ]
        }))
        .unwrap();
        let conv = request.conversation();
        assert_eq!(conv.input, "first");
        assert_eq!(conv.last_tool_result, "two");
        assert_eq!(conv.turn, 2);
        assert_eq!(conv.prompt_chars, "sysfirsthmonetwooksecond".len());
    }

    #[test]
    fn requests_breaking_the_api_rules_are_refused() {
        let user = json!({"role": "user", "content": "hi"});
        let call = json!({"role": "assistant", "content": [
            {"type": "tool_use", "id": "t1", "name": "x", "input": {}},
            {"type": "tool_use", "id": "t2", "name": "x", "input": {}}
        ]});
        let result = |id: &str| json!({"type": "tool_result", "tool_use_id": id, "content": "r"});
        let body = |messages: Value| json!({"model": "m", "max_tokens": 5, "messages": messages});

        // One result per message, as a client that does not merge them would send.
        let split = body(json!([
            user,
            call,
            {"role": "user", "content": [result("t1")]},
            {"role": "user", "content": [result("t2")]}
        ]));
        let err = read(&split).err().unwrap();
        assert!(
            err.starts_with("messages.1: `tool_use` ids were found without `tool_result` blocks immediately after: t2."),
            "{err}"
        );
        let stray = body(json!([user, {"role": "user", "content": [result("zz")]}]));
        let err = read(&stray).err().unwrap();
        assert!(
            err.starts_with("messages.1: unexpected `tool_use_id`"),
            "{err}"
        );
        let merged =
            body(json!([user, call, {"role": "user", "content": [result("t1"), result("t2")]}]));
        read(&merged).unwrap();

        let system_role = body(json!([{"role": "system", "content": "s"}]));
        assert!(
            read(&system_role)
                .err()
                .unwrap()
                .starts_with("messages.0.role")
        );
        let no_max = json!({"model": "m", "messages": [user]});
        assert!(read(&no_max).err().unwrap().contains("max_tokens"));
        let no_header = Anthropic::read(
            &HeaderMap::new(),
            body(json!([user])).to_string().as_bytes(),
        );
        assert_eq!(
            no_header.err().unwrap(),
            "anthropic-version: header is required"
        );
    }

    #[test]
    fn message_shape() {
        let reply = Reply {
            content: Some("let me look".into()),
            tool_calls: vec![
                ReplyCall {
                    name: "ls".into(),
                    arguments: r#"{"p":1}"#.into(),
                },
                ReplyCall {
                    name: "cat".into(),
                    arguments: r#"{"p":"#.into(),
                },
            ],
        };
        let body: Value = serde_json::from_slice(&message_body(3, "claude", 1, &reply, 9)).unwrap();
        assert_eq!(
            body,
            json!({
                "id": "msg_mock_3",
                "type": "message",
                "role": "assistant",
                "model": "claude",
                "content": [
                    {"type": "text", "text": "let me look"},
                    {"type": "tool_use", "id": "toolu_1_0", "name": "ls", "input": {"p": 1}},
                    {"type": "tool_use", "id": "toolu_1_1", "name": "cat", "input": "{\"p\":"}
                ],
                "stop_reason": "tool_use",
                "stop_sequence": null,
                "usage": {"input_tokens": 3, "output_tokens": 6}
            })
        );
    }

    #[test]
    fn error_shape() {
        let body: Value =
            serde_json::from_slice(&Anthropic::error_body(Failure::Unavailable, "busy")).unwrap();
        assert_eq!(
            body,
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "busy"}})
        );
    }
}
