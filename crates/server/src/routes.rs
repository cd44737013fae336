//! The handlers: each one is a library call into the engine or telemetry, checked for the
//! caller's role first. Nothing is journaled for a refused request.

use std::collections::BTreeMap;

use axum::Extension;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chassis_core::LimitName;
use chassis_engine::{Cancelled as EngineCancelled, Resolution, RunQuery, StartOptions};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::api::*;
use crate::auth::{Identity, Role};
use crate::problem::Problem;
use crate::{AppState, stream};

/// A JSON body whose rejections are problems: 400 naming what was wrong, 413 when too large.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Body(value)),
            Err(JsonRejection::BytesRejection(e))
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                Err(Problem::too_large(e.body_text()))
            }
            Err(JsonRejection::JsonDataError(e)) => Err(Problem::bad_request(e.body_text())),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(Problem::bad_request(
                "the body must be JSON, sent with `Content-Type: application/json`",
            )),
            Err(e) => Err(Problem::bad_request(e.body_text())),
        }
    }
}

/// A query string whose rejections are problems naming the parameter.
pub struct Params<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> axum::extract::FromRequestParts<S> for Params<T> {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| Params(value))
            .map_err(|e| Problem::bad_request(e.body_text()))
    }
}

/// Largest integer a parameter may be: the document says `int64`, and a larger one is refused
/// rather than read as a `u64` the document does not allow.
const MAX_INT64: u64 = i64::MAX as u64;

/// `value` of the parameter `name`, refused above `MAX_INT64`.
fn int64<T: Copy + Into<u128>>(value: Option<T>, name: &str) -> Result<Option<T>, Problem> {
    match value {
        Some(v) if v.into() > u128::from(MAX_INT64) => {
            Err(Problem::bad_request(format!("{name} must be at most {MAX_INT64}")).at(name))
        }
        other => Ok(other),
    }
}

fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response {
    (status, axum::Json(value)).into_response()
}

/// Parses `{limit: value}` raises: numbers, or durations for the duration limits.
fn parse_raises(raise: &BTreeMap<String, Value>) -> Result<Vec<(LimitName, f64)>, Problem> {
    raise
        .iter()
        .map(|(name, value)| {
            let field = format!("/raise/{name}");
            let limit = LimitName::parse(name).ok_or_else(|| {
                let known: Vec<&str> = LimitName::ALL.iter().map(|l| l.as_str()).collect();
                Problem::bad_request(format!(
                    "unknown limit `{name}` (known: {})",
                    known.join(", ")
                ))
                .at(field.clone())
            })?;
            let text = match value {
                Value::Number(n) => n.to_string(),
                Value::String(s) => s.clone(),
                other => {
                    return Err(Problem::bad_request(format!(
                        "{name}: expected a number or a duration string, got {other}"
                    ))
                    .at(field));
                }
            };
            let value = limit
                .parse_value(&text)
                .map_err(|e| Problem::bad_request(e).at(field))?;
            Ok((limit, value))
        })
        .collect()
}

/// The run as it stands after a decision, and whether the decision woke it.
async fn decided(state: &AppState, run_id: &str) -> Result<Response, Problem> {
    let decided = state.engine().decided(run_id).await?;
    Ok(json(
        StatusCode::OK,
        &Decided {
            run: decided.run.into(),
            woken: decided.woken,
        },
    ))
}

/// Liveness: the process answers. No token needed.
#[utoipa::path(get, path = "/healthz", tag = "system",
    responses((status = 200, description = "The server is up", body = Health)))]
pub async fn healthz() -> Response {
    json(
        StatusCode::OK,
        &Health {
            status: "ok".into(),
        },
    )
}

/// Readiness: the journal answers.
#[utoipa::path(get, path = "/readyz", tag = "system", security(("bearer" = [])),
    responses(
        (status = 200, description = "The journal is reachable", body = Health),
        (status = 401, description = "No or bad token", body = Problem),
        (status = 503, description = "The journal cannot be reached", body = Problem)))]
pub async fn readyz(State(state): State<AppState>) -> Result<Response, Problem> {
    state
        .journal()
        .list(&chassis_store::ListFilter {
            limit: Some(1),
            ..chassis_store::ListFilter::default()
        })
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "readiness: the journal does not answer");
            Problem::unavailable("the journal cannot be reached")
        })?;
    Ok(json(
        StatusCode::OK,
        &Health {
            status: "ok".into(),
        },
    ))
}

/// Prometheus metrics of the runs this server drives, and the journal's gauges.
#[utoipa::path(get, path = "/metrics", tag = "system", security(("bearer" = [])),
    responses(
        (status = 200, description = "Prometheus text format", content_type = "text/plain", body = String),
        (status = 401, description = "No or bad token", body = Problem)))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    let text = state.metrics().render().await;
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// Who the caller is.
#[utoipa::path(get, path = "/v1/me", tag = "system", security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's token", body = Me),
        (status = 401, description = "No or bad token", body = Problem)))]
