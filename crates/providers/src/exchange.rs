//! The HTTP exchange every client shares: one POST, its status, `Retry-After`, the body read
//! under the timeouts, and every failure mapped to an [`Error`] and classified.
//!
//! A client is then only its dialect: it phrases the request body and reads the successful
//! answer (whole, or as a stream of chunks) into a [`ChatResponse`](crate::ChatResponse).
//!
//! The total timeout bounds the whole attempt, from sending to the last byte read; the idle
//! timeout bounds the silence between two chunks of a streamed answer.

use std::future::Future;
use std::time::{Duration, SystemTime};

use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use reqwest::{RequestBuilder, Url};

use crate::error::{error_message, transient_status, transport_error, truncate};
use crate::http::{HttpOptions, Lanes};
use crate::{Error, Timeouts};

/// One provider endpoint: where calls go and how long they may take.
pub(crate) struct Endpoint {
    provider: String,
    http: Lanes,
    url: Url,
    timeouts: Timeouts,
}

impl Endpoint {
    /// An endpoint posting to `url`; `provider` names it in errors.
    pub(crate) fn new(
        provider: &str,
        url: &str,
        timeouts: Timeouts,
        options: HttpOptions,
    ) -> Result<Endpoint, Error> {
        let url = crate::http::endpoint(provider, url)?;
        let http = Lanes::new(provider, &url, timeouts, options)?;
        Ok(Endpoint {
            provider: provider.to_string(),
            http,
            url,
            timeouts,
        })
    }

    /// The provider's name, as errors show it.
    pub(crate) fn provider(&self) -> &str {
        &self.provider
    }

    /// The URL every call posts to.
    pub(crate) fn url(&self) -> &Url {
        &self.url
    }

    /// One attempt: `prepare` completes the POST (headers, body), `read` turns a successful
    /// answer into the result. An error status never reaches `read`; the total timeout bounds
    /// the whole, `read` included.
    pub(crate) async fn call<T, Fut>(
        &self,
        prepare: impl FnOnce(RequestBuilder) -> RequestBuilder,
        read: impl FnOnce(Answer) -> Fut,
    ) -> Result<T, Error>
    where
        Fut: Future<Output = Result<T, Error>>,
    {
        let lane = self.http.checkout();
        let builder = prepare(lane.client().post(self.url.clone()));
        let total = self.timeouts.total;
        let attempt = async {
            let response = builder
                .send()
                .await
                .map_err(|e| transport_error(&self.provider, total, e))?;
            let status = response.status();
            if !status.is_success() {
                let retry_after = response
                    .headers()
                    .get(RETRY_AFTER)
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
                // Only the message matters: a huge error body is read no further than that.
                let mut response = response;
                let mut body = Vec::new();
                while body.len() < MAX_ERROR_BODY {
                    match response.chunk().await {
                        Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                        Ok(None) => break,
                        Err(e) => return Err(transport_error(&self.provider, total, e)),
                    }
                }
                body.truncate(MAX_ERROR_BODY);
                return Err(status_error(
                    &self.provider,
                    status.as_u16(),
                    retry_after.as_deref(),
                    &body,
                ));
            }
            // Boxed: reading an answer (a stream's assembly above all) is the largest state of
            // a call, and a future is as large as its largest state; boxed, a call waiting for
            // its answer (every run waiting on its model) holds only what sending needs.
            Box::pin(read(Answer {
                response,
                provider: self.provider.clone(),
                total,
                idle: self.timeouts.idle,
            }))
            .await
        };
        let result = tokio::time::timeout(total, attempt)
            .await
            .unwrap_or_else(|_| {
                Err(Error::Timeout {
                    provider: self.provider.clone(),
                    seconds: total.as_secs_f64(),
                })
            });
        drop(lane);
        result
    }
}

/// A successful (2xx) answer whose body is still to be read.
pub(crate) struct Answer {
    response: reqwest::Response,
    provider: String,
    total: Duration,
    idle: Duration,
}

