//! The API's bodies: what requests carry and responses return. The OpenAPI document is
//! generated from these types and the handlers that use them, so it cannot drift from them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::auth::Role;

/// Where a run is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Created or executing.
    Running,
    /// Stopped until a human acts.
    Waiting,
    /// Stopped at a limit, by a person, or parked while every model is unavailable.
    Paused,
    /// Finished with an answer.
    Completed,
    /// Ended without an answer.
    Failed,
    /// Ended because a human cancelled it.
    Cancelled,
}

impl From<chassis_core::RunStatus> for Status {
    fn from(status: chassis_core::RunStatus) -> Status {
        use chassis_core::RunStatus as S;
        match status {
            S::Running => Status::Running,
            S::Waiting => Status::Waiting,
            S::Paused => Status::Paused,
            S::Completed => Status::Completed,
            S::Failed => Status::Failed,
            S::Cancelled => Status::Cancelled,
        }
    }
}

impl Status {
    /// The core's status.
    pub fn core(self) -> chassis_core::RunStatus {
        use chassis_core::RunStatus as S;
        match self {
            Status::Running => S::Running,
            Status::Waiting => S::Waiting,
            Status::Paused => S::Paused,
            Status::Completed => S::Completed,
            Status::Failed => S::Failed,
            Status::Cancelled => S::Cancelled,
        }
    }
}

/// `POST /v1/runs`: start a run.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRun {
    /// The agent's name (`GET /v1/agents`).
    pub agent: String,
    /// The run's input: its first user message.
    pub input: String,
    /// Prompt variables over the agent's `[vars]`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub vars: Option<serde_json::Map<String, Value>>,
    /// Labels to find the run by.
    #[serde(default)]
    pub tags: Option<BTreeMap<String, String>>,
}

/// A run just started (or found again by its idempotency key).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct RunCreated {
    /// The run.
    pub run_id: String,
    /// Its status (`running`: queued for a worker).
    pub status: Status,
    /// The agent version it runs under.
    pub version: String,
    /// True when the `Idempotency-Key` had started it before.
    pub existing: bool,
}

/// What a run used so far.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Usage {
    /// Model calls answered.
    pub steps: u32,
    /// Model calls made.
    pub model_calls: u32,
    /// Tool calls executed.
    pub tool_calls: u32,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Dollars spent on calls of known price.
    pub cost_usd: f64,
    /// Calls of a model without a known price.
    pub unpriced_calls: u32,
    /// Active time so far, in ms.
    pub wall_ms: u64,
}

/// What a stopped run waits for.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Waiting {
    /// `approval`, `outcome_unknown`, `limit`, `paused`, `interrupted`, `parked` or `ready`.
    pub kind: String,
    /// The call it is about (`STEP.INDEX`).
    pub call_id: Option<String>,
    /// Why, in words.
    pub reason: Option<String>,
    /// When it wakes by itself (ms since the epoch).
    pub wakes_at_ms: Option<u64>,
}

/// A run.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Run {
    /// The run.
    pub run_id: String,
    /// Its agent.
    pub agent: String,
    /// Its status.
    pub status: Status,
    /// Submitted and not yet picked up by any worker.
    pub queued: bool,
    /// The agent version it runs under.
    pub version: String,
    /// That version's label.
    pub version_label: Option<String>,
    /// Its input (clipped to 200 characters in lists).
    pub input: String,
    /// Its tags.
    pub tags: BTreeMap<String, String>,
    /// What it used so far.
    pub usage: Usage,
    /// Its limits, by name (`max_wall_time` and `max_park` in ms).
    pub limits: BTreeMap<String, f64>,
    /// The answer, once completed.
    pub output: Option<String>,
    /// Why it failed, was cancelled, waits or is paused.
    pub reason: Option<String>,
    /// What it waits for, while stopped.
    pub waiting: Option<Waiting>,
    /// Events journaled.
    pub events: u64,
    /// When it was created (ms since the epoch).
    pub created_ms: i64,
    /// When its last event was journaled.
    pub updated_ms: i64,
    /// Who drives it now, if anyone.
    pub driver: Option<String>,
    /// User turns so far: the input, then each message sent to the run.
    pub turns: u32,
    /// The run this one was forked from (`POST /v1/runs/{id}/fork`).
    pub forked_from: Option<String>,
    /// How many of that run's events the fork copied (the fork's `at`).
    pub forked_at: Option<u64>,
}