pub async fn me(Extension(who): Extension<Identity>) -> Response {
    json(
        StatusCode::OK,
        &Me {
            name: who.name,
            role: who.role,
        },
    )
}

/// The agents on offer, with their versions.
#[utoipa::path(get, path = "/v1/agents", tag = "agents", security(("bearer" = [])),
    responses(
        (status = 200, description = "The agents", body = Vec<AgentInfo>),
        (status = 401, description = "No or bad token", body = Problem)))]
pub async fn agents(State(state): State<AppState>) -> Response {
    let agents: Vec<AgentInfo> = state
        .registry()
        .all()
        .iter()
        .map(|a| AgentInfo {
            name: a.spec.name.clone(),
            version: a.version.clone(),
            version_label: a.spec.version.clone(),
            model: a.spec.model.to_string(),
            tools: a.tool_defs.iter().map(|t| t.name.clone()).collect(),
            spec_path: a.spec_path.display().to_string(),
        })
        .collect();
    json(StatusCode::OK, &agents)
}

/// Loads the agents directory again (as SIGHUP does); a bad spec keeps the agents as they
/// were.
#[utoipa::path(post, path = "/v1/agents/reload", tag = "agents", security(("bearer" = [])),
    responses(
        (status = 200, description = "The agents now on offer", body = Vec<AgentInfo>),
        (status = 401, description = "No or bad token", body = Problem),
        (status = 403, description = "Not an admin token", body = Problem),
        (status = 422, description = "A spec is invalid; nothing changed", body = Problem)))]
pub async fn reload(
    State(state): State<AppState>,
    Extension(who): Extension<Identity>,
) -> Result<Response, Problem> {
    who.require(Role::Admin)?;
    state
        .registry()
        .reload(state.engine())
        .await
        .map_err(|e| Problem::invalid(e.to_string()))?;
    Ok(agents(State(state)).await)
}

/// Starts a run; workers drive it. The same `Idempotency-Key` returns the same run.
#[utoipa::path(post, path = "/v1/runs", tag = "runs", security(("bearer" = [])),
    request_body = StartRun,
    params(("Idempotency-Key" = Option<String>, Header, nullable = false, description = "Retrying with the same key returns the run it first started")),
    responses(
        (status = 201, description = "The run was started", body = RunCreated,
            links(
                ("get_run" = (operation_id = "get_run", parameters(("id" = "$response.body#/run_id")))),
                ("events" = (operation_id = "events", parameters(("id" = "$response.body#/run_id")))),
                ("stream" = (operation_id = "stream_run", parameters(("id" = "$response.body#/run_id")))),
                ("trace" = (operation_id = "trace", parameters(("id" = "$response.body#/run_id")))),
                ("cancel" = (operation_id = "cancel", parameters(("id" = "$response.body#/run_id")))),
                ("resume" = (operation_id = "resume", parameters(("id" = "$response.body#/run_id")))),
                ("approve" = (operation_id = "approve", parameters(("id" = "$response.body#/run_id")))),
                ("reject" = (operation_id = "reject", parameters(("id" = "$response.body#/run_id")))),
                ("resolve" = (operation_id = "resolve", parameters(("id" = "$response.body#/run_id")))),
                ("approve_limit" = (operation_id = "approve_limit", parameters(("id" = "$response.body#/run_id")))),
                ("reject_limit" = (operation_id = "reject_limit", parameters(("id" = "$response.body#/run_id"))))
            )),
        (status = 200, description = "The key had started this run before", body = RunCreated),
        (status = 400, description = "Malformed body", body = Problem),
        (status = 401, description = "No or bad token", body = Problem),
        (status = 403, description = "Not an operator token", body = Problem),
        (status = 404, description = "No such agent", body = Problem),
        (status = 413, description = "Body too large", body = Problem),
        (status = 422, description = "The input cannot start a run (the prompt does not render)", body = Problem)))]
pub async fn start_run(
    State(state): State<AppState>,
    Extension(who): Extension<Identity>,
    headers: HeaderMap,
    Body(request): Body<StartRun>,
) -> Result<Response, Problem> {
    who.require(Role::Operator)?;
    let agent = state.registry().get(&request.agent).ok_or_else(|| {
        Problem::not_found(format!("no agent `{}` (see GET /v1/agents)", request.agent))
            .at("/agent")
    })?;
    let key = headers
        .get("idempotency-key")
        .map(|v| {
            v.to_str().map(str::to_string).map_err(|_| {
                Problem::bad_request("Idempotency-Key must be text").at("Idempotency-Key")
            })
        })
        .transpose()?;
    let options = StartOptions {
        tags: request.tags.unwrap_or_default(),
        idempotency_key: key,
        vars: request.vars.unwrap_or_default(),
    };
    let submitted = state
        .engine()
        .submit_with(&agent, &request.input, options)
        .await?;
    // A new run is queued under the agent's version; one the key started before is read back
    // (it may have moved on, under another version).
    let (code, status, version) = if submitted.existing {
        let view = state.engine().run_view(&submitted.run_id).await?;
        (StatusCode::OK, view.status, view.version)
    } else {
        (
            StatusCode::CREATED,
            chassis_core::RunStatus::Running,
            agent.version.clone(),
        )
    };
    Ok(json(
        code,
        &RunCreated {
            run_id: submitted.run_id,
            status: status.into(),
            version,
            existing: submitted.existing,
        },
    ))
}

