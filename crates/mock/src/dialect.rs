//! The wire formats the mock speaks, behind one trait so the server's flow (stats, faults,
//! latency, the scripted answer) is written once for every endpoint.

use axum::http::{HeaderMap, StatusCode};

use crate::reply::{Conversation, Reply};

/// One provider API: how a request is read and how replies and errors are written.
pub(crate) trait Dialect {
    /// The parts of a request the mock reads.
    type Request: Send + Sync;

    /// Reads and checks a request; the error is the message of an invalid-request reply.
    fn read(headers: &HeaderMap, body: &[u8]) -> Result<Self::Request, String>;

    /// The model the request names, if it names one.
    fn model(request: &Self::Request) -> Option<&str>;

    /// What the script sees of the request.
    fn conversation(request: &Self::Request) -> Conversation<'_>;

    /// The body of a successful reply; `id` is unique per server.
    fn reply_body(id: u64, model: &str, conv: &Conversation<'_>, reply: &Reply) -> Vec<u8>;

    /// How the answer is to be streamed, or `None` when the request wants it whole.
    fn stream(request: &Self::Request) -> Option<Streaming>;

    /// The events of a streamed reply, each a complete server-sent event.
    fn stream_events(
        id: u64,
        model: &str,
        conv: &Conversation<'_>,
        reply: &Reply,
        streaming: Streaming,
    ) -> Vec<Vec<u8>>;

    /// What the request says about tools.
    fn tool_use(request: &Self::Request) -> ToolUse;

    /// Whether llama-cpp-python would answer this streamed request with an empty stream: a
    /// request of its dialect (OpenAI's) with `tool_choice` auto.
    fn unstreamable(_request: &Self::Request) -> bool {
        false
    }

    /// The first assistant message that calls tools with `content: null`, if the dialect has
    /// such a thing.
    fn null_tool_call_content(_request: &Self::Request) -> Option<usize> {
        None
    }

    /// The body of an error reply.
    fn error_body(failure: Failure, message: &str) -> Vec<u8>;
}

/// What a request says about tools: whether it offers any, and its `tool_choice`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ToolUse {
    /// No tools offered.
    NoTools,
    /// Tools offered, `tool_choice` unsaid.
    Unsaid,
    /// Tools offered with `tool_choice` none: no tool may be called.
    Forbidden,
    /// Tools offered with `tool_choice` auto: the model chooses.
    Auto,
    /// Tools offered with a `tool_choice` that forces a call (`required`, `any`, a named tool).
    Forced,
}

impl ToolUse {
    /// From whether tools are offered and the request's `tool_choice`, if any; `none` is the
    /// string in OpenAI's dialect, `{"type": "none"}` in Anthropic's.
    pub(crate) fn of(tools: bool, choice: Option<&serde_json::Value>) -> ToolUse {
        match choice {
            _ if !tools => ToolUse::NoTools,
            None => ToolUse::Unsaid,
            Some(choice) if choice == "none" || choice["type"] == "none" => ToolUse::Forbidden,
            Some(choice) if choice == "auto" || choice["type"] == "auto" => ToolUse::Auto,
            Some(_) => ToolUse::Forced,
        }
    }
}

/// How a streamed answer is cut into events.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Streaming {
    /// OpenAI: end with a chunk carrying the usage (`stream_options.include_usage`).
    pub(crate) include_usage: bool,
    /// Longest piece of text or arguments in one event, in characters (at least 1).
    pub(crate) chunk_chars: usize,
}

/// `text` cut into pieces of at most `chars` characters; none for an empty text.
pub(crate) fn pieces(text: &str, chars: usize) -> Vec<&str> {
    let chars = chars.max(1);
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let end = rest
            .char_indices()
            .nth(chars)
            .map_or(rest.len(), |(i, _)| i);
        out.push(&rest[..end]);
        rest = &rest[end..];
    }
    out
}

/// An error the mock answers with, in terms every dialect can express.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The request could not be read, or the script has no answer for it.
    InvalidRequest,
    /// No such endpoint.
    NotFound,
    /// Injected [`FaultKind::RateLimited`](crate::FaultKind::RateLimited).
    RateLimited,
    /// Injected [`FaultKind::ServerError`](crate::FaultKind::ServerError).
    ServerError,
    /// Injected [`FaultKind::Unavailable`](crate::FaultKind::Unavailable).
    Unavailable,
    /// A request without a `User-Agent`, refused as some hosts' firewalls do.
    Forbidden,
    /// A request the server could not validate, answered with 500 as some servers do.
    ValidationCrash,
}

impl Failure {
    /// The HTTP status of the failure, the same in every dialect.
    pub(crate) fn status(self) -> StatusCode {
        match self {
            Failure::InvalidRequest => StatusCode::BAD_REQUEST,
            Failure::NotFound => StatusCode::NOT_FOUND,
            Failure::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Failure::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            Failure::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Failure::Forbidden => StatusCode::FORBIDDEN,
            Failure::ValidationCrash => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_respect_characters() {
        assert_eq!(pieces("hello, world", 5), ["hello", ", wor", "ld"]);
        assert_eq!(pieces("héé", 1), ["h", "é", "é"]);
        assert_eq!(pieces("", 3), Vec::<&str>::new());
        assert_eq!(pieces("ab", 0), ["a", "b"]);
    }
}
