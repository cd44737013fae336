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
