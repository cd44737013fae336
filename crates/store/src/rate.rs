//! Provider rate limits shared by every process on one store.
//!
//! Each limited provider has a row holding, for requests and for tokens, the *theoretical
//! arrival time* of the next call (GCRA, a token bucket without a burst): a call may go when
//! both are past, and each moves them on by its cost (a minute over `rpm` per request,
//! `tokens` minutes over `tpm`). Checked and moved in one transaction, so N workers together
//! stay under the limit; a call that may not go yet is told how long to wait.

use std::time::Duration;

use async_trait::async_trait;

use crate::Error;

/// A provider's limits and what one call costs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    /// Requests per minute, if limited.
    pub rpm: Option<u32>,
    /// Tokens per minute, if limited.
    pub tpm: Option<u32>,
    /// The call's tokens, counted against `tpm`.
    pub tokens: u64,
}

impl Capacity {
    /// What the call moves the request and token clocks on by, in microseconds.
    pub fn costs_us(&self) -> (i64, i64) {
        let per = |per_minute: Option<u32>, units: u64| match per_minute {
            Some(n) if n > 0 => i64::try_from(units.saturating_mul(60_000_000) / u64::from(n))
                .unwrap_or(i64::MAX / 4),
            _ => 0,
        };
        (per(self.rpm, 1), per(self.tpm, self.tokens))
    }
}

/// Rate limits kept in the store.
#[async_trait]
pub trait RateLimits: Send + Sync {
    /// Takes capacity for one call to the provider `key`: `None` when it may go now (the
    /// capacity is taken), else how long to wait before asking again (nothing is taken).
    async fn acquire(&self, key: &str, capacity: Capacity) -> Result<Option<Duration>, Error>;
}

/// What a wait in microseconds is as a duration (at least a millisecond, so a caller asking
/// again does not spin).
pub(crate) fn wait_of(us: i64) -> Duration {
    Duration::from_micros(u64::try_from(us).unwrap_or(0)).max(Duration::from_millis(1))
}
