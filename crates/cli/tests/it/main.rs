//! Integration tests of the `chassis` binary: bad specs, the commands, and kill -9 recovery.
//!
//! Every test starts the real binary (`CARGO_BIN_EXE_chassis`) against a journal in its own
//! temporary directory and, where a model is needed, the mock model served in-process on
//! 127.0.0.1. Nothing reaches the internet.

mod approvals;
mod commands;
mod compaction;
mod crash;
mod drivers;
mod eval;
mod ids;
mod init;
mod input;
mod limits;
mod mcp_credentials;
mod mcp_results;
mod observability;
mod outbox;
mod output;
mod pipes;
mod rate_limits;
mod retention;
mod schedules;
mod serve;
mod snapshots;
mod spec_errors;
mod util;
mod workers;
