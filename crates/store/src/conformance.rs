//! The journal conformance suite: every backend must pass every check, unchanged.
//!
//! Each check takes a fresh, empty journal. Backends run them all with
//! [`journal_conformance!`](crate::journal_conformance).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chassis_core::{Event, RunStatus};

use crate::{Error, Journal, Lease, ListFilter, NewRun};

/// A lease nobody will outlive in a test.
const LONG: Duration = Duration::from_secs(600);

/// A `run_started` event of `agent`.
pub fn started(agent: &str) -> Event {
    Event::RunStarted(Box::new(chassis_core::RunStart {
        agent: agent.to_string(),
        spec_path: "/agents/a.toml".to_string(),
        input: "hello".to_string(),
        system: "be brief".to_string(),
        model: "openai:m".to_string(),
        fallbacks: vec![],
        tools: vec![].into(),
        limits: Default::default(),
        max_tokens: 1024,
        prices: Default::default(),
        at_ms: 0,
        max_repairs: 2,
        version: String::new(),
        version_label: None,
        approvals: Default::default(),
        tags: Default::default(),
    }))
}

/// A `run_waiting` event.
pub fn waiting() -> Event {
    Event::RunWaiting {
        reason: "human".to_string(),
        at_ms: 0,
    }
}

/// A `run_paused` event.
pub fn paused() -> Event {
    Event::RunPaused {
        reason: "outage".to_string(),
        at_ms: 0,
    }
}

/// A `run_resumed` event.
pub fn resumed() -> Event {
    Event::RunResumed { at_ms: 0 }
}

/// A `run_completed` event.
pub fn completed() -> Event {
    Event::RunCompleted {
        output: "done".to_string(),
    }
}