/// Lists runs, newest first, a page at a time.
#[utoipa::path(get, path = "/v1/runs", tag = "runs", security(("bearer" = [])),
    params(RunFilter),
    responses(
        (status = 200, description = "A page of runs", body = RunList),
        (status = 400, description = "A bad filter", body = Problem),
        (status = 401, description = "No or bad token", body = Problem)))]
pub async fn list_runs(
    State(state): State<AppState>,
    Params(filter): Params<RunFilter>,
) -> Result<Response, Problem> {
    let (status, queued) = match filter.status.as_deref() {
        None => (None, false),
        Some("queued") => (None, true),
        Some(text) => {
            let status = chassis_core::RunStatus::parse(text).ok_or_else(|| {
                Problem::bad_request(format!(
                    "unknown status `{text}` (use queued, running, waiting, paused, completed, failed or cancelled)"
                ))
                .at("status")
            })?;
            (Some(status), false)
        }
    };
    let tag = filter
        .tag
        .as_deref()
        .map(|t| {
            t.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| Problem::bad_request("tag must be KEY=VALUE").at("tag"))
        })
        .transpose()?;
    let page = state
        .engine()
        .list_runs(&RunQuery {
            status,
            queued,
            agent: filter.agent,
            version: filter.version,
            tag,
            since_ms: filter.since_ms,
            until_ms: filter.until_ms,
            cursor: filter.cursor,
            forked_from: filter.forked_from,
            limit: int64(filter.limit.map(|l| l as u64), "limit")?.map_or(50, |l| l as usize),
        })
        .await
        .map_err(|e| match e {
            chassis_engine::Error::Invalid(detail) => Problem::bad_request(detail).at("cursor"),
            other => other.into(),
        })?;
    Ok(json(
        StatusCode::OK,
        &RunList {
            runs: page.runs.into_iter().map(Run::from).collect(),
            next: page.next,
        },
    ))
}

/// One run: status, output, usage and cost against its limits, what it waits for.
#[utoipa::path(get, path = "/v1/runs/{id}", tag = "runs", security(("bearer" = [])),
    params(("id" = String, Path, description = "The run")),
    responses(
        (status = 200, description = "The run", body = Run),
        (status = 401, description = "No or bad token", body = Problem),
        (status = 404, description = "No such run", body = Problem)))]
pub async fn get_run(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let view = state.engine().run_view(&id).await?;
    Ok(json(StatusCode::OK, &Run::from(view)))
}

/// A run's journaled events after a sequence number, as a page.
#[utoipa::path(get, path = "/v1/runs/{id}/events", tag = "runs", security(("bearer" = [])),
    params(("id" = String, Path, description = "The run"), EventsQuery),
    responses(
        (status = 200, description = "Events after `after`", body = EventPage),
        (status = 400, description = "A bad parameter", body = Problem),
        (status = 401, description = "No or bad token", body = Problem),
        (status = 404, description = "No such run", body = Problem)))]
pub async fn events(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Params(query): Params<EventsQuery>,
) -> Result<Response, Problem> {
    let after = int64(query.after, "after")?.unwrap_or(0);
    let limit = int64(query.limit.map(|l| l as u64), "limit")?.map_or(1000, |l| l as usize);
    let limit = limit.clamp(1, 10_000);
    let records = state.journal().load_after(&id, after).await?;
    let page: Vec<_> = records.into_iter().take(limit).collect();
    let last_seq = page.last().map_or(after, |r| r.seq);
    let ended = state.engine().load(&id).await?.status().is_terminal()
        && state.journal().load_after(&id, last_seq).await?.is_empty();
    Ok(json(
        StatusCode::OK,
        &EventPage {
            events: page.iter().map(|r| EventRecord(r.to_json())).collect(),
            last_seq,
            ended,
        },
    ))
}

/// Follows a run as Server-Sent Events: each journaled event once it is durable (`id:` its
/// sequence number, `event: event`, data the event's JSON), heartbeats, and the end after a
/// terminal event. `Last-Event-ID` (or `?after=`) resumes with no gap and no duplicate.
#[utoipa::path(get, path = "/v1/runs/{id}/stream", tag = "runs", security(("bearer" = [])),
    params(("id" = String, Path, description = "The run"), StreamQuery,
           ("Last-Event-ID" = Option<u64>, Header, nullable = false, description = "The last sequence number received")),
    responses(
        (status = 200, description = "An event stream; the schema is one event's", content_type = "text/event-stream", body = StreamEvent),
        (status = 400, description = "A bad cursor", body = Problem),
        (status = 401, description = "No or bad token", body = Problem),
        (status = 404, description = "No such run", body = Problem)))]
