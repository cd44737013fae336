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
    /// The journal cannot be replayed.
    #[error("run {run_id}: journal cannot be replayed: {source}")]
    Replay {
        /// The run.
        run_id: String,
        /// What disagreed.
        source: FoldError,
    },
}