impl From<chassis_engine::RunView> for Run {
    fn from(v: chassis_engine::RunView) -> Run {
        Run {
            run_id: v.run_id,
            agent: v.agent,
            status: v.status.into(),
            queued: v.queued,
            version: v.version,
            version_label: v.version_label,
            input: v.input,
            tags: v.tags,
            usage: Usage {
                steps: v.usage.steps,
                model_calls: v.usage.model_calls,
                tool_calls: v.usage.tool_calls,
                // The document promises int64; a provider's count past it shows as its largest.
                input_tokens: v.usage.input_tokens.min(i64::MAX as u64),
                output_tokens: v.usage.output_tokens.min(i64::MAX as u64),
                cost_usd: v.usage.cost_usd,
                unpriced_calls: v.usage.unpriced_calls,
                wall_ms: v.usage.wall_ms,
            },
            limits: v.limits,
            output: v.output,
            reason: v.reason,
            waiting: v.waiting.map(|w| Waiting {
                kind: w.kind,
                call_id: w.call_id,
                reason: w.reason,
                wakes_at_ms: w.wakes_at_ms,
            }),
            events: v.events,
            created_ms: v.created_ms,
            updated_ms: v.updated_ms,
            driver: v.driver,
            turns: v.turns,
            forked_at: v.forked_from.as_ref().map(|(_, at)| *at),
            forked_from: v.forked_from.map(|(run, _)| run),
        }
    }
}

/// A page of runs, newest first.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct RunList {
    /// The runs.
    pub runs: Vec<Run>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next: Option<String>,
}

/// `GET /v1/runs` filters.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunFilter {
    /// Only runs in this status; `queued` for submitted runs nobody picked up yet.
    #[param(pattern = "^(queued|running|waiting|paused|completed|failed|cancelled)$")]
    pub status: Option<String>,
    /// Only runs of this agent.
    pub agent: Option<String>,
    /// Only runs of this version: a fingerprint prefix or a label.
    pub version: Option<String>,
    /// Only runs with this tag, `KEY=VALUE`.
    #[param(pattern = "=")]
    pub tag: Option<String>,
    /// Only runs created at or after this time (ms since the epoch).
    pub since_ms: Option<i64>,
    /// Only runs created before this time (ms since the epoch).
    pub until_ms: Option<i64>,
    /// The `next` of the previous page.
    pub cursor: Option<String>,
    /// Only runs forked from this run (its full id).
    pub forked_from: Option<String>,
    /// Runs per page (default 50, at most 1,000).
    #[param(format = Int64)]
    pub limit: Option<usize>,
}

/// A journaled event: `seq`, `at_ms`, `kind`, and the fields of its kind.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[schema(value_type = Object)]
pub struct EventRecord(pub Value);

/// A page of a run's events.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct EventPage {
    /// The events after the `after` asked for, in order (at most `limit`).
    pub events: Vec<EventRecord>,
    /// The last sequence number returned (pass as `after` for more), or the `after` asked for.
    pub last_seq: u64,
    /// Whether the run has ended (no event will follow the last one).
    pub ended: bool,
}

/// `GET /v1/runs/{id}/events` parameters.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only events after this sequence number.
    pub after: Option<u64>,
    /// At most this many (default 1,000).
    #[param(format = Int64)]
    pub limit: Option<usize>,
}

/// `GET /v1/runs/{id}/stream` parameters.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// Only events after this sequence number (`Last-Event-ID` wins when both are given).
    pub after: Option<u64>,
}

/// What an event of `GET /v1/runs/{id}/stream` is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StreamEventKind {
    /// A journaled event: `data` is its JSON, as `GET /v1/runs/{id}/events` gives it, and `id`
    /// its sequence number.
    Event,
    /// A piece of a model answer as it streams (`step`, `kind`, `index`, `name`, `text`): not
    /// journaled, so it has no `id` of its own; a client that reconnects may miss some.
    Delta,
    /// The run's journal is gone: `data` says so in words, and the stream ends.
    Error,
}

impl StreamEventKind {
    /// Its name on the wire (`event: NAME`).
    pub fn as_str(self) -> &'static str {
        match self {
            StreamEventKind::Event => "event",
            StreamEventKind::Delta => "delta",
            StreamEventKind::Error => "error",
        }
    }
}

