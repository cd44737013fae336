//! Snapshots in SQLite: written through the writer, read from a reader.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::{Done, SqliteJournal};
use crate::Error;
use crate::snapshot::Snapshots;

/// The snapshots' migration; self-contained, so it can take any place in the list.
pub(super) const MIGRATION: &str = "
    CREATE TABLE snapshots (
        run_id TEXT NOT NULL,
        seq    INTEGER NOT NULL,
        state  TEXT NOT NULL,
        PRIMARY KEY (run_id, seq)
    ) WITHOUT ROWID;
";

#[async_trait]
impl Snapshots for SqliteJournal {
    async fn put_snapshot(&self, run_id: &str, seq: u64, state: &str) -> Result<(), Error> {
        let (run, state) = (run_id.to_string(), state.to_string());
        let seq = i64::try_from(seq).unwrap_or(i64::MAX);
        let done = self
            .exec(move |conn, _now_ms| {
                if !super::run_exists(conn, &run)? {
                    return Ok(Done::Changed(false));
                }
                conn.prepare_cached("DELETE FROM snapshots WHERE run_id = ?1 AND seq < ?2")?
                    .execute(params![run, seq])?;
                conn.prepare_cached(
                    "INSERT OR REPLACE INTO snapshots (run_id, seq, state) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![run, seq, state])?;
                Ok(Done::Changed(true))
            })
            .await?;
        match done {
            Done::Changed(true) => Ok(()),
            Done::Changed(false) => Err(Error::RunNotFound(run_id.to_string())),
            _ => Err(Error::Closed),
        }
    }

    async fn latest_snapshot(&self, run_id: &str) -> Result<Option<(u64, String)>, Error> {
        let run_id = run_id.to_string();
        let path = self.path.display().to_string();
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT seq, state FROM snapshots WHERE run_id = ?1 ORDER BY seq DESC LIMIT 1",
            )
            .and_then(|mut stmt| {
                stmt.query_row(params![run_id], |row| {
                    Ok((row.get::<_, u64>(0)?, row.get::<_, String>(1)?))
                })
                .optional()
            })
            .map_err(|e| Error::Database {
                path: path.clone(),
                message: e.to_string(),
            })
        })
        .await
    }
}
