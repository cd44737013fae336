//! The shared journal: PostgreSQL, for several workers on several machines.
//!
//! Every operation is one statement, hence one transaction and one round trip: an append is a
//! conditional `UPDATE runs … WHERE last_seq = $expected` (plus, when leased, `lease_token =
//! $token`) whose returned row feeds the `INSERT` of its events, so a stale writer changes
//! nothing and there is no read-then-write race; `(run_id, seq)` is the primary key besides.
//! Concurrent commits already share WAL flushes in the server, so appends are not batched here.
//! Claims lock candidate rows with `FOR UPDATE SKIP LOCKED`, so concurrent claimers never wait
//! for each other and never get the same run. Times (event stamps, leases, wake-ups) are the
//! server's clock, one clock for every worker. Statements that make a run runnable `NOTIFY`
//! [`listen::CHANNEL`], which idle workers wait on.

mod listen;
mod migrate;
mod outbox;
mod pool;
mod rate;
mod schedule;
mod snapshot;
mod target;
mod tls;

use std::time::Duration;

use async_trait::async_trait;
use chassis_core::{Event, RunStatus, Wake};
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Statement};

use crate::journal::{
    Created, Driver, Journal, Lease, ListFilter, NewRun, Record, RunSummary, TokenRecord,
};
use crate::lease::{fresh_token, token_from_sql, token_to_sql, ttl_ms};
use crate::{Error, encode};

use listen::Listener;
use pool::{Conn, Pool};

pub(crate) use migrate::VERSION as SCHEMA_VERSION;
pub(crate) use target::is_url;
pub use target::redact;

/// Connections [`crate::open`] keeps to one database.
pub const DEFAULT_POOL_SIZE: usize = 16;

/// The server's clock in ms since the epoch (`now()`: the statement's transaction start).
const NOW_MS: &str = "(extract(epoch FROM now()) * 1000)::bigint";

/// Shortest wait between two looks for work, so a run that stays busy cannot cause a spin.
const MIN_WAIT: Duration = Duration::from_millis(10);

/// Announces the run of each row of `rel` for which `cond` holds (inside the statement's
/// transaction, so listeners hear of it only once it is committed).
fn notify(rel: &str, cond: &str) -> String {
    format!(
        "(SELECT count(*) FROM (SELECT pg_notify('{channel}', {rel}.run_id) WHERE {cond}) n)",
        channel = listen::CHANNEL,
    )
}

/// The journal's statements, prepared on each connection.
pub(crate) struct Statements {
    create: Statement,
    append: Statement,
    append_notes: Statement,
    state: Statement,
    holder: Statement,
    by_key: Statement,
    load: Statement,
    list: Statement,
    claim: Statement,
    claim_run: Statement,
    renew: Statement,
    release: Statement,
    next_ready: Statement,
}

/// A wake time as two parameters: "now" (the server's clock), or a time or NULL for never.
fn wake_params(wake: Wake) -> (bool, Option<i64>) {
    match wake {
        Wake::Now => (true, None),
        Wake::At(at) => (false, Some(i64::try_from(at).unwrap_or(i64::MAX))),
        Wake::Never => (false, None),
    }
}