impl Answer {
    /// Whether the body is a server-sent event stream; a server that ignored `stream: true`
    /// answers with one JSON body instead.
    pub(crate) fn is_event_stream(&self) -> bool {
        self.response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("text/event-stream")
            })
    }

    /// The provider's name, as errors show it.
    pub(crate) fn provider(&self) -> &str {
        &self.provider
    }

    /// The whole body, when it is at most `limit` bytes; past that, reading stops and the
    /// attempt fails naming the size, so a hostile or broken server cannot fill the memory.
    pub(crate) async fn bytes(mut self, limit: u64) -> Result<Vec<u8>, Error> {
        let too_large = |seen: u64| too_large(&self.provider, seen, limit);
        if let Some(length) = self.response.content_length()
            && length > limit
        {
            return Err(too_large(length));
        }
        let mut body = Vec::new();
        while let Some(chunk) = self
            .response
            .chunk()
            .await
            .map_err(|e| transport_error(&self.provider, self.total, e))?
        {
            let seen = body.len() as u64 + chunk.len() as u64;
            if seen > limit {
                return Err(too_large(seen));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// The next piece of the body, `None` at its end, within `silence` (at most the idle
    /// timeout).
    pub(crate) async fn chunk_within(
        &mut self,
        silence: Duration,
    ) -> Result<Option<impl AsRef<[u8]> + use<>>, Error> {
        let silence = silence.min(self.idle);
        let stalled = || Error::Stalled {
            provider: self.provider.to_string(),
            seconds: silence.as_secs_f64(),
        };
        match tokio::time::timeout(silence, self.response.chunk()).await {
            Err(_) => Err(stalled()),
            Ok(Ok(chunk)) => Ok(chunk),
            // The client's own read timeout is the idle timeout too.
            Ok(Err(e)) if e.is_timeout() => Err(stalled()),
            Ok(Err(e)) => Err(transport_error(&self.provider, self.total, e)),
        }
    }

    /// The next piece of the body, `None` at its end, within the idle timeout.
    pub(crate) async fn chunk(&mut self) -> Result<Option<impl AsRef<[u8]> + use<>>, Error> {
        self.chunk_within(self.idle).await
    }
}

/// How much of an error answer's body is read: enough for any provider's message.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// A reply past `[limits] max_reply_bytes`: an invalid answer (another attempt, or the next
/// model, may answer within it), named by its size.
pub(crate) fn too_large(provider: &str, seen: u64, limit: u64) -> Error {
    Error::InvalidResponse {
        provider: provider.to_string(),
        message: format!(
            "the reply is larger than {limit} bytes (at least {seen} bytes; \
             [limits] max_reply_bytes); it was not read further"
        ),
    }
}

/// An error status as an [`Error`]: transient ([`Error::Status`]) or a refused request
/// ([`Error::Request`]); the message is the provider's own text.
pub(crate) fn status_error(
    provider: &str,
    status: u16,
    retry_after: Option<&str>,
    body: &[u8],
) -> Error {
    let text = String::from_utf8_lossy(body);
    let mut message = error_message(&text);
    let seconds = retry_after.and_then(|v| crate::parse_retry_after(v, SystemTime::now()));
    // A value that is neither seconds nor a date is still the provider's advice.
    if let (Some(raw), None) = (retry_after, seconds) {
        message = format!("{message} (Retry-After: {})", truncate(raw.trim()));
    }
    let refused = if status == 500 {
        is_validation_error(&text)
    } else {
        !transient_status(status)
    };
    if refused {
        Error::Request {
            provider: provider.to_string(),
            status,
            message,
        }
    } else {
        Error::Status {
            provider: provider.to_string(),
            status,
            message,
            retry_after: seconds,
        }
    }
}

/// Whether an error body says the request itself is invalid. Some OpenAI-compatible servers
/// answer a request they cannot validate with 500 instead of 400: a typed error
/// (`invalid_request_error`, `BadRequestError`) or a validation message (pydantic's "1
/// validation error for …"). Sending the same request again would fail the same way.
pub(crate) fn is_validation_error(body: &str) -> bool {
    const KINDS: [&str; 3] = ["invalid_request", "badrequest", "validation"];
    let typed = |value: &serde_json::Value| {
        value.as_str().is_some_and(|kind| {
            let kind = kind.to_ascii_lowercase();
            KINDS.iter().any(|k| kind.contains(k))
        })
    };
    let said = |text: &str| {
        let text = text.to_ascii_lowercase();
        text.contains("validation error") || text.contains("badrequesterror")
    };
    match serde_json::from_str::<serde_json::Value>(body) {
        Ok(value) => {
            let error = &value["error"];
            typed(&error["type"])
                || typed(&error["code"])
                || error["message"].as_str().is_some_and(said)
                || error.as_str().is_some_and(said)
                || value["message"].as_str().is_some_and(said)
                || value["detail"].as_str().is_some_and(said)
        }
        Err(_) => said(body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified() {
        let kind = |status: u16, body: &str| match status_error("p", status, None, body.as_bytes())
        {
            Error::Status { .. } => "transient",
            Error::Request { .. } => "refused",
            other => panic!("{other:?}"),
        };
        for status in [408, 409, 429, 500, 502, 503, 529] {
            assert_eq!(kind(status, "{}"), "transient", "{status}");
        }
        for status in [301, 400, 401, 403, 404, 413, 422] {
            assert_eq!(kind(status, "{}"), "refused", "{status}");
        }
        let pydantic = r#"{"error":{"message":"1 validation error for ChatCompletionRequest\nmessages.1.content","type":"BadRequestError"}}"#;
        assert_eq!(kind(500, pydantic), "refused");
        assert_eq!(
            kind(
                500,
                r#"{"error":{"message":"x","type":"invalid_request_error"}}"#
            ),
            "refused"
        );
        assert_eq!(
            kind(500, r#"{"detail":"Validation error: messages"}"#),
            "refused"
        );
        assert_eq!(kind(500, "litellm.BadRequestError: content"), "refused");
        assert_eq!(
            kind(500, r#"{"error":{"message":"boom","type":"server_error"}}"#),
            "transient"
        );
        // llama-cpp-python 0.3.36's answer to `content: null` on a tool-calling message, as it
        // came (the middle of its seven errors left out).
        let llama_cpp = r#"{"error":{"message":"7 validation errors:\n  {'type': 'literal_error', 'loc': ('body', 'messages', 1, 'ChatCompletionRequestSystemMessage', 'role'), 'msg': \"Input should be 'system'\", 'input': 'assistant', 'ctx': {'expected': \"'system'\"}}\n  {'type': 'string_type', 'loc': ('body', 'messages', 1, 'ChatCompletionRequestAssistantMessage', 'content'), 'msg': 'Input should be a valid string', 'input': None}\n\n  File \"/venv/lib/python3.11/site-packages/llama_cpp/server/app.py\", line 376, in create_chat_completion\n    POST /v1/chat/completions","type":"internal_server_error","param":null,"code":null}}"#;
        assert_eq!(kind(500, llama_cpp), "refused");
        // Its answer to `tool_choice: "required"` (an assertion failed) says nothing: an outage
        // as far as anyone can tell.
        let silent =
            r#"{"error":{"message":"","type":"internal_server_error","param":null,"code":null}}"#;
        assert_eq!(kind(500, silent), "transient");
        // Only a 500 is read that way: a gateway's 502 is an outage whatever it says.
        assert_eq!(kind(502, pydantic), "transient");
    }

    #[test]
    fn refused_requests_name_provider_status_and_text() {
        let e = status_error(
            "local",
            400,
            None,
            br#"{"error":{"message":"tool_choice is required"}}"#,
        );
        assert_eq!(
            e.to_string(),
            "local: HTTP 400: the request was refused: tool_choice is required"
        );
        assert!(!e.is_transient() && !e.is_unavailable() && !e.is_retryable());
    }

    #[test]
    fn retry_after_is_parsed_or_shown() {
        match status_error("p", 429, Some("7"), b"{}") {
            Error::Status { retry_after, .. } => assert_eq!(retry_after, Some(7)),
            other => panic!("{other:?}"),
        }
        match status_error("p", 503, Some("soon"), b"busy") {
            Error::Status {
                retry_after,
                message,
                ..
            } => {
                assert_eq!(retry_after, None);
                assert_eq!(message, "busy (Retry-After: soon)");
            }
            other => panic!("{other:?}"),
        }
    }
}
