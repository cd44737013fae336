//! Retention: which ended runs a purge removes, their archive form, and the purge itself.
//!
//! A purge never touches a run that has not ended (running, waiting, paused): the statuses it
//! takes are ended ones, and the store checks again as it deletes ([`Journal::purge`]).
//!
//! [`Journal::purge`]: chassis_store::Journal::purge

use chassis_core::RunStatus;
use chassis_store::{ListFilter, Purged, RunSummary};
use serde_json::{Value, json};

use crate::{Engine, Error};

/// How many runs one delete (one transaction) takes.
const PURGE_BATCH: usize = 500;

/// Which runs a purge removes.
#[derive(Clone, Debug)]
pub struct PurgeFilter {
    /// Runs whose last event is older than this many ms.
    pub older_than_ms: u64,
    /// Of these statuses (ended ones only; all three by default).
    pub statuses: Vec<RunStatus>,
    /// Of this agent only.
    pub agent: Option<String>,
}

impl Engine {
    /// The ended runs `filter` selects, oldest activity first. A status that has not ended is
    /// refused: running, waiting and paused runs are never purged.
    pub async fn purgeable(&self, filter: &PurgeFilter) -> Result<Vec<RunSummary>, Error> {
        if let Some(status) = filter.statuses.iter().find(|s| !s.is_terminal()) {
            return Err(Error::Invalid(format!(
                "--status {status}: only ended runs (completed, failed, cancelled) are purged"
            )));
        }
        let cutoff =
            i64::try_from(self.now_ms().saturating_sub(filter.older_than_ms)).unwrap_or(i64::MAX);
        let mut found = Vec::new();
        for status in &filter.statuses {
            let mut after = None;
            loop {
                let page = self
                    .journal()
                    .list(&ListFilter {
                        status: Some(*status),
                        agent: filter.agent.clone(),
                        // Created before the cutoff: a run's last event is never older.
                        until_ms: Some(cutoff),
                        limit: Some(crate::MAX_PAGE),
                        after: after.clone(),
                        ..ListFilter::default()
                    })
                    .await?;
                let Some(last) = page.last() else { break };
                after = Some((last.created_ms, last.run_id.clone()));
                let full = page.len() == crate::MAX_PAGE;
                found.extend(page.into_iter().filter(|s| s.updated_ms < cutoff));
                if !full {
                    break;
                }
            }
        }
        found.sort_by(|a, b| (a.updated_ms, &a.run_id).cmp(&(b.updated_ms, &b.run_id)));
        Ok(found)
    }

    /// A run as an archive line holds it: `{"run_id", "agent", "status", "created_ms",
    /// "events": [{"seq", "at_ms", "event": {"kind", …}}]}`, everything `chassis import` needs
    /// to restore it exactly (the event apart from its record's fields, since some events have
    /// an `at_ms` of their own).
    pub async fn archived(&self, summary: &RunSummary) -> Result<Value, Error> {
        let records = self.journal().load(&summary.run_id).await?;
        Ok(json!({
            "run_id": summary.run_id,
            "agent": summary.agent,
            "status": summary.status.as_str(),
            "created_ms": summary.created_ms,
            "events": records
                .iter()
                .map(|r| json!({ "seq": r.seq, "at_ms": r.at_ms, "event": r.event }))
                .collect::<Vec<_>>(),
        }))
    }

    /// Deletes these runs, if they have ended, a batch per transaction.
    pub async fn purge(&self, run_ids: &[String]) -> Result<Purged, Error> {
        let mut total = Purged::default();
        for batch in run_ids.chunks(PURGE_BATCH) {
            let purged = self.journal().purge(batch).await?;
            total.runs += purged.runs;
            total.bytes += purged.bytes;
        }
        Ok(total)
    }
}