impl Statements {
    async fn prepare(client: &Client) -> Result<Statements, tokio_postgres::Error> {
        use Type as T;
        let now = NOW_MS;
        // $1 run_id, $2 agent, $3 status, $4 encoded events, $5 wake now, $6 wake at,
        // $7 idempotency key, $8 lease owner or NULL, $9 lease token, $10 lease ttl ms,
        // $11 version, $12 version label, $13 tag keys, $14 tag values.
        let create = format!(
            "WITH r AS (
                 INSERT INTO runs (run_id, agent, status, last_seq, created_ms, updated_ms,
                                   wake_at_ms, idempotency_key, lease_owner, lease_token,
                                   lease_until_ms, version, version_label)
                 VALUES ($1, $2, $3, cardinality($4::text[]), {now}, {now},
                         CASE WHEN $5 THEN {now} ELSE $6 END, $7, $8,
                         CASE WHEN $8::text IS NULL THEN NULL ELSE $9 END,
                         CASE WHEN $8::text IS NULL THEN NULL ELSE {now} + $10 END, $11, $12)
                 ON CONFLICT DO NOTHING
                 RETURNING run_id, last_seq, wake_at_ms, lease_until_ms
             ), ins AS (
                 INSERT INTO events (run_id, seq, at_ms, data)
                 SELECT r.run_id, t.n, {now}, t.d
                 FROM r, unnest($4::text[]) WITH ORDINALITY AS t(d, n)
             ), tags AS (
                 INSERT INTO run_tags (run_id, key, value)
                 SELECT r.run_id, t.k, t.v FROM r, unnest($13::text[], $14::text[]) AS t(k, v)
                 ON CONFLICT DO NOTHING
             )
             SELECT r.last_seq, r.lease_until_ms, {notify} FROM r",
            notify = notify(
                "r",
                &format!("r.wake_at_ms <= {now} AND r.lease_until_ms IS NULL")
            ),
        );
        // The wake time an append leaves: "now" keeps an earlier runnable time.
        let wake = format!(
            "CASE WHEN $6 THEN (CASE WHEN wake_at_ms IS NOT NULL AND wake_at_ms <= {now}
                                     THEN wake_at_ms ELSE {now} END)
                  ELSE $7 END"
        );
        // $1 run_id, $2 expected, $3 status or NULL, $4 lease token or NULL (a human
        // decision), $5 events, $6 wake now, $7 wake at; with notifications, $8 to $14 their
        // ids, seqs, kinds, URLs, secret variables, bodies and lifetimes (ms), queued in the
        // same statement (`postgres/outbox.rs`).
        let append_sql = |notes: &str| {
            format!(
                "WITH u AS (
                 UPDATE runs SET
                     last_seq = $2 + cardinality($5::text[]),
                     updated_ms = {now},
                     status = coalesce($3, status),
                     wake_at_ms = {wake}
                 WHERE run_id = $1 AND last_seq = $2
                   AND ($4::bigint IS NULL OR lease_token = $4)
                 RETURNING run_id, last_seq, wake_at_ms, lease_until_ms
             ), ins AS (
                 INSERT INTO events (run_id, seq, at_ms, data)
                 SELECT u.run_id, $2 + t.n, {now}, t.d
                 FROM u, unnest($5::text[]) WITH ORDINALITY AS t(d, n)
             ){notes}
             SELECT u.last_seq, {notify} FROM u",
                notify = notify(
                    "u",
                    &format!(
                        "u.wake_at_ms <= {now} AND (u.lease_until_ms IS NULL OR u.lease_until_ms <= {now})"
                    )
                ),
            )
        };
        let append = append_sql("");
        let append_notes = append_sql(&outbox::queue_cte(now));
        // $1 worker, $2 ttl ms, $3 limit, $4 token base (each lease gets base XOR its number).
        // Runs whose driver died (an expired lease) come before younger queued work.
        let claim = format!(
            "WITH picked AS (
                 SELECT run_id FROM runs
                 WHERE wake_at_ms <= {now}
                   AND (lease_until_ms IS NULL OR lease_until_ms <= {now})
                 ORDER BY lease_until_ms IS NULL, wake_at_ms, run_id
                 LIMIT $3
                 FOR UPDATE SKIP LOCKED
             ), numbered AS (
                 SELECT run_id, row_number() OVER (ORDER BY run_id) AS n FROM picked
             )
             UPDATE runs SET lease_owner = $1, lease_token = $4 # numbered.n,
                             lease_until_ms = {now} + $2
             FROM numbered WHERE runs.run_id = numbered.run_id
             RETURNING runs.run_id, runs.lease_token, runs.lease_until_ms"
        );
        // $1 run_id, $2 owner, $3 token, $4 ttl ms, $5 a holder known dead, or NULL.
        let claim_run = format!(
            "UPDATE runs SET lease_owner = $2, lease_token = $3, lease_until_ms = {now} + $4
             WHERE run_id = $1 AND (lease_until_ms IS NULL OR lease_until_ms <= {now}
                                    OR lease_owner = $5)
             RETURNING lease_until_ms"
        );
        // $1 run_id, $2 token, $3 ttl ms.
        let renew = format!(
            "UPDATE runs SET lease_until_ms = {now} + $3
             WHERE run_id = $1 AND lease_token = $2
             RETURNING lease_until_ms"
        );
        // $1 run_id, $2 token, $3 the journal length the driver saw, $4 wake now, $5 wake at.
        let release = format!(
            "WITH r AS (
                 UPDATE runs SET lease_owner = NULL, lease_token = NULL, lease_until_ms = NULL,
                     wake_at_ms = CASE WHEN last_seq = $3
                                       THEN (CASE WHEN $4 THEN {now} ELSE $5 END)
                                       ELSE wake_at_ms END
                 WHERE run_id = $1 AND lease_token = $2
                 RETURNING run_id, wake_at_ms
             )
             SELECT {notify} FROM r",
            notify = notify("r", &format!("r.wake_at_ms <= {now}")),
        );
        // Milliseconds until the next run becomes claimable (woken, and its lease expired).
        let next_ready = format!(
            "SELECT min(greatest(wake_at_ms, coalesce(lease_until_ms, wake_at_ms))) - {now}
             FROM runs WHERE wake_at_ms IS NOT NULL"
        );
        let holder =
            format!("SELECT lease_owner, lease_until_ms, {now} FROM runs WHERE run_id = $1");
        let (create, append, append_notes, state, holder, by_key, load, list) =
            tokio::try_join!(
            client.prepare_typed(
                &create,
                &[
                    T::TEXT,
                    T::TEXT,
                    T::TEXT,
                    T::TEXT_ARRAY,
                    T::BOOL,
                    T::INT8,
                    T::TEXT,
                    T::TEXT,
                    T::INT8,
                    T::INT8,
                    T::TEXT,
                    T::TEXT,
                    T::TEXT_ARRAY,
                    T::TEXT_ARRAY
                ]
            ),
            client.prepare_typed(
                &append,
                &[T::TEXT, T::INT8, T::TEXT, T::INT8, T::TEXT_ARRAY, T::BOOL, T::INT8]
            ),
            client.prepare_typed(
                &append_notes,
                &[
                    T::TEXT,
                    T::INT8,
                    T::TEXT,
                    T::INT8,
                    T::TEXT_ARRAY,
                    T::BOOL,
                    T::INT8,
                    T::TEXT_ARRAY,
                    T::INT8_ARRAY,
                    T::TEXT_ARRAY,
                    T::TEXT_ARRAY,
                    T::TEXT_ARRAY,
                    T::TEXT_ARRAY,
                    T::INT8_ARRAY
                ]
            ),
            client.prepare_typed(
                "SELECT last_seq, lease_token FROM runs WHERE run_id = $1",
                &[T::TEXT]
            ),
            client.prepare_typed(&holder, &[T::TEXT]),
            client.prepare_typed(
                "SELECT run_id FROM runs WHERE idempotency_key = $1",
                &[T::TEXT]
            ),
            client.prepare_typed(
                "SELECT seq, at_ms, data FROM events WHERE run_id = $1 AND seq > $2 ORDER BY seq",
                &[T::TEXT, T::INT8]
            ),
            client.prepare_typed(
                "SELECT run_id, agent, status, last_seq, created_ms, updated_ms, wake_at_ms,
                        lease_owner, lease_until_ms, coalesce(version, '') FROM runs
                 WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR agent = $2)
                   AND ($4::text IS NULL OR starts_with(version, $4) OR version_label = $4)
                   AND ($5::text IS NULL OR run_id IN
                        (SELECT t.run_id FROM run_tags t WHERE t.key = $5 AND t.value = $6))
                   AND ($7::bigint IS NULL OR created_ms >= $7)
                   AND ($8::bigint IS NULL OR created_ms < $8)
                   AND ($9::bigint IS NULL OR (created_ms, run_id) < ($9, $10))
                   AND ($11::text IS NULL OR run_id = $11)
                   AND ($12::text IS NULL OR run_id IN
                        (SELECT t.run_id FROM run_tags t WHERE t.key = $13 AND t.value = $12))
                 ORDER BY created_ms DESC, run_id DESC LIMIT $3",
                &[
                    T::TEXT,
                    T::TEXT,
                    T::INT8,
                    T::TEXT,
                    T::TEXT,
                    T::TEXT,
                    T::INT8,
                    T::INT8,
                    T::INT8,
                    T::TEXT,
                    T::TEXT,
                    T::TEXT,
                    T::TEXT
                ]
            ),
        )?;
        let (claim, claim_run, renew, release, next_ready) = tokio::try_join!(
            client.prepare_typed(&claim, &[T::TEXT, T::INT8, T::INT8, T::INT8]),
            client.prepare_typed(&claim_run, &[T::TEXT, T::TEXT, T::INT8, T::INT8, T::TEXT]),
            client.prepare_typed(&renew, &[T::TEXT, T::INT8, T::INT8]),
            client.prepare_typed(&release, &[T::TEXT, T::INT8, T::INT8, T::BOOL, T::INT8]),
            client.prepare_typed(&next_ready, &[]),
        )?;
        Ok(Statements {
            create,
            append,
            append_notes,
            state,
            holder,
            by_key,
            load,
            list,
            claim,
            claim_run,
            renew,
            release,
            next_ready,
        })
    }
}