/// One Server-Sent Event of `GET /v1/runs/{id}/stream`, as an SSE parser reads it (heartbeats
/// are comments, not events).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct StreamEvent {
    /// What it is.
    pub event: StreamEventKind,
    /// Its JSON (or, for `error`, words).
    pub data: String,
    /// The sequence number of the last journaled event sent: sent back as `Last-Event-ID`, it
    /// resumes the stream right after it.
    pub id: Option<String>,
}

/// `POST /v1/runs/{id}/resume`.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Resume {
    /// Limits to raise first, by name: a number, or a duration such as `"30m"` for
    /// `max_wall_time` and `max_park`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub raise: Option<BTreeMap<String, Value>>,
}

/// `POST /v1/runs/{id}/cancel`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Cancel {
    /// Why: journaled with the cancel.
    pub reason: String,
}

/// `POST /v1/runs/{id}/messages`: a thread's next user turn.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendMessage {
    /// The message; journaled with the token's name as its author. It must hold something
    /// besides white space.
    #[schema(min_length = 1)]
    pub text: String,
}

/// `POST /v1/runs/{id}/fork`: a new run from the first `at` events of this one.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForkRun {
    /// How many of the run's events the fork starts with (from 1).
    #[schema(format = Int64, minimum = 1)]
    #[serde(deserialize_with = "whole_number")]
    pub at: u64,
    /// A user message after the copied events (required where the copy ends completed).
    #[serde(default)]
    pub input: Option<String>,
}

/// A JSON number that is a whole number, written `5` or `5.0` (JSON Schema's `integer` allows
/// both), as a `u64`.
fn whole_number<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    let number = serde_json::Number::deserialize(deserializer)?;
    if let Some(n) = number.as_u64() {
        return Ok(n);
    }
    match number.as_f64() {
        Some(f) if f.fract() == 0.0 && (0.0..=u64::MAX as f64).contains(&f) => Ok(f as u64),
        _ => Err(serde::de::Error::custom(format!(
            "{number} is not a whole number of at least 0"
        ))),
    }
}

/// A fork just made: runnable at once, for the workers.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Forked {
    /// The new run.
    pub run_id: String,
    /// The run it was forked from.
    pub forked_from: String,
    /// How many of its events the fork starts with.
    #[schema(format = Int64)]
    pub at: u64,
    /// The fork's status after the copy.
    pub status: Status,
}

/// What a cancel did.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Cancelled {
    /// The run.
    pub run_id: String,
    /// `cancelled` when it ended here; `cancelling` when its driver stops it.
    pub status: String,
    /// Who drives it, while it is being cancelled.
    pub driver: Option<String>,
}

/// `POST /v1/runs/{id}/calls/{call}/approve`.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Approve {
    /// Arguments to run the call with instead of the model's (checked against the tool's
    /// schema).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub args: Option<Value>,
    /// A note for the audit trail.
    #[serde(default)]
    pub note: Option<String>,
}

/// `POST /v1/runs/{id}/calls/{call}/reject` and `.../limit/reject`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reject {
    /// Why: the model gets it as the call's result (or the run fails with it, for a limit).
    pub reason: String,
    /// A note for the audit trail.
    #[serde(default)]
    pub note: Option<String>,
}

/// How a human settles an unknown outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It happened.
    Succeeded,
    /// It did not happen.
    Failed,
    /// Run it again, with the same idempotency key.
    Retry,
}

/// `POST /v1/runs/{id}/calls/{call}/resolve`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Resolve {
    /// What happened.
    pub outcome: Outcome,
    /// For `succeeded`: the result the model sees.
    #[serde(default)]
    pub result: Option<String>,
    /// For `failed`: why, as the model sees it.
    #[serde(default)]
    pub reason: Option<String>,
    /// A note for the audit trail.
    #[serde(default)]
    pub note: Option<String>,
}

/// `POST /v1/runs/{id}/limit/approve`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitApprove {
    /// The raised limits, by name (at least one).
    #[schema(value_type = Object)]
    pub raise: BTreeMap<String, Value>,
}

/// What a decision left the run at.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Decided {
    /// The run, after the decision.
    pub run: Run,
    /// Whether the run is runnable again (a worker will continue it).
    pub woken: bool,
}

