//! Assembling a reply: from the events of a stream or from one whole body, into the same
//! [`ChatResponse`]. Both dialects stream through here; each only says what its events mean.
//!
//! A [`Draft`] shows every piece to the request's [`Deltas`](crate::Deltas) as it arrives and
//! becomes the response only when the stream is complete. A draft dropped before that (the
//! stream broke, a timeout cancelled the attempt) tells the sink the attempt was abandoned:
//! partial output is never a response.

use std::time::Duration;

use chassis_core::{AssistantMessage, ToolCall, Usage};

use crate::exchange::Answer;
use crate::{ChatRequest, ChatResponse, Deltas, Error, sse};

/// How long a complete stream's trailing bytes (the end of the body) are waited for, so the
/// connection can be reused; a server that keeps the body open (or talking) past its last
/// event is left.
const TRAILER_WAIT: Duration = Duration::from_millis(100);

/// What a stream's events say about the reply, in one dialect.
pub(crate) trait Events {
    /// Applies one event to the draft; `Ok(true)` once the stream says it is complete.
    fn apply(&mut self, event: &sse::Event, draft: &mut Draft) -> Result<bool, Error>;
}

impl<E: Events + ?Sized> Events for &mut E {
    fn apply(&mut self, event: &sse::Event, draft: &mut Draft) -> Result<bool, Error> {
        (**self).apply(event, draft)
    }
}

/// What a stream that ended without a byte fails with: a server that took the request, said
/// 200 and then could not stream it (llama-cpp-python cannot stream an automatic tool choice).
pub(crate) const EMPTY_STREAM: &str = "the stream ended before any event";

/// Whether `error` is a stream that ended without a byte.
pub(crate) fn is_empty_stream(error: &Error) -> bool {
    matches!(error, Error::Connection { message, .. } if message == EMPTY_STREAM)
}

/// Reads a streamed answer to its end into `draft`, or fails on the first thing that breaks
/// it: a cut, a stall past the idle timeout, a chunk that does not parse, an error event, or a
/// body that ends before the stream said it was complete.
pub(crate) async fn read_stream(
    mut answer: Answer,
    mut events: impl Events,
    mut draft: Draft,
    limit: u64,
) -> Result<Draft, Error> {
    let mut parser = sse::Parser::default();
    let mut batch = Vec::new();
    let mut received = false;
    loop {
        let Some(chunk) = answer.chunk().await? else {
            let message = if received {
                "the stream ended before it was complete"
            } else {
                EMPTY_STREAM
            };
            return Err(Error::Connection {
                provider: answer.provider().to_string(),
                message: message.to_string(),
            });
        };
        received |= !chunk.as_ref().is_empty();
        parser
            .feed(chunk.as_ref(), &mut batch)
            .map_err(|message| Error::InvalidResponse {
                provider: answer.provider().to_string(),
                message,
            })?;
        for event in batch.drain(..) {
            let whole = events.apply(&event, &mut draft)?;
            let size = draft.size();
            if size > limit {
                return Err(crate::exchange::too_large(answer.provider(), size, limit));
            }
            if whole {
                // The reply is whole; what may follow (the end of the body) is read only so
                // the connection can serve another call, and only for a moment.
                let deadline = std::time::Instant::now() + TRAILER_WAIT;
                loop {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() || !matches!(answer.chunk_within(left).await, Ok(Some(_))) {
                        break;
                    }
                }
                return Ok(draft);
            }
        }
    }
}

/// A reply being assembled from pieces.
pub(crate) struct Draft {
    deltas: Deltas,
    /// Whether any delta reached the sink, so an abandoned attempt must say so.
    shown: bool,
    /// Whether the draft became a response.
    finished: bool,
    text: String,
    calls: Vec<DraftCall>,
    /// The model that answered, as the provider names it.
    pub(crate) model: Option<String>,
    /// Why the model stopped.
    pub(crate) finish_reason: Option<String>,
    /// Tokens used, as far as the stream said.
    pub(crate) usage: Usage,
}

struct DraftCall {
    index: usize,
    id: String,
    name: String,
    arguments: String,
    announced: bool,
}

impl Draft {
    /// Bytes of the reply so far: its text and every call's name and arguments.
    fn size(&self) -> u64 {
        let calls: usize = self
            .calls
            .iter()
            .map(|c| c.id.len() + c.name.len() + c.arguments.len())
            .sum();
        (self.text.len() + calls) as u64
    }

