//! The PostgreSQL journal against the conformance suite, on a real server.
//!
//! The server is `CHASSIS_TEST_PG_URL` (default `postgres://postgres@127.0.0.1:5432/test`).
//! Each test works in a schema of its own, dropped at the end, so tests run in parallel.
//! When the server cannot be reached the tests say so loudly and pass, unless `CI` or
//! `CHASSIS_TEST_PG_REQUIRED` is set: then they fail.

use std::sync::Arc;
use std::time::Duration;

use chassis_store::conformance::started;
use chassis_store::{Error, Journal, NewRun, PostgresJournal, Wake};
use tokio_postgres::NoTls;

#[path = "postgres/tls.rs"]
mod tls;

pub(crate) use chassis_testkit::pg::{Schema, base_url, required};

/// A schema of the test's own (see [`chassis_testkit::pg`]).
/// A wait no test outlasts: a test that depends on it ending early hangs if it does not.
const FOREVER: Duration = Duration::from_secs(24 * 60 * 60);

async fn new_schema() -> Option<Schema> {
    Schema::new("t", "the PostgreSQL journal tests").await
}

async fn postgres() -> Option<(Arc<dyn Journal>, Schema)> {
    let schema = new_schema().await?;
    let journal = PostgresJournal::connect(schema.url(), 8).await.unwrap();
    Some((Arc::new(journal), schema))
}

chassis_store::journal_conformance!(optional: postgres());

fn new_run(id: &str) -> NewRun {
    NewRun {
        run_id: id.into(),
        agent: "agent".into(),
        idempotency_key: None,
    }
}

/// A client on the test's schema, for looking behind the journal's back.
async fn client(schema: &Schema) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(schema.url(), NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

#[tokio::test]
async fn open_picks_postgres_for_urls() {
    let Some(schema) = new_schema().await else {
        return;
    };
    let journal = chassis_store::open(schema.url()).await.unwrap();
    journal
        .create(&new_run("r"), &[started("agent")], Wake::Now, None)
        .await
        .unwrap();
    let count: i64 = client(&schema)
        .await
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 1);
    let url = schema.url().replacen("postgres://", "postgresql://", 1);
    assert!(chassis_store::open(&url).await.is_ok());
}

