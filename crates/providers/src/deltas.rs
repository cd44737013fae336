//! Deltas: the pieces of an answer as they arrive, for observers (a terminal, a UI).
//!
//! A call's result is always the whole [`ChatResponse`](crate::ChatResponse); deltas only show
//! it coming. An attempt that fails after showing some (a stream cut midway, a stall) says
//! [`DeltaSink::abandoned`]: what was shown is void, and a retry or the next model of the
//! chain starts over.

use std::sync::{Arc, Mutex};

/// Receives the deltas of a call. Called from the task making the call: implementations
/// should only queue, never block.
pub trait DeltaSink: Send + Sync {
    /// A piece of the reply's text.
    fn text(&self, text: &str);
    /// Tool call `index` (its position in the reply, from 0) begins, calling `name`.
    fn tool_call_started(&self, index: usize, name: &str);
    /// A piece of the arguments of tool call `index`.
    fn tool_args(&self, index: usize, arguments: &str);
    /// The attempt that sent the deltas so far failed: discard what was shown.
    fn abandoned(&self);
}

/// A call's delta sink, or none; cheap to clone, shared by every layer of one call.
#[derive(Clone, Default)]
pub struct Deltas {
    sink: Option<Arc<dyn DeltaSink>>,
}

impl std::fmt::Debug for Deltas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deltas")
            .field("sink", &self.sink.is_some())
            .finish()
    }
}

impl Deltas {
    /// Deltas sent to `sink`.
    pub fn new(sink: Arc<dyn DeltaSink>) -> Deltas {
        Deltas { sink: Some(sink) }
    }

    /// Whether anyone listens.
    pub fn is_set(&self) -> bool {
        self.sink.is_some()
    }

    /// A piece of the reply's text.
    pub fn text(&self, text: &str) {
        if let Some(sink) = &self.sink
            && !text.is_empty()
        {
            sink.text(text);
        }
    }

    /// Tool call `index` begins, calling `name`.
    pub fn tool_call_started(&self, index: usize, name: &str) {
        if let Some(sink) = &self.sink {
            sink.tool_call_started(index, name);
        }
    }

    /// A piece of the arguments of tool call `index`.
    pub fn tool_args(&self, index: usize, arguments: &str) {
        if let Some(sink) = &self.sink
            && !arguments.is_empty()
        {
            sink.tool_args(index, arguments);
        }
    }

    /// The attempt failed: what it showed is void.
    pub fn abandon(&self) {
        if let Some(sink) = &self.sink {
            sink.abandoned();
        }
    }

    /// A whole reply, shown at once (an answer that was not streamed, or a replayed one).
    pub fn whole(&self, message: &chassis_core::AssistantMessage) {
        if !self.is_set() {
            return;
        }
        if let Some(text) = &message.content {
            self.text(text);
        }
        for (index, call) in message.tool_calls.iter().enumerate() {
            self.tool_call_started(index, &call.name);
            self.tool_args(index, &call.arguments);
        }
    }
}

/// One delta, as a [`DeltaLog`] keeps it and observers receive it.
pub use chassis_core::observe::Delta;

/// A sink that keeps every delta in order: for tests, and for callers that read them after
/// the call.
#[derive(Clone, Debug, Default)]
pub struct DeltaLog {
    deltas: Arc<Mutex<Vec<Delta>>>,
}

impl DeltaLog {
    /// A [`Deltas`] handle writing into this log.
    pub fn deltas(&self) -> Deltas {
        Deltas::new(Arc::new(self.clone()))
    }

    /// Takes every delta logged so far.
    pub fn take(&self) -> Vec<Delta> {
        self.deltas
            .lock()
            .map(|mut deltas| std::mem::take(&mut *deltas))
            .unwrap_or_default()
    }

    /// The text shown since the last [`Delta::Abandoned`]: what a UI that resets on abandon
    /// would display.
    pub fn visible_text(&self) -> String {
        let deltas = self.deltas.lock().map(|d| d.clone()).unwrap_or_default();
        let start = deltas
            .iter()
            .rposition(|d| *d == Delta::Abandoned)
            .map_or(0, |i| i + 1);
        deltas[start..]
            .iter()
            .filter_map(|d| match d {
                Delta::Text(text) => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }

    fn push(&self, delta: Delta) {
        if let Ok(mut deltas) = self.deltas.lock() {
            deltas.push(delta);
        }
    }
}

impl DeltaSink for DeltaLog {
    fn text(&self, text: &str) {
        self.push(Delta::Text(text.to_string()));
    }

    fn tool_call_started(&self, index: usize, name: &str) {
        self.push(Delta::ToolCallStarted {
            index,
            name: name.to_string(),
        });
    }

    fn tool_args(&self, index: usize, arguments: &str) {
        self.push(Delta::ToolArgs {
            index,
            arguments: arguments.to_string(),
        });
    }

    fn abandoned(&self) {
        self.push(Delta::Abandoned);
    }
}
