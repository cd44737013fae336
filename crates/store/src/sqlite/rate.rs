//! Rate limits in SQLite: checked and moved inside the writer's transaction.

use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::{Done, SqliteJournal};
use crate::Error;
use crate::rate::{Capacity, RateLimits, wait_of};

/// The rate limits' migration; self-contained, so it can take any place in the list.
pub(super) const MIGRATION: &str = "
    CREATE TABLE rate_limits (
        key        TEXT PRIMARY KEY,
        req_tat_us INTEGER NOT NULL,
        tok_tat_us INTEGER NOT NULL
    );
";

#[async_trait]
impl RateLimits for SqliteJournal {
    async fn acquire(&self, key: &str, capacity: Capacity) -> Result<Option<Duration>, Error> {
        let key = key.to_string();
        let (req_cost, tok_cost) = capacity.costs_us();
        let done = self
            .exec(move |conn, now_ms| {
                let now = now_ms.saturating_mul(1000);
                let (req, tok): (i64, i64) = conn
                    .prepare_cached(
                        "SELECT req_tat_us, tok_tat_us FROM rate_limits WHERE key = ?1",
                    )?
                    .query_row(params![key], |row| Ok((row.get(0)?, row.get(1)?)))
                    .optional()?
                    .unwrap_or((now, now));
                if req > now || tok > now {
                    return Ok(Done::Waits(req.max(tok) - now));
                }
                conn.prepare_cached(
                    "INSERT INTO rate_limits (key, req_tat_us, tok_tat_us) VALUES (?1, ?2, ?3)
                     ON CONFLICT (key) DO UPDATE SET req_tat_us = ?2, tok_tat_us = ?3",
                )?
                .execute(params![
                    key,
                    now.saturating_add(req_cost),
                    now.saturating_add(tok_cost)
                ])?;
                Ok(Done::Waits(0))
            })
            .await?;
        match done {
            Done::Waits(0) => Ok(None),
            Done::Waits(us) => Ok(Some(wait_of(us))),
            _ => Err(Error::Closed),
        }
    }
}
