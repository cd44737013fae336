//! Snapshots in PostgreSQL: one statement each.

use async_trait::async_trait;

use super::{PostgresJournal, seq_from_sql, seq_to_sql};
use crate::Error;
use crate::snapshot::Snapshots;

/// The snapshots' migration; self-contained, so it can take any place in the list.
pub(super) const MIGRATION: &str = "
    CREATE TABLE snapshots (
        run_id TEXT NOT NULL,
        seq    BIGINT NOT NULL,
        state  TEXT NOT NULL,
        PRIMARY KEY (run_id, seq)
    );
";

#[async_trait]
impl Snapshots for PostgresJournal {
    async fn put_snapshot(&self, run_id: &str, seq: u64, state: &str) -> Result<(), Error> {
        let seq = seq_to_sql(seq)?;
        let conn = self.pool.get().await?;
        let row = conn
            .client
            .query_opt(
                "WITH run AS (
                     SELECT run_id FROM runs WHERE run_id = $1
                 ), old AS (
                     DELETE FROM snapshots WHERE run_id IN (SELECT run_id FROM run) AND seq < $2
                 )
                 INSERT INTO snapshots (run_id, seq, state)
                 SELECT run_id, $2, $3 FROM run
                 ON CONFLICT (run_id, seq) DO UPDATE SET state = EXCLUDED.state
                 RETURNING 1",
                &[&run_id, &seq, &state],
            )
            .await
            .map_err(|e| self.db_err(e))?;
        match row {
            Some(_) => Ok(()),
            None => Err(Error::RunNotFound(run_id.to_string())),
        }
    }

    async fn latest_snapshot(&self, run_id: &str) -> Result<Option<(u64, String)>, Error> {
        let conn = self.pool.get().await?;
        let row = conn
            .client
            .query_opt(
                "SELECT seq, state FROM snapshots WHERE run_id = $1 ORDER BY seq DESC LIMIT 1",
                &[&run_id],
            )
            .await
            .map_err(|e| self.db_err(e))?;
        Ok(row.map(|r| (seq_from_sql(r.get(0)), r.get::<_, String>(1))))
    }
}
