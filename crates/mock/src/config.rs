//! Server settings: seed, latency and fault injection.

use std::time::Duration;

use crate::FaultKind;

/// How the mock behaves apart from its script.
#[derive(Clone, Debug)]
pub struct MockConfig {
    /// Seed of the fault draw; the same seed and request order give the same faults.
    pub seed: u64,
    /// Added before answering every model request.
    pub latency: Duration,
    /// Probability in `0.0..=1.0` that a model request (either endpoint) gets a fault.
    pub fault_rate: f64,
    /// Which kinds may be injected; empty means all of [`FaultKind::ALL`].
    pub faults: Vec<FaultKind>,
    /// Value of the `Retry-After` header on injected 429 responses, in seconds.
    pub retry_after_secs: u64,
    /// How long a [`FaultKind::Hang`] waits before answering.
    pub hang: Duration,
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig {
            seed: 0,
            latency: Duration::ZERO,
            fault_rate: 0.0,
            faults: Vec::new(),
            retry_after_secs: 1,
            hang: Duration::from_secs(600),
        }
    }
}
