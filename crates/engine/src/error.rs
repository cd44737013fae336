//! Errors of the engine.

use chassis_core::state::FoldError;

use crate::LoadError;

/// Why the engine could not drive a run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The agent spec or something it names is unusable; nothing was journaled.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The journal failed.
    #[error(transparent)]
    Store(#[from] chassis_store::Error),
    /// The agent changed since the run started; continuing would mix two versions in one run.
    #[error(
        "run {run_id} started with agent version {started} but {spec_path} is now version \
         {current}; restore the spec the run started with to continue it, or start a new run"
    )]
    VersionChanged {
        /// The run.
        run_id: String,
        /// Version the run started with.
        started: String,
        /// Version of the spec now.
        current: String,
        /// The spec file.
        spec_path: String,
    },
    /// A human's decision cannot be applied as asked (no such pending call, invalid edited
    /// arguments, …); nothing was journaled.
    #[error("{0}")]
    Refused(String),
    /// What a human typed is invalid (edited arguments failing the tool's schema, say);
    /// nothing was journaled.
    #[error("{0}")]
    Invalid(String),
    /// The journal cannot be replayed.
    #[error("run {run_id}: journal cannot be replayed: {source}")]
    Replay {
        /// The run.
        run_id: String,
        /// What disagreed.
        source: FoldError,
    },
}
