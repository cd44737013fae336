//! Webhook notifications: built with the events that raise them, delivered from the outbox.
//!
//! [`notifications`] turns a write's events into outbox entries (the store writes both in one
//! transaction); a [`Dispatcher`] in any process (a worker, `chassis serve`, `chassis run` on
//! its way out) claims due entries with a lease, posts each signed, and books the attempt:
//! acknowledged (2xx), or retried with backoff ([`RetryPolicy::WEBHOOKS`]) until it expires.
//!
//! Every request carries `Chassis-Delivery` (the notification's stable id: a receiver that
//! sees it twice drops the second), `Chassis-Timestamp` (Unix seconds, when the attempt was
//! made) and `Chassis-Signature: v1=HEX`, HMAC-SHA256 with the secret read by name from the
//! delivering process's environment over `TIMESTAMP.BODY`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chassis_core::Event;
use chassis_core::spec::AlertsSpec;
use chassis_http::HttpVersion;
use chassis_providers::RetryPolicy;
use chassis_store::{Attempt, Delivery, Journal, Notification};
use tokio::sync::Notify;

/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a claim on a delivery lasts: the request's timeout and a margin, so a process that
/// died mid-request leaves its deliveries to others soon.
const CLAIM_TTL: Duration = Duration::from_secs(15);

/// Most deliveries one pass claims (and posts at once).
const BATCH: usize = 16;

/// The longest a dispatcher sleeps before it looks at the outbox again.
const POLL: Duration = Duration::from_secs(1);

/// The header carrying the delivery id.
pub const DELIVERY_HEADER: &str = "chassis-delivery";
/// The header carrying the attempt's time (Unix seconds).
pub const TIMESTAMP_HEADER: &str = "chassis-timestamp";
/// The header carrying the signature, `v1=` and the hex HMAC-SHA256 of `TIMESTAMP.BODY`.
pub const SIGNATURE_HEADER: &str = "chassis-signature";

/// The shortest signing secret accepted: HMAC-SHA256 with a guessable key proves nothing.
pub const MIN_WEBHOOK_SECRET_LEN: usize = 16;

/// What a run is, for the notifications it raises.
pub(crate) struct About<'a> {
    pub(crate) run_id: &'a str,
    pub(crate) agent: &'a str,
    pub(crate) version: &'a str,
    pub(crate) at_ms: u64,
}

/// The notifications `events` raise, the first of them at sequence `first_seq`, as `alerts`
/// selects them; each also makes its log line now.
pub(crate) fn notifications(
    alerts: &AlertsSpec,
    about: &About<'_>,
    first_seq: u64,
    events: &[Event],
) -> Vec<Notification> {
    let mut out = Vec::new();
    for (seq, event) in (first_seq..).zip(events) {
        let Some((kind, details)) = chassis_core::notify::of(event) else {
            continue;
        };
        let Some(url) = alerts.webhook.as_ref().filter(|_| alerts.sends(kind)) else {
            continue;
        };
        let delivery_id = chassis_store::delivery_id(about.run_id, seq);
        let body = serde_json::json!({
            "alert": kind.as_str(),
            "delivery_id": delivery_id,
            "run_id": about.run_id,
            "seq": seq,
            "agent": about.agent,
            "version": about.version,
            "details": details,
            "at_ms": about.at_ms,
        });
        out.push(Notification {
            delivery_id,
            run_id: about.run_id.to_string(),
            seq,
            kind: kind.as_str().to_string(),
            url: url.clone(),
            secret_env: alerts.secret_env.clone(),
            body: body.to_string(),
            expire_after: Duration::from_millis(alerts.expire_after_ms),
        });
    }
    out
}

