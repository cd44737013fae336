//! Aggregates over runs, from the journal alone (for `chassis stats`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use chassis_core::{Event, RunState, RunStatus};
use chassis_store::{Record, RunSummary};
use serde::Serialize;

/// What one run contributes.
#[derive(Clone, Debug, PartialEq)]
pub struct RunFacts {
    /// Agent name.
    pub agent: String,
    /// Where it stands.
    pub status: RunStatus,
    /// Times it stopped to wait for a human.
    pub escalations: u32,
    /// Dollars spent on calls of known price.
    pub cost_usd: f64,
    /// Calls of unknown price.
    pub unpriced_calls: u32,
    /// Steps (model calls answered).
    pub steps: u32,
    /// From start to completion, waits included (completed runs only), in ms.
    pub completion_ms: Option<u64>,
    /// Active time to completion, waits excluded (completed runs only), in ms.
    pub active_ms: Option<u64>,
}

impl RunFacts {
    /// The facts of one run; `None` when its journal does not fold.
    pub fn of(summary: &RunSummary, records: &[Record]) -> Option<RunFacts> {
        let state = RunState::fold(records.iter().map(|r| &r.event)).ok()?;
        Some(RunFacts::of_state(summary, &state, records))
    }

    /// The facts of one run whose journal is already folded into `state`.
    pub fn of_state(summary: &RunSummary, state: &RunState, records: &[Record]) -> RunFacts {
        let escalations = records
            .iter()
            .filter(|r| matches!(r.event, Event::RunWaiting { .. }))
            .count() as u32;
        let completed_at = records
            .iter()
            .rev()
            .find(|r| matches!(r.event, Event::RunCompleted { .. }))
            .map(|r| r.at_ms.max(0) as u64);
        RunFacts {
            agent: summary.agent.clone(),
            status: state.status(),
            escalations,
            cost_usd: state.cost_usd(),
            unpriced_calls: state.unpriced_calls,
            steps: state.steps(),
            completion_ms: completed_at.map(|at| at.saturating_sub(state.started_at_ms)),
            active_ms: completed_at.map(|at| state.wall_ms(at)),
        }
    }
}

/// Aggregates over a set of runs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Stats {
    /// The agent, or `None` for all agents together.
    pub agent: Option<String>,
    /// Runs counted.
    pub runs: u64,
    /// Runs by status.
    pub by_status: BTreeMap<&'static str, u64>,
    /// Completed runs over ended (completed or failed) runs.
    pub completion_rate: Option<f64>,
    /// Failed runs over ended runs.
    pub error_rate: Option<f64>,
    /// Runs that stopped to wait for a human at least once, over all runs.
    pub escalation_rate: Option<f64>,
    /// Stops to wait for a human, in total.
    pub escalations: u64,
    /// Total dollars spent on calls of known price.
    pub total_cost_usd: f64,
    /// Average dollars per run (a lower bound when some calls had no known price).
    pub avg_cost_usd: Option<f64>,
    /// Calls of unknown price, in total.
    pub unpriced_calls: u64,
    /// Average steps per run.
    pub avg_steps: Option<f64>,
    /// Average time from start to completion of completed runs, waits included, in ms.
    pub avg_time_to_completion_ms: Option<f64>,
    /// Average active time of completed runs, waits excluded, in ms.
    pub avg_active_time_ms: Option<f64>,
}