pub async fn stream_run(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Params(query): Params<StreamQuery>,
) -> Result<Response, Problem> {
    let from_header = headers
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    Problem::bad_request("Last-Event-ID must be a sequence number")
                        .at("Last-Event-ID")
                })
        })
        .transpose()?;
    // The run must exist: a 404 now, rather than an error inside the stream.
    let found = state
        .journal()
        .list(&chassis_store::ListFilter {
            run_id: Some(id.clone()),
            ..chassis_store::ListFilter::default()
        })
        .await?;
    if found.is_empty() {
        return Err(Problem::not_found(format!("run {id} not found")));
    }
    let after = int64(from_header, "Last-Event-ID")?
        .or(int64(query.after, "after")?)
        .unwrap_or(0);
    Ok(stream::follow(state.journal().clone(), state.hub(), id, after).into_response())
}

/// A run as a tree in time: steps, model and tool calls, waits, with durations.
#[utoipa::path(get, path = "/v1/runs/{id}/trace", tag = "runs", security(("bearer" = [])),
    params(("id" = String, Path, description = "The run")),
    responses(
        (status = 200, description = "The run's timeline", body = Object),
        (status = 401, description = "No or bad token", body = Problem),
        (status = 404, description = "No such run", body = Problem)))]
pub async fn trace(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let records = state.journal().load(&id).await?;
    let timeline = chassis_telemetry::timeline::build(&id, &records)
        .ok_or_else(|| Problem::internal(&format!("run {id}: its journal does not fold")))?;
    Ok(json(StatusCode::OK, &timeline))
}

/// Continues a stopped run (raising limits first): one write, which wakes it for the
/// workers.
#[utoipa::path(post, path = "/v1/runs/{id}/resume", tag = "runs", security(("bearer" = [])),
    params(("id" = String, Path, description = "The run")),
    request_body = Resume,
    responses(
        (status = 200, description = "The run after the request", body = Decided),
        (status = 400, description = "Malformed body or a bad raise", body = Problem),
        (status = 401, description = "No or bad token", body = Problem),
        (status = 403, description = "Not an operator token", body = Problem),
        (status = 404, description = "No such run", body = Problem),
        (status = 409, description = "The run has ended", body = Problem)))]
pub async fn resume(
    State(state): State<AppState>,
    Extension(who): Extension<Identity>,
    Path(id): Path<String>,
    Body(request): Body<Resume>,
) -> Result<Response, Problem> {
    who.require(Role::Operator)?;
    let raises = parse_raises(&request.raise.unwrap_or_default())?;
    state
        .engine()
        .request_resume(&id, &raises, &who.name)
        .await?;
    decided(&state, &id).await
}

/// Continues a completed run with a new user message (a thread's next turn): one write, which
/// wakes it for the workers; its next model call sees the whole conversation.
#[utoipa::path(post, path = "/v1/runs/{id}/messages", tag = "runs", security(("bearer" = [])),
    params(("id" = String, Path, description = "The run")),
    request_body = SendMessage,
    responses(
        (status = 200, description = "The run after the message: running again", body = Decided),
        (status = 400, description = "Malformed body", body = Problem),
        (status = 401, description = "No or bad token", body = Problem),
        (status = 403, description = "Not an operator token", body = Problem),
        (status = 404, description = "No such run", body = Problem),
        (status = 409, description = "The run has no answer to continue from (running, waiting, paused, failed or cancelled)", body = Problem),
        (status = 422, description = "An empty message", body = Problem)))]
pub async fn send_message(
    State(state): State<AppState>,
    Extension(who): Extension<Identity>,
    Path(id): Path<String>,
    Body(request): Body<SendMessage>,
) -> Result<Response, Problem> {
    who.require(Role::Operator)?;
    state
        .engine()
        .send_message(&id, &request.text, &who.name)
        .await?;
    decided(&state, &id).await
}

/// Forks a run: a new run whose history is the run's first `at` events (nothing of them runs
/// again), optionally followed by a user message; the workers drive it from there.
#[utoipa::path(post, path = "/v1/runs/{id}/fork", tag = "runs", security(("bearer" = [])),
    params(("id" = String, Path, description = "The run to fork")),
    request_body = ForkRun,
    responses(
        (status = 201, description = "The fork", body = Forked),
        (status = 400, description = "Malformed body", body = Problem),
        (status = 401, description = "No or bad token", body = Problem),
        (status = 403, description = "Not an operator token", body = Problem),
        (status = 404, description = "No such run", body = Problem),
        (status = 409, description = "The copy would end failed or cancelled, or completed without a message, or a message would follow a call without its result", body = Problem),
        (status = 422, description = "`at` outside the run's events, or an empty message", body = Problem)))]
pub async fn fork_run(
    State(state): State<AppState>,
    Extension(who): Extension<Identity>,
    Path(id): Path<String>,
    Body(request): Body<ForkRun>,
) -> Result<Response, Problem> {
    who.require(Role::Operator)?;
    let fork = state
        .engine()
        .fork(&id, request.at, request.input.as_deref(), &who.name)
        .await?;
    let run = state.engine().load(&fork).await?;
    Ok(json(
        StatusCode::CREATED,
        &Forked {
            run_id: fork,
            forked_from: id,
            at: request.at,
            status: run.status().into(),
        },
    ))
}

