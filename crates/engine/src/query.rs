//! Runs as people look at them: the list and the detail that the CLI, the API and the console
//! all show, built once here from the journal so they cannot disagree.

use std::collections::BTreeMap;

use chassis_core::state::{Approval, Hold};
use chassis_core::{LimitName, RunState, RunStatus, Wake};
use chassis_store::{ListFilter, RunSummary};
use serde::Serialize;

use crate::{Engine, Error};

/// Longest input kept in a list row; the detail view has it whole.
const INPUT_PREVIEW_CHARS: usize = 200;

/// Which runs to list.
#[derive(Clone, Debug, Default)]
pub struct RunQuery {
    /// Only runs in this status.
    pub status: Option<RunStatus>,
    /// Only runs submitted and not yet picked up by anyone (implies status running).
    pub queued: bool,
    /// Only runs of this agent.
    pub agent: Option<String>,
    /// Only runs of this version: a fingerprint prefix or a `[agent] version` label.
    pub version: Option<String>,
    /// Only runs with this tag.
    pub tag: Option<(String, String)>,
    /// Only runs created at or after this time (ms since the epoch).
    pub since_ms: Option<i64>,
    /// Only runs created before this time.
    pub until_ms: Option<i64>,
    /// The page after this cursor (from a previous page).
    pub cursor: Option<String>,
    /// Runs per page (at most 1,000).
    pub limit: usize,
    /// Only runs forked from this run.
    pub forked_from: Option<String>,
}

/// One page of runs, newest first.
#[derive(Clone, Debug, Serialize)]
pub struct RunPage {
    /// The runs.
    pub runs: Vec<RunView>,
    /// Where the next page starts, when there may be one.
    pub next: Option<String>,
}

/// A run's figures: what it used, and what it may use.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
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
    /// Calls of a model without a known price (the cost is a lower bound).
    pub unpriced_calls: u32,
    /// Active time so far, in ms (waiting for a human excluded unless the run counts it).
    pub wall_ms: u64,
}

/// What a stopped run waits for.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Waiting {
    /// `approval`, `outcome_unknown`, `limit`, `paused`, `interrupted`, `parked`, `ready`.
    pub kind: String,
    /// The call it is about (`STEP.INDEX`), when it is about one.
    pub call_id: Option<String>,
    /// Why, in words.
    pub reason: Option<String>,
    /// When it wakes by itself (an approval's expiry, a parked run's retry), ms since the
    /// epoch.
    pub wakes_at_ms: Option<u64>,
}

/// A run as the list and the detail show it.
#[derive(Clone, Debug, Serialize)]
pub struct RunView {
    /// The run.
    pub run_id: String,
    /// Its agent.
    pub agent: String,
    /// Its status.
    pub status: RunStatus,
    /// Submitted and not yet picked up by anyone.
    pub queued: bool,
    /// The agent version it runs under.
    pub version: String,
    /// That version's label, if the spec gives one.
    pub version_label: Option<String>,
    /// Its input (clipped in lists).
    pub input: String,
    /// Its tags.
    pub tags: BTreeMap<String, String>,
    /// What it used so far.
    pub usage: Usage,
    /// Its limits (`max_wall_time` and `max_park` in ms, `max_cost_usd` in dollars).
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
    /// The run this one was forked from, and how many of its events it copied.
    pub forked_from: Option<(String, u64)>,
    /// Why its journal cannot be read (an event that does not decode or fold), when it cannot:
    /// the rest of the view then comes from the store's summary alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
}

impl RunView {
    /// The view of a run whose journal cannot be read: what the store's summary says, and why.
    pub fn unreadable(summary: &RunSummary, now_ms: u64, why: String) -> RunView {
        let now = i64::try_from(now_ms).unwrap_or(i64::MAX);
        RunView {
            run_id: summary.run_id.clone(),
            agent: summary.agent.clone(),
            status: summary.status,
            queued: false,
            version: summary.version.clone(),
            version_label: None,
            input: String::new(),
            tags: BTreeMap::new(),
            usage: Usage::default(),
            limits: BTreeMap::new(),
            output: None,
            reason: Some(format!("the journal cannot be read: {why}")),
            waiting: None,
            events: summary.last_seq,
            created_ms: summary.created_ms,
            updated_ms: summary.updated_ms,
            driver: summary
                .lease
                .as_ref()
                .filter(|(_, until)| *until > now)
                .map(|(owner, _)| owner.clone()),
            turns: 0,
            forked_from: None,
            unreadable: Some(why),
        }
    }