/// The PostgreSQL journal: a small pool of connections to one database schema.
///
/// The schema is the connection's current one (the first of `search_path`, usually `public`);
/// `?options=-csearch_path%3Dname` in the URL picks another.
pub struct PostgresJournal {
    target: String,
    config: target::Target,
    pool: Pool,
    listener: Listener,
}

impl PostgresJournal {
    /// Connects to `url` (`postgres://user:password@host:port/database?…`), creates or
    /// migrates the schema, and keeps up to `pool_size` connections.
    ///
    /// Fails with [`Error::InvalidTarget`] for a bad URL, [`Error::Connect`] when the server
    /// cannot be reached or refuses the login, and [`Error::SchemaTooNew`] for a database of a
    /// newer chassis (left untouched). No message holds the password.
    pub async fn connect(url: &str, pool_size: usize) -> Result<PostgresJournal, Error> {
        let target = redact(url);
        let config = target::parse(url)?;
        let (mut client, connection) = target::connect(&config).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        migrate::migrate(&mut client, &target).await?;
        let first = Conn::prepare(client, &target).await?;
        Ok(PostgresJournal {
            pool: Pool::new(config.clone(), target.clone(), pool_size, first),
            target,
            config,
            listener: Listener::new(),
        })
    }

    /// The URL connected to, password redacted.
    pub fn target(&self) -> &str {
        &self.target
    }

