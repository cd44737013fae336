//! The observer contract: what a process driving runs tells those who watch them (progress
//! lines, traces, metrics, a server's streams) and when.
//!
//! It lives in core, beside [`Event`] and [`RunState`], so that a watcher depends on what it
//! receives and nothing more: telemetry builds without the engine that calls it.

use crate::event::Event;
use crate::state::RunState;

/// Sees every event as it is recorded (progress output, traces, metrics).
pub trait Observer: Send + Sync {
    /// Called once per event, after it is applied to `state` (so `state` includes it), before
    /// it is flushed; `event` is already redacted.
    fn on_event(&self, run_id: &str, state: &RunState, event: &Event);

    /// Called once the run's events up to `seq` are durable in the journal; what was observed
    /// after `seq` may still be lost (the process may die before its flush).
    fn on_durable(&self, _run_id: &str, _seq: u64) {}

    /// Called when this process stops driving the run, however the drive ended (the run
    /// stopped, waits, parked, was given back or its lease was lost): whatever the observer
    /// keeps for the run can go, and what it observed after the last
    /// [`Observer::on_durable`] was never journaled.
    fn on_released(&self, _run_id: &str) {}

    /// Whether this observer wants the pieces of model answers as they stream
    /// ([`Observer::on_delta`]); nothing is gathered for observers that do not.
    fn wants_deltas(&self) -> bool {
        false
    }

    /// A piece of the answer to step `step` as it streams: never durable, and voided by a
    /// [`Delta::Abandoned`] when the attempt fails (the journaled `model_responded` is the
    /// answer).
    fn on_delta(&self, _run_id: &str, _step: u32, _delta: &Delta) {}

    /// Progress a tool reported during call `call_id` (an MCP server's
    /// `notifications/progress`, or a Rust tool's own): never durable, already redacted.
    fn on_tool_progress(&self, _run_id: &str, _call_id: &str, _progress: &ToolProgress) {}
}

/// How far a tool call has come, as the tool reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolProgress {
    /// The tool called.
    pub tool: String,
    /// Work done so far, in the tool's own unit; grows with each report.
    pub progress: f64,
    /// The work in all, when the tool knows it.
    pub total: Option<f64>,
    /// What the tool is doing, in its words.
    pub message: Option<String>,
}

/// One piece of a model's answer as it streams.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delta {
    /// A piece of the reply's text.
    Text(String),
    /// Tool call `index` (its position in the reply, from 0) begins.
    ToolCallStarted {
        /// Position of the call in the reply.
        index: usize,
        /// Tool called.
        name: String,
    },
    /// A piece of the arguments of tool call `index`.
    ToolArgs {
        /// Position of the call in the reply.
        index: usize,
        /// A piece of its arguments.
        arguments: String,
    },
    /// The attempt that sent the deltas so far failed: what was shown is void, and a retry or
    /// the next model of the chain starts over.
    Abandoned,
}
