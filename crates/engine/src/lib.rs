//! The chassis driver: loads agents, executes what core decides, journals every outcome.
//!
//! The engine is the only part of chassis that touches the world for a run: it calls
//! models and tools, and it writes the journal. What to do next is always
//! [`chassis_core::decide`]'s answer over the fold of the journal, live or after a crash.

mod agent;
mod error;
mod run;

pub use agent::{Agent, LoadError};
pub use error::Error;
pub use run::{Engine, Observer, RunOutcome};

/// A fresh run id: unique across processes and restarts (time plus 80 random bits).
pub fn new_run_id() -> String {
    format!("run_{}", ulid::Ulid::new().to_string().to_lowercase())
}