/// Cancels a run: it stops at its next safe point (never inside a call that may not be
/// repeated), with who and why journaled.
#[utoipa::path(post, path = "/v1/runs/{id}/cancel", tag = "runs", security(("bearer" = [])),
    params(("id" = String, Path, description = "The run")),
    request_body = Cancel,
    responses(
        (status = 200, description = "Cancelled, or being cancelled by its driver", body = Cancelled),
        (status = 400, description = "Malformed body", body = Problem),
        (status = 401, description = "No or bad token", body = Problem),
        (status = 403, description = "Not an operator token", body = Problem),
        (status = 404, description = "No such run", body = Problem),
        (status = 409, description = "The run has ended", body = Problem)))]
pub async fn cancel(
    State(state): State<AppState>,
    Extension(who): Extension<Identity>,
    Path(id): Path<String>,
    Body(request): Body<Cancel>,
) -> Result<Response, Problem> {
    who.require(Role::Operator)?;
    let outcome = state
        .engine()
        .cancel(&id, &who.name, &request.reason)
        .await?;
    let body = match outcome {
        EngineCancelled::Ended(outcome) => Cancelled {
            run_id: id,
            status: outcome.status.as_str().to_string(),
            driver: None,
        },
        EngineCancelled::Requested { driver } => Cancelled {
            run_id: id,
            status: "cancelling".into(),
            driver: Some(driver),
        },
    };
    Ok(json(StatusCode::OK, &body))
}

/// Everything waiting for a human, oldest first.
#[utoipa::path(get, path = "/v1/approvals", tag = "approvals", security(("bearer" = [])),
    responses(
        (status = 200, description = "The inbox", body = Vec<InboxItem>),
        (status = 401, description = "No or bad token", body = Problem)))]
pub async fn inbox(State(state): State<AppState>) -> Result<Response, Problem> {
    let items = state.engine().inbox().await?;
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let run = state.engine().load(&item.run_id).await.ok();
        let args_schema = run
            .as_ref()
            .and_then(|r| r.tool(&item.tool))
            .map(|t| t.parameters.clone());
        out.push(InboxItem {
            input: run.map(|r| r.input),
            args_schema,
            run_id: item.run_id,
            agent: item.agent,
            kind: item.kind,
            call_id: item.call_id,
            tool: item.tool,
            args: item.args,
            risk: item.risk,
            reason: item.reason,
            context: item.context,
            requested_at_ms: item.requested_at_ms,
            expires_at_ms: item.expires_at_ms,
            expired: item.expired,
            escalated: item.escalated,
            idempotency_key: item.idempotency_key,
        });
    }
    Ok(json(StatusCode::OK, &out))
}

/// Approves a pending call, optionally with edited arguments (checked against the tool's
/// schema: 422 with the schema error, nothing recorded).
#[utoipa::path(post, path = "/v1/runs/{id}/calls/{call}/approve", tag = "approvals", security(("bearer" = [])),
    params(("id" = String, Path, description = "The run"), ("call" = String, Path, description = "The call, `STEP.INDEX`")),
    request_body = Approve,
    responses(
        (status = 200, description = "Approved", body = Decided),
        (status = 400, description = "Malformed body", body = Problem),
        (status = 401, description = "No or bad token", body = Problem),
        (status = 403, description = "Not an approver token", body = Problem),
        (status = 404, description = "No such run", body = Problem),
        (status = 409, description = "The call does not wait for approval (decided already?)", body = Problem),
        (status = 422, description = "The edited arguments fail the tool's schema", body = Problem)))]
pub async fn approve(
    State(state): State<AppState>,
    Extension(who): Extension<Identity>,
    Path((id, call)): Path<(String, String)>,
    Body(request): Body<Approve>,
) -> Result<Response, Problem> {
    who.require(Role::Approver)?;
    let args = request.args.map(|a| a.to_string());
    state
        .engine()
        .decide_approval(
            &id,
            &call,
            true,
            args.as_deref(),
            &who.name,
            request.note,
            None,
        )
        .await
        .map_err(|e| match e {
            chassis_engine::Error::Invalid(detail) => Problem::invalid(detail).at("/args"),
            other => other.into(),
        })?;
    decided(&state, &id).await
}

/// Rejects a pending call; the model gets the reason as the call's result.
#[utoipa::path(post, path = "/v1/runs/{id}/calls/{call}/reject", tag = "approvals", security(("bearer" = [])),
    params(("id" = String, Path, description = "The run"), ("call" = String, Path, description = "The call, `STEP.INDEX`")),
    request_body = Reject,
    responses(
        (status = 200, description = "Rejected", body = Decided),
        (status = 400, description = "Malformed body", body = Problem),
        (status = 401, description = "No or bad token", body = Problem),
        (status = 403, description = "Not an approver token", body = Problem),
        (status = 404, description = "No such run", body = Problem),
        (status = 409, description = "The call does not wait for approval", body = Problem)))]
