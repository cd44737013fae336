//! Schedules in SQLite: their table, the slots they fired, claims and bookings, written
//! through the writer thread like every other write.

use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::{Done, Op, SqliteJournal};
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
        created_ms     INTEGER NOT NULL,
        next_slot_ms   INTEGER NOT NULL,
        last_run_id    TEXT,
        lease_owner    TEXT,
        lease_token    INTEGER,
        lease_until_ms INTEGER
    );
    CREATE INDEX schedules_due ON schedules (next_slot_ms);
    CREATE TABLE schedule_slots (
        schedule_id TEXT NOT NULL,
        slot_ms     INTEGER NOT NULL,
        run_id      TEXT,
        outcome     TEXT NOT NULL,
        fired_ms    INTEGER NOT NULL,
        PRIMARY KEY (schedule_id, slot_ms)
    );
";

const COLUMNS: &str = "schedule_id, agent, spec_path, cron, timezone, input, overlap, catch_up,
     created_ms, next_slot_ms, last_run_id, lease_token";

fn row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Schedule> {
    Ok(Schedule {
        schedule_id: row.get(0)?,
        agent: row.get(1)?,
        spec_path: row.get(2)?,
        cron: row.get(3)?,
        timezone: row.get(4)?,
        input: row.get(5)?,
        overlap: row.get(6)?,
        catch_up: row.get(7)?,
        created_ms: row.get(8)?,
        next_slot_ms: row.get(9)?,
        last_run_id: row.get(10)?,
        token: row.get::<_, Option<i64>>(11)?.map_or(0, token_from_sql),
    })
}

fn put(conn: &Connection, s: &Schedule) -> rusqlite::Result<Done> {
    conn.prepare_cached(
        "INSERT INTO schedules (schedule_id, agent, spec_path, cron, timezone, input, overlap,
             catch_up, created_ms, next_slot_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        s.schedule_id,
        s.agent,
        s.spec_path,
        s.cron,
        s.timezone,
        s.input,
        s.overlap,
        s.catch_up,
        s.created_ms,
        s.next_slot_ms
    ])?;
    Ok(Done::Nothing)
}

fn claim(
    conn: &Connection,
    owner: &str,
    ttl_ms: i64,
    limit: usize,
    now: i64,
) -> rusqlite::Result<Done> {
    let ids = conn
        .prepare_cached(
            "SELECT schedule_id FROM schedules
             WHERE next_slot_ms <= ?1 AND (lease_until_ms IS NULL OR lease_until_ms <= ?1)
             ORDER BY next_slot_ms, schedule_id LIMIT ?2",
        )?
        .query_map(
            params![now, i64::try_from(limit).unwrap_or(i64::MAX)],
            |row| row.get::<_, String>(0),
        )?
        .collect::<Result<Vec<_>, _>>()?;
    let mut claimed = Vec::with_capacity(ids.len());
    for id in ids {
        conn.prepare_cached(
            "UPDATE schedules SET lease_owner = ?2, lease_token = ?3, lease_until_ms = ?4
             WHERE schedule_id = ?1",
        )?
        .execute(params![
            id,
            owner,
            token_to_sql(fresh_token()),
            now.saturating_add(ttl_ms)
        ])?;
        let sql = format!("SELECT {COLUMNS} FROM schedules WHERE schedule_id = ?1");
        claimed.push(conn.prepare_cached(&sql)?.query_row(params![id], row)?);
    }
    Ok(Done::Schedules(claimed))
}

fn record(
    conn: &Connection,
    schedule: &Schedule,
    fired: &[Fired],
    next_slot_ms: i64,
    now: i64,
) -> rusqlite::Result<Done> {
    let last_run = fired.iter().rev().find_map(|f| f.run_id.clone());
    let changed = conn
        .prepare_cached(
            "UPDATE schedules SET next_slot_ms = ?3, last_run_id = coalesce(?4, last_run_id),
                 lease_owner = NULL, lease_token = NULL, lease_until_ms = NULL
             WHERE schedule_id = ?1 AND lease_token = ?2",
        )?
        .execute(params![
            schedule.schedule_id,
            token_to_sql(schedule.token),
            next_slot_ms,
            last_run
        ])?;
    if changed == 0 {
        return Ok(Done::Changed(false));
    }
    for f in fired {
        conn.prepare_cached(
            "INSERT OR IGNORE INTO schedule_slots (schedule_id, slot_ms, run_id, outcome, fired_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![
            schedule.schedule_id,
            f.slot_ms,
            f.run_id,
            f.outcome,
            now
        ])?;
    }
    Ok(Done::Changed(true))
}

