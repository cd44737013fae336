//! Retries with exponential backoff and full jitter: a pure policy and the layer that runs it.

use std::time::Duration;

use async_trait::async_trait;

use crate::{CallEvent, ChatRequest, ChatResponse, Error, ModelClient};

/// When and how long to wait before trying a failed call again.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; 1 means no retry.
    pub max_attempts: u32,
    /// Backoff before the second attempt (before jitter); doubles each time.
    pub base_delay: Duration,
    /// Ceiling of the exponential backoff.
    pub max_delay: Duration,
    /// The longest `Retry-After` honoured; a provider asking for more is given up on.
    pub retry_after_cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(20),
            retry_after_cap: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// How tool calls back off between attempts (their number of attempts is the spec's).
    pub const TOOLS: RetryPolicy = RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(200),
        max_delay: Duration::from_secs(5),
        retry_after_cap: Duration::ZERO,
    };

    /// How webhook notifications are retried from the outbox: until they expire (their
    /// `[alerts] expire_after`, not a count), a second doubling to ten minutes, and a
    /// receiver's `Retry-After` honoured up to an hour.
    pub const WEBHOOKS: RetryPolicy = RetryPolicy {
        max_attempts: u32::MAX,
        base_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(600),
        retry_after_cap: Duration::from_secs(3600),
    };

    /// The wait after attempt `attempt` (from 1) failed, whatever failed: `base_delay` doubling
    /// up to `max_delay`, scaled by `jitter` in `[0, 1)` (full jitter). Every retry in chassis
    /// (model calls, tools, alerts) waits this way, each with its own policy.
    pub fn backoff(&self, attempt: u32, jitter: f64) -> Duration {
        let exponent = attempt.saturating_sub(1).min(30);
        let ceiling = self
            .base_delay
            .saturating_mul(1u32 << exponent)
            .min(self.max_delay);
        ceiling.mul_f64(jitter.clamp(0.0, 1.0))
    }

    /// The wait before the next attempt after attempt `attempt` (from 1) failed with `error`,
    /// or `None` to give up. `jitter` in `[0, 1)` scales the backoff (full jitter).
    pub fn delay(&self, attempt: u32, error: &Error, jitter: f64) -> Option<Duration> {
        if attempt >= self.max_attempts || !error.is_retryable() {
            return None;
        }
        let jittered = self.backoff(attempt, jitter);
        match error.retry_after() {
            Some(seconds) => {
                let asked = Duration::from_secs(seconds);
                (asked <= self.retry_after_cap).then(|| asked.max(jittered))
            }
            None => Some(jittered),
        }
    }
}

/// A random number in `[0, 1)`, from the standard library's per-process random hash keys.
pub fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    );
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// Retries a client's failed attempts according to a [`RetryPolicy`]: transient failures,
/// and a model that gave no usable reply (a model call is repeatable). Each attempt is the
/// whole call again; a streamed answer that broke midway is never resumed.
pub struct Retry<C> {
    inner: C,
    policy: RetryPolicy,
    label: String,
}

impl<C> Retry<C> {
    /// Wraps `inner`; `label` (`provider:model`) names it in reports.
    pub fn new(inner: C, policy: RetryPolicy, label: impl Into<String>) -> Retry<C> {
        Retry {
            inner,
            policy,
            label: label.into(),
        }
    }
}