pub async fn reject(
    State(state): State<AppState>,
    Extension(who): Extension<Identity>,
    Path((id, call)): Path<(String, String)>,
    Body(request): Body<Reject>,
) -> Result<Response, Problem> {
    who.require(Role::Approver)?;
    state
        .engine()
        .decide_approval(
            &id,
            &call,
            false,
            None,
            &who.name,
            request.note,
            Some(request.reason),
        )
        .await?;
    decided(&state, &id).await
}

/// Settles a call whose outcome is unknown.
#[utoipa::path(post, path = "/v1/runs/{id}/calls/{call}/resolve", tag = "approvals", security(("bearer" = [])),
    params(("id" = String, Path, description = "The run"), ("call" = String, Path, description = "The call, `STEP.INDEX`")),
    request_body = Resolve,
    responses(
        (status = 200, description = "Settled", body = Decided),
        (status = 400, description = "Malformed body", body = Problem),
        (status = 401, description = "No or bad token", body = Problem),
        (status = 403, description = "Not an approver token", body = Problem),
        (status = 404, description = "No such run", body = Problem),
        (status = 409, description = "The call's outcome is not unknown", body = Problem)))]
pub async fn resolve(
    State(state): State<AppState>,
    Extension(who): Extension<Identity>,
    Path((id, call)): Path<(String, String)>,
    Body(request): Body<Resolve>,
) -> Result<Response, Problem> {
    who.require(Role::Approver)?;
    let resolution = match request.outcome {
        Outcome::Succeeded => Resolution::Succeeded {
            result: request.result,
        },
        Outcome::Failed => Resolution::Failed {
            reason: request.reason,
        },
        Outcome::Retry => Resolution::Retry,
    };
    state
        .engine()
        .resolve_outcome(&id, &call, resolution, &who.name, request.note)
        .await?;
    decided(&state, &id).await
}

/// Raises an escalated (or paused-at) limit; the run continues.
#[utoipa::path(post, path = "/v1/runs/{id}/limit/approve", tag = "approvals", security(("bearer" = [])),
    params(("id" = String, Path, description = "The run")),
    request_body = LimitApprove,
    responses(
        (status = 200, description = "Raised", body = Decided),
        (status = 400, description = "Malformed body or a bad raise", body = Problem),
        (status = 401, description = "No or bad token", body = Problem),
        (status = 403, description = "Not an approver token", body = Problem),
        (status = 404, description = "No such run", body = Problem),
        (status = 409, description = "The run has ended or waits on no limit", body = Problem),
        (status = 422, description = "The raise does not include the limit the run waits on", body = Problem)))]
pub async fn approve_limit(
    State(state): State<AppState>,
    Extension(who): Extension<Identity>,
    Path(id): Path<String>,
    Body(request): Body<LimitApprove>,
) -> Result<Response, Problem> {
    who.require(Role::Approver)?;
    let raises = parse_raises(&request.raise)?;
    if raises.is_empty() {
        return Err(Problem::bad_request("raise at least one limit").at("/raise"));
    }
    state
        .engine()
        .approve_limit(&id, &raises, &who.name)
        .await?;
    decided(&state, &id).await
}

/// Refuses an escalated limit: the run fails with the reason.
#[utoipa::path(post, path = "/v1/runs/{id}/limit/reject", tag = "approvals", security(("bearer" = [])),
    params(("id" = String, Path, description = "The run")),
    request_body = Reject,
    responses(
        (status = 200, description = "Refused", body = Decided),
        (status = 400, description = "Malformed body", body = Problem),
        (status = 401, description = "No or bad token", body = Problem),
        (status = 403, description = "Not an approver token", body = Problem),
        (status = 404, description = "No such run", body = Problem),
        (status = 409, description = "The run has no limit request", body = Problem)))]
pub async fn reject_limit(
    State(state): State<AppState>,
    Extension(who): Extension<Identity>,
    Path(id): Path<String>,
    Body(request): Body<Reject>,
) -> Result<Response, Problem> {
    who.require(Role::Approver)?;
    state
        .engine()
        .refuse_limit(&id, &who.name, &request.reason)
        .await?;
    decided(&state, &id).await
}

fn row(f: &chassis_telemetry::stats::Figures) -> StatsRow {
    StatsRow {
        agent: f.agent.clone(),
        version: f.version.clone(),
        runs: f.runs,
        completed: f.completed,
        failed: f.failed,
        cancelled: f.cancelled,
        stopped: f.stopped,
        escalated: f.escalated,
        completion_rate: f.completion_rate(),
        error_rate: f.error_rate(),
        escalation_rate: f.escalation_rate(),
        avg_cost_usd: f.avg_cost_usd(),
        avg_wall_ms: f.avg_wall_ms(),
        avg_steps: f.avg_steps(),
    }
}

/// Completion, error and escalation rates, cost and time, per agent version and per day, and
/// approval decisions per tool.
#[utoipa::path(get, path = "/v1/stats", tag = "stats", security(("bearer" = [])),
    params(StatsQuery),
    responses(
        (status = 200, description = "The figures", body = Stats),
        (status = 400, description = "A bad filter", body = Problem),
        (status = 401, description = "No or bad token", body = Problem)))]
