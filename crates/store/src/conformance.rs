//! The journal conformance suite: every backend must pass every check, unchanged.
//!
//! Each check takes a fresh, empty journal. Backends run them all with
//! [`journal_conformance!`](crate::journal_conformance).

use std::sync::Arc;

use chassis_core::{Event, RunStatus};

use crate::{Error, Journal, ListFilter, NewRun};

fn started(agent: &str) -> Event {
    Event::RunStarted {
        agent: agent.to_string(),
        spec_path: "/agents/a.toml".to_string(),
        input: "hello".to_string(),
        system: "be brief".to_string(),
        model: "openai:m".to_string(),
        fallbacks: vec![],
        max_repairs: 2,
        tools: vec![],
        limits: Default::default(),
        max_tokens: 100,
        prices: Default::default(),
        at_ms: 0,
    }
}

fn requested(step: u32) -> Event {
    Event::ModelRequested {
        step,
        model: "openai:m".to_string(),
        messages: 2,
    }
}

fn new_run(id: &str) -> NewRun {
    NewRun {
        run_id: id.to_string(),
        agent: "agent".to_string(),
    }
}

/// Appended events come back in order, with gapless sequence numbers from 1.
pub async fn append_then_load_in_order(journal: Arc<dyn Journal>) {
    assert_eq!(
        journal
            .create(&new_run("r1"), &[started("agent")])
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        journal
            .append("r1", 1, &[requested(1), requested(2)])
            .await
            .unwrap(),
        3
    );
    assert_eq!(journal.append("r1", 3, &[requested(3)]).await.unwrap(), 4);
    let records = journal.load("r1").await.unwrap();
    let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4]);
    assert_eq!(records[0].event, started("agent"));
    assert_eq!(records[3].event, requested(3));
    assert!(records.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
}

/// A writer with a stale expected sequence is refused and nothing it sent is stored.
pub async fn stale_writer_is_refused(journal: Arc<dyn Journal>) {
    journal
        .create(&new_run("r1"), &[started("agent")])
        .await
        .unwrap();
    journal.append("r1", 1, &[requested(1)]).await.unwrap();
    let err = journal
        .append("r1", 1, &[requested(9), requested(10)])
        .await
        .unwrap_err();
    match err {
        Error::SequenceConflict {
            expected, actual, ..
        } => assert_eq!((expected, actual), (1, 2)),
        other => panic!("expected a sequence conflict, got {other}"),
    }
    let err = journal.append("r1", 5, &[requested(9)]).await.unwrap_err();
    assert!(
        matches!(err, Error::SequenceConflict { actual: 2, .. }),
        "{err}"
    );
    assert_eq!(journal.load("r1").await.unwrap().len(), 2);
}

/// Many writers racing on one run: exactly one wins each sequence, none interleave.
pub async fn concurrent_writers_never_interleave(journal: Arc<dyn Journal>) {
    journal
        .create(&new_run("r1"), &[started("agent")])
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for writer in 0..8u32 {
        let journal = Arc::clone(&journal);
        tasks.push(tokio::spawn(async move {
            let mut won = 0;
            for _ in 0..20 {
                let at = journal.load("r1").await.unwrap().len() as u64;
                let batch = [requested(writer * 1000 + 1), requested(writer * 1000 + 2)];
                if journal.append("r1", at, &batch).await.is_ok() {
                    won += 1;
                }
            }
            won
        }));
    }
    let mut won = 0;
    for task in tasks {
        won += task.await.unwrap();
    }
    let records = journal.load("r1").await.unwrap();
    assert_eq!(records.len() as u64, 1 + 2 * won);
    // Each accepted batch is contiguous: its two events come from the same writer.
    for pair in records[1..].chunks(2) {
        let (Event::ModelRequested { step: a, .. }, Event::ModelRequested { step: b, .. }) =
            (&pair[0].event, &pair[1].event)
        else {
            panic!("unexpected events {pair:?}");
        };
        assert_eq!(a / 1000, b / 1000, "batches interleaved: {a} then {b}");
        assert_eq!(b - a, 1);
    }
}