    /// The view of a run from its summary and its folded state, at `now_ms`.
    pub fn of(summary: &RunSummary, state: &RunState, now_ms: u64, whole_input: bool) -> RunView {
        let input = if whole_input || state.input.chars().count() <= INPUT_PREVIEW_CHARS {
            state.input.clone()
        } else {
            let cut: String = state.input.chars().take(INPUT_PREVIEW_CHARS).collect();
            format!("{cut}…")
        };
        let now = i64::try_from(now_ms).unwrap_or(i64::MAX);
        let driver = summary
            .lease
            .as_ref()
            .filter(|(_, until)| *until > now)
            .map(|(owner, _)| owner.clone());
        RunView {
            run_id: summary.run_id.clone(),
            agent: summary.agent.clone(),
            status: state.status(),
            queued: is_queued(summary, now),
            version: state.version.clone(),
            version_label: state.version_label.clone(),
            input,
            tags: state.tags.clone(),
            usage: Usage {
                steps: state.steps(),
                model_calls: state.model_calls(),
                tool_calls: state.tool_calls(),
                input_tokens: state.usage().input_tokens,
                output_tokens: state.usage().output_tokens,
                cost_usd: state.cost_usd(),
                unpriced_calls: state.unpriced_calls,
                // An ended run's clock stopped at its last event.
                wall_ms: if state.status().is_terminal() {
                    state.wall_ms(u64::try_from(summary.updated_ms).unwrap_or(0))
                } else {
                    state.wall_ms(now_ms)
                },
            },
            limits: LimitName::ALL
                .iter()
                .filter_map(|l| state.limits.get(*l).map(|v| (l.as_str().to_string(), v)))
                .collect(),
            output: state.output.clone(),
            reason: match state.status() {
                RunStatus::Failed | RunStatus::Cancelled => state.error.clone(),
                RunStatus::Waiting | RunStatus::Paused => state.waiting_reason.clone(),
                RunStatus::Running | RunStatus::Completed => None,
            },
            waiting: waiting(state),
            events: state.seq(),
            created_ms: summary.created_ms,
            updated_ms: summary.updated_ms,
            driver,
            turns: state.turns,
            forked_from: state.forked_from.as_ref().map(|f| (f.run.clone(), f.seq)),
            unreadable: None,
        }
    }
}

/// A run after a human's decision.
#[derive(Clone, Debug, Serialize)]
pub struct Decided {
    /// The run, after the decision.
    pub run: RunView,
    /// Whether the run is runnable again (a worker, or a resume, continues it).
    pub woken: bool,
}

/// Submitted and never picked up: only `run_started` journaled, nobody holding it.
fn is_queued(summary: &RunSummary, now: i64) -> bool {
    summary.status == RunStatus::Running
        && summary.last_seq <= 1
        && summary
            .lease
            .as_ref()
            .is_none_or(|(_, until)| *until <= now)
}

/// What a stopped run waits for, from its state.
pub fn waiting(state: &RunState) -> Option<Waiting> {
    if !matches!(state.status(), RunStatus::Waiting | RunStatus::Paused) {
        return None;
    }
    let wakes_at_ms = match state.wake() {
        Wake::At(at) => Some(at),
        Wake::Now | Wake::Never => None,
    };
    let reason = state.waiting_reason.clone();
    let call = state.calls().iter().find(|c| !c.resolved);
    let (kind, call_id) = match (state.hold, call) {
        (Hold::Interrupted, _) => ("interrupted", None),
        (Hold::Limit(_), _) if state.limit_request.is_some() => ("limit", None),
        (Hold::Limit(_), _) => ("paused", None),
        (_, Some(call)) if call.outcome_unknown => ("outcome_unknown", Some(call.id.clone())),
        (_, Some(call)) if matches!(call.approval, Approval::Pending { .. }) => {
            ("approval", Some(call.id.clone()))
        }
        (Hold::Park { .. }, _) => ("parked", None),
        _ => ("ready", None),
    };
    Some(Waiting {
        kind: kind.to_string(),
        call_id,
        reason,
        wakes_at_ms,
    })
}

/// A page cursor: the last run's creation time and id.
fn encode_cursor(summary: &RunSummary) -> String {
    format!("{}.{}", summary.created_ms, summary.run_id)
}

