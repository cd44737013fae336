//! A circuit breaker per provider endpoint, shared by every run in the process.
//!
//! Closed: calls go through and outcomes are counted. Open (after `threshold` consecutive
//! failures, or a failure rate at or above `failure_rate` over the last `window` calls): calls
//! fail fast, straight to the fallback. After `cooldown`, one probe goes through (half-open):
//! success closes the breaker, failure opens it again.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::{CallEvent, ChatRequest, ChatResponse, Error, ModelClient};

/// When a breaker opens and how long it stays open.
#[derive(Clone, Debug, PartialEq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker.
    pub threshold: u32,
    /// Failure rate over the window that opens it (with at least `window / 2` calls counted).
    pub failure_rate: f64,
    /// Calls the rate is computed over.
    pub window: u32,
    /// How long it stays open before a probe.
    pub cooldown: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            threshold: 5,
            failure_rate: 0.5,
            window: 20,
            cooldown: Duration::from_secs(30),
        }
    }
}

/// The breaker's position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls fail fast.
    Open,
    /// One probe is in flight.
    HalfOpen,
}

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    opened_at: Option<Instant>,
    consecutive: u32,
    recent: VecDeque<bool>,
}

/// One endpoint's breaker; the state machine is pure given `now`.
#[derive(Debug)]
pub struct Breaker {
    name: String,
    config: BreakerConfig,
    inner: Mutex<Inner>,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(name: impl Into<String>, config: BreakerConfig) -> Breaker {
        Breaker {
            name: name.into(),
            config,
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                opened_at: None,
                consecutive: 0,
                recent: VecDeque::new(),
            }),
        }
    }

    /// The current state.
    pub fn state(&self) -> BreakerState {
        self.inner
            .lock()
            .map(|i| i.state)
            .unwrap_or(BreakerState::Closed)
    }

    /// Asks to make a call at `now`: `Ok` to go ahead, `Err(remaining cooldown)` to fail fast.
    pub fn admit(&self, now: Instant) -> Result<(), Duration> {
        let Ok(mut inner) = self.inner.lock() else {
            return Ok(());
        };
        match inner.state {
            BreakerState::Closed => Ok(()),
            BreakerState::HalfOpen => Err(self.config.cooldown),
            BreakerState::Open => {
                let opened = inner.opened_at.unwrap_or(now);
                let elapsed = now.saturating_duration_since(opened);
                if elapsed >= self.config.cooldown {
                    inner.state = BreakerState::HalfOpen;
                    tracing::info!(endpoint = %self.name, "circuit half-open: sending a probe");
                    Ok(())
                } else {
                    Err(self.config.cooldown - elapsed)
                }
            }
        }
    }

    /// Records the outcome of an admitted call made at `now`.
    pub fn record(&self, success: bool, now: Instant) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        match inner.state {
            BreakerState::HalfOpen => {
                if success {
                    inner.state = BreakerState::Closed;
                    inner.consecutive = 0;
                    inner.recent.clear();
                    tracing::info!(endpoint = %self.name, "circuit closed: probe succeeded");
                } else {
                    inner.state = BreakerState::Open;
                    inner.opened_at = Some(now);
                    tracing::warn!(endpoint = %self.name, "circuit open again: probe failed");
                }
            }
            BreakerState::Open => {}
            BreakerState::Closed => {
                inner.consecutive = if success { 0 } else { inner.consecutive + 1 };
                inner.recent.push_back(success);
                while inner.recent.len() > self.config.window as usize {
                    inner.recent.pop_front();
                }
                let counted = inner.recent.len();
                let failures = inner.recent.iter().filter(|ok| !**ok).count();
                let rate_trips = counted * 2 >= self.config.window as usize
                    && counted > 0
                    && failures as f64 / counted as f64 >= self.config.failure_rate;
                if inner.consecutive >= self.config.threshold || rate_trips {
                    inner.state = BreakerState::Open;
                    inner.opened_at = Some(now);
                    tracing::warn!(
                        endpoint = %self.name,
                        consecutive = inner.consecutive,
                        failures,
                        counted,
                        cooldown_s = self.config.cooldown.as_secs_f64(),
                        "circuit open: failing fast to the fallback"
                    );
                }
            }
        }
    }
}