#[tokio::test]
async fn unreachable_server_is_named_without_the_password() {
    let err = chassis_store::open("postgres://bob:hunter2@127.0.0.1:5999/chassis")
        .await
        .err()
        .unwrap();
    assert!(matches!(err, Error::Connect { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "cannot connect to PostgreSQL at 127.0.0.1:5999: connection refused"
    );
}

#[tokio::test]
async fn bad_urls_are_refused_without_the_password() {
    let err = chassis_store::open("postgres://bob:hunter2@db:port/chassis")
        .await
        .err()
        .unwrap();
    assert!(matches!(err, Error::InvalidTarget { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("postgres://bob:***@db:port/chassis"),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
    let err = chassis_store::open("postgresql://db/chassis?sslmode=sometimes&password=hunter2")
        .await
        .err()
        .unwrap();
    let text = err.to_string();
    assert!(matches!(err, Error::InvalidTarget { .. }), "{text}");
    assert!(text.contains("sslmode `sometimes`"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}

#[tokio::test]
async fn unknown_database_and_role_are_named() {
    if new_schema().await.is_none() {
        return;
    }
    let base = base_url();
    let config: tokio_postgres::Config = base.parse().unwrap();
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(host) => host.clone(),
        tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("postgres");

    let url = format!("postgres://{user}@{host}:{port}/chassis_no_such_database");
    let err = chassis_store::open(&url).await.err().unwrap();
    assert!(matches!(err, Error::Connect { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("database \"chassis_no_such_database\" does not exist"),
        "{err}"
    );

    let url = format!("postgres://chassis_no_such_role:hunter2@{host}:{port}/postgres");
    let err = chassis_store::open(&url).await.err().unwrap();
    let text = err.to_string();
    assert!(matches!(err, Error::Connect { .. }), "{text}");
    assert!(text.starts_with(&format!("cannot connect to PostgreSQL at {host}:{port}: ")));
    // Trust authentication says the role is unknown; password authentication that it failed.
    assert!(
        text.contains("chassis_no_such_role") && !text.contains("hunter2"),
        "{text}"
    );
}

#[tokio::test]
async fn a_database_from_a_newer_chassis_is_refused_untouched() {
    let Some(schema) = new_schema().await else {
        return;
    };
    drop(PostgresJournal::connect(schema.url(), 1).await.unwrap());
    let client = client(&schema).await;
    client
        .batch_execute(
            "UPDATE chassis_meta SET value = '1000' WHERE key = 'schema_version';
             CREATE TABLE future (x int);",
        )
        .await
        .unwrap();
    let err = PostgresJournal::connect(schema.url(), 1)
        .await
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            Error::SchemaTooNew {
                found: 1000,
                supported,
            } if supported == chassis_store::schema_version("postgres://")
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "journal schema version 1000 is newer than this chassis supports ({}); upgrade chassis",
            chassis_store::schema_version("postgres://")
        )
    );
    let version: String = client
        .query_one(
            "SELECT value FROM chassis_meta WHERE key = 'schema_version'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, "1000");
    assert!(
        client
            .query_one("SELECT count(*) FROM future", &[])
            .await
            .is_ok()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_starters_migrate_once() {
    let Some(schema) = new_schema().await else {
        return;
    };
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let url = schema.url().to_string();
        tasks.push(tokio::spawn(async move {
            PostgresJournal::connect(&url, 1).await.map(|_| ())
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let rows = client(&schema)
        .await
        .query("SELECT value FROM chassis_meta", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0].get::<_, String>(0),
        chassis_store::schema_version("postgres://").to_string()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_worker_wakes_when_a_run_becomes_runnable() {
    let Some(schema) = new_schema().await else {
        return;
    };
    let worker = Arc::new(PostgresJournal::connect(schema.url(), 2).await.unwrap());
    let other = PostgresJournal::connect(schema.url(), 2).await.unwrap();
    // The first wait starts listening and returns once it listens (it may have missed
    // something); a claim then takes what there is (nothing), so the next wait really waits.
    // Every wait here is longer than any test run: only what it waits for ends it, so a wake-up
    // that never comes hangs the test instead of passing it, whatever the machine's speed.
    worker.wait_for_work(FOREVER).await;
    assert!(
        worker
            .claim("w", Duration::from_secs(60), 1)
            .await
            .unwrap()
            .is_empty()
    );

    let waiter = {
        let worker = Arc::clone(&worker);
        tokio::spawn(async move { worker.wait_for_work(FOREVER).await })
    };
    // Another process creates a run: its commit announces it, and nothing else could end the
    // wait.
    other
        .create(&new_run("r"), &[started("agent")], Wake::Now, None)
        .await
        .unwrap();
    waiter.await.unwrap();
    assert_eq!(
        worker
            .claim("w", Duration::from_secs(60), 1)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_worker_wakes_when_a_lease_expires() {
    let Some(schema) = new_schema().await else {
        return;
    };
    let journal = PostgresJournal::connect(schema.url(), 2).await.unwrap();
    journal
        .create(&new_run("r"), &[started("agent")], Wake::Now, None)
        .await
        .unwrap();
    // A worker that dies holding a 300 ms lease announces nothing; waiting ends at its expiry.
    let lease = journal
        .claim("dead", Duration::from_millis(300), 1)
        .await
        .unwrap();
    assert_eq!(lease.len(), 1);
    // Nothing is announced, and the wait is longer than any test run: only the expiry, which
    // the wait looks up, ends it in time for the test to finish.
    let mut claimed = Vec::new();
    while claimed.is_empty() {
        journal.wait_for_work(FOREVER).await;
        claimed = journal
            .claim("next", Duration::from_secs(60), 1)
            .await
            .unwrap();
    }
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].run_id, "r");
}