    fn db_err(&self, e: tokio_postgres::Error) -> Error {
        Error::Database {
            path: self.target.clone(),
            message: target::describe(&e),
        }
    }

    async fn append_op(
        &self,
        run_id: &str,
        expected: u64,
        events: &[Event],
        wake: Wake,
        token: Option<u64>,
        notes: &[crate::Notification],
    ) -> Result<u64, Error> {
        let encoded = events.iter().map(encode).collect::<Result<Vec<_>, _>>()?;
        let status = events
            .iter()
            .rev()
            .find_map(RunStatus::after)
            .map(RunStatus::as_str);
        let expected_sql = seq_to_sql(expected)?;
        let token_sql = token.map(token_to_sql);
        let (wake_now, wake_at) = wake_params(wake);
        let conn = self.pool.get().await?;
        let row = if notes.is_empty() {
            conn.client
                .query_opt(
                    &conn.stmts.append,
                    &[
                        &run_id,
                        &expected_sql,
                        &status,
                        &token_sql,
                        &encoded,
                        &wake_now,
                        &wake_at,
                    ],
                )
                .await
        } else {
            let n = outbox::Columns::of(notes);
            conn.client
                .query_opt(
                    &conn.stmts.append_notes,
                    &[
                        &run_id,
                        &expected_sql,
                        &status,
                        &token_sql,
                        &encoded,
                        &wake_now,
                        &wake_at,
                        &n.ids,
                        &n.seqs,
                        &n.kinds,
                        &n.urls,
                        &n.envs,
                        &n.bodies,
                        &n.lifetimes,
                    ],
                )
                .await
        }
        .map_err(|e| self.db_err(e))?;
        if let Some(row) = row {
            return Ok(seq_from_sql(row.get(0)));
        }
        // Refused: say why, from the row as it is now.
        let current = conn
            .client
            .query_opt(&conn.stmts.state, &[&run_id])
            .await
            .map_err(|e| self.db_err(e))?;
        let Some(current) = current else {
            return Err(Error::RunNotFound(run_id.to_string()));
        };
        let actual = seq_from_sql(current.get(0));
        let held: Option<i64> = current.get(1);
        if token.is_some() && held != token_sql {
            return Err(Error::LeaseLost {
                run_id: run_id.to_string(),
            });
        }
        Err(Error::SequenceConflict {
            run_id: run_id.to_string(),
            expected,
            actual,
        })
    }
    /// Every token record, or the live one with `hash`.
    async fn read_tokens(&self, hash: Option<&str>) -> Result<Vec<TokenRecord>, Error> {
        let conn = self.pool.get().await?;
        let rows = conn
            .client
            .query(
                "SELECT name, role, hash, created_ms, revoked_ms FROM tokens
                 WHERE $1::text IS NULL OR (hash = $1 AND revoked_ms IS NULL)
                 ORDER BY created_ms, name",
                &[&hash],
            )
            .await
            .map_err(|e| self.db_err(e))?;
        Ok(rows
            .iter()
            .map(|row| TokenRecord {
                name: row.get(0),
                role: row.get(1),
                hash: row.get(2),
                created_ms: row.get(3),
                revoked_ms: row.get(4),
            })
            .collect())
    }

