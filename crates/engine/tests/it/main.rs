//! Engine integration tests: real runs through the real HTTP providers against the mock model.

mod anthropic;
mod appends;
mod approvals;
mod compat;
mod context;
mod degrade;
mod drivers;
mod limits;
mod redaction;
mod resilience;
mod rust_tools;
mod threads;
mod workers;

/// Files and tool scripts, shared with every crate's tests.
pub use chassis_testkit::fixture::{python, python_tool, write};
