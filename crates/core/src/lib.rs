//! The IO-free heart of chassis.
//!
//! Everything here is pure: the agent spec and its validation, the journal's [`Event`] type,
//! [`RunState`] as a fold over events, and [`decide()`], which says what happens next.
//! No IO, no async runtime, no clock: the engine feeds events in and executes decisions.

pub mod approvals;
pub mod context;
pub mod cron;
pub mod decide;
pub mod duration;
pub mod event;
pub mod limits;
pub mod message;
pub mod notify;
pub mod observe;
pub mod spec;
pub mod state;
pub mod tool;

pub use decide::{Decision, Inputs, ToolAction, decide};
pub use event::{Event, ForkedFrom, RunStart};
pub use limits::{LimitAction, LimitName, Limits, Price};
pub use message::{AssistantMessage, Message, ToolCall, Usage};
pub use notify::NotifyKind;
pub use observe::{Delta, Observer, ToolProgress};
pub use state::{Hold, RunState, RunStatus, Wake, call_id};
pub use tool::{RiskClass, ToolDef};