/// One thing waiting for a human.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct InboxItem {
    /// The run.
    pub run_id: String,
    /// Its agent.
    pub agent: String,
    /// `approval`, `outcome_unknown`, `limit`, `paused`, `interrupted` or `ready`.
    pub kind: String,
    /// The call (`STEP.INDEX`), `limit` or `run`.
    pub call_id: String,
    /// The tool, or the limit's name.
    pub tool: String,
    /// The call's arguments.
    #[schema(value_type = Object)]
    pub args: Value,
    /// The tool's risk class.
    pub risk: Option<String>,
    /// What the model said alongside the call.
    pub reason: Option<String>,
    /// The last messages of the conversation.
    pub context: Vec<String>,
    /// When it was requested (ms since the epoch).
    pub requested_at_ms: Option<u64>,
    /// When it times out.
    pub expires_at_ms: Option<u64>,
    /// Whether its time ran out.
    pub expired: bool,
    /// Whether it timed out and was escalated.
    pub escalated: bool,
    /// The idempotency key the call ran with, for unknown outcomes.
    pub idempotency_key: Option<String>,
    /// The run's input.
    pub input: Option<String>,
    /// The JSON Schema of the tool's arguments, for editing them.
    #[schema(value_type = Option<Object>)]
    pub args_schema: Option<Value>,
}

/// An agent on offer.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct AgentInfo {
    /// Its name.
    pub name: String,
    /// Its version (fingerprint).
    pub version: String,
    /// The version's label.
    pub version_label: Option<String>,
    /// The primary model.
    pub model: String,
    /// The tools it is granted.
    pub tools: Vec<String>,
    /// Its spec file.
    pub spec_path: String,
}

/// `GET /v1/stats` filters.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// Only runs of this agent.
    pub agent: Option<String>,
    /// Only runs of this version (fingerprint prefix or label).
    pub version: Option<String>,
    /// Only runs created at or after this time (ms since the epoch).
    pub since_ms: Option<i64>,
    /// Eval runs too (left out by default).
    pub include_eval: Option<bool>,
}

/// Figures over a set of runs.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct StatsRow {
    /// The agent (absent for all agents together).
    pub agent: Option<String>,
    /// The version (absent for all versions together).
    pub version: Option<String>,
    /// Runs counted.
    pub runs: u64,
    /// Completed runs.
    pub completed: u64,
    /// Failed runs.
    pub failed: u64,
    /// Cancelled runs.
    pub cancelled: u64,
    /// Runs waiting or paused now.
    pub stopped: u64,
    /// Runs that asked a human for something (an approval, a limit, an unknown outcome).
    pub escalated: u64,
    /// Completed ÷ ended runs.
    pub completion_rate: f64,
    /// Failed ÷ ended runs.
    pub error_rate: f64,
    /// Escalated ÷ runs.
    pub escalation_rate: f64,
    /// Average cost of a run, dollars.
    pub avg_cost_usd: f64,
    /// Average active time of an ended run, ms.
    pub avg_wall_ms: f64,
    /// Average steps of a run.
    pub avg_steps: f64,
}

/// Approval figures of one tool.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ToolDecisions {
    /// The tool.
    pub tool: String,
    /// Approvals requested.
    pub requested: u64,
    /// Approved as asked.
    pub approved: u64,
    /// Approved with edited arguments.
    pub edited: u64,
    /// Rejected (by a human or a timeout).
    pub rejected: u64,
}

/// `GET /v1/stats`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Stats {
    /// All runs matched, together.
    pub total: StatsRow,
    /// By agent and version.
    pub by_version: Vec<StatsRow>,
    /// By day (UTC) and version: `(day, rows)`, oldest first.
    pub by_day: Vec<DayStats>,
    /// By hour (UTC) and version over the 48 hours before the newest run matched, oldest first.
    pub by_hour: Vec<HourStats>,
    /// Approval decisions by tool.
    pub tools: Vec<ToolDecisions>,
}

/// One day's figures.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct DayStats {
    /// The day, `YYYY-MM-DD` (UTC).
    pub day: String,
    /// Figures by agent and version.
    pub rows: Vec<StatsRow>,
}

/// One hour's figures.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct HourStats {
    /// The hour, `YYYY-MM-DDTHH` (UTC).
    pub hour: String,
    /// Figures by agent and version.
    pub rows: Vec<StatsRow>,
}

/// `POST /v1/tokens`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// Who holds it: journaled as the author of their decisions (1 to 64 letters, digits, `-`,
    /// `_`, `.` or `@`).
    #[schema(pattern = "^[A-Za-z0-9_.@-]{1,64}$")]
    pub name: String,
    /// Its role.
    pub role: Role,
}

