//! Run ids as people type them: any unique prefix of an id, or `last` for the newest run.
//!
//! A run id is `run_` and 26 characters; nobody types that at 3 a.m. [`resolve_run`] accepts
//! a prefix with or without `run_`, in either case, and says which runs an ambiguous one
//! could mean. It lists the journal's runs to match the prefix (one query; fine for the
//! journals chassis keeps today, an indexed prefix query could replace it).

use crate::{Journal, ListFilter};

/// The word that names the newest run.
pub const LAST: &str = "last";

/// How many candidates an ambiguous prefix lists.
const SHOWN: usize = 10;

/// Length of a whole run id: `run_` and a 26-character ULID.
const ID_LEN: usize = 30;

/// A typed run id that names no single run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// More than one run id begins with the text.
    #[error(
        "run id `{text}` is ambiguous: {count} runs begin with it ({}); type more of it",
        shown(candidates, *count)
    )]
    Ambiguous {
        /// What was typed.
        text: String,
        /// How many runs match.
        count: usize,
        /// The newest matching ids, at most ten.
        candidates: Vec<String>,
    },
    /// `last` in a journal without runs.
    #[error("`last` names the newest run, but the journal holds no runs")]
    NoRuns,
    /// Nothing was typed.
    #[error("a run id is empty: type one (see `chassis runs`) or `last`")]
    Empty,
    /// The journal failed, or no run begins with the text ([`crate::Error::RunNotFound`]).
    #[error(transparent)]
    Store(#[from] crate::Error),
}

fn shown(candidates: &[String], count: usize) -> String {
    let mut text = candidates.join(", ");
    if count > candidates.len() {
        text.push_str(&format!(", and {} more", count - candidates.len()));
    }
    text
}

/// The id of the run `text` names: `last` (the newest run), a whole id, or a prefix of exactly
/// one id (`run_01jq`, `01JQ8`). No match is [`crate::Error::RunNotFound`] with `text`.
pub async fn resolve_run(journal: &dyn Journal, text: &str) -> Result<String, Error> {
    let typed = text.trim();
    if typed.is_empty() {
        return Err(Error::Empty);
    }
    let wanted = typed.to_ascii_lowercase();
    if wanted == LAST {
        let newest = journal
            .list(&ListFilter {
                limit: Some(1),
                ..ListFilter::default()
            })
            .await?;
        return newest
            .into_iter()
            .next()
            .map(|run| run.run_id)
            .ok_or(Error::NoRuns);
    }
    // A whole id needs no listing: loading it says whether it exists.
    if wanted.len() == ID_LEN && wanted.starts_with("run_") {
        return Ok(typed.to_string());
    }
    let runs = journal.list(&ListFilter::default()).await?;
    let mut matches: Vec<String> = runs
        .into_iter()
        .map(|run| run.run_id)
        .filter(|id| {
            let id = id.to_ascii_lowercase();
            id.starts_with(&wanted)
                || id
                    .strip_prefix("run_")
                    .is_some_and(|u| u.starts_with(&wanted))
        })
        .collect();
    if let Some(exact) = matches.iter().find(|id| id.eq_ignore_ascii_case(typed)) {
        return Ok(exact.clone());
    }
    match matches.len() {
        0 => Err(crate::Error::RunNotFound(typed.to_string()).into()),
        1 => Ok(matches.swap_remove(0)),
        count => Err(Error::Ambiguous {
            text: typed.to_string(),
            count,
            candidates: matches.into_iter().take(SHOWN).collect(),
        }),
    }
}
