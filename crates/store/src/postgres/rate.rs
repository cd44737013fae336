//! Rate limits in PostgreSQL: one statement checks and moves a provider's clocks under its
//! row lock (a concurrent caller re-reads the moved row and is told to wait).

use std::time::Duration;

use async_trait::async_trait;

use super::PostgresJournal;
use crate::Error;
use crate::rate::{Capacity, RateLimits, wait_of};

/// The rate limits' migration; self-contained, so it can take any place in the list.
pub(super) const MIGRATION: &str = "
    CREATE TABLE rate_limits (
        key        TEXT PRIMARY KEY,
        req_tat_us BIGINT NOT NULL,
        tok_tat_us BIGINT NOT NULL
    );
";

/// The server's clock in microseconds (the statement's own moment, not its transaction's).
const NOW_US: &str = "(extract(epoch FROM clock_timestamp()) * 1000000)::bigint";

#[async_trait]
impl RateLimits for PostgresJournal {
    async fn acquire(&self, key: &str, capacity: Capacity) -> Result<Option<Duration>, Error> {
        let (req_cost, tok_cost) = capacity.costs_us();
        let now = NOW_US;
        let conn = self.pool.get().await?;
        // A new key's row is inserted here and taken on the next ask (a statement does not
        // see its own insert), which comes at once.
        let row = conn
            .client
            .query_opt(
                &format!(
                    "WITH ins AS (
                         INSERT INTO rate_limits (key, req_tat_us, tok_tat_us)
                         VALUES ($1, 0, 0) ON CONFLICT (key) DO NOTHING
                     ), upd AS (
                         UPDATE rate_limits
                         SET req_tat_us = greatest(req_tat_us, {now}) + $2,
                             tok_tat_us = greatest(tok_tat_us, {now}) + $3
                         WHERE key = $1 AND req_tat_us <= {now} AND tok_tat_us <= {now}
                         RETURNING 0::bigint AS wait
                     )
                     SELECT wait FROM upd
                     UNION ALL
                     SELECT greatest(greatest(req_tat_us, tok_tat_us) - {now}, 1)
                     FROM rate_limits WHERE key = $1 AND NOT EXISTS (SELECT 1 FROM upd)"
                ),
                &[&key, &req_cost, &tok_cost],
            )
            .await
            .map_err(|e| self.db_err(e))?;
        Ok(match row.map(|r| r.get::<_, i64>(0)) {
            Some(0) => None,
            Some(us) => Some(wait_of(us)),
            None => Some(Duration::from_millis(1)),
        })
    }
}
