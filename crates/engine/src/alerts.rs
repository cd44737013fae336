//! Alerts as log lines: one structured line per notification, once its event is durable.
//!
//! Webhooks are not posted from here: a notification is queued in the journal's outbox with
//! its event (`outbox.rs`) and delivered by whichever process runs a dispatcher.

use serde_json::Value;

/// Where alerts are logged.
#[derive(Debug, Default)]
pub struct Alerts;

impl Alerts {
    /// Alerts to the log.
    pub fn new() -> Alerts {
        Alerts
    }

    /// Logs an alert of `kind` (e.g. `limit_reached`) about `run_id` with details.
    pub fn emit(&self, kind: &str, run_id: &str, agent: &str, details: Value) {
        tracing::warn!(alert = kind, run_id, agent, details = %details, "alert");
    }
}
