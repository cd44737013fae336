//! Secrets chassis learns while it runs: the access tokens MCP servers' OAuth clients are
//! given. They are in no spec and no environment variable, so no redactor built from a spec
//! knows them; a redactor asks [`issued_tokens`] as well.
//!
//! The list is process-wide, as a bearer token is a secret wherever this process writes it
//! (the journal, a span, a log line of a library that traces the messages it receives), and
//! bounded: the oldest tokens, long expired, are forgotten first.

use std::sync::{Arc, RwLock};

/// How many tokens are remembered.
const KEPT: usize = 256;

static ISSUED: RwLock<Option<Arc<[String]>>> = RwLock::new(None);

/// The tokens handed to this process's MCP clients, newest last; `None` before the first.
pub fn issued_tokens() -> Option<Arc<[String]>> {
    ISSUED.read().ok().and_then(|issued| issued.clone())
}

/// Remembers `token` as a secret: every [`Redactor`](crate::Redactor) removes it from then on.
pub fn remember(token: &str) {
    let Ok(mut issued) = ISSUED.write() else {
        return;
    };
    let mut tokens: Vec<String> = issued.as_deref().unwrap_or_default().to_vec();
    if tokens.iter().any(|t| t == token) {
        return;
    }
    tokens.push(token.to_string());
    let excess = tokens.len().saturating_sub(KEPT);
    tokens.drain(..excess);
    *issued = Some(tokens.into());
}
