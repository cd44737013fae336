//! Why a toolbox cannot be built.

/// A tool that cannot be built; `key` says where, e.g. `tools[0].root`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct Error {
    /// Spec key of the offending entry, e.g. `tools[0].root` or `tools[1].command`.
    pub key: String,
    /// What is wrong, e.g. "directory ./data does not exist".
    pub message: String,
}

impl Error {
    pub(crate) fn new(key: impl Into<String>, message: impl Into<String>) -> Error {
        Error {
            key: key.into(),
            message: message.into(),
        }
    }
}
