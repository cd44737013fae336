//! Test support for chassis's own test suites, one copy for every crate (dev-dependency only,
//! never published).
//!
//! - [`start`]: a `run_started` event with sensible defaults, for scripted journals.
//! - [`fixture`]: files, tool scripts, the Python they run with, agent specs and the mock
//!   model served on 127.0.0.1.
//! - [`pg`]: a PostgreSQL schema per test; with `CI` set, an unreachable server FAILS the test.
//! - [`process`]: a child in its own process group: wait for a line, SIGTERM, SIGKILL (kill -9)
//!   the group and reap it, for crash tests of the real binary.
//! - [`snapshot`]: insta settings that redact run ids, times and durations.

pub mod fixture;
pub mod pg;
pub mod process;
pub mod snapshot;
pub mod start;

/// The snapshot library, so a test crate needs only this one dev-dependency.
pub use insta;
