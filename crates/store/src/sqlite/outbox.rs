//! The outbox in SQLite: its table, the rows an append queues, claims and attempts.
//!
//! Claims and attempts are writes like any other: they go through the writer thread, inside
//! `BEGIN IMMEDIATE`, so a claim sees every claim committed before it, in any process.

use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, params};

use super::{Done, Op, SqliteJournal};
use crate::Error;
use crate::lease::{fresh_token, token_from_sql, token_to_sql, ttl_ms};
use crate::outbox::{Attempt, Delivery, DeliveryStatus, Notification, Outbox, OutboxFilter};

/// The outbox's migration; self-contained, so it can take any place in the list.
pub(super) const MIGRATION: &str = "
    CREATE TABLE outbox (
        delivery_id     TEXT PRIMARY KEY,
        run_id          TEXT NOT NULL,
        seq             INTEGER NOT NULL,
        kind            TEXT NOT NULL,
        url             TEXT NOT NULL,
        secret_env      TEXT NOT NULL,
        body            TEXT NOT NULL,
        status          TEXT NOT NULL,
        attempts        INTEGER NOT NULL DEFAULT 0,
        created_ms      INTEGER NOT NULL,
        expires_ms      INTEGER NOT NULL,
        next_attempt_ms INTEGER NOT NULL,
        lease_owner     TEXT,
        lease_token     INTEGER,
        lease_until_ms  INTEGER,
        last_error      TEXT,
        done_ms         INTEGER
    );
    CREATE INDEX outbox_due ON outbox (next_attempt_ms) WHERE status = 'pending';
    CREATE INDEX outbox_by_created ON outbox (created_ms, delivery_id);
";

const COLUMNS: &str = "delivery_id, run_id, seq, kind, url, secret_env, body, status, attempts,
     created_ms, expires_ms, next_attempt_ms, last_error, done_ms, lease_token";

/// Queues `notes` (inside the append's transaction). A note already queued is left as it is.
pub(super) fn queue(conn: &Connection, notes: &[Notification], now: i64) -> rusqlite::Result<()> {
    for note in notes {
        conn.prepare_cached(
            "INSERT OR IGNORE INTO outbox (delivery_id, run_id, seq, kind, url, secret_env, body,
                 status, created_ms, expires_ms, next_attempt_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', ?8, ?9, ?8)",
        )?
        .execute(params![
            note.delivery_id,
            note.run_id,
            i64::try_from(note.seq).unwrap_or(i64::MAX),
            note.kind,
            note.url,
            note.secret_env,
            note.body,
            now,
            now.saturating_add(ttl_ms(note.expire_after)),
        ])?;
    }
    Ok(())
}

/// Leases the due pending deliveries nobody holds, oldest due first.
pub(super) fn claim(
    conn: &Connection,
    owner: &str,
    ttl_ms: i64,
    limit: usize,
    now: i64,
) -> rusqlite::Result<Vec<Delivery>> {
    let ids = conn
        .prepare_cached(
            "SELECT delivery_id FROM outbox
             WHERE status = 'pending' AND next_attempt_ms <= ?1
               AND (lease_until_ms IS NULL OR lease_until_ms <= ?1)
             ORDER BY next_attempt_ms, delivery_id LIMIT ?2",
        )?
        .query_map(
            params![now, i64::try_from(limit).unwrap_or(i64::MAX)],
            |row| row.get::<_, String>(0),
        )?
        .collect::<Result<Vec<_>, _>>()?;
    let mut claimed = Vec::with_capacity(ids.len());
    for id in ids {
        let token = fresh_token();
        conn.prepare_cached(
            "UPDATE outbox SET lease_owner = ?2, lease_token = ?3, lease_until_ms = ?4
             WHERE delivery_id = ?1",
        )?
        .execute(params![
            id,
            owner,
            token_to_sql(token),
            now.saturating_add(ttl_ms)
        ])?;
        let sql = format!("SELECT {COLUMNS} FROM outbox WHERE delivery_id = ?1");
        claimed.push(conn.prepare_cached(&sql)?.query_row(params![id], row)?);
    }
    Ok(claimed)
}