/// Aggregates `facts` under the label `agent`.
pub fn aggregate(agent: Option<String>, facts: &[RunFacts]) -> Stats {
    let runs = facts.len() as u64;
    let mut by_status: BTreeMap<&'static str, u64> = BTreeMap::new();
    for f in facts {
        *by_status.entry(f.status.as_str()).or_default() += 1;
    }
    let count = |s: RunStatus| by_status.get(s.as_str()).copied().unwrap_or(0);
    let (completed, failed) = (count(RunStatus::Completed), count(RunStatus::Failed));
    let ratio = |n: u64, d: u64| (d > 0).then(|| n as f64 / d as f64);
    let mean = |values: Vec<f64>| {
        (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
    };
    let total_cost_usd: f64 = facts.iter().map(|f| f.cost_usd).sum();
    Stats {
        agent,
        runs,
        completion_rate: ratio(completed, completed + failed),
        error_rate: ratio(failed, completed + failed),
        escalation_rate: ratio(
            facts.iter().filter(|f| f.escalations > 0).count() as u64,
            runs,
        ),
        escalations: facts.iter().map(|f| u64::from(f.escalations)).sum(),
        total_cost_usd,
        avg_cost_usd: (runs > 0).then(|| total_cost_usd / runs as f64),
        unpriced_calls: facts.iter().map(|f| u64::from(f.unpriced_calls)).sum(),
        avg_steps: mean(facts.iter().map(|f| f64::from(f.steps)).collect()),
        avg_time_to_completion_ms: mean(
            facts
                .iter()
                .filter_map(|f| f.completion_ms)
                .map(|ms| ms as f64)
                .collect(),
        ),
        avg_active_time_ms: mean(
            facts
                .iter()
                .filter_map(|f| f.active_ms)
                .map(|ms| ms as f64)
                .collect(),
        ),
        by_status,
    }
}

/// Aggregates per agent (sorted by name), then all agents together.
pub fn per_agent(facts: &[RunFacts]) -> Vec<Stats> {
    let mut agents: BTreeMap<&str, Vec<RunFacts>> = BTreeMap::new();
    for f in facts {
        agents.entry(f.agent.as_str()).or_default().push(f.clone());
    }
    let mut out: Vec<Stats> = agents
        .into_iter()
        .map(|(agent, facts)| aggregate(Some(agent.to_string()), &facts))
        .collect();
    out.push(aggregate(None, facts));
    out
}

/// Which runs a report covers.
#[derive(Clone, Debug, Default)]
pub struct ReportFilter {
    /// Only runs of this agent.
    pub agent: Option<String>,
    /// Only runs of this version (fingerprint prefix or label).
    pub version: Option<String>,
    /// Only runs created at or after this time (ms since the epoch).
    pub since_ms: Option<i64>,
    /// Only runs in this status now.
    pub status: Option<RunStatus>,
    /// Eval runs too (tagged `eval.suite`; left out by default).
    pub include_eval: bool,
}

/// Figures over a group of runs: rates over ended runs, averages over runs.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Figures {
    /// The agent, when grouped by agent.
    pub agent: Option<String>,
    /// The version, when grouped by version.
    pub version: Option<String>,
    /// The version's `[agent] version` label, if its runs give one.
    pub version_label: Option<String>,
    /// Runs.
    pub runs: u64,
    /// Completed.
    pub completed: u64,
    /// Failed.
    pub failed: u64,
    /// Cancelled.
    pub cancelled: u64,
    /// Waiting or paused now.
    pub stopped: u64,
    /// Runs that stopped for a human at least once.
    pub escalated: u64,
    /// Dollars, in all.
    pub cost_usd: f64,
    /// Active time of ended runs, in all (ms).
    pub wall_ms: u64,
    /// Steps, in all.
    pub steps: u64,
    /// Calls of a model without a known price (the cost is a lower bound).
    pub unpriced_calls: u64,
    /// When the last of these runs was last journaled to (ms since the epoch).
    pub last_ms: i64,
}

impl Figures {
    fn add(&mut self, run: &ReportRun) {
        self.runs += 1;
        if self.version_label.is_none() {
            self.version_label.clone_from(&run.version_label);
        }
        self.unpriced_calls += u64::from(run.unpriced_calls);
        self.last_ms = self.last_ms.max(run.updated_ms);
        match run.status {
            RunStatus::Completed => self.completed += 1,
            RunStatus::Failed => self.failed += 1,
            RunStatus::Cancelled => self.cancelled += 1,
            RunStatus::Waiting | RunStatus::Paused => self.stopped += 1,
            RunStatus::Running => {}
        }
        if run.escalated {
            self.escalated += 1;
        }
        self.cost_usd += run.cost_usd;
        if run.status.is_terminal() {
            self.wall_ms = self.wall_ms.saturating_add(run.wall_ms);
        }
        self.steps += u64::from(run.steps);
    }

    /// Completed over ended runs.
    pub fn completion_rate(&self) -> f64 {
        ratio(
            self.completed,
            self.completed + self.failed + self.cancelled,
        )
    }

    /// Failed over ended runs.
    pub fn error_rate(&self) -> f64 {
        ratio(self.failed, self.completed + self.failed + self.cancelled)
    }

    /// Escalated over all runs.
    pub fn escalation_rate(&self) -> f64 {
        ratio(self.escalated, self.runs)
    }

