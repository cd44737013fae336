//! `/openapi.json`: generated from the handlers and the types they take and return.

use axum::response::{IntoResponse, Response};
use serde_json::Value;
use utoipa::openapi::RefOr;
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
        routes::send_message,
        routes::fork_run,
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
        routes::outbox,
        routes::list_schedules,
        routes::create_schedule,
        routes::remove_schedule,
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
        api::SendMessage,
        api::ForkRun,
        api::Forked,
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
        api::HourStats,
        api::NewToken,
        api::TokenCreated,
        api::TokenInfo,
        api::DeliveryState,
        api::Delivery,
        api::NewSchedule,
        api::ScheduleInfo,
        api::Me,
        api::Health,
        api::StreamEvent,
        api::StreamEventKind,
        crate::auth::Role,
    )),
    modifiers(&Bearer, &ProblemJson),
    tags(
        (name = "runs", description = "Start, list, follow, resume and cancel runs"),
        (name = "approvals", description = "What waits for a human, and their decisions"),
        (name = "agents", description = "The agents on offer"),
        (name = "stats", description = "Figures per agent version"),
        (name = "tokens", description = "API tokens and their roles"),
        (name = "outbox", description = "Webhook notifications and their delivery"),
        (name = "schedules", description = "Agents started by cron"),
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

/// Every error answers `application/problem+json` (see `Problem::into_response`); utoipa
/// documents a body as `application/json` unless told, so each response whose body is a
/// `Problem` gets the problem media type here, in one place, for every handler now and later.
struct ProblemJson;

impl Modify for ProblemJson {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.options,
                &mut item.head,
                &mut item.patch,
                &mut item.trace,
            ];
            for operation in operations.into_iter().flatten() {
                for response in operation.responses.responses.values_mut() {
                    let RefOr::T(response) = response else {
                        continue;
                    };
                    let is_problem = response
                        .content
                        .get("application/json")
                        .and_then(|content| content.schema.as_ref())
                        .is_some_and(|schema| {
                            matches!(schema, RefOr::Ref(r) if r.ref_location == "#/components/schemas/Problem")
                        });
                    if is_problem
                        && let Some(content) = response.content.shift_remove("application/json")
                    {
                        response
                            .content
                            .insert("application/problem+json".to_string(), content);
                    }
                }
            }
        }
    }
}

/// The document, as JSON.
#[utoipa::path(get, path = "/openapi.json", tag = "system", security(("bearer" = [])),
    responses(
        (status = 200, description = "This document", body = Object),
        (status = 401, description = "No or bad token", body = Problem)))]
pub async fn document() -> Response {
    axum::Json(json()).into_response()
}

/// The document as served. utoipa 5 writes a link's fields in snake case (`operation_id`,
/// `operation_ref`, `request_body`), which OpenAPI tools do not read; they are renamed to the
/// spec's camel case here.
pub fn json() -> Value {
    let mut document = serde_json::to_value(Document::openapi()).unwrap_or_default();
    let operations = document
        .get_mut("paths")
        .and_then(Value::as_object_mut)
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(Value::as_object_mut)
        .flat_map(|item| item.values_mut());
    for operation in operations {
        let responses = operation
            .get_mut("responses")
            .and_then(Value::as_object_mut)
            .into_iter()
            .flat_map(|responses| responses.values_mut());
        for response in responses {
            let links = response
                .get_mut("links")
                .and_then(Value::as_object_mut)
                .into_iter()
                .flat_map(|links| links.values_mut())
                .filter_map(Value::as_object_mut);
            for link in links {
                for (snake, camel) in [
                    ("operation_id", "operationId"),
                    ("operation_ref", "operationRef"),
                    ("request_body", "requestBody"),
                ] {
                    if let Some(value) = link.remove(snake) {
                        link.insert(camel.to_string(), value);
                    }
                }
            }
        }
    }
    document
}
