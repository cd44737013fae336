//! Why a benchmark could not produce its figures.

/// A benchmark that could not run to the end.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file, directory, process or runtime could not be set up.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, naming the path or program.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The mock model process did not start or said something unexpected.
    #[error("mock model ({program}): {message}")]
    Mock {
        /// The program started.
        program: String,
        /// What went wrong.
        message: String,
    },
    /// The benchmark agent did not load.
    #[error("benchmark agent: {0}")]
    Agent(#[from] chassis_engine::LoadError),
    /// The engine stopped a run with an error.
    #[error("benchmark run: {0}")]
    Engine(#[from] chassis_engine::Error),
    /// The journal refused something.
    #[error("benchmark journal: {0}")]
    Journal(#[from] chassis_store::Error),
    /// Reading a journal file directly failed.
    #[error("journal file {path}: {source}")]
    Sqlite {
        /// The database file.
        path: String,
        /// The underlying error.
        #[source]
        source: rusqlite::Error,
    },
    /// A raw HTTP request of the baseline failed.
    #[error("http baseline: {0}")]
    Http(#[from] reqwest::Error),
    /// A benchmark saw something other than what it set up (a run that did not complete,
    /// a request that never came).
    #[error("{bench}: {message}")]
    Failed {
        /// The group.
        bench: &'static str,
        /// What went wrong.
        message: String,
    },
}

impl Error {
    /// An IO error while doing `what`.
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }
}
