//! The outbox in PostgreSQL: its table, the CTE an append queues notifications with, claims
//! (`FOR UPDATE SKIP LOCKED`, so claimers never wait for each other) and attempts. Times are
//! the server's clock, like leases.

use std::time::Duration;

use async_trait::async_trait;

use super::{NOW_MS, PostgresJournal};
use crate::Error;
use crate::lease::{fresh_token, token_from_sql, token_to_sql, ttl_ms};
use crate::outbox::{Attempt, Delivery, DeliveryStatus, Notification, Outbox, OutboxFilter};

/// The outbox's migration; self-contained, so it can take any place in the list.
pub(super) const MIGRATION: &str = "
    CREATE TABLE outbox (
        delivery_id     TEXT PRIMARY KEY,
        run_id          TEXT NOT NULL,
        seq             BIGINT NOT NULL,
        kind            TEXT NOT NULL,
        url             TEXT NOT NULL,
        secret_env      TEXT NOT NULL,
        body            TEXT NOT NULL,
        status          TEXT NOT NULL,
        attempts        INTEGER NOT NULL DEFAULT 0,
        created_ms      BIGINT NOT NULL,
        expires_ms      BIGINT NOT NULL,
        next_attempt_ms BIGINT NOT NULL,
        lease_owner     TEXT,
        lease_token     BIGINT,
        lease_until_ms  BIGINT,
        last_error      TEXT,
        done_ms         BIGINT
    );
    CREATE INDEX outbox_due ON outbox (next_attempt_ms) WHERE status = 'pending';
    CREATE INDEX outbox_by_created ON outbox (created_ms, delivery_id);
";

const COLUMNS: &str = "delivery_id, run_id, seq, kind, url, secret_env, body, status, attempts,
     created_ms, expires_ms, next_attempt_ms, last_error, done_ms, lease_token";

/// The CTE that queues an append's notifications ($8 to $14), inserted only if the append's
/// `UPDATE` (`u`) matched: the notifications are written with their events or not at all.
pub(super) fn queue_cte(now: &str) -> String {
    format!(
        ", ob AS (
             INSERT INTO outbox (delivery_id, run_id, seq, kind, url, secret_env, body, status,
                                 created_ms, expires_ms, next_attempt_ms)
             SELECT n.id, u.run_id, n.seq, n.kind, n.url, n.env, n.body, 'pending',
                    {now}, {now} + n.life, {now}
             FROM u, unnest($8::text[], $9::int8[], $10::text[], $11::text[], $12::text[],
                            $13::text[], $14::int8[]) AS n(id, seq, kind, url, env, body, life)
             ON CONFLICT DO NOTHING
         )"
    )
}

/// Notifications as the statement's parallel arrays.
pub(super) struct Columns {
    pub(super) ids: Vec<String>,
    pub(super) seqs: Vec<i64>,
    pub(super) kinds: Vec<String>,
    pub(super) urls: Vec<String>,
    pub(super) envs: Vec<String>,
    pub(super) bodies: Vec<String>,
    pub(super) lifetimes: Vec<i64>,
}

impl Columns {
    pub(super) fn of(notes: &[Notification]) -> Columns {
        Columns {
            ids: notes.iter().map(|n| n.delivery_id.clone()).collect(),
            seqs: notes
                .iter()
                .map(|n| i64::try_from(n.seq).unwrap_or(i64::MAX))
                .collect(),
            kinds: notes.iter().map(|n| n.kind.clone()).collect(),
            urls: notes.iter().map(|n| n.url.clone()).collect(),
            envs: notes.iter().map(|n| n.secret_env.clone()).collect(),
            bodies: notes.iter().map(|n| n.body.clone()).collect(),
            lifetimes: notes.iter().map(|n| ttl_ms(n.expire_after)).collect(),
        }
    }
}

fn row(row: &tokio_postgres::Row) -> Delivery {
    let status: String = row.get(7);
    Delivery {
        delivery_id: row.get(0),
        run_id: row.get(1),
        seq: row.get::<_, i64>(2).max(0) as u64,
        kind: row.get(3),
        url: row.get(4),
        secret_env: row.get(5),
        body: row.get(6),
        status: DeliveryStatus::parse(&status).unwrap_or(DeliveryStatus::Pending),
        attempts: u32::try_from(row.get::<_, i32>(8)).unwrap_or(0),
        created_ms: row.get(9),
        expires_ms: row.get(10),
        next_attempt_ms: row.get(11),
        last_error: row.get(12),
        done_ms: row.get(13),
        token: row.get::<_, Option<i64>>(14).map_or(0, token_from_sql),
    }
}