    /// Leases one run unless someone (other than `dead`, if given) holds a live lease on it.
    async fn claim_one(
        &self,
        run_id: &str,
        owner: &str,
        ttl: Duration,
        dead: Option<&str>,
    ) -> Result<Lease, Error> {
        let token = fresh_token();
        let conn = self.pool.get().await?;
        let row = conn
            .client
            .query_opt(
                &conn.stmts.claim_run,
                &[&run_id, &owner, &token_to_sql(token), &ttl_ms(ttl), &dead],
            )
            .await
            .map_err(|e| self.db_err(e))?;
        if let Some(row) = row {
            return Ok(Lease {
                run_id: run_id.to_string(),
                worker: owner.to_string(),
                token,
                until_ms: row.get(0),
            });
        }
        let holder = conn
            .client
            .query_opt(&conn.stmts.holder, &[&run_id])
            .await
            .map_err(|e| self.db_err(e))?;
        match holder {
            None => Err(Error::RunNotFound(run_id.to_string())),
            Some(row) => Err(Error::Held {
                run_id: run_id.to_string(),
                owner: row.get::<_, Option<String>>(0).unwrap_or_default(),
                until_ms: row.get::<_, Option<i64>>(1).unwrap_or(row.get(2)),
            }),
        }
    }
}

fn seq_to_sql(seq: u64) -> Result<i64, Error> {
    i64::try_from(seq).map_err(|_| Error::Encode(format!("sequence {seq} is out of range")))
}

fn seq_from_sql(seq: i64) -> u64 {
    u64::try_from(seq).unwrap_or(0)
}

#[async_trait]
impl Journal for PostgresJournal {
    async fn create(
        &self,
        run: &NewRun,
        events: &[Event],
        wake: Wake,
        driver: Option<&Driver>,
    ) -> Result<Created, Error> {
        let encoded = events.iter().map(encode).collect::<Result<Vec<_>, _>>()?;
        let status = events
            .iter()
            .rev()
            .find_map(RunStatus::after)
            .unwrap_or(RunStatus::Running)
            .as_str();
        let (wake_now, wake_at) = wake_params(wake);
        let token = fresh_token();
        let owner = driver.map(|d| d.owner.clone());
        let facts = crate::StartFacts::of(events);
        let (tag_keys, tag_values): (Vec<String>, Vec<String>) = facts.tags.iter().cloned().unzip();
        let ttl = driver.map_or(0, |d| ttl_ms(d.ttl));
        let conn = self.pool.get().await?;
        let row = conn
            .client
            .query_opt(
                &conn.stmts.create,
                &[
                    &run.run_id,
                    &run.agent,
                    &status,
                    &encoded,
                    &wake_now,
                    &wake_at,
                    &run.idempotency_key,
                    &owner,
                    &token_to_sql(token),
                    &ttl,
                    &facts.version,
                    &facts.label,
                    &tag_keys,
                    &tag_values,
                ],
            )
            .await
            .map_err(|e| self.db_err(e))?;
        if let Some(row) = row {
            let lease = match (owner, row.get::<_, Option<i64>>(1)) {
                (Some(worker), Some(until_ms)) => Some(Lease {
                    run_id: run.run_id.clone(),
                    worker,
                    token,
                    until_ms,
                }),
                _ => None,
            };
            return Ok(Created {
                seq: seq_from_sql(row.get(0)),
                lease,
            });
        }
        // Nothing inserted: the id or the key is taken.
        let exists = conn
            .client
            .query_opt(&conn.stmts.state, &[&run.run_id])
            .await
            .map_err(|e| self.db_err(e))?;
        if exists.is_none()
            && let Some(key) = &run.idempotency_key
        {
            let used = conn
                .client
                .query_opt(&conn.stmts.by_key, &[key])
                .await
                .map_err(|e| self.db_err(e))?;
            if let Some(used) = used {
                return Err(Error::KeyUsed {
                    key: key.clone(),
                    run_id: used.get(0),
                });
            }
        }
        Err(Error::RunExists(run.run_id.clone()))
    }