    /// An empty draft showing its pieces to `deltas`.
    pub(crate) fn new(deltas: Deltas) -> Draft {
        Draft {
            deltas,
            shown: false,
            finished: false,
            text: String::new(),
            calls: Vec::new(),
            model: None,
            finish_reason: None,
            usage: Usage::default(),
        }
    }

    /// A piece of the reply's text.
    pub(crate) fn text(&mut self, piece: &str) {
        if piece.is_empty() {
            return;
        }
        self.text.push_str(piece);
        self.deltas.text(piece);
        self.shown |= self.deltas.is_set();
    }

    fn call(&mut self, index: usize) -> &mut DraftCall {
        let position = match self.calls.iter().position(|c| c.index == index) {
            Some(position) => position,
            None => {
                self.calls.push(DraftCall {
                    index,
                    id: String::new(),
                    name: String::new(),
                    arguments: String::new(),
                    announced: false,
                });
                self.calls.len() - 1
            }
        };
        &mut self.calls[position]
    }

    /// The id of tool call `index`; the first non-empty one counts.
    pub(crate) fn call_id(&mut self, index: usize, id: &str) {
        let call = self.call(index);
        if call.id.is_empty() {
            call.id = id.to_string();
        }
    }

    /// The tool name of call `index`; the first non-empty one counts (some servers repeat it
    /// in every chunk).
    pub(crate) fn call_name(&mut self, index: usize, name: &str) {
        let call = self.call(index);
        if call.name.is_empty() {
            call.name = name.to_string();
        }
        if !name.is_empty() {
            self.announce(index);
        }
    }

    /// A piece of the arguments of call `index`.
    pub(crate) fn call_args(&mut self, index: usize, piece: &str) {
        self.call(index);
        if piece.is_empty() {
            return;
        }
        self.announce(index);
        self.call(index).arguments.push_str(piece);
        self.deltas.tool_args(index, piece);
        self.shown |= self.deltas.is_set();
    }

    /// The arguments of call `index` so far.
    pub(crate) fn args(&self, index: usize) -> Option<&str> {
        self.calls
            .iter()
            .find(|c| c.index == index)
            .map(|c| c.arguments.as_str())
    }

    /// Replaces the arguments of call `index` (a dialect normalizing what its stream sent).
    pub(crate) fn set_args(&mut self, index: usize, arguments: String) {
        self.call(index).arguments = arguments;
    }

    fn announce(&mut self, index: usize) {
        let call = self.call(index);
        if call.announced {
            return;
        }
        call.announced = true;
        let name = call.name.clone();
        self.deltas.tool_call_started(index, &name);
        self.shown |= self.deltas.is_set();
    }

    /// The response, or [`Error::BadReply`] when the reply has neither text nor tool calls.
    pub(crate) fn finish(
        mut self,
        provider: &str,
        request: &ChatRequest<'_>,
    ) -> Result<ChatResponse, Error> {
        let mut calls = std::mem::take(&mut self.calls);
        calls.sort_by_key(|c| c.index);
        let message = AssistantMessage {
            content: (!self.text.is_empty()).then(|| std::mem::take(&mut self.text)),
            tool_calls: calls
                .into_iter()
                .map(|c| ToolCall {
                    id: c.id,
                    name: c.name,
                    arguments: c.arguments,
                })
                .collect(),
        };
        let response = response(
            provider,
            request,
            message,
            self.usage,
            self.model.take(),
            self.finish_reason.take(),
        )?;
        self.finished = true;
        Ok(response)
    }
}

impl Drop for Draft {
    fn drop(&mut self) {
        if self.shown && !self.finished {
            self.deltas.abandon();
        }
    }
}

/// The response for a reply read whole, shown to the deltas in one piece; or
/// [`Error::BadReply`] when it has neither text nor tool calls.
pub(crate) fn whole(
    provider: &str,
    request: &ChatRequest<'_>,
    message: AssistantMessage,
    usage: Usage,
    model: Option<String>,
    finish_reason: Option<String>,
) -> Result<ChatResponse, Error> {
    let response = response(provider, request, message, usage, model, finish_reason)?;
    request.deltas.whole(&response.message);
    Ok(response)
}

fn response(
    provider: &str,
    request: &ChatRequest<'_>,
    message: AssistantMessage,
    usage: Usage,
    model: Option<String>,
    finish_reason: Option<String>,
) -> Result<ChatResponse, Error> {
    if message.content.is_none() && message.tool_calls.is_empty() {
        return Err(bad_reply(
            provider,
            "the reply has neither text nor tool calls",
        ));
    }
    Ok(ChatResponse {
        message,
        usage,
        model: model.unwrap_or_else(|| request.model.to_string()),
        finish_reason,
        served_by: format!("{provider}:{}", request.model),
    })
}

