//! Reports over the journal, with and without the cache a server keeps.

use std::time::Duration;

use chassis_store::conformance::{completed, started};
use chassis_store::{Driver, Journal, NewRun, SqliteJournal, Sync, Wake};
use chassis_telemetry::stats::{ReportCache, ReportFilter, report, report_cached};

fn new_run(id: &str) -> NewRun {
    NewRun {
        run_id: id.into(),
        agent: "agent".into(),
        idempotency_key: None,
    }
}

/// The cache keeps ended runs only: a run that ends between two reports is counted with its
/// end, and every report equals the one read from the journal alone.
#[tokio::test]
async fn a_cached_report_equals_a_fresh_one_and_keeps_only_ended_runs() {
    let dir = tempfile::tempdir().unwrap();
    let journal = SqliteJournal::open(&dir.path().join("j.db"), Sync::Normal).unwrap();
    let driver = Driver {
        owner: "test".into(),
        ttl: Duration::from_secs(60),
    };
    journal
        .create(
            &new_run("done"),
            &[started("agent"), completed()],
            Wake::Never,
            None,
        )
        .await
        .unwrap();
    let going = journal
        .create(
            &new_run("going"),
            &[started("agent")],
            Wake::Now,
            Some(&driver),
        )
        .await
        .unwrap()
        .lease
        .unwrap();
    let filter = ReportFilter::default();
    let cache = ReportCache::default();

    let first = report_cached(&journal, &filter, &cache).await.unwrap();
    assert_eq!(first, report(&journal, &filter).await.unwrap());
    assert_eq!(
        (first.total.runs, first.total.completed),
        (2, 1),
        "{first:#?}"
    );
    assert_eq!(cache.len(), 1, "only the ended run is kept");

    journal
        .append(&going, 1, &[completed()], Wake::Never)
        .await
        .unwrap();
    let second = report_cached(&journal, &filter, &cache).await.unwrap();
    assert_eq!(second, report(&journal, &filter).await.unwrap());
    assert_eq!(
        (second.total.runs, second.total.completed),
        (2, 2),
        "{second:#?}"
    );
    assert_eq!(cache.len(), 2);
}

/// Runs by hour cover the 48 hours before the newest run, oldest first, labelled by their UTC
/// hour: a project's first day gets a plot over time too.
#[tokio::test]
async fn runs_by_hour_cover_the_last_two_days_before_the_newest_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    let journal = SqliteJournal::open(&path, Sync::Normal).unwrap();
    for id in ["old", "morning", "noon", "noon-too"] {
        journal
            .create(
                &new_run(id),
                &[started("agent"), completed()],
                Wake::Never,
                None,
            )
            .await
            .unwrap();
    }
    // 2026-03-01T12:xx UTC for the newest; the morning one 3 h before; the old one 60 h before.
    let noon: i64 = 1_772_366_400_000 + 5 * 60_000;
    let db = rusqlite::Connection::open(&path).unwrap();
    for (id, at) in [
        ("old", noon - 60 * 3_600_000),
        ("morning", noon - 3 * 3_600_000),
        ("noon", noon),
        ("noon-too", noon + 60_000),
    ] {
        db.execute(
            "UPDATE runs SET created_ms = ?1 WHERE run_id = ?2",
            rusqlite::params![at, id],
        )
        .unwrap();
    }
    drop(db);
    let report = report(&journal, &ReportFilter::default()).await.unwrap();
    let hours: Vec<(&str, u64)> = report
        .by_hour
        .iter()
        .map(|(hour, rows)| (hour.as_str(), rows.iter().map(|r| r.runs).sum()))
        .collect();
    assert_eq!(hours, [("2026-03-01T09", 1), ("2026-03-01T12", 2)]);
    assert_eq!(report.by_day.len(), 2, "{:?}", report.by_day);
    assert_eq!(report.total.runs, 4);
}