    /// Average dollars per run.
    pub fn avg_cost_usd(&self) -> f64 {
        if self.runs == 0 {
            0.0
        } else {
            self.cost_usd / self.runs as f64
        }
    }

    /// Average active time of an ended run, ms.
    pub fn avg_wall_ms(&self) -> f64 {
        let ended = self.completed + self.failed + self.cancelled;
        if ended == 0 {
            0.0
        } else {
            self.wall_ms as f64 / ended as f64
        }
    }

    /// Average steps per run.
    pub fn avg_steps(&self) -> f64 {
        if self.runs == 0 {
            0.0
        } else {
            self.steps as f64 / self.runs as f64
        }
    }
}

fn ratio(n: u64, d: u64) -> f64 {
    if d == 0 { 0.0 } else { n as f64 / d as f64 }
}

/// How humans decided the approvals of one tool.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ToolDecisions {
    /// The tool.
    pub tool: String,
    /// Approvals requested.
    pub requested: u64,
    /// Approved as asked.
    pub approved: u64,
    /// Approved with edited arguments.
    pub edited: u64,
    /// Rejected (by a human, or by a timeout).
    pub rejected: u64,
}

/// Figures per agent version, per day and version, and approvals per tool.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Report {
    /// Every run matched.
    pub total: Figures,
    /// Per agent (by name), then every agent together (`agent` none): `chassis stats`.
    pub by_agent: Vec<Stats>,
    /// By agent and version.
    pub by_version: Vec<Figures>,
    /// By UTC day (`YYYY-MM-DD`) and version, oldest first.
    pub by_day: Vec<(String, Vec<Figures>)>,
    /// By UTC hour (`YYYY-MM-DDTHH`) and version, oldest first, over the [`RECENT_HOURS`]
    /// before the newest run: what changes within a day, and a plot on a project's first day.
    pub by_hour: Vec<(String, Vec<Figures>)>,
    /// Approval decisions by tool.
    pub tools: Vec<ToolDecisions>,
}

const HOUR_MS: i64 = 3_600_000;

/// How many hours [`Report::by_hour`] covers, counting back from the newest run's hour.
pub const RECENT_HOURS: i64 = 48;

/// What one run brings to a report.
#[derive(Clone, Debug)]
struct ReportRun {
    agent: String,
    version: String,
    version_label: Option<String>,
    unpriced_calls: u32,
    updated_ms: i64,
    created_ms: i64,
    day: String,
    status: RunStatus,
    escalated: bool,
    cost_usd: f64,
    wall_ms: u64,
    steps: u32,
}

/// What one run brings to a report, whole: kept by a [`ReportCache`] once the run has ended,
/// since an ended run never changes.
#[derive(Debug)]
struct Contribution {
    run: ReportRun,
    facts: RunFacts,
    eval: bool,
    tools: BTreeMap<String, ToolDecisions>,
}

impl Contribution {
    /// `None` when the run's journal does not fold.
    fn of(summary: &RunSummary, records: &[Record]) -> Option<Contribution> {
        let state = RunState::fold(records.iter().map(|r| &r.event)).ok()?;
        let ended_at = records
            .last()
            .map_or(0, |r| u64::try_from(r.at_ms).unwrap_or(0));
        let mut tools = BTreeMap::new();
        count_decisions(records, &mut tools);
        Some(Contribution {
            facts: RunFacts::of_state(summary, &state, records),
            eval: state.tags.contains_key("eval.suite"),
            run: ReportRun {
                agent: summary.agent.clone(),
                version: state.version.clone(),
                version_label: state.version_label.clone(),
                unpriced_calls: state.unpriced_calls,
                updated_ms: summary.updated_ms,
                created_ms: summary.created_ms,
                day: crate::time::utc_day(summary.created_ms),
                status: state.status(),
                escalated: records
                    .iter()
                    .any(|r| matches!(r.event, Event::RunWaiting { .. })),
                cost_usd: state.cost_usd(),
                wall_ms: state.wall_ms(ended_at),
                steps: state.steps(),
            },
            tools,
        })
    }
}

/// Ended runs' contributions to reports, so that a long-lived process (the server) reads each
/// ended run's journal once, not at every report. Runs still going are read every time.
#[derive(Debug, Default)]
pub struct ReportCache {
    ended: Mutex<HashMap<String, Arc<Contribution>>>,
}