impl SqliteJournal {
    pub(super) async fn exec(
        &self,
        write: impl Fn(&Connection, i64) -> rusqlite::Result<Done> + Send + 'static,
    ) -> Result<Done, Error> {
        self.submit(Op::Exec(Box::new(write))).await
    }

    async fn read_with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, Error> {
        let path = self.path.display().to_string();
        self.read(move |conn| {
            f(conn).map_err(|e| Error::Database {
                path,
                message: e.to_string(),
            })
        })
        .await
    }
}

#[async_trait]
impl Schedules for SqliteJournal {
    async fn put_schedule(&self, schedule: &Schedule) -> Result<(), Error> {
        let schedule = schedule.clone();
        self.exec(move |conn, _| put(conn, &schedule))
            .await
            .map(|_| ())
    }

    async fn schedules(&self) -> Result<Vec<Schedule>, Error> {
        self.read_with(|conn| {
            let sql = format!("SELECT {COLUMNS} FROM schedules ORDER BY created_ms, schedule_id");
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map([], row)?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows
                .into_iter()
                .map(|s| Schedule { token: 0, ..s })
                .collect())
        })
        .await
    }

    async fn remove_schedule(&self, schedule_id: &str) -> Result<bool, Error> {
        let id = schedule_id.to_string();
        match self
            .exec(move |conn, _| {
                let n = conn
                    .prepare_cached("DELETE FROM schedules WHERE schedule_id = ?1")?
                    .execute(params![id])?;
                Ok(Done::Changed(n > 0))
            })
            .await?
        {
            Done::Changed(changed) => Ok(changed),
            _ => Err(Error::Closed),
        }
    }

    async fn claim_schedules(
        &self,
        owner: &str,
        ttl: Duration,
        limit: usize,
    ) -> Result<Vec<Schedule>, Error> {
        let (owner, ttl_ms) = (owner.to_string(), ttl_ms(ttl));
        match self
            .exec(move |conn, now| claim(conn, &owner, ttl_ms, limit, now))
            .await?
        {
            Done::Schedules(claimed) => Ok(claimed),
            _ => Err(Error::Closed),
        }
    }

    async fn record_fired(
        &self,
        schedule: &Schedule,
        fired: &[Fired],
        next_slot_ms: i64,
    ) -> Result<bool, Error> {
        let (schedule, fired) = (schedule.clone(), fired.to_vec());
        match self
            .exec(move |conn, now| record(conn, &schedule, &fired, next_slot_ms, now))
            .await?
        {
            Done::Changed(changed) => Ok(changed),
            _ => Err(Error::Closed),
        }
    }

    async fn fired_slots(&self, schedule_id: &str) -> Result<Vec<Fired>, Error> {
        let id = schedule_id.to_string();
        self.read_with(move |conn| {
            conn.prepare_cached(
                "SELECT slot_ms, run_id, outcome FROM schedule_slots WHERE schedule_id = ?1
                 ORDER BY slot_ms",
            )?
            .query_map(params![id], |row| {
                Ok(Fired {
                    slot_ms: row.get(0)?,
                    run_id: row.get(1)?,
                    outcome: row.get(2)?,
                })
            })?
            .collect()
        })
        .await
    }

    async fn next_schedule_ms(&self) -> Result<Option<i64>, Error> {
        self.read_with(|conn| {
            conn.prepare_cached(
                "SELECT min(max(next_slot_ms, coalesce(lease_until_ms, 0))) FROM schedules",
            )?
            .query_row([], |row| row.get(0))
            .optional()
            .map(Option::flatten)
        })
        .await
    }
}