/// A `model_requested` event of `step`.
pub fn requested(step: u32) -> Event {
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
    journal.append("b", 1, &[waiting()]).await.unwrap();
    // Events that change no status still count in the run's length.
    journal
        .append("c", 1, &[requested(1), requested(2)])
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
    assert_eq!(other[0].last_seq, 3);
    assert!(other[0].updated_ms >= other[0].created_ms, "{:?}", other[0]);
    let limited = journal
        .list(&ListFilter {
            limit: Some(2),
            ..ListFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(limited.len(), 2);
}

async fn create(journal: &dyn Journal, id: &str) {
    journal
        .create(&new_run(id), &[started("agent")])
        .await
        .unwrap();
}

fn ids(leases: &[Lease]) -> Vec<&str> {
    let mut ids: Vec<&str> = leases.iter().map(|l| l.run_id.as_str()).collect();
    ids.sort_unstable();
    ids
}

/// Many workers claiming at once: every runnable run goes to exactly one of them.
pub async fn claim_gives_each_run_to_one_worker(journal: Arc<dyn Journal>) {
    for i in 0..50 {
        create(journal.as_ref(), &format!("run-{i:02}")).await;
    }
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let journal = Arc::clone(&journal);
        tasks.push(tokio::spawn(async move {
            let worker = format!("worker-{worker}");
            let mut mine = Vec::new();
            loop {
                let leases = journal.claim(&worker, LONG, 3).await.unwrap();
                if leases.is_empty() {
                    return mine;
                }
                assert!(leases.iter().all(|l| l.worker == worker));
                mine.extend(leases);
            }
        }));
    }
    let mut claimed = Vec::new();
    for task in tasks {
        claimed.extend(task.await.unwrap());
    }
    let unique: HashSet<&str> = claimed.iter().map(|l| l.run_id.as_str()).collect();
    assert_eq!(claimed.len(), 50, "some run was claimed twice or never");
    assert_eq!(unique.len(), 50);
    assert!(journal.claim("late", LONG, 50).await.unwrap().is_empty());
}

/// Only runs that are running are claimed: not waiting, paused, completed or failed ones.
pub async fn only_runnable_runs_are_claimed(journal: Arc<dyn Journal>) {
    let endings = [
        ("completed", completed()),
        (
            "failed",
            Event::RunFailed {
                error: "broke".into(),
            },
        ),
        ("waiting", waiting()),
        ("paused", paused()),
    ];
    for (id, event) in endings {
        create(journal.as_ref(), id).await;
        journal.append(id, 1, &[event]).await.unwrap();
    }
    create(journal.as_ref(), "running").await;
    create(journal.as_ref(), "resumed").await;
    journal
        .append("resumed", 1, &[waiting(), resumed(), requested(1)])
        .await
        .unwrap();
    let leases = journal.claim("w", LONG, 10).await.unwrap();
    assert_eq!(ids(&leases), vec!["resumed", "running"]);
    // Finishing a leased run leaves nothing to claim, even once the lease is released.
    for lease in &leases {
        let at = journal.load(&lease.run_id).await.unwrap().len() as u64;
        journal
            .append_leased(
                lease,
                at,
                &[Event::RunCompleted {
                    output: "ok".into(),
                }],
            )
            .await
            .unwrap();
        journal.release(lease).await.unwrap();
    }
    assert!(journal.claim("w", LONG, 10).await.unwrap().is_empty());
}

/// An expired lease goes to the next claimer, and its old holder can neither renew nor write.
pub async fn expired_lease_passes_to_another_worker(journal: Arc<dyn Journal>) {
    create(journal.as_ref(), "r1").await;
    let old = journal.claim("a", Duration::ZERO, 5).await.unwrap();
    assert_eq!(ids(&old), vec!["r1"]);
    let old = &old[0];
    assert_eq!(old.worker, "a");
    let new = journal.claim("b", LONG, 5).await.unwrap();
    assert_eq!(ids(&new), vec!["r1"]);
    let new = &new[0];
    assert_ne!(new.token, old.token);
    assert!(journal.claim("c", LONG, 5).await.unwrap().is_empty());

    assert!(matches!(
        journal.renew(old, LONG).await,
        Err(Error::LeaseLost { .. })
    ));
    let err = journal
        .append_leased(old, 1, &[requested(1)])
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::LeaseLost { ref run_id } if run_id == "r1"),
        "{err}"
    );
    // The old holder's release does not free the new holder's lease.
    journal.release(old).await.unwrap();
    assert!(journal.claim("c", LONG, 5).await.unwrap().is_empty());

    assert_eq!(
        journal
            .append_leased(new, 1, &[requested(1)])
            .await
            .unwrap(),
        2
    );
    assert_eq!(journal.load("r1").await.unwrap().len(), 2);
}

/// Renewing keeps the token; a leased append still obeys the sequence rule.
pub async fn renew_extends_and_leased_appends_keep_the_sequence_rule(journal: Arc<dyn Journal>) {
    create(journal.as_ref(), "r1").await;
    let lease = journal
        .claim("a", Duration::from_secs(60), 1)
        .await
        .unwrap()
        .remove(0);
    let renewed = journal.renew(&lease, LONG).await.unwrap();
    assert_eq!(renewed.token, lease.token);
    assert_eq!(renewed.worker, "a");
    assert!(renewed.until_ms > lease.until_ms);
    let err = journal
        .append_leased(&renewed, 5, &[requested(1)])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::SequenceConflict {
                expected: 5,
                actual: 1,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        journal
            .append_leased(&renewed, 1, &[requested(1), requested(2)])
            .await
            .unwrap(),
        3
    );
    // A plain append needs no lease (single-process use).
    assert_eq!(journal.append("r1", 3, &[requested(3)]).await.unwrap(), 4);
    let ghost = Lease {
        run_id: "nope".into(),
        ..renewed.clone()
    };
    assert!(matches!(
        journal.append_leased(&ghost, 0, &[requested(1)]).await,
        Err(Error::RunNotFound(_))
    ));
}