#[async_trait]
impl Outbox for PostgresJournal {
    async fn claim_deliveries(
        &self,
        owner: &str,
        ttl: Duration,
        limit: usize,
    ) -> Result<Vec<Delivery>, Error> {
        let now = NOW_MS;
        let sql = format!(
            "WITH picked AS (
                 SELECT delivery_id FROM outbox
                 WHERE status = 'pending' AND next_attempt_ms <= {now}
                   AND (lease_until_ms IS NULL OR lease_until_ms <= {now})
                 ORDER BY next_attempt_ms, delivery_id
                 LIMIT $3
                 FOR UPDATE SKIP LOCKED
             )
             UPDATE outbox SET lease_owner = $1,
                 lease_token = $4 # hashtext(outbox.delivery_id)::bigint,
                 lease_until_ms = {now} + $2
             FROM picked WHERE outbox.delivery_id = picked.delivery_id
             RETURNING {columns}",
            columns = COLUMNS
                .split(',')
                .map(|c| format!("outbox.{}", c.trim()))
                .collect::<Vec<_>>()
                .join(", "),
        );
        let conn = self.pool.get().await?;
        let rows = conn
            .client
            .query(
                &sql,
                &[
                    &owner,
                    &ttl_ms(ttl),
                    &i64::try_from(limit).unwrap_or(i64::MAX),
                    &token_to_sql(fresh_token()),
                ],
            )
            .await
            .map_err(|e| self.db_err(e))?;
        Ok(rows.iter().map(row).collect())
    }

    async fn record_attempt(&self, delivery: &Delivery, attempt: Attempt) -> Result<bool, Error> {
        let now = NOW_MS;
        let conn = self.pool.get().await?;
        let changed = match attempt {
            Attempt::Delivered => {
                conn.client
                    .execute(
                        &format!(
                            "UPDATE outbox SET status = 'delivered', attempts = attempts + 1,
                             done_ms = {now}, last_error = NULL, lease_owner = NULL,
                             lease_token = NULL, lease_until_ms = NULL
                         WHERE delivery_id = $1 AND status = 'pending'"
                        ),
                        &[&delivery.delivery_id],
                    )
                    .await
            }
            Attempt::Failed { error, retry_in } => {
                let retry_ms: Option<i64> = retry_in.map(ttl_ms);
                conn.client
                    .execute(
                        &format!(
                            "UPDATE outbox SET attempts = attempts + 1, last_error = $3,
                                 status = CASE WHEN $4::bigint IS NULL
                                                 OR {now} + $4 >= expires_ms
                                               THEN 'failed' ELSE 'pending' END,
                                 done_ms = CASE WHEN $4::bigint IS NULL
                                                  OR {now} + $4 >= expires_ms
                                                THEN {now} END,
                                 next_attempt_ms = coalesce({now} + $4, next_attempt_ms),
                                 lease_owner = NULL, lease_token = NULL, lease_until_ms = NULL
                             WHERE delivery_id = $1 AND lease_token = $2
                               AND status = 'pending'"
                        ),
                        &[
                            &delivery.delivery_id,
                            &token_to_sql(delivery.token),
                            &error,
                            &retry_ms,
                        ],
                    )
                    .await
            }
        }
        .map_err(|e| self.db_err(e))?;
        Ok(changed > 0)
    }

    async fn deliveries(&self, filter: &OutboxFilter) -> Result<Vec<Delivery>, Error> {
        let conn = self.pool.get().await?;
        let limit = filter
            .limit
            .map_or(i64::MAX, |l| i64::try_from(l).unwrap_or(i64::MAX));
        let rows = conn
            .client
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM outbox
                     WHERE ($1::text IS NULL OR status = $1)
                       AND ($2::text IS NULL OR run_id = $2)
                     ORDER BY created_ms DESC, delivery_id DESC LIMIT $3"
                ),
                &[
                    &filter.status.map(DeliveryStatus::as_str),
                    &filter.run_id,
                    &limit,
                ],
            )
            .await
            .map_err(|e| self.db_err(e))?;
        Ok(rows.iter().map(row).collect())
    }

    async fn next_delivery_ms(&self) -> Result<Option<i64>, Error> {
        let conn = self.pool.get().await?;
        let row = conn
            .client
            .query_one(
                "SELECT min(greatest(next_attempt_ms, coalesce(lease_until_ms, 0)))::bigint
                 FROM outbox WHERE status = 'pending'",
                &[],
            )
            .await
            .map_err(|e| self.db_err(e))?;
        Ok(row.get(0))
    }
}
