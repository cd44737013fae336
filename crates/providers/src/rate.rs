//! Shared rate limits as a layer: before each attempt, a call takes capacity from a [`Gate`]
//! (the journal's store, so every worker and server on it shares one budget) and waits while
//! there is none, instead of meeting the provider's 429.
//!
//! The gate is process-wide ([`set_gate`], set by the engine for its journal): agents are
//! built before they know which journal drives them, and one process drives one journal.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;

use crate::{ChatRequest, ChatResponse, Error, ModelClient};

/// Where capacity is taken from.
#[async_trait]
pub trait Gate: Send + Sync {
    /// Takes capacity for one call to provider `key`: `Ok(None)` to go, `Ok(Some(wait))` to
    /// ask again after `wait`; an error lets the call go (the limit is a courtesy, never a
    /// reason to fail a run).
    async fn acquire(
        &self,
        key: &str,
        rpm: Option<u32>,
        tpm: Option<u32>,
        tokens: u64,
    ) -> Result<Option<Duration>, String>;
}

static GATE: RwLock<Option<Arc<dyn Gate>>> = RwLock::new(None);
static WAITS: AtomicU64 = AtomicU64::new(0);
static WAITED_MS: AtomicU64 = AtomicU64::new(0);

/// Makes `gate` the process's: every rate-limited provider takes capacity from it.
pub fn set_gate(gate: Arc<dyn Gate>) {
    if let Ok(mut slot) = GATE.write() {
        *slot = Some(gate);
    }
}

/// How many times calls in this process waited for capacity, and for how long in all (ms).
pub fn waited() -> (u64, u64) {
    (
        WAITS.load(Ordering::Relaxed),
        WAITED_MS.load(Ordering::Relaxed),
    )
}

/// A client whose every attempt first takes capacity from the process's gate.
pub struct RateLimited<C> {
    inner: C,
    key: String,
    rpm: Option<u32>,
    tpm: Option<u32>,
}

impl<C> RateLimited<C> {
    /// Wraps `inner`, limited as provider `key` to `rpm` requests and `tpm` tokens a minute.
    pub fn new(inner: C, key: impl Into<String>, rpm: Option<u32>, tpm: Option<u32>) -> Self {
        RateLimited {
            inner,
            key: key.into(),
            rpm,
            tpm,
        }
    }
}

/// An upper bound on the tokens a request may use: its text's bytes (a token is at least a
/// byte in every byte-level BPE) and its output bound.
fn worst_case_tokens(request: &ChatRequest<'_>) -> u64 {
    let input: usize = request
        .messages
        .iter()
        .map(|m| match m {
            chassis_core::Message::System { content } | chassis_core::Message::User { content } => {
                content.len()
            }
            chassis_core::Message::Tool { content, .. } => content.len(),
            chassis_core::Message::Assistant(a) => {
                a.content.as_ref().map_or(0, String::len)
                    + a.tool_calls
                        .iter()
                        .map(|c| c.name.len() + c.arguments.len())
                        .sum::<usize>()
            }
        })
        .sum();
    let tools: usize = request
        .tools
        .iter()
        .map(|t| t.name.len() + t.description.len() + t.parameters.to_string().len())
        .sum();
    (input + tools) as u64 + u64::from(request.max_tokens.unwrap_or(4096))
}

#[async_trait]
impl<C: ModelClient> ModelClient for RateLimited<C> {
    async fn complete(&self, request: &ChatRequest<'_>) -> Result<ChatResponse, Error> {
        let gate = GATE.read().ok().and_then(|g| g.clone());
        if let Some(gate) = gate {
            let tokens = if self.tpm.is_some() {
                worst_case_tokens(request)
            } else {
                0
            };
            loop {
                match gate.acquire(&self.key, self.rpm, self.tpm, tokens).await {
                    Ok(None) => break,
                    Ok(Some(wait)) => {
                        WAITS.fetch_add(1, Ordering::Relaxed);
                        WAITED_MS.fetch_add(wait.as_millis() as u64, Ordering::Relaxed);
                        tracing::debug!(provider = %self.key, wait_ms = wait.as_millis() as u64, "waiting for the provider's shared rate limit");
                        tokio::time::sleep(wait).await;
                    }
                    Err(e) => {
                        tracing::warn!(provider = %self.key, error = %e, "cannot take rate-limit capacity; calling anyway");
                        break;
                    }
                }
            }
        }
        self.inner.complete(request).await
    }
}