/// A released run can be claimed again at once; releasing twice is harmless.
pub async fn release_makes_a_run_claimable_at_once(journal: Arc<dyn Journal>) {
    create(journal.as_ref(), "r1").await;
    let lease = journal.claim("a", LONG, 1).await.unwrap().remove(0);
    assert!(journal.claim("b", LONG, 1).await.unwrap().is_empty());
    journal.release(&lease).await.unwrap();
    journal.release(&lease).await.unwrap();
    assert!(matches!(
        journal.renew(&lease, LONG).await,
        Err(Error::LeaseLost { .. })
    ));
    let again = journal.claim("b", LONG, 1).await.unwrap();
    assert_eq!(ids(&again), vec!["r1"]);
    assert_eq!(again[0].worker, "b");
}

/// Waking a waiting run makes it claimable, at the time asked for; finished runs stay put.
pub async fn wake_makes_a_waiting_run_claimable(journal: Arc<dyn Journal>) {
    create(journal.as_ref(), "r1").await;
    let lease = journal.claim("a", LONG, 1).await.unwrap().remove(0);
    journal
        .append_leased(&lease, 1, &[waiting()])
        .await
        .unwrap();
    journal.release(&lease).await.unwrap();
    assert!(journal.claim("b", LONG, 1).await.unwrap().is_empty());

    // A wake in the far future does not make it claimable now.
    journal.wake("r1", i64::MAX / 2).await.unwrap();
    assert!(journal.claim("b", LONG, 1).await.unwrap().is_empty());
    // An earlier one does, and the earlier time stands against a later one.
    journal.wake("r1", 0).await.unwrap();
    journal.wake("r1", i64::MAX / 2).await.unwrap();
    let leases = journal.claim("b", LONG, 1).await.unwrap();
    assert_eq!(ids(&leases), vec!["r1"]);

    create(journal.as_ref(), "done").await;
    journal
        .append(
            "done",
            1,
            &[Event::RunCompleted {
                output: "ok".into(),
            }],
        )
        .await
        .unwrap();
    journal.wake("done", 0).await.unwrap();
    assert!(journal.claim("c", LONG, 5).await.unwrap().is_empty());
    assert!(matches!(
        journal.wake("nope", 0).await,
        Err(Error::RunNotFound(_))
    ));
}

/// Waiting for work returns by the timeout at the latest (earlier is allowed).
pub async fn wait_for_work_returns_by_the_timeout(journal: Arc<dyn Journal>) {
    let started = Instant::now();
    journal.wait_for_work(Duration::from_millis(100)).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    create(journal.as_ref(), "r1").await;
    let started = Instant::now();
    journal.wait_for_work(Duration::from_millis(100)).await;
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// Generates one test per conformance check for a backend.
///
/// `$make` is an async expression evaluating to `(Arc<dyn Journal>, guard)`; the guard
/// (e.g. a temporary directory) lives as long as the test. With `optional:`, it evaluates to
/// an `Option` of that, and `None` skips the check (a backend whose server is not running).
#[macro_export]
macro_rules! journal_conformance {
    (optional: $make:expr) => {
        $crate::journal_conformance!(@all $make.await);
    };
    ($make:expr) => {
        $crate::journal_conformance!(@all Some($make.await));
    };
    (@all $get:expr) => {
        $crate::journal_conformance!(@tests $get;
            append_then_load_in_order,
            stale_writer_is_refused,
            concurrent_writers_never_interleave,
            many_runs_append_concurrently,
            unknown_and_duplicate_runs,
            list_by_status_and_agent,
            claim_gives_each_run_to_one_worker,
            only_runnable_runs_are_claimed,
            expired_lease_passes_to_another_worker,
            renew_extends_and_leased_appends_keep_the_sequence_rule,
            release_makes_a_run_claimable_at_once,
            wake_makes_a_waiting_run_claimable,
            wait_for_work_returns_by_the_timeout,
        );
    };
    (@tests $get:expr; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let Some((journal, _guard)) = $get else {
                    return;
                };
                $crate::conformance::$check(journal).await;
            }
        )*
    };
}