/// Books an attempt; see [`Outbox::record_attempt`].
pub(super) fn record(
    conn: &Connection,
    delivery: &Delivery,
    attempt: &Attempt,
    now: i64,
) -> rusqlite::Result<bool> {
    let changed = match attempt {
        Attempt::Delivered => conn
            .prepare_cached(
                "UPDATE outbox SET status = 'delivered', attempts = attempts + 1, done_ms = ?2,
                     last_error = NULL, lease_owner = NULL, lease_token = NULL,
                     lease_until_ms = NULL
                 WHERE delivery_id = ?1 AND status = 'pending'",
            )?
            .execute(params![delivery.delivery_id, now])?,
        Attempt::Failed { error, retry_in } => {
            let next = retry_in.map(|d| now.saturating_add(ttl_ms(d)));
            conn.prepare_cached(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?3,
                     status = CASE WHEN ?4 IS NULL OR ?4 >= expires_ms THEN 'failed'
                                   ELSE 'pending' END,
                     done_ms = CASE WHEN ?4 IS NULL OR ?4 >= expires_ms THEN ?5 END,
                     next_attempt_ms = coalesce(?4, next_attempt_ms),
                     lease_owner = NULL, lease_token = NULL, lease_until_ms = NULL
                 WHERE delivery_id = ?1 AND lease_token = ?2 AND status = 'pending'",
            )?
            .execute(params![
                delivery.delivery_id,
                token_to_sql(delivery.token),
                error,
                next,
                now
            ])?
        }
    };
    Ok(changed > 0)
}

fn row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Delivery> {
    let status: String = row.get(7)?;
    Ok(Delivery {
        delivery_id: row.get(0)?,
        run_id: row.get(1)?,
        seq: row.get::<_, i64>(2)?.max(0) as u64,
        kind: row.get(3)?,
        url: row.get(4)?,
        secret_env: row.get(5)?,
        body: row.get(6)?,
        status: DeliveryStatus::parse(&status).unwrap_or(DeliveryStatus::Pending),
        attempts: u32::try_from(row.get::<_, i64>(8)?).unwrap_or(u32::MAX),
        created_ms: row.get(9)?,
        expires_ms: row.get(10)?,
        next_attempt_ms: row.get(11)?,
        last_error: row.get(12)?,
        done_ms: row.get(13)?,
        token: row.get::<_, Option<i64>>(14)?.map_or(0, token_from_sql),
    })
}

#[async_trait]
impl Outbox for SqliteJournal {
    async fn claim_deliveries(
        &self,
        owner: &str,
        ttl: Duration,
        limit: usize,
    ) -> Result<Vec<Delivery>, Error> {
        let op = Op::ClaimDeliveries {
            owner: owner.to_string(),
            ttl_ms: ttl_ms(ttl),
            limit,
        };
        match self.submit(op).await? {
            Done::Deliveries(deliveries) => Ok(deliveries),
            _ => Err(Error::Closed),
        }
    }

    async fn record_attempt(&self, delivery: &Delivery, attempt: Attempt) -> Result<bool, Error> {
        let op = Op::RecordAttempt {
            delivery: Box::new(delivery.clone()),
            attempt,
        };
        match self.submit(op).await? {
            Done::Changed(changed) => Ok(changed),
            _ => Err(Error::Closed),
        }
    }

    async fn deliveries(&self, filter: &OutboxFilter) -> Result<Vec<Delivery>, Error> {
        let filter = filter.clone();
        let path = self.path.display().to_string();
        self.read(move |conn| {
            let sql = format!(
                "SELECT {COLUMNS} FROM outbox
                 WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR run_id = ?2)
                 ORDER BY created_ms DESC, delivery_id DESC LIMIT ?3"
            );
            let limit = filter
                .limit
                .map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
            conn.prepare_cached(&sql)
                .and_then(|mut stmt| {
                    stmt.query_map(
                        params![
                            filter.status.map(DeliveryStatus::as_str),
                            filter.run_id,
                            limit
                        ],
                        row,
                    )?
                    .collect::<Result<Vec<_>, _>>()
                })
                .map_err(|e| Error::Database {
                    path,
                    message: e.to_string(),
                })
        })
        .await
    }

    async fn next_delivery_ms(&self) -> Result<Option<i64>, Error> {
        let path = self.path.display().to_string();
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT min(max(next_attempt_ms, coalesce(lease_until_ms, 0))) FROM outbox
                 WHERE status = 'pending'",
            )
            .and_then(|mut stmt| stmt.query_row([], |row| row.get(0)))
            .map_err(|e| Error::Database {
                path,
                message: e.to_string(),
            })
        })
        .await
    }
}