/// Appends to many runs at once all land, each in its own journal.
pub async fn many_runs_append_concurrently(journal: Arc<dyn Journal>) {
    let mut tasks = Vec::new();
    for i in 0..50 {
        let journal = Arc::clone(&journal);
        tasks.push(tokio::spawn(async move {
            let id = format!("run-{i}");
            journal
                .create(&new_run(&id), &[started("agent")])
                .await
                .unwrap();
            for step in 1..=5 {
                journal
                    .append(&id, step as u64, &[requested(step)])
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    for i in 0..50 {
        let records = journal.load(&format!("run-{i}")).await.unwrap();
        assert_eq!(records.len(), 6);
    }
}

/// Unknown runs and duplicate creation are typed errors.
pub async fn unknown_and_duplicate_runs(journal: Arc<dyn Journal>) {
    assert!(matches!(
        journal.load("nope").await,
        Err(Error::RunNotFound(_))
    ));
    assert!(matches!(
        journal.append("nope", 0, &[requested(1)]).await,
        Err(Error::RunNotFound(_))
    ));
    journal
        .create(&new_run("r1"), &[started("agent")])
        .await
        .unwrap();
    assert!(matches!(
        journal.create(&new_run("r1"), &[started("agent")]).await,
        Err(Error::RunExists(_))
    ));
    assert_eq!(journal.load("r1").await.unwrap().len(), 1);
}

/// Listing reflects the status of each run's last status-changing event.
pub async fn list_by_status_and_agent(journal: Arc<dyn Journal>) {
    journal
        .create(&new_run("a"), &[started("agent")])
        .await
        .unwrap();
    journal
        .create(&new_run("b"), &[started("agent")])
        .await
        .unwrap();
    journal
        .create(
            &NewRun {
                run_id: "c".into(),
                agent: "other".into(),
            },
            &[started("other")],
        )
        .await
        .unwrap();
    journal
        .append(
            "a",
            1,
            &[Event::RunCompleted {
                output: "done".into(),
            }],
        )
        .await
        .unwrap();
    journal
        .append(
            "b",
            1,
            &[Event::RunWaiting {
                reason: "human".into(),
                at_ms: 0,
            }],
        )
        .await
        .unwrap();

    let all = journal.list(&ListFilter::default()).await.unwrap();
    assert_eq!(all.len(), 3);
    let completed = journal
        .list(&ListFilter {
            status: Some(RunStatus::Completed),
            ..ListFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(completed.len(), 1);
    assert_eq!(completed[0].run_id, "a");
    assert_eq!(completed[0].last_seq, 2);
    let waiting = journal
        .list(&ListFilter {
            status: Some(RunStatus::Waiting),
            ..ListFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(waiting[0].run_id, "b");
    let other = journal
        .list(&ListFilter {
            agent: Some("other".into()),
            ..ListFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(other.len(), 1);
    assert_eq!(other[0].status, RunStatus::Running);
    let limited = journal
        .list(&ListFilter {
            limit: Some(2),
            ..ListFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(limited.len(), 2);
}

/// Generates one test per conformance check for a backend.
///
/// `$make` is an async expression evaluating to `(Arc<dyn Journal>, guard)`; the guard
/// (e.g. a temporary directory) lives as long as the test.
#[macro_export]
macro_rules! journal_conformance {
    ($make:expr) => {
        $crate::journal_conformance!(@tests $make;
            append_then_load_in_order,
            stale_writer_is_refused,
            concurrent_writers_never_interleave,
            many_runs_append_concurrently,
            unknown_and_duplicate_runs,
            list_by_status_and_agent,
        );
    };
    (@tests $make:expr; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let (journal, _guard) = $make.await;
                $crate::conformance::$check(journal).await;
            }
        )*
    };
}
