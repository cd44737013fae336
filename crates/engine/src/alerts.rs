//! Alerts: a structured log line always, and a JSON POST to the configured webhook.
//!
//! Delivery never blocks a run: posts run in the background with retries; a command that is
//! about to exit waits for them a bounded time ([`Alerts::drain`]).

use std::sync::Mutex;
use std::time::Duration;

use chassis_http::HttpVersion;
use serde_json::Value;
use tokio::task::JoinSet;

/// Attempts per webhook delivery.
const ATTEMPTS: u32 = chassis_providers::RetryPolicy::ALERTS.max_attempts;

/// Where alerts go.
pub struct Alerts {
    webhook: Option<String>,
    /// `None` when no HTTP client could be built: alerts then go to the log only.
    http: Option<reqwest::Client>,
    pending: Mutex<JoinSet<()>>,
}

impl Alerts {
    /// Alerts to the log, and to `webhook` when set.
    pub fn new(webhook: Option<String>) -> Alerts {
        let http = chassis_http::builder(HttpVersion::Auto)
            .timeout(Duration::from_secs(5))
            .build()
            .inspect_err(|e| {
                tracing::error!(error = %e, "cannot build the alert webhook's HTTP client; alerts go to the log only")
            })
            .ok();
        Alerts {
            webhook,
            http,
            pending: Mutex::new(JoinSet::new()),
        }
    }

    /// Emits an alert of `kind` (e.g. `limit_reached`) about `run_id` with details.
    pub fn emit(&self, kind: &str, run_id: &str, agent: &str, details: Value) {
        tracing::warn!(alert = kind, run_id, agent, details = %details, "alert");
        let (Some(url), Some(http)) = (self.webhook.clone(), self.http.clone()) else {
            return;
        };
        let body = serde_json::json!({
            "alert": kind,
            "run_id": run_id,
            "agent": agent,
            "details": details,
            "at_ms": crate::now_ms(),
        });
        let kind = kind.to_string();
        let run_id = run_id.to_string();
        let task = async move {
            for attempt in 1..=ATTEMPTS {
                match http.post(&url).json(&body).send().await {
                    Ok(response) if response.status().is_success() => return,
                    Ok(response) => {
                        tracing::warn!(alert = %kind, run_id = %run_id, attempt, status = response.status().as_u16(), "alert webhook refused the alert")
                    }
                    Err(e) => {
                        tracing::warn!(alert = %kind, run_id = %run_id, attempt, error = %e.without_url(), "alert webhook unreachable")
                    }
                }
                if attempt < ATTEMPTS {
                    let policy = chassis_providers::RetryPolicy::ALERTS;
                    tokio::time::sleep(policy.backoff(attempt, chassis_providers::jitter())).await;
                }
            }
            tracing::error!(alert = %kind, run_id = %run_id, "alert not delivered to the webhook after {ATTEMPTS} attempts");
        };
        if let Ok(mut pending) = self.pending.lock() {
            pending.spawn(task);
        }
    }

    /// Waits up to `deadline` for alerts still being delivered.
    pub async fn drain(&self, deadline: Duration) {
        let mut pending = match self.pending.lock() {
            Ok(mut pending) => std::mem::take(&mut *pending),
            Err(_) => return,
        };
        let _ = tokio::time::timeout(deadline, async {
            while pending.join_next().await.is_some() {}
        })
        .await;
    }
}
