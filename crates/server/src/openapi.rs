//! `/openapi.json`: generated from the handlers and the types they take and return.

use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::api;
use crate::problem::Problem;
use crate::routes;

/// The API's document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "chassis",
        description = "The chassis runtime as a service: runs, their streams, approvals, stats."
    ),
    paths(
        routes::healthz,
        routes::readyz,
        routes::metrics,
        routes::me,
        routes::agents,
        routes::reload,
        routes::start_run,
        routes::list_runs,
        routes::get_run,
        routes::events,
        routes::stream_run,
        routes::trace,
        routes::resume,
        routes::cancel,
        routes::inbox,
        routes::approve,
        routes::reject,
        routes::resolve,
        routes::approve_limit,
        routes::reject_limit,
        routes::stats,
        routes::create_token,
        routes::list_tokens,
        routes::revoke_token,
    ),
    components(schemas(
        Problem,
        api::Status,
        api::StartRun,
        api::RunCreated,
        api::Usage,
        api::Waiting,
        api::Run,
        api::RunList,
        api::EventRecord,
        api::EventPage,
        api::Resume,
        api::Cancel,
        api::Cancelled,
        api::Approve,
        api::Reject,
        api::Outcome,
        api::Resolve,
        api::LimitApprove,
        api::Decided,
        api::InboxItem,
        api::AgentInfo,
        api::StatsRow,
        api::ToolDecisions,
        api::Stats,
        api::DayStats,
        api::NewToken,
        api::TokenCreated,
        api::TokenInfo,
        api::Me,
        api::Health,
        crate::auth::Role,
    )),
    modifiers(&Bearer),
    tags(
        (name = "runs", description = "Start, list, follow, resume and cancel runs"),
        (name = "approvals", description = "What waits for a human, and their decisions"),
        (name = "agents", description = "The agents on offer"),
        (name = "stats", description = "Figures per agent version"),
        (name = "tokens", description = "API tokens and their roles"),
        (name = "system", description = "Health, readiness, metrics"),
    )
)]
pub struct Document;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

/// The document, as JSON.
#[utoipa::path(get, path = "/openapi.json", tag = "system", security(("bearer" = [])),
    responses(
        (status = 200, description = "This document", body = Object),
        (status = 401, description = "No or bad token", body = Problem)))]
pub async fn document() -> Response {
    axum::Json(Document::openapi()).into_response()
}