/// The signature of `body` sent at `timestamp` (Unix seconds): `v1=` and the hex HMAC-SHA256
/// of `TIMESTAMP.BODY` under `secret`.
pub fn sign(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut context = ring::hmac::Context::with_key(&key);
    context.update(timestamp.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    let tag = context.sign();
    let mut hex = String::with_capacity(3 + 64);
    hex.push_str("v1=");
    for byte in tag.as_ref() {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex
}

/// Whether `signature` (a header's value) signs `body` sent at `timestamp` under `secret`,
/// compared in constant time: what a receiver written in Rust checks.
pub fn verify(secret: &[u8], timestamp: u64, body: &[u8], signature: &str) -> bool {
    let Some(hex) = signature.trim().strip_prefix("v1=") else {
        return false;
    };
    let Some(tag) = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
    else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut message = timestamp.to_string().into_bytes();
    message.push(b'.');
    message.extend_from_slice(body);
    ring::hmac::verify(&key, &message, &tag).is_ok()
}

/// Delivers the outbox's notifications from this process.
pub struct Dispatcher {
    journal: Arc<dyn Journal>,
    http: reqwest::Client,
    owner: String,
    policy: RetryPolicy,
    signal: Arc<Notify>,
}

impl Dispatcher {
    /// A dispatcher claiming deliveries as `owner`, woken early by `signal` (the engine's: told
    /// when this process queues notifications).
    pub fn new(
        journal: Arc<dyn Journal>,
        owner: impl Into<String>,
        signal: Arc<Notify>,
    ) -> Result<Dispatcher, crate::Error> {
        let http = chassis_http::builder(HttpVersion::Auto)
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| {
                crate::Error::Refused(format!("cannot build the webhooks' HTTP client: {e}"))
            })?;
        Ok(Dispatcher {
            journal,
            http,
            owner: owner.into(),
            policy: RetryPolicy::WEBHOOKS,
            signal,
        })
    }

    /// A dispatcher for `engine`'s journal, woken when the engine queues notifications.
    pub fn for_engine(
        engine: &crate::Engine,
        owner: impl Into<String>,
    ) -> Result<Dispatcher, crate::Error> {
        Dispatcher::new(Arc::clone(engine.journal()), owner, engine.outbox_signal())
    }

    /// One pass: claims the deliveries due now and attempts each (at once); returns how many
    /// were attempted.
    pub async fn deliver_due(&self) -> Result<usize, crate::Error> {
        let due = self
            .journal
            .claim_deliveries(&self.owner, CLAIM_TTL, BATCH)
            .await?;
        let count = due.len();
        let attempts = due.iter().map(|delivery| self.attempt(delivery));
        futures_util::future::join_all(attempts).await;
        Ok(count)
    }

    /// Delivers until `stop` resolves: a pass whenever something is due, or this process
    /// queued something, or every second at least (another process may have).
    pub async fn run(&self, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            let wait = match self.deliver_due().await {
                Ok(n) if n > 0 => Duration::ZERO,
                Ok(_) => self.until_next_due().await,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot claim webhook deliveries; retrying");
                    POLL
                }
            };
            tokio::select! {
                () = &mut stop => return,
                () = self.signal.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Delivers until no notification of `run_id` is pending, for at most `deadline` (a
    /// command about to exit), posting whatever else is due meanwhile. What is left is
    /// delivered by the next process that runs a dispatcher.
    pub async fn flush_run(&self, run_id: &str, deadline: Duration) {
        let filter = chassis_store::OutboxFilter {
            status: Some(chassis_store::DeliveryStatus::Pending),
            run_id: Some(run_id.to_string()),
            limit: None,
        };
        let _ = tokio::time::timeout(deadline, async {
            loop {
                if matches!(self.deliver_due().await, Ok(n) if n > 0) {
                    continue;
                }
                let Ok(pending) = self.journal.deliveries(&filter).await else {
                    return;
                };
                let Some(next) = pending.iter().map(|d| d.next_attempt_ms).min() else {
                    return;
                };
                let now = i64::try_from(self.journal.clock().now_ms()).unwrap_or(i64::MAX);
                let wait = u64::try_from(next.saturating_sub(now)).unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(wait.clamp(20, 1000))).await;
            }
        })
        .await;
    }

    async fn until_next_due(&self) -> Duration {
        match self.journal.next_delivery_ms().await {
            Ok(Some(at)) => {
                let now = i64::try_from(self.journal.clock().now_ms()).unwrap_or(i64::MAX);
                Duration::from_millis(u64::try_from(at.saturating_sub(now)).unwrap_or(0))
                    .clamp(Duration::from_millis(20), POLL)
            }
            Ok(None) | Err(_) => POLL,
        }
    }

    /// Posts one delivery and books what it gave.
    async fn attempt(&self, delivery: &Delivery) {
        let outcome = self.post(delivery).await;
        let attempt = match outcome {
            Ok(()) => {
                tracing::info!(delivery_id = %delivery.delivery_id, run_id = %delivery.run_id, alert = %delivery.kind, "webhook delivered");
                Attempt::Delivered
            }
            Err((error, retry_after)) => {
                let backoff = self
                    .policy
                    .backoff(delivery.attempts + 1, chassis_providers::jitter())
                    .max(Duration::from_millis(100));
                let retry_in = match retry_after {
                    Some(asked) if asked <= self.policy.retry_after_cap => asked.max(backoff),
                    _ => backoff,
                };
                tracing::warn!(delivery_id = %delivery.delivery_id, run_id = %delivery.run_id, alert = %delivery.kind, attempt = delivery.attempts + 1, %error, retry_in_s = retry_in.as_secs_f64(), "webhook not delivered");
                Attempt::Failed {
                    error,
                    retry_in: Some(retry_in),
                }
            }
        };
        let failed = matches!(attempt, Attempt::Failed { .. });
        match self.journal.record_attempt(delivery, attempt).await {
            Ok(true) => {}
            Ok(false) if failed => {
                tracing::debug!(delivery_id = %delivery.delivery_id, "the delivery was claimed by another process meanwhile");
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(delivery_id = %delivery.delivery_id, error = %e, "cannot record the webhook attempt; its claim will lapse")
            }
        }
        let expired =
            i64::try_from(self.journal.clock().now_ms()).unwrap_or(i64::MAX) >= delivery.expires_ms;
        if failed && expired {
            tracing::error!(delivery_id = %delivery.delivery_id, run_id = %delivery.run_id, alert = %delivery.kind, "webhook given up: it expired before the receiver acknowledged it");
        }
    }

    /// One POST; the error says why it was not acknowledged, with the `Retry-After` asked.
    async fn post(&self, delivery: &Delivery) -> Result<(), (String, Option<Duration>)> {
        let secret = std::env::var(&delivery.secret_env)
            .ok()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                (
                    format!(
                        "the signing secret's variable {} is not set in the delivering process",
                        delivery.secret_env
                    ),
                    None,
                )
            })?;
        let timestamp = crate::now_ms() / 1000;
        let signature = sign(secret.as_bytes(), timestamp, delivery.body.as_bytes());
        let response = self
            .http
            .post(&delivery.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(DELIVERY_HEADER, &delivery.delivery_id)
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(SIGNATURE_HEADER, signature)
            .body(delivery.body.clone())
            .send()
            .await
            .map_err(|e| (e.without_url().to_string(), None))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        Err((status.to_string(), retry_after))
    }
}

/// A delivery as people look at it (`chassis outbox`, `GET /v1/outbox`): never the secret,
/// only the name of its variable.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DeliveryView {
    /// The notification's stable id (`RUN.SEQ`), sent as `Chassis-Delivery`.
    pub delivery_id: String,
    /// The run it is about.
    pub run_id: String,
    /// The event that raised it.
    pub seq: u64,
    /// Its kind (`run_completed`, …).
    pub kind: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    /// Where it is posted.
    pub url: String,
    /// The variable its signing secret is read from.
    pub secret_env: String,
    /// Attempts made.
    pub attempts: u32,
    /// When it was queued (ms since the epoch).
    pub created_ms: i64,
    /// When it is given up if not acknowledged.
    pub expires_ms: i64,
    /// When it is next tried, while pending.
    pub next_attempt_ms: Option<i64>,
    /// When it was delivered or given up.
    pub done_ms: Option<i64>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// The body, as posted.
    pub body: serde_json::Value,
}

