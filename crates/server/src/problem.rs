//! Errors as `application/problem+json` (RFC 9457): one response type for every handler, naming
//! the field or the state at fault; internal details are logged, not returned.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// A problem, as every error response of the API carries it.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct Problem {
    /// A URI reference naming the kind of problem (`/problems/…`).
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What was wrong with this request, in words.
    pub detail: String,
    /// The request field at fault, when one is (a JSON pointer into the body, or a query or
    /// path parameter's name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl Problem {
    fn new(status: StatusCode, kind: &str, title: &str, detail: impl Into<String>) -> Problem {
        Problem {
            kind: format!("/problems/{kind}"),
            title: title.to_string(),
            status: status.as_u16(),
            detail: detail.into(),
            field: None,
        }
    }

    /// 400: the request is malformed.
    pub fn bad_request(detail: impl Into<String>) -> Problem {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "Malformed request",
            detail,
        )
    }

    /// 401: no token, or not a live one.
    pub fn unauthorized(detail: impl Into<String>) -> Problem {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Authentication required",
            detail,
        )
    }

    /// 403: the token's role may not do this.
    pub fn forbidden(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::FORBIDDEN, "forbidden", "Not allowed", detail)
    }

    /// 404: no such thing.
    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    /// 409: the state of the run does not allow it (already decided, already ended, driven
    /// elsewhere).
    pub fn conflict(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::CONFLICT, "conflict", "State conflict", detail)
    }

    /// 413: the body is too large.
    pub fn too_large(detail: impl Into<String>) -> Problem {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            "Request body too large",
            detail,
        )
    }

    /// 422: well-formed, but invalid (edited arguments failing the tool's schema).
    pub fn invalid(detail: impl Into<String>) -> Problem {
        Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "Invalid request",
            detail,
        )
    }

    /// 503: the journal cannot be reached.
    pub fn unavailable(detail: impl Into<String>) -> Problem {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service unavailable",
            detail,
        )
    }

    /// 500: something failed that the client cannot fix; the detail stays in the log.
    pub fn internal(error: &dyn std::fmt::Display) -> Problem {
        tracing::error!(error = %error, "request failed");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "the request failed inside chassis; the server's log has the details",
        )
    }

    /// Names the request field at fault.
    pub fn at(mut self, field: impl Into<String>) -> Problem {
        self.field = Some(field.into());
        self
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        response
    }
}

impl From<chassis_engine::Error> for Problem {
    fn from(error: chassis_engine::Error) -> Problem {
        use chassis_engine::Error as E;
        match error {
            E::Store(store) => store.into(),
            E::Invalid(detail) => Problem::invalid(detail),
            E::Refused(detail) => Problem::conflict(detail),
            e @ E::VersionChanged { .. } => Problem::conflict(e.to_string()),
            E::Load(load) => Problem::invalid(load.to_string()),
            e @ E::Replay { .. } => Problem::internal(&e),
        }
    }
}

impl From<chassis_store::Error> for Problem {
    fn from(error: chassis_store::Error) -> Problem {
        use chassis_store::Error as E;
        match error {
            E::RunNotFound(run) => Problem::not_found(format!("run {run} not found")),
            e @ (E::Held { .. }
            | E::SequenceConflict { .. }
            | E::LeaseLost { .. }
            | E::KeyUsed { .. }
            | E::RunExists(_)
            | E::TokenExists(_)) => Problem::conflict(e.to_string()),
            e @ (E::Connect { .. } | E::Closed) => {
                tracing::error!(error = %e, "journal unavailable");
                Problem::unavailable("the journal cannot be reached")
            }
            e => Problem::internal(&e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_are_problem_json_with_their_status() {
        let response = Problem::conflict("call 1.0 was decided already")
            .at("/call")
            .into_response();
        assert_eq!(response.status(), StatusCode::CONFLICT);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        let problem: Problem = Problem::from(chassis_store::Error::RunNotFound("r".into()));
        assert_eq!(problem.status, 404);
        assert_eq!(problem.kind, "/problems/not-found");
    }
}
