//! The PostgreSQL schema and its migrations, versioned in `chassis_meta`.
//!
//! Everything lives in the connection's current schema (the first of its `search_path`), so
//! one database can hold several journals. Migrations run in one transaction under a
//! transaction-scoped advisory lock keyed by that schema: concurrent starters wait for each
//! other instead of racing, and a failed migration leaves nothing half done. A database
//! written by a newer chassis is only read, never changed.

use tokio_postgres::Client;

use super::target::describe;
use crate::Error;

/// Migration `n` (from 1) takes the schema from version `n - 1` to `n`.
const MIGRATIONS: &[&str] = &[
    // 1: runs (with when each is next runnable and its lease) and their events.
    "
    CREATE TABLE runs (
        run_id         TEXT PRIMARY KEY,
        agent          TEXT NOT NULL,
        status         TEXT NOT NULL,
        last_seq       BIGINT NOT NULL,
        created_ms     BIGINT NOT NULL,
        updated_ms     BIGINT NOT NULL,
        wake_at_ms     BIGINT,
        lease_owner    TEXT,
        lease_token    BIGINT,
        lease_until_ms BIGINT
    );
    CREATE INDEX runs_by_status ON runs (status, created_ms);
    CREATE INDEX runs_by_created ON runs (created_ms);
    CREATE INDEX runs_runnable ON runs (wake_at_ms) WHERE wake_at_ms IS NOT NULL;
    CREATE TABLE events (
        run_id TEXT NOT NULL,
        seq    BIGINT NOT NULL,
        at_ms  BIGINT NOT NULL,
        data   TEXT NOT NULL,
        PRIMARY KEY (run_id, seq)
    );
    ",
    // 2: a starter's idempotency key, so a retried start finds the run it made.
    "
    ALTER TABLE runs ADD COLUMN idempotency_key TEXT;
    CREATE UNIQUE INDEX runs_by_idempotency_key ON runs (idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    ",
    // 3: what the service lists and filters by (version, label, tags), pinned agent versions,
    // and API tokens (their hashes).
    "
    ALTER TABLE runs ADD COLUMN version TEXT;
    ALTER TABLE runs ADD COLUMN version_label TEXT;
    UPDATE runs SET version = e.data::jsonb ->> 'version',
                    version_label = e.data::jsonb ->> 'version_label'
        FROM events e WHERE e.run_id = runs.run_id AND e.seq = 1;
    CREATE INDEX runs_by_version ON runs (version, created_ms);
    DROP INDEX IF EXISTS runs_by_created;
    CREATE INDEX runs_by_created ON runs (created_ms, run_id);
    CREATE TABLE run_tags (
        run_id TEXT NOT NULL,
        key    TEXT NOT NULL,
        value  TEXT NOT NULL,
        PRIMARY KEY (key, value, run_id)
    );
    INSERT INTO run_tags (run_id, key, value)
        SELECT e.run_id, t.key, t.value
        FROM events e, jsonb_each_text(e.data::jsonb -> 'tags') AS t
        WHERE e.seq = 1 AND jsonb_typeof(e.data::jsonb -> 'tags') = 'object'
        ON CONFLICT DO NOTHING;
    CREATE TABLE agent_versions (
        version    TEXT PRIMARY KEY,
        agent      TEXT NOT NULL,
        created_ms BIGINT NOT NULL,
        definition TEXT NOT NULL
    );
    CREATE TABLE tokens (
        name       TEXT NOT NULL,
        role       TEXT NOT NULL,
        hash       TEXT NOT NULL UNIQUE,
        created_ms BIGINT NOT NULL,
        revoked_ms BIGINT
    );
    CREATE UNIQUE INDEX tokens_live_name ON tokens (name) WHERE revoked_ms IS NULL;
    ",
    // The outbox: notifications queued with the events that raised them (`postgres/outbox.rs`).
    super::outbox::MIGRATION,
    // Schedules and the slots they fired (`postgres/schedule.rs`).
    super::schedule::MIGRATION,
    // Provider rate limits shared by every process (`postgres/rate.rs`).
    super::rate::MIGRATION,
    // State snapshots, so a long run loads in bounded time (`postgres/snapshot.rs`).
    super::snapshot::MIGRATION,
    // A purge finds a run's notifications by their run.
    "CREATE INDEX outbox_by_run ON outbox (run_id);",
];

/// The schema version this build writes.
pub(crate) const VERSION: i64 = MIGRATIONS.len() as i64;

/// First key of the advisory lock (`'chas'`); the second is a hash of the schema name.
const LOCK_CLASS: i32 = 0x6368_6173;

/// Brings the schema to [`VERSION`]; refuses a newer one untouched.
pub(crate) async fn migrate(client: &mut Client, target: &str) -> Result<(), Error> {
    let db_err = |e: tokio_postgres::Error| Error::Database {
        path: target.to_string(),
        message: describe(&e),
    };
    // Fast path, no lock: already current (or too new).
    if let Some(found) = version(client).await.map_err(db_err)? {
        check(found)?;
        if found == VERSION {
            return Ok(());
        }
    }
    let tx = client.transaction().await.map_err(db_err)?;
    // A migration of a large journal may take longer than any one journal operation may, and
    // waiting for another process's migration is waiting for the lock.
    tx.batch_execute(
        "SET LOCAL statement_timeout = 0; SET LOCAL idle_in_transaction_session_timeout = 0",
    )
    .await
    .map_err(db_err)?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))",
        &[&LOCK_CLASS],
    )
    .await
    .map_err(db_err)?;
    if current_schema(&tx).await.map_err(db_err)?.is_none() {
        return Err(Error::Database {
            path: target.to_string(),
            message: "no schema to create the journal in (check search_path)".to_string(),
        });
    }
    let found = match version(&tx).await.map_err(db_err)? {
        Some(found) => check(found)?,
        None => {
            tx.batch_execute(
                "CREATE TABLE chassis_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                 INSERT INTO chassis_meta (key, value) VALUES ('schema_version', '0');",
            )
            .await
            .map_err(db_err)?;
            0
        }
    };
    for (done, migration) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.batch_execute(migration)
            .await
            .map_err(|e| Error::Database {
                path: target.to_string(),
                message: format!("migration to schema version {}: {}", done + 1, describe(&e)),
            })?;
    }
    tx.execute(
        "UPDATE chassis_meta SET value = $1 WHERE key = 'schema_version'",
        &[&VERSION.to_string()],
    )
    .await
    .map_err(db_err)?;
    tx.commit().await.map_err(db_err)
}

fn check(found: i64) -> Result<i64, Error> {
    if found > VERSION {
        return Err(Error::SchemaTooNew {
            found,
            supported: VERSION,
        });
    }
    Ok(found)
}

/// The stored version, or `None` when the schema holds no journal yet.
async fn version(
    client: &impl tokio_postgres::GenericClient,
) -> Result<Option<i64>, tokio_postgres::Error> {
    let exists = client
        .query_one(
            "SELECT to_regclass(quote_ident(current_schema()) || '.chassis_meta') IS NOT NULL",
            &[],
        )
        .await?
        .get::<_, bool>(0);
    if !exists {
        return Ok(None);
    }
    let row = client
        .query_opt(
            "SELECT value FROM chassis_meta WHERE key = 'schema_version'",
            &[],
        )
        .await?;
    // A value that is not a number cannot be from any chassis this build knows.
    Ok(Some(row.map_or(0, |row| {
        row.get::<_, String>(0).trim().parse().unwrap_or(i64::MAX)
    })))
}

async fn current_schema(
    client: &impl tokio_postgres::GenericClient,
) -> Result<Option<String>, tokio_postgres::Error> {
    Ok(client
        .query_one("SELECT current_schema()::text", &[])
        .await?
        .get(0))
}