impl ReportCache {
    /// How many ended runs are kept.
    pub fn len(&self) -> usize {
        self.ended.lock().map_or(0, |m| m.len())
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get(&self, run_id: &str) -> Option<Arc<Contribution>> {
        self.ended.lock().ok()?.get(run_id).cloned()
    }

    fn keep(&self, run_id: &str, contribution: Arc<Contribution>) {
        if let Ok(mut ended) = self.ended.lock() {
            ended.insert(run_id.to_string(), contribution);
        }
    }
}

/// The report over the runs `filter` matches, read from the journal.
pub async fn report(
    journal: &dyn chassis_store::Journal,
    filter: &ReportFilter,
) -> Result<Report, chassis_store::Error> {
    report_cached(journal, filter, &ReportCache::default()).await
}

/// [`report`], taking ended runs from `cache` and keeping the ones it reads there.
pub async fn report_cached(
    journal: &dyn chassis_store::Journal,
    filter: &ReportFilter,
    cache: &ReportCache,
) -> Result<Report, chassis_store::Error> {
    let runs = journal
        .list(&chassis_store::ListFilter {
            agent: filter.agent.clone(),
            version: filter.version.clone(),
            since_ms: filter.since_ms,
            status: filter.status,
            ..chassis_store::ListFilter::default()
        })
        .await?;
    let mut report = Report::default();
    let mut facts = Vec::new();
    let mut by_version: BTreeMap<(String, String), Figures> = BTreeMap::new();
    let mut by_day: BTreeMap<String, BTreeMap<(String, String), Figures>> = BTreeMap::new();
    // By hour since the epoch; trimmed to the recent ones at the end.
    let mut by_hour: BTreeMap<i64, BTreeMap<(String, String), Figures>> = BTreeMap::new();
    let mut tools: BTreeMap<String, ToolDecisions> = BTreeMap::new();
    for summary in runs.iter().rev() {
        let ended = summary.status.is_terminal();
        let contribution = match cache.get(&summary.run_id).filter(|_| ended) {
            Some(kept) => kept,
            None => {
                let records = match journal.load(&summary.run_id).await {
                    Ok(records) => records,
                    // One run whose journal does not decode is left out, not the report.
                    Err(e @ chassis_store::Error::Corrupt { .. }) => {
                        tracing::warn!(run_id = %summary.run_id, error = %e, "run left out of the statistics: its journal cannot be read");
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                let Some(made) = Contribution::of(summary, &records) else {
                    continue;
                };
                let made = Arc::new(made);
                if ended {
                    cache.keep(&summary.run_id, Arc::clone(&made));
                }
                made
            }
        };
        if !filter.include_eval && contribution.eval {
            continue;
        }
        let run = &contribution.run;
        facts.push(contribution.facts.clone());
        report.total.add(run);
        let key = (run.agent.clone(), run.version.clone());
        let group = |agent: &str, version: &str| Figures {
            agent: Some(agent.to_string()),
            version: Some(version.to_string()),
            ..Figures::default()
        };
        by_version
            .entry(key.clone())
            .or_insert_with(|| group(&run.agent, &run.version))
            .add(run);
        by_day
            .entry(run.day.clone())
            .or_default()
            .entry(key.clone())
            .or_insert_with(|| group(&run.agent, &run.version))
            .add(run);
        by_hour
            .entry(run.created_ms.div_euclid(HOUR_MS))
            .or_default()
            .entry(key)
            .or_insert_with(|| group(&run.agent, &run.version))
            .add(run);
        for (tool, counted) in &contribution.tools {
            let entry = tools.entry(tool.clone()).or_insert_with(|| ToolDecisions {
                tool: tool.clone(),
                ..ToolDecisions::default()
            });
            entry.requested += counted.requested;
            entry.approved += counted.approved;
            entry.edited += counted.edited;
            entry.rejected += counted.rejected;
        }
    }
    report.by_version = by_version.into_values().collect();
    report.by_day = by_day
        .into_iter()
        .map(|(day, rows)| (day, rows.into_values().collect()))
        .collect();
    let oldest = by_hour
        .last_key_value()
        .map_or(0, |(newest, _)| newest.saturating_sub(RECENT_HOURS - 1));
    report.by_hour = by_hour
        .into_iter()
        .filter(|(hour, _)| *hour >= oldest)
        .map(|(hour, rows)| {
            let start = u64::try_from(hour.saturating_mul(HOUR_MS)).unwrap_or(0);
            let label = crate::time::rfc3339_millis(start);
            (label[..13].to_string(), rows.into_values().collect())
        })
        .collect();
    report.tools = tools.into_values().collect();
    // Oldest first above; the per-agent figures are the same whatever the order.
    report.by_agent = match &filter.agent {
        Some(agent) => vec![aggregate(Some(agent.clone()), &facts)],
        None => per_agent(&facts),
    };
    Ok(report)
}

/// Counts the approvals a run asked for and how they were decided, by tool.
fn count_decisions(records: &[Record], tools: &mut BTreeMap<String, ToolDecisions>) {
    let mut tool_of: BTreeMap<String, String> = BTreeMap::new();
    for record in records {
        match &record.event {
            Event::ApprovalRequested { call_id, tool, .. } => {
                tool_of.insert(call_id.clone(), tool.clone());
                let entry = tools.entry(tool.clone()).or_insert_with(|| ToolDecisions {
                    tool: tool.clone(),
                    ..ToolDecisions::default()
                });
                entry.requested += 1;
            }
            Event::ApprovalDecided {
                call_id,
                approved,
                args,
                ..
            } => {
                let Some(entry) = tool_of.get(call_id).and_then(|tool| tools.get_mut(tool)) else {
                    continue;
                };
                match (approved, args.is_some()) {
                    (true, false) => entry.approved += 1,
                    (true, true) => entry.edited += 1,
                    (false, _) => entry.rejected += 1,
                }
            }
            // An escalation is not a decision; the rest are not about approvals.
            Event::ApprovalEscalated { .. }
            | Event::RunStarted(_)
            | Event::ModelRequested { .. }
            | Event::ModelResponded { .. }
            | Event::ModelAttemptFailed { .. }
            | Event::ModelCircuitOpen { .. }
            | Event::ModelFallback { .. }
            | Event::ModelFailed { .. }
            | Event::ModelSwitched { .. }
            | Event::ContextCompacted { .. }
            | Event::ToolRefused { .. }
            | Event::ToolStarted { .. }
            | Event::ToolFinished { .. }
            | Event::ToolAttemptFailed { .. }
            | Event::OutcomeResolved { .. }
            | Event::ToolOutcomeUnknown { .. }
            | Event::LimitReached { .. }
            | Event::LimitRaised { .. }
            | Event::LimitRejected { .. }
            | Event::CancelRequested { .. }
            | Event::ResumeRequested { .. }
            | Event::UserMessage { .. }
            | Event::RunWaiting { .. }
            | Event::RunPaused { .. }
            | Event::RunResumed { .. }
            | Event::RunCompleted { .. }
            | Event::RunFailed { .. }
            | Event::RunCancelled { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(
        agent: &str,
        status: RunStatus,
        escalations: u32,
        cost: f64,
        ms: Option<u64>,
    ) -> RunFacts {
        RunFacts {
            agent: agent.into(),
            status,
            escalations,
            cost_usd: cost,
            unpriced_calls: 0,
            steps: 2,
            completion_ms: ms,
            active_ms: ms,
        }
    }

    #[test]
    fn rates_are_over_ended_runs_and_averages_over_their_sets() {
        let all = [
            facts("a", RunStatus::Completed, 0, 0.10, Some(1000)),
            facts("a", RunStatus::Completed, 1, 0.20, Some(3000)),
            facts("a", RunStatus::Failed, 0, 0.30, None),
            facts("b", RunStatus::Waiting, 1, 0.0, None),
        ];
        let stats = per_agent(&all);
        assert_eq!(stats.len(), 3);
        let a = &stats[0];
        assert_eq!(a.agent.as_deref(), Some("a"));
        assert_eq!(a.completion_rate, Some(2.0 / 3.0));
        assert_eq!(a.error_rate, Some(1.0 / 3.0));
        assert_eq!(a.escalation_rate, Some(1.0 / 3.0));
        assert!((a.avg_cost_usd.unwrap() - 0.2).abs() < 1e-9);
        assert_eq!(a.avg_time_to_completion_ms, Some(2000.0));
        let b = &stats[1];
        assert_eq!(b.completion_rate, None);
        assert_eq!(b.escalation_rate, Some(1.0));
        let total = &stats[2];
        assert_eq!(total.agent, None);
        assert_eq!(total.runs, 4);
        assert_eq!(total.escalations, 2);
        assert_eq!(total.by_status["waiting"], 1);
        assert_eq!(aggregate(None, &[]).avg_cost_usd, None);
    }
}
