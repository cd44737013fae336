//! The outbox: notifications queued with the events that raised them, delivered later.
//!
//! A notification is written in the same transaction as its event
//! ([`crate::Journal::append_with`]), so a crash can lose neither without the other. Any
//! process delivers it: [`Outbox::claim_deliveries`] leases due deliveries (so two processes do
//! not post the same one at once), [`Outbox::record_attempt`] books what an attempt gave, until
//! the receiver acknowledged it or it expired.

use std::time::Duration;

use async_trait::async_trait;

use crate::Error;

/// A notification to queue with an append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    /// Unique and stable: the receiver deduplicates by it (`RUN.SEQ`, the event's place).
    pub delivery_id: String,
    /// The run it is about.
    pub run_id: String,
    /// The event that raised it.
    pub seq: u64,
    /// Its kind (`run_completed`, …).
    pub kind: String,
    /// Where it is posted.
    pub url: String,
    /// The name of the variable holding the signing secret (never the secret).
    pub secret_env: String,
    /// The JSON body, as posted.
    pub body: String,
    /// How long it may be retried, from when it is queued.
    pub expire_after: Duration,
}

/// Where a delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeliveryStatus {
    /// Not yet acknowledged; retried when due.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Given up: expired before any attempt was acknowledged.
    Failed,
}

impl DeliveryStatus {
    /// As stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }

    /// The status named `text`.
    pub fn parse(text: &str) -> Option<DeliveryStatus> {
        match text {
            "pending" => Some(DeliveryStatus::Pending),
            "delivered" => Some(DeliveryStatus::Delivered),
            "failed" => Some(DeliveryStatus::Failed),
            _ => None,
        }
    }
}

impl std::fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A queued notification and its delivery so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The notification's stable id.
    pub delivery_id: String,
    /// The run it is about.
    pub run_id: String,
    /// The event that raised it.
    pub seq: u64,
    /// Its kind.
    pub kind: String,
    /// Where it is posted.
    pub url: String,
    /// The variable holding the signing secret.
    pub secret_env: String,
    /// The JSON body.
    pub body: String,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts made.
    pub attempts: u32,
    /// When it was queued (ms since the epoch).
    pub created_ms: i64,
    /// When it is given up if not acknowledged.
    pub expires_ms: i64,
    /// When it is next due, while pending.
    pub next_attempt_ms: i64,
    /// What the last failed attempt gave (a status, or why there was none).
    pub last_error: Option<String>,
    /// When it was delivered or given up.
    pub done_ms: Option<i64>,
    /// The claim's fencing token (0 when listed, not claimed).
    pub token: u64,
}

/// What one delivery attempt gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// The receiver answered 2xx.
    Delivered,
    /// It did not; try again after `retry_in`, unless that is past the expiry (or `None`).
    Failed {
        /// Why, for people (`503 Service Unavailable`, `connection refused`).
        error: String,
        /// When to try again.
        retry_in: Option<Duration>,
    },
}

/// Which deliveries to list.
#[derive(Clone, Debug, Default)]
pub struct OutboxFilter {
    /// Only these.
    pub status: Option<DeliveryStatus>,
    /// Only about this run.
    pub run_id: Option<String>,
    /// At most this many, newest first.
    pub limit: Option<usize>,
}

/// The outbox every journal keeps beside its runs.
#[async_trait]
pub trait Outbox: Send + Sync {
    /// Leases up to `limit` pending deliveries that are due and not leased (or whose lease
    /// expired) to `owner` for `ttl`; each is given to one claimer at a time.
    async fn claim_deliveries(
        &self,
        owner: &str,
        ttl: Duration,
        limit: usize,
    ) -> Result<Vec<Delivery>, Error>;

    /// Books an attempt of a claimed delivery and frees it. A delivery acknowledged is marked
    /// delivered whoever claimed it (the receiver has it); a failure counts only from the
    /// delivery's current claimer (false otherwise). A failure whose retry would come after
    /// the expiry marks it failed.
    async fn record_attempt(&self, delivery: &Delivery, attempt: Attempt) -> Result<bool, Error>;

    /// Deliveries matching the filter, newest first.
    async fn deliveries(&self, filter: &OutboxFilter) -> Result<Vec<Delivery>, Error>;

    /// When the next pending delivery is due (ms since the epoch), if any is pending.
    async fn next_delivery_ms(&self) -> Result<Option<i64>, Error>;
}

/// The delivery id of the notification raised by event `seq` of `run_id`.
pub fn delivery_id(run_id: &str, seq: u64) -> String {
    format!("{run_id}.{seq}")
}