/// [`Error::BadReply`] from `provider`.
pub(crate) fn bad_reply(provider: &str, message: &str) -> Error {
    Error::BadReply {
        provider: provider.to_string(),
        message: message.to_string(),
    }
}

/// [`Error::InvalidResponse`] from `provider`.
pub(crate) fn invalid(provider: &str, message: String) -> Error {
    Error::InvalidResponse {
        provider: provider.to_string(),
        message,
    }
}

/// An error event inside a stream (`{"type": "overloaded_error", "message": …}`), classified
/// as the HTTP status the same error would have come with.
pub(crate) fn error_event(provider: &str, kind: &str, message: &str) -> Error {
    let status = match kind {
        "overloaded_error" => 529,
        "rate_limit_error" | "rate_limit_exceeded" | "requests" | "tokens" => 429,
        "timeout_error" => 504,
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        _ => 500,
    };
    let message = format!(
        "error event in the stream: {}",
        crate::error::truncate(message)
    );
    let body = serde_json::json!({"error": {"type": kind, "message": message}}).to_string();
    crate::exchange::status_error(provider, status, None, body.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Delta, DeltaLog, Reporter};

    fn request(deltas: Deltas) -> ChatRequest<'static> {
        ChatRequest {
            model: "m".into(),
            messages: Vec::new().into(),
            tools: Vec::new().into(),
            max_tokens: None,
            temperature: None,
            report: Reporter::default(),
            deltas,
        }
    }

    #[test]
    fn calls_are_assembled_by_index_and_shown_as_they_come() {
        let log = DeltaLog::default();
        let mut draft = Draft::new(log.deltas());
        draft.text("Let ");
        draft.call_id(1, "b");
        draft.call_name(1, "second");
        draft.call_id(0, "a");
        draft.call_name(0, "first");
        draft.call_args(1, "{\"y\":");
        draft.call_args(0, "{\"x\":1}");
        draft.call_name(0, "first");
        draft.call_args(1, "2}");
        draft.text("me.");
        let response = draft.finish("p", &request(log.deltas())).unwrap();
        assert_eq!(response.message.content.as_deref(), Some("Let me."));
        let calls: Vec<_> = response
            .message
            .tool_calls
            .iter()
            .map(|c| (c.id.as_str(), c.name.as_str(), c.arguments.as_str()))
            .collect();
        assert_eq!(
            calls,
            [("a", "first", "{\"x\":1}"), ("b", "second", "{\"y\":2}")]
        );
        let deltas = log.take();
        assert_eq!(deltas.first(), Some(&Delta::Text("Let ".into())));
        assert_eq!(
            deltas
                .iter()
                .filter(|d| matches!(d, Delta::ToolCallStarted { .. }))
                .count(),
            2,
            "each call is announced once: {deltas:?}"
        );
        assert!(!deltas.contains(&Delta::Abandoned));
    }

    #[test]
    fn a_dropped_draft_abandons_what_it_showed() {
        let log = DeltaLog::default();
        let mut draft = Draft::new(log.deltas());
        draft.text("half");
        drop(draft);
        assert_eq!(
            log.take(),
            [Delta::Text("half".into()), Delta::Abandoned].to_vec()
        );
        // Nothing shown, nothing to abandon.
        drop(Draft::new(log.deltas()));
        assert!(log.take().is_empty());
    }

    #[test]
    fn an_empty_reply_is_a_bad_reply() {
        let err = Draft::new(Deltas::default())
            .finish("p", &request(Deltas::default()))
            .unwrap_err();
        assert!(matches!(err, Error::BadReply { .. }), "{err:?}");
        assert!(!err.is_transient() && !err.is_unavailable() && err.is_retryable());
    }

    #[test]
    fn error_events_are_classified_like_statuses() {
        let overloaded = error_event("p", "overloaded_error", "Overloaded");
        assert!(overloaded.is_transient(), "{overloaded:?}");
        assert_eq!(
            overloaded.to_string(),
            "p: HTTP 529: error event in the stream: Overloaded"
        );
        let invalid = error_event("p", "invalid_request_error", "bad");
        assert!(
            matches!(invalid, Error::Request { status: 400, .. }),
            "{invalid:?}"
        );
    }
}
