//! The one error type of the mock: what can go wrong before the server runs.
//!
//! Serving never fails with this type; request problems become HTTP errors in the format of
//! the endpoint that was called.

use std::path::PathBuf;

/// Why a script or a fault name could not be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The script file could not be read.
    #[error("reading script {path}: {source}")]
    Read {
        /// The file that was asked for.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The script is not valid TOML or JSON, or does not have the script's shape.
    #[error("script {origin}: line {line}, column {column}: {message}")]
    Syntax {
        /// The file name, or `<toml string>` / `<json string>` for inline text.
        origin: String,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
        /// What the parser said.
        message: String,
    },
    /// The script parses but breaks a rule (no scenarios, an empty turn, ...).
    #[error("script {origin}: {problem}")]
    Invalid {
        /// The file name, or `<toml string>` / `<json string>` for inline text.
        origin: String,
        /// Which scenario and turn, and what is wrong with it.
        problem: String,
    },
    /// A fault name that is not one of the known kinds.
    #[error("unknown fault kind `{name}`: expected one of {expected}")]
    UnknownFaultKind {
        /// The name that was given.
        name: String,
        /// The accepted names, comma separated.
        expected: &'static str,
    },
}
