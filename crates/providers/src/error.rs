//! Errors of a model call.

/// Why a model call failed; messages never contain credentials.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The provider answered with an error status that may pass (rate limits, 5xx, 408, 409).
    #[error("{provider}: HTTP {status}: {message}")]
    Status {
        /// Provider name.
        provider: String,
        /// HTTP status code.
        status: u16,
        /// The provider's error message (truncated).
        message: String,
        /// `Retry-After`, in seconds, when the provider sent one.
        retry_after: Option<u64>,
    },
    /// The provider refused the request itself (a 4xx other than 408, 409 and 429, or a 500
    /// whose body is a request-validation error): sending it again cannot succeed.
    #[error("{provider}: HTTP {status}: the request was refused: {message}")]
    Request {
        /// Provider name.
        provider: String,
        /// HTTP status code.
        status: u16,
        /// The provider's error message (truncated).
        message: String,
    },
    /// No answer within the timeout.
    #[error("{provider}: no answer within {seconds}s")]
    Timeout {
        /// Provider name.
        provider: String,
        /// The timeout that expired.
        seconds: f64,
    },
    /// A streamed answer fell silent for longer than the idle timeout.
    #[error("{provider}: the answer stalled: nothing received for {seconds}s")]
    Stalled {
        /// Provider name.
        provider: String,
        /// The idle timeout that expired.
        seconds: f64,
    },
    /// The connection failed or broke.
    #[error("{provider}: connection failed: {message}")]
    Connection {
        /// Provider name.
        provider: String,
        /// What the transport said.
        message: String,
    },
    /// The answer could not be understood (not JSON, not the API's shape, a broken stream
    /// chunk): what a proxy or an overloaded host sends.
    #[error("{provider}: invalid response: {message}")]
    InvalidResponse {
        /// Provider name.
        provider: String,
        /// What was wrong.
        message: String,
    },
    /// The answer parsed, but the model said nothing usable (neither text nor tool calls, no
    /// choices): the model erred, the endpoint is up.
    #[error("{provider}: the model gave no usable reply: {message}")]
    BadReply {
        /// Provider name.
        provider: String,
        /// What was missing.
        message: String,
    },
    /// The provider's circuit breaker is open: the call was not attempted.
    #[error(
        "{provider}: circuit open after repeated failures; not calling it until {cooldown_s:.0}s pass"
    )]
    CircuitOpen {
        /// Provider name.
        provider: String,
        /// Seconds until the breaker lets a probe through.
        cooldown_s: f64,
    },
    /// Every model of the fallback chain failed.
    #[error("every model failed: {summary}")]
    Exhausted {
        /// One clause per model: what it last said.
        summary: String,
        /// True when at least one model was only unavailable (worth trying again later).
        unavailable: bool,
    },
    /// The client is not usable as configured (e.g. the API key variable is unset).
    #[error("{provider}: {message}")]
    Config {
        /// Provider name.
        provider: String,
        /// What is wrong.
        message: String,
    },
}

impl Error {
    /// Whether trying again later may succeed (rate limits, 5xx, timeouts, broken connections
    /// and streams).
    ///
    /// A body that does not parse counts: it is what a proxy or an overloaded host sends.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Status { status, .. } => transient_status(*status),
            Error::Timeout { .. }
            | Error::Stalled { .. }
            | Error::Connection { .. }
            | Error::InvalidResponse { .. } => true,
            Error::Request { .. }
            | Error::BadReply { .. }
            | Error::CircuitOpen { .. }
            | Error::Config { .. }
            | Error::Exhausted { .. } => false,
        }
    }

    /// Whether the same call may succeed if made again now: transient failures, and a model
    /// that gave no usable reply (a model call is repeatable, and sampling may differ).
    pub fn is_retryable(&self) -> bool {
        self.is_transient() || matches!(self, Error::BadReply { .. })
    }

    /// Whether the model is unavailable rather than refusing the request: worth waiting for.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Error::CircuitOpen { .. } => true,
            Error::Exhausted { unavailable, .. } => *unavailable,
            other => other.is_transient(),
        }
    }

    /// The provider's `Retry-After`, in seconds, if it sent one.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Error::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Whether an error status may pass by itself: rate limits, server errors, a request timeout
/// (408) and a conflict (409, which providers send for a request that raced another).
pub(crate) fn transient_status(status: u16) -> bool {
    matches!(status, 408 | 409 | 429) || status >= 500
}

/// Longest provider error text kept in an error message.
pub(crate) const MAX_ERROR_TEXT: usize = 500;

/// `text` cut to [`MAX_ERROR_TEXT`] bytes at a character boundary, marked when cut.
pub(crate) fn truncate(text: &str) -> String {
    if text.len() <= MAX_ERROR_TEXT {
        return text.to_string();
    }
    let mut end = MAX_ERROR_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// The provider's message from an error body (`{"error": {"message": …}}`, which OpenAI and
/// Anthropic both use), or the body itself; truncated either way.
pub(crate) fn error_message(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(truncate))
        .unwrap_or_else(|| truncate(body.trim()))
}

/// A transport failure as an [`Error`]: a timeout, or a connection error whose message
/// chains every cause but never the URL (it is ours, and hosts sometimes carry credentials
/// in it).
pub(crate) fn transport_error(
    provider: &str,
    timeout: std::time::Duration,
    e: reqwest::Error,
) -> Error {
    if e.is_timeout() {
        return Error::Timeout {
            provider: provider.to_string(),
            seconds: timeout.as_secs_f64(),
        };
    }
    let e = e.without_url();
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        message = format!("{message}: {cause}");
        source = cause.source();
    }
    Error::Connection {
        provider: provider.to_string(),
        message,
    }
}

/// Parses a `Retry-After` header value: delay-seconds or an HTTP-date.
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<u64> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(seconds);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(now)
            .map(|d| d.as_secs_f64().ceil() as u64)
            .unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        let now = UNIX_EPOCH + Duration::from_secs(1_445_412_470);
        assert_eq!(parse_retry_after(" 7 ", now), Some(7));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(10)
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(0)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// A `Retry-After` header is any text a server chose: a delay or nothing.
            #[test]
            fn retry_after_never_panics(value in any::<String>(), secs in any::<u64>()) {
                let now = UNIX_EPOCH + Duration::from_secs(secs % 10_000_000_000);
                let _ = parse_retry_after(&value, now);
            }
        }
    }
}
