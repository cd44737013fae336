//! Schedules in PostgreSQL: their table, the slots they fired, claims (`FOR UPDATE SKIP
//! LOCKED`) and bookings (one statement each; the server's clock).

use std::time::Duration;

use async_trait::async_trait;

use super::{NOW_MS, PostgresJournal};
use crate::Error;
use crate::lease::{fresh_token, token_from_sql, token_to_sql, ttl_ms};
use crate::schedule::{Fired, Schedule, Schedules};

/// The schedules' migration; self-contained, so it can take any place in the list.
pub(super) const MIGRATION: &str = "
    CREATE TABLE schedules (
        schedule_id    TEXT PRIMARY KEY,
        agent          TEXT NOT NULL,
        spec_path      TEXT NOT NULL,
        cron           TEXT NOT NULL,
        timezone       TEXT NOT NULL,
        input          TEXT NOT NULL,
        overlap        TEXT NOT NULL,
        catch_up       TEXT NOT NULL,
        created_ms     BIGINT NOT NULL,
        next_slot_ms   BIGINT NOT NULL,
        last_run_id    TEXT,
        lease_owner    TEXT,
        lease_token    BIGINT,
        lease_until_ms BIGINT
    );
    CREATE INDEX schedules_due ON schedules (next_slot_ms);
    CREATE TABLE schedule_slots (
        schedule_id TEXT NOT NULL,
        slot_ms     BIGINT NOT NULL,
        run_id      TEXT,
        outcome     TEXT NOT NULL,
        fired_ms    BIGINT NOT NULL,
        PRIMARY KEY (schedule_id, slot_ms)
    );
";

const COLUMNS: &str = "schedule_id, agent, spec_path, cron, timezone, input, overlap, catch_up,
     created_ms, next_slot_ms, last_run_id, lease_token";

fn row(row: &tokio_postgres::Row) -> Schedule {
    Schedule {
        schedule_id: row.get(0),
        agent: row.get(1),
        spec_path: row.get(2),
        cron: row.get(3),
        timezone: row.get(4),
        input: row.get(5),
        overlap: row.get(6),
        catch_up: row.get(7),
        created_ms: row.get(8),
        next_slot_ms: row.get(9),
        last_run_id: row.get(10),
        token: row.get::<_, Option<i64>>(11).map_or(0, token_from_sql),
    }
}

#[async_trait]
impl Schedules for PostgresJournal {
    async fn put_schedule(&self, s: &Schedule) -> Result<(), Error> {
        let conn = self.pool.get().await?;
        conn.client
            .execute(
                "INSERT INTO schedules (schedule_id, agent, spec_path, cron, timezone, input,
                     overlap, catch_up, created_ms, next_slot_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                &[
                    &s.schedule_id,
                    &s.agent,
                    &s.spec_path,
                    &s.cron,
                    &s.timezone,
                    &s.input,
                    &s.overlap,
                    &s.catch_up,
                    &s.created_ms,
                    &s.next_slot_ms,
                ],
            )
            .await
            .map_err(|e| self.db_err(e))?;
        Ok(())
    }

    async fn schedules(&self) -> Result<Vec<Schedule>, Error> {
        let conn = self.pool.get().await?;
        let rows = conn
            .client
            .query(
                &format!("SELECT {COLUMNS} FROM schedules ORDER BY created_ms, schedule_id"),
                &[],
            )
            .await
            .map_err(|e| self.db_err(e))?;
        Ok(rows
            .iter()
            .map(|r| Schedule { token: 0, ..row(r) })
            .collect())
    }

    async fn remove_schedule(&self, schedule_id: &str) -> Result<bool, Error> {
        let conn = self.pool.get().await?;
        let n = conn
            .client
            .execute(
                "DELETE FROM schedules WHERE schedule_id = $1",
                &[&schedule_id],
            )
            .await
            .map_err(|e| self.db_err(e))?;
        Ok(n > 0)
    }

