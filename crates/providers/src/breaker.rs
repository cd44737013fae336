//! A circuit breaker per provider endpoint, shared by every run in the process.
//!
//! Closed: calls go through and outcomes are counted. Open (after `threshold` consecutive
//! failures, or a failure rate at or above `failure_rate` over the last `window` calls): calls
//! fail fast, straight to the fallback. After `cooldown`, one probe goes through (half-open):
//! success closes the breaker, failure opens it again, and a probe that never finishes (its
//! call was cancelled: a lost lease, a shutdown) leaves it open, ready for the next probe.
//!
//! Only failures that say the endpoint is unwell count: transient ones. A refused request or
//! a model that gave no usable reply came from an endpoint that works.

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

/// What [`Breaker::admit`] lets through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// An ordinary call: the breaker is closed.
    Call,
    /// The one probe of a half-open breaker: its outcome closes or reopens it.
    Probe,
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

    /// Asks to make a call at `now`: `Ok` to go ahead (as a probe, when the cooldown just
    /// ended), `Err(remaining cooldown)` to fail fast.
    pub fn admit(&self, now: Instant) -> Result<Admission, Duration> {
        let Ok(mut inner) = self.inner.lock() else {
            return Ok(Admission::Call);
        };
        match inner.state {
            BreakerState::Closed => Ok(Admission::Call),
            BreakerState::HalfOpen => Err(self.config.cooldown),
            BreakerState::Open => {
                let opened = inner.opened_at.unwrap_or(now);
                let elapsed = now.saturating_duration_since(opened);
                if elapsed >= self.config.cooldown {
                    inner.state = BreakerState::HalfOpen;
                    tracing::info!(endpoint = %self.name, "circuit half-open: sending a probe");
                    Ok(Admission::Probe)
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

    /// The probe admitted at half-open ended without an outcome (its call was cancelled): the
    /// breaker opens again. Its cooldown counts from when it first opened, so the next call
    /// is the next probe; nothing was learnt about the endpoint.
    pub fn probe_abandoned(&self) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if inner.state == BreakerState::HalfOpen {
            inner.state = BreakerState::Open;
            tracing::info!(endpoint = %self.name, "circuit open again: the probe was cancelled");
        }
    }
}

/// Returns a half-open breaker to open when its probe's call is dropped before it records
/// an outcome.
struct ProbeGuard<'a> {
    breaker: Option<&'a Breaker>,
}

impl ProbeGuard<'_> {
    /// The call finished: its outcome is recorded instead.
    fn disarm(mut self) {
        self.breaker = None;
    }
}

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        if let Some(breaker) = self.breaker {
            breaker.probe_abandoned();
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

/// Guards a client with a breaker; transient failures count against it, nothing else does.
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
        let admission = match self.breaker.admit(Instant::now()) {
            Ok(admission) => admission,
            Err(remaining) => {
                request.report.report(CallEvent::BreakerOpen {
                    model: self.label.clone(),
                });
                return Err(Error::CircuitOpen {
                    provider: self.provider.clone(),
                    cooldown_s: remaining.as_secs_f64(),
                });
            }
        };
        let guard = ProbeGuard {
            breaker: (admission == Admission::Probe).then_some(&*self.breaker),
        };
        let result = self.inner.complete(request).await;
        guard.disarm();
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
        assert_eq!(b.admit(later), Ok(Admission::Probe));
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
    fn a_dropped_probe_reopens_the_breaker() {
        let breaker = Arc::new(Breaker::new(
            "dropped-probe",
            BreakerConfig {
                threshold: 1,
                cooldown: Duration::from_millis(1),
                ..config()
            },
        ));
        breaker.record(false, Instant::now());
        assert_eq!(breaker.state(), BreakerState::Open);
        std::thread::sleep(Duration::from_millis(5));
        let layer = CircuitBreaker::new(Pending, Arc::clone(&breaker), "p", "p:m");
        let request = ChatRequest {
            model: "m".into(),
            messages: Vec::new().into(),
            tools: Vec::new().into(),
            max_tokens: None,
            temperature: None,
            report: crate::Reporter::default(),
            deltas: crate::Deltas::default(),
        };
        let mut probe = Box::pin(layer.complete(&request));
        // Polled once: the probe is admitted and waits on a model that never answers.
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        assert!(probe.as_mut().poll(&mut cx).is_pending());
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        // Cancelled (a lost lease, a shutdown): the breaker is open, not half-open forever.
        drop(probe);
        assert_eq!(breaker.state(), BreakerState::Open);
        // The cooldown already passed, so the next call is the next probe.
        assert_eq!(breaker.admit(Instant::now()), Ok(Admission::Probe));
        breaker.record(true, Instant::now());
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[test]
    fn an_ordinary_call_dropped_changes_nothing() {
        let breaker = Arc::new(Breaker::new("dropped-call", config()));
        let layer = CircuitBreaker::new(Pending, Arc::clone(&breaker), "p", "p:m");
        let request = ChatRequest {
            model: "m".into(),
            messages: Vec::new().into(),
            tools: Vec::new().into(),
            max_tokens: None,
            temperature: None,
            report: crate::Reporter::default(),
            deltas: crate::Deltas::default(),
        };
        let mut call = Box::pin(layer.complete(&request));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(call.as_mut().poll(&mut cx).is_pending());
        drop(call);
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[test]
    fn refused_requests_and_bad_replies_do_not_count() {
        for error in [
            Error::BadReply {
                provider: "p".into(),
                message: "empty".into(),
            },
            Error::Request {
                provider: "p".into(),
                status: 400,
                message: "bad".into(),
            },
        ] {
            let breaker = Arc::new(Breaker::new("not-counted", config()));
            let layer =
                CircuitBreaker::new(Failing(error.clone()), Arc::clone(&breaker), "p", "p:m");
            let request = ChatRequest {
                model: "m".into(),
                messages: Vec::new().into(),
                tools: Vec::new().into(),
                max_tokens: None,
                temperature: None,
                report: crate::Reporter::default(),
                deltas: crate::Deltas::default(),
            };
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            for _ in 0..10 {
                let mut call = Box::pin(layer.complete(&request));
                assert!(matches!(
                    call.as_mut().poll(&mut cx),
                    std::task::Poll::Ready(Err(_))
                ));
            }
            assert_eq!(breaker.state(), BreakerState::Closed, "{error}");
        }
    }

    /// A model that never answers.
    struct Pending;

    #[async_trait]
    impl ModelClient for Pending {
        async fn complete(&self, _: &ChatRequest<'_>) -> Result<ChatResponse, Error> {
            std::future::pending().await
        }
    }

    /// A model that always fails with the same error.
    struct Failing(Error);

    #[async_trait]
    impl ModelClient for Failing {
        async fn complete(&self, _: &ChatRequest<'_>) -> Result<ChatResponse, Error> {
            Err(self.0.clone())
        }
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
