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

    /// The body of an error reply.
    fn error_body(failure: Failure, message: &str) -> Vec<u8>;
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
        }
    }
}