fn decode_cursor(cursor: &str) -> Result<(i64, String), Error> {
    cursor
        .split_once('.')
        .and_then(|(ms, id)| Some((ms.parse().ok()?, id.to_string())))
        .filter(|(_, id)| !id.is_empty())
        .ok_or_else(|| Error::Invalid(format!("cursor `{cursor}` is not one a page gave")))
}

/// Most runs one page holds.
pub const MAX_PAGE: usize = 1000;

impl Engine {
    /// One page of runs matching `query`, newest first, each with its figures (folded from
    /// its journal).
    pub async fn list_runs(&self, query: &RunQuery) -> Result<RunPage, Error> {
        let limit = query.limit.clamp(1, MAX_PAGE);
        let now = self.now_ms();
        let now_i = i64::try_from(now).unwrap_or(i64::MAX);
        let mut after = query.cursor.as_deref().map(decode_cursor).transpose()?;
        let status = if query.queued {
            Some(RunStatus::Running)
        } else {
            query.status
        };
        // One more than a page tells whether there is a next one. Queued runs are a subset of
        // the running ones (told apart by journal length and lease), so pages are read until
        // enough are found.
        let mut found: Vec<RunSummary> = Vec::new();
        loop {
            let fetch = limit + 1;
            let summaries = self
                .journal()
                .list(&ListFilter {
                    status,
                    agent: query.agent.clone(),
                    limit: Some(fetch),
                    version: query.version.clone(),
                    tag: query.tag.clone(),
                    since_ms: query.since_ms,
                    until_ms: query.until_ms,
                    after: after.clone(),
                    run_id: None,
                    forked_from: query.forked_from.clone(),
                })
                .await?;
            let exhausted = summaries.len() < fetch;
            if let Some(last) = summaries.last() {
                after = Some((last.created_ms, last.run_id.clone()));
            }
            found.extend(
                summaries
                    .into_iter()
                    .filter(|s| !query.queued || is_queued(s, now_i)),
            );
            if found.len() > limit || exhausted {
                break;
            }
        }
        let next = (found.len() > limit).then(|| encode_cursor(&found[limit - 1]));
        found.truncate(limit);
        let mut runs = Vec::with_capacity(found.len());
        for summary in &found {
            // A run whose journal does not decode or fold is listed as unreadable, with the
            // reason: one bad row must not hide every other run.
            match self.load(&summary.run_id).await {
                Ok(state) => runs.push(RunView::of(summary, &state, now, false)),
                Err(
                    e @ (Error::Replay { .. } | Error::Store(chassis_store::Error::Corrupt { .. })),
                ) => runs.push(RunView::unreadable(summary, now, e.to_string())),
                Err(e) => return Err(e),
            }
        }
        Ok(RunPage { runs, next })
    }

    /// One run, whole.
    pub async fn run_view(&self, run_id: &str) -> Result<RunView, Error> {
        Ok(self.view_and_state(run_id).await?.0)
    }

    /// A run after a human's decision: the run, and whether the decision made it runnable
    /// (a worker, or a resume, continues it). What `POST …/approve` answers and what
    /// `chassis approve --json` prints.
    pub async fn decided(&self, run_id: &str) -> Result<Decided, Error> {
        let (run, state) = self.view_and_state(run_id).await?;
        let woken = state.wake() == Wake::Now && !state.status().is_terminal();
        Ok(Decided { run, woken })
    }

    async fn view_and_state(&self, run_id: &str) -> Result<(RunView, RunState), Error> {
        let summary = self
            .journal()
            .list(&ListFilter {
                run_id: Some(run_id.to_string()),
                ..ListFilter::default()
            })
            .await?
            .pop()
            .ok_or_else(|| Error::Store(chassis_store::Error::RunNotFound(run_id.to_string())))?;
        let state = self.load(run_id).await?;
        let view = RunView::of(&summary, &state, self.now_ms(), true);
        Ok((view, state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// A page cursor arrives in a URL: a position or an error naming it, never a panic.
        #[test]
        fn any_cursor_decodes_or_is_refused(text in any::<String>(), ms in any::<i64>(), id in "[a-z0-9_]{1,12}") {
            let _ = decode_cursor(&text);
            let summary = RunSummary {
                run_id: id.clone(),
                agent: String::new(),
                status: RunStatus::Running,
                last_seq: 0,
                created_ms: ms,
                updated_ms: ms,
                wake_at_ms: None,
                lease: None,
                version: String::new(),
            };
            prop_assert_eq!(decode_cursor(&encode_cursor(&summary)).unwrap(), (ms, id));
        }
    }
}
