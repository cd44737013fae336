//! What happens inside one model call, reported by the layers for the journal.

use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Something a layer did during a call that the run's journal should show.
#[derive(Clone, Debug, PartialEq)]
pub enum CallEvent {
    /// An attempt failed; another follows after `delay` (or none, when `delay` is `None`).
    AttemptFailed {
        /// `provider:model` attempted.
        model: String,
        /// Attempt number, from 1.
        attempt: u32,
        /// What went wrong.
        error: String,
        /// Wait before the next attempt, if there is one.
        delay: Option<Duration>,
    },
    /// The provider's circuit breaker is open: the call skipped it without trying.
    BreakerOpen {
        /// `provider:model` skipped.
        model: String,
    },
    /// The call moved on to the next model of the chain.
    Fallback {
        /// `provider:model` given up on.
        from: String,
        /// `provider:model` tried next.
        to: String,
        /// Why.
        reason: String,
    },
}

/// A per-call collector of [`CallEvent`]s; cheap to clone, shared by every layer of one call.
#[derive(Clone, Debug, Default)]
pub struct Reporter {
    events: Arc<Mutex<Vec<CallEvent>>>,
}

impl Reporter {
    /// Records an event.
    pub fn report(&self, event: CallEvent) {
        if let Ok(mut events) = self.events.lock() {
            events.push(event);
        }
    }

    /// Takes every event recorded so far.
    pub fn drain(&self) -> Vec<CallEvent> {
        self.events
            .lock()
            .map(|mut events| std::mem::take(&mut *events))
            .unwrap_or_default()
    }
}