/// A token just made: shown this once.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenCreated {
    /// Who holds it.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// The token: send it as `Authorization: Bearer TOKEN`.
    pub token: String,
}

/// A token as listed (never the token itself).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenInfo {
    /// Who holds it.
    pub name: String,
    /// Its role.
    pub role: String,
    /// When it was made (ms since the epoch).
    pub created_ms: i64,
    /// When it was revoked.
    pub revoked_ms: Option<i64>,
}

/// Who the caller is.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Me {
    /// The token's name.
    pub name: String,
    /// Its role.
    pub role: Role,
}

/// `GET /healthz`, `GET /readyz`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: String,
}

/// `GET /v1/outbox` parameters.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OutboxQuery {
    /// Only deliveries in this state.
    pub status: Option<DeliveryState>,
    /// Only the notifications of this run.
    pub run: Option<String>,
    /// At most this many, newest first (default 100, at most 1,000).
    #[param(format = Int64)]
    pub limit: Option<usize>,
}

/// Where a webhook delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Not yet acknowledged; retried with backoff until it expires.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Given up: it expired unacknowledged.
    Failed,
}

/// A webhook notification in the outbox, and its delivery so far.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Delivery {
    /// Its stable id (`RUN.SEQ`), sent as the `Chassis-Delivery` header.
    pub delivery_id: String,
    /// The run it is about.
    pub run_id: String,
    /// The sequence number of the event that raised it.
    #[schema(format = Int64, minimum = 0)]
    pub seq: u64,
    /// Its kind: `run_completed`, `run_failed`, `run_cancelled`, `waiting_for_human`,
    /// `limit_reached`, `approval_requested` or `approval_escalated`.
    pub kind: String,
    /// Where it stands.
    pub status: DeliveryState,
    /// Where it is posted.
    pub url: String,
    /// The variable its signing secret is read from (never the secret).
    pub secret_env: String,
    /// Attempts made.
    pub attempts: u32,
    /// When it was queued (ms since the epoch).
    pub created_ms: i64,
    /// When it is given up if not acknowledged (ms since the epoch).
    pub expires_ms: i64,
    /// When it is next tried, while pending (ms since the epoch).
    pub next_attempt_ms: Option<i64>,
    /// When it was delivered or given up (ms since the epoch).
    pub done_ms: Option<i64>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// The body, as posted.
    pub body: Value,
}

/// `POST /v1/schedules`: start an agent on a cron schedule.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSchedule {
    /// The agent's name (see `GET /v1/agents`).
    pub agent: String,
    /// Minute hour day-of-month month day-of-week, e.g. `0 6 * * MON-FRI`.
    pub cron: String,
    /// Each run's input.
    pub input: String,
    /// The IANA time zone the cron is read in (default `UTC`).
    pub timezone: Option<String>,
    /// While the previous run goes on: `skip` (the default), `queue` or `allow`.
    pub overlap: Option<String>,
    /// Slots missed while nothing ran: `none`, `last` (the default) or `all`.
    pub catch_up: Option<String>,
}

/// A schedule: an agent started by cron, fired once per slot by any worker or server.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ScheduleInfo {
    /// `sch_…`.
    pub schedule_id: String,
    /// The agent's name.
    pub agent: String,
    /// The cron expression.
    pub cron: String,
    /// The time zone it is read in.
    pub timezone: String,
    /// Each run's input.
    pub input: String,
    /// `skip`, `queue` or `allow`.
    pub overlap: String,
    /// `none`, `last` or `all`.
    pub catch_up: String,
    /// When it was added (ms since the epoch).
    pub created_ms: i64,
    /// The next slot to fire (ms since the epoch).
    pub next_slot_ms: i64,
    /// The last run it started; each run is tagged `schedule` and `slot`.
    pub last_run_id: Option<String>,
}

impl From<chassis_engine::ScheduleView> for ScheduleInfo {
    fn from(s: chassis_engine::ScheduleView) -> ScheduleInfo {
        ScheduleInfo {
            schedule_id: s.schedule_id,
            agent: s.agent,
            cron: s.cron,
            timezone: s.timezone,
            input: s.input,
            overlap: s.overlap,
            catch_up: s.catch_up,
            created_ms: s.created_ms,
            next_slot_ms: s.next_slot_ms,
            last_run_id: s.last_run_id,
        }
    }
}