    async fn append_with(
        &self,
        lease: &Lease,
        expected: u64,
        events: &[Event],
        wake: Wake,
        notes: &[crate::Notification],
    ) -> Result<u64, Error> {
        self.append_op(
            &lease.run_id,
            expected,
            events,
            wake,
            Some(lease.token),
            notes,
        )
        .await
    }

    async fn decide(
        &self,
        run_id: &str,
        expected: u64,
        events: &[Event],
        wake: Wake,
    ) -> Result<u64, Error> {
        crate::check_decisions(run_id, events)?;
        self.append_op(run_id, expected, events, wake, None, &[])
            .await
    }

    async fn load_after(&self, run_id: &str, after: u64) -> Result<Vec<Record>, Error> {
        let conn = self.pool.get().await?;
        let rows = conn
            .client
            .query(&conn.stmts.load, &[&run_id, &seq_to_sql(after)?])
            .await
            .map_err(|e| self.db_err(e))?;
        if rows.is_empty() {
            let exists = conn
                .client
                .query_opt(&conn.stmts.state, &[&run_id])
                .await
                .map_err(|e| self.db_err(e))?;
            return match exists {
                Some(_) => Ok(Vec::new()),
                None => Err(Error::RunNotFound(run_id.to_string())),
            };
        }
        drop(conn);
        rows.iter()
            .map(|row| {
                let seq = seq_from_sql(row.get(0));
                let data: &str = row.get(2);
                let event = serde_json::from_str(data).map_err(|e| Error::Corrupt {
                    run_id: run_id.to_string(),
                    seq,
                    message: e.to_string(),
                })?;
                Ok(Record {
                    seq,
                    at_ms: row.get(1),
                    event,
                })
            })
            .collect()
    }

