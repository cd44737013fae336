//! The OpenAI chat-completions wire format: the part of a request the mock reads, and the
//! completion and error bodies it writes.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::reply::Reply;

/// The fields of a chat-completions request the mock looks at; the rest is ignored.
#[derive(Deserialize)]
pub(crate) struct ChatRequest {
    #[serde(default)]
    pub(crate) model: Option<String>,
    pub(crate) messages: Vec<Message>,
    #[serde(default)]
    pub(crate) stream: Option<bool>,
}

#[derive(Deserialize)]
pub(crate) struct Message {
    role: String,
    #[serde(default)]
    content: Option<Content>,
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

/// What the script sees of a request.
#[derive(Debug)]
pub(crate) struct Conversation<'a> {
    /// Content of the first user message.
    pub(crate) input: Cow<'a, str>,
    /// Content of the last tool message, empty if none.
    pub(crate) last_tool_result: Cow<'a, str>,
    /// Number of assistant messages: the index of the turn to answer.
    pub(crate) turn: u32,
    /// Characters of all message contents, for `usage.prompt_tokens`.
    pub(crate) prompt_chars: usize,
}

impl ChatRequest {
    pub(crate) fn conversation(&self) -> Conversation<'_> {
        let mut input = None;
        let mut last_tool_result = Cow::Borrowed("");
        let mut turn = 0u32;
        let mut prompt_chars = 0;
        for message in &self.messages {
            let text = message.text();
            prompt_chars += text.chars().count();
            match message.role.as_str() {
                "user" if input.is_none() => input = Some(text),
                "assistant" => turn = turn.saturating_add(1),
                "tool" => last_tool_result = text,
                _ => {}
            }
        }
        Conversation {
            input: input.unwrap_or(Cow::Borrowed("")),
            last_tool_result,
            turn,
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

/// Roughly four characters per token, and never zero.
fn tokens(chars: usize) -> u64 {
    (chars as u64).div_ceil(4).max(1)
}

/// Serializes a `chat.completion` object for `reply`.
pub(crate) fn completion_body(
    id: u64,
    model: &str,
    turn: u32,
    reply: &Reply,
    prompt_chars: usize,
) -> Vec<u8> {
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
    let completion_chars = reply.content.as_deref().map_or(0, |c| c.chars().count())
        + reply
            .tool_calls
            .iter()
            .map(|c| c.arguments.chars().count())
            .sum::<usize>();
    let prompt_tokens = tokens(prompt_chars);
    let completion_tokens = tokens(completion_chars);
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
pub(crate) fn error_body(message: &str, kind: &str, code: Option<&str>) -> Vec<u8> {
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

    #[test]
    fn token_counts_are_at_least_one() {
        assert_eq!(tokens(0), 1);
        assert_eq!(tokens(4), 1);
        assert_eq!(tokens(5), 2);
    }
}