    async fn claim_schedules(
        &self,
        owner: &str,
        ttl: Duration,
        limit: usize,
    ) -> Result<Vec<Schedule>, Error> {
        let now = NOW_MS;
        let columns = COLUMNS
            .split(',')
            .map(|c| format!("schedules.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        let conn = self.pool.get().await?;
        let rows = conn
            .client
            .query(
                &format!(
                    "WITH picked AS (
                         SELECT schedule_id FROM schedules
                         WHERE next_slot_ms <= {now}
                           AND (lease_until_ms IS NULL OR lease_until_ms <= {now})
                         ORDER BY next_slot_ms, schedule_id LIMIT $3
                         FOR UPDATE SKIP LOCKED
                     )
                     UPDATE schedules SET lease_owner = $1,
                         lease_token = $4 # hashtext(schedules.schedule_id)::bigint,
                         lease_until_ms = {now} + $2
                     FROM picked WHERE schedules.schedule_id = picked.schedule_id
                     RETURNING {columns}"
                ),
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

    async fn record_fired(
        &self,
        schedule: &Schedule,
        fired: &[Fired],
        next_slot_ms: i64,
    ) -> Result<bool, Error> {
        let now = NOW_MS;
        let last_run = fired.iter().rev().find_map(|f| f.run_id.clone());
        let slots: Vec<i64> = fired.iter().map(|f| f.slot_ms).collect();
        let runs: Vec<Option<String>> = fired.iter().map(|f| f.run_id.clone()).collect();
        let outcomes: Vec<String> = fired.iter().map(|f| f.outcome.clone()).collect();
        let conn = self.pool.get().await?;
        let row = conn
            .client
            .query_opt(
                &format!(
                    "WITH u AS (
                         UPDATE schedules SET next_slot_ms = $3,
                             last_run_id = coalesce($4, last_run_id),
                             lease_owner = NULL, lease_token = NULL, lease_until_ms = NULL
                         WHERE schedule_id = $1 AND lease_token = $2
                         RETURNING schedule_id
                     ), ins AS (
                         INSERT INTO schedule_slots (schedule_id, slot_ms, run_id, outcome,
                                                     fired_ms)
                         SELECT u.schedule_id, f.slot, f.run, f.outcome, {now}
                         FROM u, unnest($5::int8[], $6::text[], $7::text[])
                              AS f(slot, run, outcome)
                         ON CONFLICT DO NOTHING
                     )
                     SELECT count(*) FROM u"
                ),
                &[
                    &schedule.schedule_id,
                    &token_to_sql(schedule.token),
                    &next_slot_ms,
                    &last_run,
                    &slots,
                    &runs,
                    &outcomes,
                ],
            )
            .await
            .map_err(|e| self.db_err(e))?;
        Ok(row.is_some_and(|r| r.get::<_, i64>(0) > 0))
    }

    async fn fired_slots(&self, schedule_id: &str) -> Result<Vec<Fired>, Error> {
        let conn = self.pool.get().await?;
        let rows = conn
            .client
            .query(
                "SELECT slot_ms, run_id, outcome FROM schedule_slots WHERE schedule_id = $1
                 ORDER BY slot_ms",
                &[&schedule_id],
            )
            .await
            .map_err(|e| self.db_err(e))?;
        Ok(rows
            .iter()
            .map(|r| Fired {
                slot_ms: r.get(0),
                run_id: r.get(1),
                outcome: r.get(2),
            })
            .collect())
    }

    async fn next_schedule_ms(&self) -> Result<Option<i64>, Error> {
        let conn = self.pool.get().await?;
        let row = conn
            .client
            .query_one(
                "SELECT min(greatest(next_slot_ms, coalesce(lease_until_ms, 0)))::bigint
                 FROM schedules",
                &[],
            )
            .await
            .map_err(|e| self.db_err(e))?;
        Ok(row.get(0))
    }
}
