//! One module per command.

pub(crate) mod approvals;
pub(crate) mod bench;
pub(crate) mod cancel;
pub(crate) mod check;
pub(crate) mod completions;
pub(crate) mod db;
pub(crate) mod demo;
pub(crate) mod eval;
pub(crate) mod export;
pub(crate) mod init;
pub(crate) mod input;
pub(crate) mod mock;
pub(crate) mod outbox;
pub(crate) mod resume;
pub(crate) mod run;
pub(crate) mod runs;
pub(crate) mod schedule;
pub(crate) mod send;
pub(crate) mod serve;
pub(crate) mod show;
pub(crate) mod stats;
pub(crate) mod submit;
pub(crate) mod tokens;
pub(crate) mod trace;
pub(crate) mod worker;

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use chassis_store::{Journal, SqliteJournal, Sync};

use crate::exit::UsageError;

/// True when `db` names a PostgreSQL database rather than an SQLite file.
pub(crate) fn is_postgres(db: &Path) -> bool {
    db.to_str().is_some_and(|target| {
        let lower = target.trim_start().to_ascii_lowercase();
        lower.starts_with("postgres://") || lower.starts_with("postgresql://")
    })
}

/// `db` as it may be shown: the path, or the URL with its password redacted.
pub(crate) fn describe_db(db: &Path) -> String {
    chassis_store::redact(&db.to_string_lossy())
}

/// Opens the journal `db` names: an SQLite file (created if needed) or a `postgres://` URL.
/// The schema is created or migrated; one from a newer chassis is refused untouched.
pub(crate) async fn open_journal(db: &Path) -> anyhow::Result<Arc<dyn Journal>> {
    let journal = match db.to_str() {
        Some(target) => chassis_store::open(target).await,
        // Not UTF-8, so not a URL: a file path as the OS spells it.
        None => SqliteJournal::open(db, Sync::Full).map(|j| Arc::new(j) as Arc<dyn Journal>),
    };
    journal.with_context(|| format!("cannot open the journal {}", describe_db(db)))
}

/// The project a journal belongs to: the directory holding its `.chassis/`, or the file's
/// directory; for PostgreSQL, the current directory. Runs journal their agent's path relative
/// to it, so a project moved with its journal keeps working.
pub(crate) fn project_of(db: &Path) -> std::path::PathBuf {
    let cwd = std::env::current_dir().unwrap_or_else(|_| ".".into());
    if is_postgres(db) {
        return cwd;
    }
    let file = std::path::absolute(db).unwrap_or_else(|_| cwd.join(db));
    let dir = file.parent().map(Path::to_path_buf).unwrap_or(cwd);
    match (dir.file_name(), dir.parent()) {
        (Some(name), Some(parent)) if name == crate::discover::DIR => parent.to_path_buf(),
        _ => dir,
    }
}

/// Where the agents of the runs in `db` are found ([`project_of`]).
pub(crate) fn agent_paths(db: &Path) -> chassis_engine::AgentPaths {
    chassis_engine::AgentPaths::in_project(project_of(db))
}

/// An engine on `journal`, rooted at the project of `db` ([`project_of`]).
pub(crate) fn engine(db: &Path, journal: Arc<dyn Journal>) -> chassis_engine::Engine {
    chassis_engine::Engine::new(journal).with_project(project_of(db))
}

/// Opens an existing journal for commands that only read (`runs`, `show`, `trace`, `stats`,
/// `approvals`, `export`): an SQLite file is opened read-only — it may sit on a read-only disk
/// or belong to another user, and nothing can be written to it by mistake; its schema must be
/// current. A PostgreSQL URL opens as usual (these commands write nothing there either).
pub(crate) async fn open_reading_journal(db: &Path) -> anyhow::Result<Arc<dyn Journal>> {
    if is_postgres(db) {
        return open_existing_journal(db).await;
    }
    if !db.exists() {
        return open_existing_journal(db).await;
    }
    SqliteJournal::open_read_only(db)
        .map(|j| Arc::new(j) as Arc<dyn Journal>)
        .with_context(|| format!("cannot open the journal {}", describe_db(db)))
}

/// Opens an existing journal for commands that only read or continue runs.
pub(crate) async fn open_existing_journal(db: &Path) -> anyhow::Result<Arc<dyn Journal>> {
    // A URL (even an unsupported one, which opening then names) is not a missing file.
    let url = db.to_str().is_some_and(|target| target.contains("://"));
    if !url && !db.exists() {
        return Err(UsageError(format!(
            "no journal at {} (start a run with `chassis run` or `chassis demo`, or pass --db / CHASSIS_DB)",
            db.display()
        ))
        .into());
    }
    open_journal(db).await
}

/// Teaches the log and stderr redaction the secrets of `run`'s agent before a command echoes
/// what a person typed about it; a run whose spec cannot be read keeps the secrets known.
pub(crate) async fn learn_secrets(engine: &chassis_engine::Engine, run: &str) {
    if let Ok(redactor) = engine.run_redactor(run).await {
        crate::telemetry().redact_logs(&redactor);
    }
}

/// The run `text` names: a unique prefix of its id, or `last` for the newest run. An ambiguous
/// prefix (which lists the candidates) or `last` in an empty journal is a usage error, as is
/// an id no run has.
pub(crate) async fn resolve_run(journal: &dyn Journal, text: &str) -> anyhow::Result<String> {
    chassis_store::resolve_run(journal, text)
        .await
        .map_err(|e| match e {
            chassis_store::resolve::Error::Store(store) => anyhow::Error::from(store),
            other => UsageError(other.to_string()).into(),
        })
}

/// Prints a run outcome as the run commands do: the answer, or JSON.
pub(crate) fn print_outcome(outcome: &chassis_engine::RunOutcome, json: bool) -> u8 {
    if json {
        let value = serde_json::json!({
            "run_id": outcome.run_id,
            "status": outcome.status.as_str(),
            "output": outcome.output,
            "reason": outcome.reason,
        });
        outln!("{value}");
    } else {
        match (&outcome.output, &outcome.reason) {
            (Some(output), _) => outln!("{output}"),
            (None, Some(reason)) => {
                errln!("run {} {}: {reason}", outcome.run_id, outcome.status)
            }
            (None, None) => errln!("run {} is {}", outcome.run_id, outcome.status),
        }
    }
    crate::exit::of_status(outcome.status)
}