impl From<Delivery> for DeliveryView {
    fn from(d: Delivery) -> DeliveryView {
        let pending = d.status == chassis_store::DeliveryStatus::Pending;
        DeliveryView {
            body: serde_json::from_str(&d.body).unwrap_or(serde_json::Value::String(d.body)),
            delivery_id: d.delivery_id,
            run_id: d.run_id,
            seq: d.seq,
            kind: d.kind,
            status: d.status.as_str().to_string(),
            url: d.url,
            secret_env: d.secret_env,
            attempts: d.attempts,
            created_ms: d.created_ms,
            expires_ms: d.expires_ms,
            next_attempt_ms: pending.then_some(d.next_attempt_ms),
            done_ms: d.done_ms,
            last_error: d.last_error,
        }
    }
}

/// The deliveries in `journal`'s outbox, newest first: what `chassis outbox` and
/// `GET /v1/outbox` list.
pub async fn list_deliveries(
    journal: &dyn Journal,
    filter: &chassis_store::OutboxFilter,
) -> Result<Vec<DeliveryView>, crate::Error> {
    Ok(journal
        .deliveries(filter)
        .await?
        .into_iter()
        .map(DeliveryView::from)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_and_any_change_breaks_it() {
        let secret = b"0123456789abcdef-secret";
        let signature = sign(secret, 1_700_000_000, b"{\"a\":1}");
        assert!(signature.starts_with("v1=") && signature.len() == 67);
        assert!(verify(secret, 1_700_000_000, b"{\"a\":1}", &signature));
        assert!(!verify(secret, 1_700_000_001, b"{\"a\":1}", &signature));
        assert!(!verify(secret, 1_700_000_000, b"{\"a\":2}", &signature));
        assert!(!verify(
            b"another secret!!",
            1_700_000_000,
            b"{\"a\":1}",
            &signature
        ));
        assert!(!verify(secret, 1_700_000_000, b"{\"a\":1}", "v1=zz"));
        assert!(!verify(secret, 1_700_000_000, b"{\"a\":1}", "é"));
    }

    #[test]
    fn only_selected_kinds_of_a_configured_webhook_are_queued() {
        let about = About {
            run_id: "run_1",
            agent: "a",
            version: "v",
            at_ms: 5,
        };
        let events = [
            Event::RunResumed { at_ms: 1 },
            Event::RunWaiting {
                reason: "approval".to_string(),
                at_ms: 1,
            },
            Event::RunCompleted {
                output: "ok".to_string(),
            },
        ];
        assert!(notifications(&AlertsSpec::default(), &about, 7, &events).is_empty());
        let mut alerts = AlertsSpec {
            webhook: Some("http://127.0.0.1:1/h".to_string()),
            ..AlertsSpec::default()
        };
        let all = notifications(&alerts, &about, 7, &events);
        assert_eq!(
            all.iter()
                .map(|n| n.delivery_id.as_str())
                .collect::<Vec<_>>(),
            ["run_1.8", "run_1.9"]
        );
        let body: serde_json::Value = serde_json::from_str(&all[1].body).unwrap();
        assert_eq!(body["alert"], "run_completed");
        assert_eq!(body["details"]["output"], "ok");
        assert_eq!(body["delivery_id"], "run_1.9");
        alerts.events = vec![chassis_core::NotifyKind::RunCompleted];
        let some = notifications(&alerts, &about, 7, &events);
        assert_eq!(some.len(), 1);
        assert_eq!(some[0].kind, "run_completed");
        assert_eq!(some[0].secret_env, "CHASSIS_WEBHOOK_SECRET");
    }
}
