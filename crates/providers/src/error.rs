//! Errors of a model call.

/// Why a model call failed; messages never contain credentials.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The provider answered with an error status.
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
    /// No answer within the timeout.
    #[error("{provider}: no answer within {seconds}s")]
    Timeout {
        /// Provider name.
        provider: String,
        /// The timeout that expired.
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
    /// The answer could not be understood.
    #[error("{provider}: invalid response: {message}")]
    InvalidResponse {
        /// Provider name.
        provider: String,
        /// What was wrong.
        message: String,
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
    /// Whether trying again later may succeed (rate limits, 5xx, timeouts, broken connections).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Status { status, .. } => *status == 429 || *status >= 500,
            Error::Timeout { .. } | Error::Connection { .. } => true,
            Error::InvalidResponse { .. } | Error::Config { .. } => false,
        }
    }
}