/// The process-wide breakers, one per endpoint key.
pub fn breaker_for(key: &str, config: &BreakerConfig) -> Arc<Breaker> {
    static BREAKERS: OnceLock<Mutex<HashMap<String, Arc<Breaker>>>> = OnceLock::new();
    let map = BREAKERS.get_or_init(|| Mutex::new(HashMap::new()));
    let mut map = match map.lock() {
        Ok(map) => map,
        Err(poisoned) => poisoned.into_inner(),
    };
    Arc::clone(
        map.entry(key.to_string())
            .or_insert_with(|| Arc::new(Breaker::new(key, config.clone()))),
    )
}

/// Guards a client with a breaker; transient failures count against it.
pub struct CircuitBreaker<C> {
    inner: C,
    breaker: Arc<Breaker>,
    provider: String,
    label: String,
}

impl<C> CircuitBreaker<C> {
    /// Wraps `inner` with `breaker`; `provider` names errors, `label` names reports.
    pub fn new(inner: C, breaker: Arc<Breaker>, provider: &str, label: &str) -> CircuitBreaker<C> {
        CircuitBreaker {
            inner,
            breaker,
            provider: provider.to_string(),
            label: label.to_string(),
        }
    }
}

#[async_trait]
impl<C: ModelClient> ModelClient for CircuitBreaker<C> {
    async fn complete(&self, request: &ChatRequest<'_>) -> Result<ChatResponse, Error> {
        if let Err(remaining) = self.breaker.admit(Instant::now()) {
            request.report.report(CallEvent::BreakerOpen {
                model: self.label.clone(),
            });
            return Err(Error::CircuitOpen {
                provider: self.provider.clone(),
                cooldown_s: remaining.as_secs_f64(),
            });
        }
        let result = self.inner.complete(request).await;
        let success = match &result {
            Ok(_) => true,
            Err(error) => !error.is_transient(),
        };
        self.breaker.record(success, Instant::now());
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BreakerConfig {
        BreakerConfig {
            threshold: 3,
            failure_rate: 0.5,
            window: 10,
            cooldown: Duration::from_secs(30),
        }
    }

    #[test]
    fn opens_after_consecutive_failures_and_probes_after_cooldown() {
        let b = Breaker::new("e", config());
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(b.admit(t0).is_ok());
            b.record(false, t0);
        }
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(
            b.admit(t0 + Duration::from_secs(10)),
            Err(Duration::from_secs(20))
        );
        // The cooldown passes: exactly one probe is admitted.
        let later = t0 + Duration::from_secs(31);
        assert!(b.admit(later).is_ok());
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(b.admit(later).is_err());
        b.record(false, later);
        assert_eq!(b.state(), BreakerState::Open);
        let later = later + Duration::from_secs(31);
        assert!(b.admit(later).is_ok());
        b.record(true, later);
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.admit(later).is_ok());
    }

    #[test]
    fn opens_on_failure_rate_over_the_window() {
        let b = Breaker::new("e", config());
        let t0 = Instant::now();
        // Alternating outcomes never make 3 consecutive failures, but reach a 50 % rate.
        for i in 0..4 {
            b.record(i % 2 == 0, t0);
            assert_eq!(b.state(), BreakerState::Closed, "too few calls counted yet");
        }
        b.record(false, t0);
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn successes_keep_it_closed() {
        let b = Breaker::new("e", config());
        let t0 = Instant::now();
        for i in 0..100 {
            b.record(i % 5 != 0, t0);
        }
        assert_eq!(b.state(), BreakerState::Closed);
    }
}