pub async fn stats(
    State(state): State<AppState>,
    Params(query): Params<StatsQuery>,
) -> Result<Response, Problem> {
    let report = chassis_telemetry::stats::report_cached(
        state.journal().as_ref(),
        &chassis_telemetry::stats::ReportFilter {
            agent: query.agent,
            version: query.version,
            since_ms: query.since_ms,
            status: None,
            include_eval: query.include_eval.unwrap_or(false),
        },
        state.stats_cache(),
    )
    .await?;
    Ok(json(
        StatusCode::OK,
        &Stats {
            total: row(&report.total),
            by_version: report.by_version.iter().map(row).collect(),
            by_day: report
                .by_day
                .iter()
                .map(|(day, rows)| DayStats {
                    day: day.clone(),
                    rows: rows.iter().map(row).collect(),
                })
                .collect(),
            by_hour: report
                .by_hour
                .iter()
                .map(|(hour, rows)| HourStats {
                    hour: hour.clone(),
                    rows: rows.iter().map(row).collect(),
                })
                .collect(),
            tools: report
                .tools
                .into_iter()
                .map(|t| ToolDecisions {
                    tool: t.tool,
                    requested: t.requested,
                    approved: t.approved,
                    edited: t.edited,
                    rejected: t.rejected,
                })
                .collect(),
        },
    ))
}

/// Makes a token: shown in this response only.
#[utoipa::path(post, path = "/v1/tokens", tag = "tokens", security(("bearer" = [])),
    request_body = NewToken,
    responses(
        (status = 201, description = "The token, shown once", body = TokenCreated),
        (status = 400, description = "Malformed body or a bad name", body = Problem),
        (status = 401, description = "No or bad token", body = Problem),
        (status = 403, description = "Not an admin token", body = Problem),
        (status = 409, description = "A live token has this name", body = Problem)))]
pub async fn create_token(
    State(state): State<AppState>,
    Extension(who): Extension<Identity>,
    Body(request): Body<NewToken>,
) -> Result<Response, Problem> {
    who.require(Role::Admin)?;
    let token = crate::auth::create(
        state.journal().as_ref(),
        &request.name,
        request.role.as_str(),
    )
    .await
    .map_err(|e| match e {
        crate::auth::Error::Store(store) => Problem::from(store),
        other => Problem::bad_request(other.to_string()).at("/name"),
    })?;
    Ok(json(
        StatusCode::CREATED,
        &TokenCreated {
            name: request.name,
            role: request.role,
            token,
        },
    ))
}

/// Lists tokens (never the tokens themselves).
#[utoipa::path(get, path = "/v1/tokens", tag = "tokens", security(("bearer" = [])),
    responses(
        (status = 200, description = "Every token, revoked ones too", body = Vec<TokenInfo>),
        (status = 401, description = "No or bad token", body = Problem),
        (status = 403, description = "Not an admin token", body = Problem)))]
pub async fn list_tokens(
    State(state): State<AppState>,
    Extension(who): Extension<Identity>,
) -> Result<Response, Problem> {
    who.require(Role::Admin)?;
    let tokens: Vec<TokenInfo> = state
        .journal()
        .tokens()
        .await?
        .into_iter()
        .map(|t| TokenInfo {
            name: t.name,
            role: t.role,
            created_ms: t.created_ms,
            revoked_ms: t.revoked_ms,
        })
        .collect();
    Ok(json(StatusCode::OK, &tokens))
}

/// Revokes a token.
#[utoipa::path(delete, path = "/v1/tokens/{name}", tag = "tokens", security(("bearer" = [])),
    params(("name" = String, Path, description = "The token's name")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "No or bad token", body = Problem),
        (status = 403, description = "Not an admin token", body = Problem),
        (status = 404, description = "No live token has this name", body = Problem)))]
pub async fn revoke_token(
    State(state): State<AppState>,
    Extension(who): Extension<Identity>,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    who.require(Role::Admin)?;
    if state.journal().revoke_token(&name).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(Problem::not_found(format!("no live token named `{name}`")))
    }
}

/// The webhook outbox: notifications queued with the events that raised them, and how their
/// delivery stands.
#[utoipa::path(get, path = "/v1/outbox", tag = "outbox", security(("bearer" = [])),
    params(OutboxQuery),
    responses(
        (status = 200, description = "Deliveries, newest first", body = Vec<Delivery>),
        (status = 400, description = "A bad filter", body = Problem),
        (status = 401, description = "No or bad token", body = Problem),
        (status = 403, description = "Not an admin token", body = Problem)))]
