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
    /// The journal was opened for reading only (a command that only reads, or a file it may
    /// not write), and something tried to write.
    #[error("journal {path} is open for reading only; nothing was written")]
    ReadOnly {
        /// Where the journal is.
        path: String,
    },
    /// The journal's writer is gone (the process is shutting down).
    #[error("journal writer stopped")]
    Closed,
    /// The database was written by a newer chassis; it is left untouched.
    #[error(
        "journal schema version {found} is newer than this chassis supports ({supported}); upgrade chassis"
    )]
    SchemaTooNew {
        /// The version the database is at.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// The worker's lease on the run is gone: released, or expired and taken by another worker.
    #[error("run {run_id}: lease lost, another worker may own the run")]
    LeaseLost {
        /// The run.
        run_id: String,
    },
    /// Another driver holds the run's lease: only it may drive the run until the lease ends.
    #[error("run {run_id} is being driven by {owner} (lease held until {until})", until = crate::clock::describe_ms(*until_ms))]
    Held {
        /// The run.
        run_id: String,
        /// Who holds the lease (a worker's name, or `chassis run` on a host).
        owner: String,
        /// When the lease ends unless renewed, ms since the epoch on the store's clock.
        until_ms: i64,
    },
    /// Only a human decision may be journaled without the run's lease.
    #[error("run {run_id}: `{kind}` is not a human decision; only the run's driver may journal it")]
    NotADecision {
        /// The run.
        run_id: String,
        /// The event's kind.
        kind: &'static str,
    },
    /// A run was already started with this idempotency key.
    #[error("idempotency key `{key}` was already used by run {run_id}")]
    KeyUsed {
        /// The key.
        key: String,
        /// The run it started.
        run_id: String,
    },
    /// A live token already has this name.
    #[error("a token named `{0}` exists already; revoke it first (`chassis tokens revoke {0}`)")]
    TokenExists(String),
    /// The database server cannot be reached, or refused the connection.
    #[error("cannot connect to PostgreSQL at {target}: {message}")]
    Connect {
        /// Host and port (never credentials).
        target: String,
        /// What went wrong.
        message: String,
    },
    /// The journal target is not a usable URL or path.
    #[error("invalid journal target {target}: {message}")]
    InvalidTarget {
        /// The target as given, password redacted.
        target: String,
        /// What is wrong with it.
        message: String,
    },
}