#[async_trait]
impl<C: ModelClient> ModelClient for Retry<C> {
    async fn complete(&self, request: &ChatRequest<'_>) -> Result<ChatResponse, Error> {
        let mut attempt = 1;
        loop {
            let error = match self.inner.complete(request).await {
                Ok(response) => return Ok(response),
                Err(error) => error,
            };
            let delay = self.policy.delay(attempt, &error, jitter());
            tracing::debug!(model = %self.label, attempt, %error, ?delay, "model attempt failed");
            request.report.report(CallEvent::AttemptFailed {
                model: self.label.clone(),
                attempt,
                error: error.to_string(),
                delay,
            });
            match delay {
                Some(delay) => tokio::time::sleep(delay).await,
                None => return Err(error),
            }
            attempt += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, retry_after: Option<u64>) -> Error {
        Error::Status {
            provider: "p".into(),
            status: code,
            message: "m".into(),
            retry_after,
        }
    }

    #[test]
    fn backs_off_exponentially_with_full_jitter() {
        let policy = RetryPolicy {
            max_attempts: 10,
            ..RetryPolicy::default()
        };
        let e = status(503, None);
        assert_eq!(
            policy.delay(1, &e, 0.999_999),
            Some(Duration::from_millis(500)).map(|d| d.mul_f64(0.999_999))
        );
        assert_eq!(policy.delay(3, &e, 0.5), Some(Duration::from_secs(1)));
        assert_eq!(policy.delay(9, &e, 0.5), Some(Duration::from_secs(10)));
        assert_eq!(policy.delay(2, &e, 0.0), Some(Duration::ZERO));
    }

    /// Tools and webhooks back off the way model calls do, each with its own policy, and the
    /// backoff never overflows however many attempts a spec allows.
    #[test]
    fn tools_and_webhooks_back_off_by_the_same_rule() {
        let tools = RetryPolicy::TOOLS;
        assert_eq!(tools.backoff(1, 0.5), Duration::from_millis(100));
        assert_eq!(tools.backoff(3, 0.5), Duration::from_millis(400));
        assert_eq!(tools.backoff(60, 0.5), Duration::from_millis(2_500));
        assert_eq!(tools.backoff(u32::MAX, 1.0), Duration::from_secs(5));
        let hooks = RetryPolicy::WEBHOOKS;
        assert_eq!(hooks.backoff(2, 0.5), Duration::from_secs(1));
        assert_eq!(hooks.backoff(3, 0.0), Duration::ZERO);
        assert_eq!(hooks.backoff(u32::MAX, 1.0), Duration::from_secs(600));
        let e = status(503, None);
        let model = RetryPolicy::default();
        assert_eq!(model.delay(2, &e, 0.25), Some(model.backoff(2, 0.25)));
    }

    #[test]
    fn gives_up_after_max_attempts_and_on_permanent_errors() {
        let policy = RetryPolicy::default();
        assert!(policy.delay(2, &status(500, None), 0.5).is_some());
        assert_eq!(policy.delay(3, &status(500, None), 0.5), None);
        assert_eq!(policy.delay(1, &status(400, None), 0.5), None);
        assert_eq!(policy.delay(1, &status(401, None), 0.5), None);
        assert!(policy.delay(1, &status(429, None), 0.5).is_some());
    }

    #[test]
    fn bad_replies_are_retried_refused_requests_are_not() {
        let policy = RetryPolicy::default();
        let bad = Error::BadReply {
            provider: "p".into(),
            message: "empty".into(),
        };
        assert!(policy.delay(1, &bad, 0.5).is_some());
        assert_eq!(policy.delay(3, &bad, 0.5), None);
        let refused = Error::Request {
            provider: "p".into(),
            status: 400,
            message: "m".into(),
        };
        assert_eq!(policy.delay(1, &refused, 0.5), None);
        assert!(policy.delay(1, &status(408, None), 0.5).is_some());
    }

    #[test]
    fn honours_retry_after_up_to_the_cap() {
        let policy = RetryPolicy::default();
        assert_eq!(
            policy.delay(1, &status(429, Some(7)), 0.1),
            Some(Duration::from_secs(7))
        );
        assert_eq!(policy.delay(1, &status(429, Some(61)), 0.1), None);
    }

    #[test]
    fn jitter_is_in_range() {
        for _ in 0..1000 {
            let j = jitter();
            assert!((0.0..1.0).contains(&j), "{j}");
        }
    }
}