pub async fn outbox(
    State(state): State<AppState>,
    Extension(who): Extension<Identity>,
    Params(query): Params<OutboxQuery>,
) -> Result<Response, Problem> {
    who.require(Role::Admin)?;
    let filter = chassis_store::OutboxFilter {
        status: query.status.map(|s| match s {
            DeliveryState::Pending => chassis_store::DeliveryStatus::Pending,
            DeliveryState::Delivered => chassis_store::DeliveryStatus::Delivered,
            DeliveryState::Failed => chassis_store::DeliveryStatus::Failed,
        }),
        run_id: query.run,
        limit: Some(
            int64(query.limit.map(|l| l as u64), "limit")?
                .map_or(100, |l| l as usize)
                .clamp(1, 1000),
        ),
    };
    let deliveries: Vec<Delivery> =
        chassis_engine::list_deliveries(state.journal().as_ref(), &filter)
            .await?
            .into_iter()
            .map(|d| Delivery {
                status: match d.status.as_str() {
                    "delivered" => DeliveryState::Delivered,
                    "failed" => DeliveryState::Failed,
                    _ => DeliveryState::Pending,
                },
                delivery_id: d.delivery_id,
                run_id: d.run_id,
                seq: d.seq,
                kind: d.kind,
                url: d.url,
                secret_env: d.secret_env,
                attempts: d.attempts,
                created_ms: d.created_ms,
                expires_ms: d.expires_ms,
                next_attempt_ms: d.next_attempt_ms,
                done_ms: d.done_ms,
                last_error: d.last_error,
                body: d.body,
            })
            .collect();
    Ok(json(StatusCode::OK, &deliveries))
}

/// Every schedule, oldest first.
#[utoipa::path(get, path = "/v1/schedules", tag = "schedules", security(("bearer" = [])),
    responses(
        (status = 200, description = "The schedules", body = Vec<ScheduleInfo>),
        (status = 401, description = "No or bad token", body = Problem)))]
pub async fn list_schedules(State(state): State<AppState>) -> Result<Response, Problem> {
    let schedules: Vec<ScheduleInfo> = state
        .engine()
        .schedules()
        .await?
        .into_iter()
        .map(ScheduleInfo::from)
        .collect();
    Ok(json(StatusCode::OK, &schedules))
}

/// Starts an agent on a cron schedule.
#[utoipa::path(post, path = "/v1/schedules", tag = "schedules", security(("bearer" = [])),
    request_body = NewSchedule,
    responses(
        (status = 201, description = "The schedule", body = ScheduleInfo),
        (status = 400, description = "Malformed body, a bad cron, zone, overlap or catch-up", body = Problem),
        (status = 401, description = "No or bad token", body = Problem),
        (status = 403, description = "Below operator", body = Problem),
        (status = 404, description = "No such agent", body = Problem)))]
pub async fn create_schedule(
    State(state): State<AppState>,
    Extension(who): Extension<Identity>,
    Body(request): Body<NewSchedule>,
) -> Result<Response, Problem> {
    who.require(Role::Operator)?;
    let overlap = match request.overlap.as_deref() {
        None => chassis_engine::Overlap::Skip,
        Some(text) => chassis_engine::Overlap::parse(text).ok_or_else(|| {
            Problem::bad_request(format!("`{text}` is not skip, queue or allow")).at("/overlap")
        })?,
    };
    let catch_up = match request.catch_up.as_deref() {
        None => chassis_engine::CatchUp::Last,
        Some(text) => chassis_engine::CatchUp::parse(text).ok_or_else(|| {
            Problem::bad_request(format!("`{text}` is not none, last or all")).at("/catch_up")
        })?,
    };
    chassis_core::cron::Cron::parse(&request.cron)
        .map_err(|e| Problem::bad_request(e).at("/cron"))?;
    let timezone = request.timezone.unwrap_or_else(|| "UTC".to_string());
    chassis_engine::time_zone(&timezone).map_err(|e| Problem::bad_request(e).at("/timezone"))?;
    let agent = state.registry().get(&request.agent).ok_or_else(|| {
        Problem::not_found(format!("no agent `{}` (see GET /v1/agents)", request.agent))
            .at("/agent")
    })?;
    let schedule = state
        .engine()
        .add_schedule(
            &agent,
            chassis_engine::NewSchedule {
                cron: request.cron,
                timezone,
                input: request.input,
                overlap,
                catch_up,
                since_ms: None,
            },
        )
        .await
        .map_err(|e| match e {
            chassis_engine::Error::Refused(detail) => Problem::bad_request(detail).at("/cron"),
            other => Problem::from(other),
        })?;
    Ok(json(StatusCode::CREATED, &ScheduleInfo::from(schedule)))
}

/// Removes a schedule; the runs it started stay.
#[utoipa::path(delete, path = "/v1/schedules/{id}", tag = "schedules", security(("bearer" = [])),
    params(("id" = String, Path, description = "The schedule's id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "No or bad token", body = Problem),
        (status = 403, description = "Below operator", body = Problem),
        (status = 404, description = "No such schedule", body = Problem)))]
pub async fn remove_schedule(
    State(state): State<AppState>,
    Extension(who): Extension<Identity>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    who.require(Role::Operator)?;
    if state.engine().remove_schedule(&id).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(Problem::not_found(format!("no schedule `{id}`")))
    }
}