    async fn list(&self, filter: &ListFilter) -> Result<Vec<RunSummary>, Error> {
        let status = filter.status.map(RunStatus::as_str);
        let limit = filter.limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX));
        let (tag_key, tag_value) = filter.tag.clone().unzip();
        let (after_ms, after_id) = filter.after.clone().unzip();
        let conn = self.pool.get().await?;
        let rows = conn
            .client
            .query(
                &conn.stmts.list,
                &[
                    &status,
                    &filter.agent,
                    &limit,
                    &filter.version,
                    &tag_key,
                    &tag_value,
                    &filter.since_ms,
                    &filter.until_ms,
                    &after_ms,
                    &after_id,
                    &filter.run_id,
                    &filter.forked_from,
                    &crate::FORKED_FROM_KEY,
                ],
            )
            .await
            .map_err(|e| self.db_err(e))?;
        Ok(rows
            .iter()
            .map(|row| RunSummary {
                run_id: row.get(0),
                agent: row.get(1),
                status: RunStatus::parse(row.get(2)).unwrap_or(RunStatus::Running),
                last_seq: seq_from_sql(row.get(3)),
                created_ms: row.get(4),
                updated_ms: row.get(5),
                wake_at_ms: row.get(6),
                lease: match (row.get::<_, Option<String>>(7), row.get(8)) {
                    (Some(owner), Some(until)) => Some((owner, until)),
                    _ => None,
                },
                version: row.get(9),
            })
            .collect())
    }

    async fn claim(&self, worker: &str, ttl: Duration, limit: usize) -> Result<Vec<Lease>, Error> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let base = token_to_sql(fresh_token());
        let conn = self.pool.get().await?;
        self.listener.claiming();
        let rows = conn
            .client
            .query(&conn.stmts.claim, &[&worker, &ttl_ms(ttl), &limit, &base])
            .await
            .map_err(|e| self.db_err(e))?;
        Ok(rows
            .iter()
            .map(|row| Lease {
                run_id: row.get(0),
                worker: worker.to_string(),
                token: token_from_sql(row.get(1)),
                until_ms: row.get(2),
            })
            .collect())
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease, Error> {
        let conn = self.pool.get().await?;
        let row = conn
            .client
            .query_opt(
                &conn.stmts.renew,
                &[&lease.run_id, &token_to_sql(lease.token), &ttl_ms(ttl)],
            )
            .await
            .map_err(|e| self.db_err(e))?;
        match row {
            Some(row) => Ok(Lease {
                until_ms: row.get(0),
                ..lease.clone()
            }),
            None => Err(Error::LeaseLost {
                run_id: lease.run_id.clone(),
            }),
        }
    }

    async fn claim_run(&self, run_id: &str, owner: &str, ttl: Duration) -> Result<Lease, Error> {
        self.claim_one(run_id, owner, ttl, None).await
    }

    async fn take_over(
        &self,
        run_id: &str,
        dead: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Lease, Error> {
        self.claim_one(run_id, owner, ttl, Some(dead)).await
    }

    async fn release(&self, lease: &Lease, seen: u64, wake: Wake) -> Result<(), Error> {
        let (wake_now, wake_at) = wake_params(wake);
        let conn = self.pool.get().await?;
        conn.client
            .query(
                &conn.stmts.release,
                &[
                    &lease.run_id,
                    &token_to_sql(lease.token),
                    &seq_to_sql(seen)?,
                    &wake_now,
                    &wake_at,
                ],
            )
            .await
            .map_err(|e| self.db_err(e))?;
        Ok(())
    }

    async fn put_version(&self, version: &str, agent: &str, definition: &str) -> Result<(), Error> {
        let conn = self.pool.get().await?;
        conn.client
            .execute(
                &format!(
                    "INSERT INTO agent_versions (version, agent, created_ms, definition)
                     VALUES ($1, $2, {NOW_MS}, $3) ON CONFLICT DO NOTHING"
                ),
                &[&version, &agent, &definition],
            )
            .await
            .map_err(|e| self.db_err(e))?;
        Ok(())
    }

    async fn get_version(&self, version: &str) -> Result<Option<String>, Error> {
        let conn = self.pool.get().await?;
        let row = conn
            .client
            .query_opt(
                "SELECT definition FROM agent_versions WHERE version = $1",
                &[&version],
            )
            .await
            .map_err(|e| self.db_err(e))?;
        Ok(row.map(|row| row.get(0)))
    }

    async fn put_token(&self, token: &TokenRecord) -> Result<(), Error> {
        let conn = self.pool.get().await?;
        let inserted = conn
            .client
            .execute(
                "INSERT INTO tokens (name, role, hash, created_ms) VALUES ($1, $2, $3, $4)
                 ON CONFLICT DO NOTHING",
                &[&token.name, &token.role, &token.hash, &token.created_ms],
            )
            .await
            .map_err(|e| self.db_err(e))?;
        if inserted == 0 {
            return Err(Error::TokenExists(token.name.clone()));
        }
        Ok(())
    }

    async fn tokens(&self) -> Result<Vec<TokenRecord>, Error> {
        self.read_tokens(None).await
    }

    async fn revoke_token(&self, name: &str) -> Result<bool, Error> {
        let conn = self.pool.get().await?;
        let changed = conn
            .client
            .execute(
                &format!(
                    "UPDATE tokens SET revoked_ms = {NOW_MS} WHERE name = $1 AND revoked_ms IS NULL"
                ),
                &[&name],
            )
            .await
            .map_err(|e| self.db_err(e))?;
        Ok(changed > 0)
    }

    async fn find_token(&self, hash: &str) -> Result<Option<TokenRecord>, Error> {
        Ok(self.read_tokens(Some(hash)).await?.pop())
    }

    async fn import(&self, run: &crate::Restored) -> Result<(), Error> {
        let events: Vec<Event> = run.events.iter().map(|r| r.event.clone()).collect();
        let facts = crate::StartFacts::of(&events);
        let seqs: Vec<i64> = run
            .events
            .iter()
            .map(|r| i64::try_from(r.seq).unwrap_or(i64::MAX))
            .collect();
        let times: Vec<i64> = run.events.iter().map(|r| r.at_ms).collect();
        let data: Vec<String> = run
            .events
            .iter()
            .map(|r| crate::encode(&r.event))
            .collect::<Result<_, _>>()?;
        let (keys, values): (Vec<String>, Vec<String>) = facts.tags.iter().cloned().unzip();
        let last_seq = seqs.last().copied().unwrap_or(0);
        let updated_ms = times.last().copied().unwrap_or(run.created_ms);
        let conn = self.pool.get().await?;
        let rows = conn
            .client
            .query(
                "WITH r AS (
                     INSERT INTO runs (run_id, agent, status, last_seq, created_ms, updated_ms,
                                       wake_at_ms, version, version_label)
                     VALUES ($1, $2, $3, $4, $5, $6, NULL, $7, $8)
                     ON CONFLICT DO NOTHING
                     RETURNING run_id
                 ), ins AS (
                     INSERT INTO events (run_id, seq, at_ms, data)
                     SELECT r.run_id, e.s, e.a, e.d
                     FROM r, unnest($9::bigint[], $10::bigint[], $11::text[]) AS e(s, a, d)
                 ), tags AS (
                     INSERT INTO run_tags (run_id, key, value)
                     SELECT r.run_id, t.k, t.v FROM r, unnest($12::text[], $13::text[]) AS t(k, v)
                     ON CONFLICT DO NOTHING
                 )
                 SELECT run_id FROM r",
                &[
                    &run.run_id,
                    &run.agent,
                    &run.status.as_str(),
                    &last_seq,
                    &run.created_ms,
                    &updated_ms,
                    &facts.version,
                    &facts.label,
                    &seqs,
                    &times,
                    &data,
                    &keys,
                    &values,
                ],
            )
            .await
            .map_err(|e| self.db_err(e))?;
        if rows.is_empty() {
            return Err(Error::RunExists(run.run_id.clone()));
        }
        Ok(())
    }

    async fn purge(&self, run_ids: &[String]) -> Result<crate::Purged, Error> {
        let conn = self.pool.get().await?;
        // One statement: the runs that have ended and have no notification left to deliver
        // (a later purge takes those), then their events, tags, snapshots and notifications.
        let row = conn
            .client
            .query_one(
                "WITH gone AS (
                     DELETE FROM runs WHERE run_id = ANY($1)
                        AND status IN ('completed', 'failed', 'cancelled')
                        AND NOT EXISTS (SELECT 1 FROM outbox o
                                        WHERE o.run_id = runs.run_id AND o.status = 'pending')
                     RETURNING run_id),
                 notes AS (
                     DELETE FROM outbox WHERE run_id IN (SELECT run_id FROM gone)
                     RETURNING 1),
                 ev AS (
                     DELETE FROM events WHERE run_id IN (SELECT run_id FROM gone)
                     RETURNING octet_length(data) AS n),
                 tags AS (
                     DELETE FROM run_tags WHERE run_id IN (SELECT run_id FROM gone)
                     RETURNING 1),
                 snaps AS (
                     DELETE FROM snapshots WHERE run_id IN (SELECT run_id FROM gone)
                     RETURNING 1)
                 SELECT (SELECT count(*) FROM gone),
                        (SELECT coalesce(sum(n), 0)::bigint FROM ev),
                        (SELECT count(*) FROM tags),
                        (SELECT count(*) FROM snaps),
                        (SELECT count(*) FROM notes)",
                &[&run_ids],
            )
            .await
            .map_err(|e| self.db_err(e))?;
        let runs: i64 = row.get(0);
        let bytes: i64 = row.get(1);
        Ok(crate::Purged {
            runs: u64::try_from(runs).unwrap_or(0),
            bytes: u64::try_from(bytes).unwrap_or(0),
        })
    }

    async fn wait_for_work(&self, timeout: Duration) {
        // A run whose wake time or lease expiry falls inside the wait is announced by nobody:
        // wait only until then.
        let next = match self.pool.get().await {
            Ok(conn) => conn
                .client
                .query_one(&conn.stmts.next_ready, &[])
                .await
                .ok()
                .and_then(|row| row.get::<_, Option<i64>>(0)),
            Err(_) => None,
        };
        let timeout = match next {
            Some(ms) => timeout.min(Duration::from_millis(u64::try_from(ms).unwrap_or(0))),
            None => timeout,
        }
        .max(MIN_WAIT.min(timeout));
        self.listener.wait(&self.config, timeout).await;
    }
}
