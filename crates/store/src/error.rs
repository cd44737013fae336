//! Errors of the journal.

/// What can go wrong reading or writing a journal.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The writer's view of the journal is stale: someone else appended first.
    #[error("run {run_id}: expected sequence {expected}, journal is at {actual}")]
    SequenceConflict {
        /// The run.
        run_id: String,
        /// The sequence the writer expected.
        expected: u64,
        /// Where the journal really is.
        actual: u64,
    },
    /// No run with this id.
    #[error("run {0} not found")]
    RunNotFound(String),
    /// A run with this id exists already.
    #[error("run {0} already exists")]
    RunExists(String),
    /// A stored event does not decode; the journal is damaged or from a newer version.
    #[error("run {run_id}: event {seq} cannot be read: {message}")]
    Corrupt {
        /// The run.
        run_id: String,
        /// Position of the bad event.
        seq: u64,
        /// Decoder message.
        message: String,
    },
    /// An event could not be serialized.
    #[error("cannot encode event: {0}")]
    Encode(String),
    /// The database failed.
    #[error("journal database {path}: {message}")]
    Database {
        /// Where the database is.
        path: String,
        /// What it said.
        message: String,
    },
    /// The journal's writer is gone (the process is shutting down).
    #[error("journal writer stopped")]
    Closed,
}
