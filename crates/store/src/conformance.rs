//! The journal conformance suite: every backend must pass every check, unchanged.
//!
//! Each check takes a fresh, empty journal. Backends run them all with
//! [`journal_conformance!`](crate::journal_conformance).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chassis_core::{Event, RunStatus, Wake};

use crate::{Driver, Error, Journal, Lease, ListFilter, NewRun};

mod outbox;
mod rate;
mod schedule;
mod snapshot;
pub use outbox::{
    a_delivery_is_claimed_by_one_process_at_a_time,
    a_purge_waits_for_pending_notifications_then_takes_them,
    failed_deliveries_retry_until_they_expire, notifications_go_with_their_events,
};
pub use rate::rate_limits_are_shared_by_every_caller;
pub use schedule::a_due_schedule_fires_under_one_claim;
pub use snapshot::the_latest_snapshot_is_kept;

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
        park_retry_ms: chassis_core::event::DEFAULT_PARK_RETRY_MS,
        forked_from: None,
        context: Default::default(),
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

/// A human's `limit_raised` decision.
pub fn raised() -> Event {
    Event::LimitRaised {
        limit: chassis_core::LimitName::MaxSteps,
        value: 10.0,
        by: "alice".to_string(),
    }
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
        idempotency_key: None,
    }
}

fn driver(owner: &str) -> Driver {
    Driver {
        owner: owner.to_string(),
        ttl: LONG,
    }
}

/// Creates a run leased to `owner` (as `chassis run` does); returns its lease.
async fn create_driven(journal: &dyn Journal, id: &str, owner: &str) -> Lease {
    let created = journal
        .create(
            &new_run(id),
            &[started("agent")],
            Wake::Now,
            Some(&driver(owner)),
        )
        .await
        .unwrap();
    assert_eq!(created.seq, 1);
    created
        .lease
        .expect("a created run is leased to its driver")
}

/// Creates a run nobody drives yet (as `chassis submit` does).
async fn create(journal: &dyn Journal, id: &str) {
    let created = journal
        .create(&new_run(id), &[started("agent")], Wake::Now, None)
        .await
        .unwrap();
    assert_eq!(created.lease, None);
}

/// Appended events come back in order, with gapless sequence numbers from 1.
pub async fn append_then_load_in_order(journal: Arc<dyn Journal>) {
    let lease = create_driven(journal.as_ref(), "r1", "me").await;
    assert_eq!(lease.worker, "me");
    assert_eq!(
        journal
            .append(&lease, 1, &[requested(1), requested(2)], Wake::Now)
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        journal
            .append(&lease, 3, &[requested(3)], Wake::Now)
            .await
            .unwrap(),
        4
    );
    let records = journal.load("r1").await.unwrap();
    let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4]);
    assert_eq!(records[0].event, started("agent"));
    assert_eq!(records[3].event, requested(3));
    assert!(records.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
    let after = journal.load_after("r1", 2).await.unwrap();
    assert_eq!(after.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![3, 4]);
    assert!(journal.load_after("r1", 4).await.unwrap().is_empty());
    assert!(matches!(
        journal.load_after("nope", 0).await,
        Err(Error::RunNotFound(_))
    ));
}

/// A writer with a stale expected sequence is refused and nothing it sent is stored.
pub async fn stale_writer_is_refused(journal: Arc<dyn Journal>) {
    let lease = create_driven(journal.as_ref(), "r1", "me").await;
    journal
        .append(&lease, 1, &[requested(1)], Wake::Now)
        .await
        .unwrap();
    let err = journal
        .append(&lease, 1, &[requested(9), requested(10)], Wake::Now)
        .await
        .unwrap_err();
    match err {
        Error::SequenceConflict {
            expected, actual, ..
        } => assert_eq!((expected, actual), (1, 2)),
        other => panic!("expected a sequence conflict, got {other}"),
    }
    let err = journal
        .append(&lease, 5, &[requested(9)], Wake::Now)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::SequenceConflict { actual: 2, .. }),
        "{err}"
    );
    assert_eq!(journal.load("r1").await.unwrap().len(), 2);
}

/// Many writers racing on one run: exactly one wins each sequence, none interleave.
pub async fn concurrent_writers_never_interleave(journal: Arc<dyn Journal>) {
    let lease = create_driven(journal.as_ref(), "r1", "me").await;
    let mut tasks = Vec::new();
    for writer in 0..8u32 {
        let journal = Arc::clone(&journal);
        let lease = lease.clone();
        tasks.push(tokio::spawn(async move {
            let mut won = 0;
            for _ in 0..20 {
                let at = journal.load("r1").await.unwrap().len() as u64;
                let batch = [requested(writer * 1000 + 1), requested(writer * 1000 + 2)];
                if journal.append(&lease, at, &batch, Wake::Now).await.is_ok() {
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
            let lease = create_driven(journal.as_ref(), &id, "me").await;
            for step in 1..=5 {
                journal
                    .append(&lease, step as u64, &[requested(step)], Wake::Now)
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

/// Unknown runs, duplicate ids and reused idempotency keys are typed errors.
pub async fn unknown_and_duplicate_runs(journal: Arc<dyn Journal>) {
    assert!(matches!(
        journal.load("nope").await,
        Err(Error::RunNotFound(_))
    ));
    let ghost = Lease {
        run_id: "nope".into(),
        worker: "me".into(),
        token: 1,
        until_ms: 0,
    };
    assert!(matches!(
        journal.append(&ghost, 0, &[requested(1)], Wake::Now).await,
        Err(Error::RunNotFound(_))
    ));
    assert!(matches!(
        journal.decide("nope", 1, &[raised()], Wake::Now).await,
        Err(Error::RunNotFound(_))
    ));
    assert!(matches!(
        journal.claim_run("nope", "me", LONG).await,
        Err(Error::RunNotFound(_))
    ));
    create(journal.as_ref(), "r1").await;
    assert!(matches!(
        journal
            .create(&new_run("r1"), &[started("agent")], Wake::Now, None)
            .await,
        Err(Error::RunExists(_))
    ));
    assert_eq!(journal.load("r1").await.unwrap().len(), 1);

    let keyed = |id: &str| NewRun {
        idempotency_key: Some("order-42".into()),
        ..new_run(id)
    };
    journal
        .create(&keyed("k1"), &[started("agent")], Wake::Now, None)
        .await
        .unwrap();
    let err = journal
        .create(
            &keyed("k2"),
            &[started("agent")],
            Wake::Now,
            Some(&driver("me")),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::KeyUsed { key, run_id } if key == "order-42" && run_id == "k1"),
        "{err}"
    );
    assert!(matches!(
        journal.load("k2").await,
        Err(Error::RunNotFound(_))
    ));
}

/// Listing reflects the status of each run's last status-changing event, its wake time and
/// who drives it.
pub async fn list_by_status_and_agent(journal: Arc<dyn Journal>) {
    let a = create_driven(journal.as_ref(), "a", "me").await;
    let b = create_driven(journal.as_ref(), "b", "me").await;
    let c = journal
        .create(
            &NewRun {
                run_id: "c".into(),
                agent: "other".into(),
                idempotency_key: None,
            },
            &[started("other")],
            Wake::Now,
            Some(&driver("me")),
        )
        .await
        .unwrap()
        .lease
        .unwrap();
    journal
        .append(
            &a,
            1,
            &[Event::RunCompleted {
                output: "done".into(),
            }],
            Wake::Never,
        )
        .await
        .unwrap();
    journal
        .append(&b, 1, &[waiting()], Wake::Never)
        .await
        .unwrap();
    // Events that change no status still count in the run's length.
    journal
        .append(&c, 1, &[requested(1), requested(2)], Wake::Now)
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
    assert_eq!(completed[0].wake_at_ms, None);
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
    assert!(other[0].wake_at_ms.is_some());
    assert_eq!(
        other[0].lease.as_ref().map(|(owner, _)| owner.as_str()),
        Some("me")
    );
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

/// Only runs whose wake time has come are claimed, and never one a live lease holds: a run
/// created by its driver is not handed to a worker.
pub async fn only_runnable_runs_are_claimed(journal: Arc<dyn Journal>) {
    let endings = [
        ("completed", completed(), Wake::Never),
        (
            "failed",
            Event::RunFailed {
                error: "broke".into(),
            },
            Wake::Never,
        ),
        ("waiting", waiting(), Wake::Never),
        ("paused", paused(), Wake::At(u64::MAX / 4)),
    ];
    for (id, event, wake) in endings {
        let lease = create_driven(journal.as_ref(), id, "me").await;
        journal.append(&lease, 1, &[event], wake).await.unwrap();
        journal.release(&lease, 2, wake).await.unwrap();
    }
    create(journal.as_ref(), "queued").await;
    let driven = create_driven(journal.as_ref(), "driven", "me").await;
    let leases = journal.claim("w", LONG, 10).await.unwrap();
    assert_eq!(ids(&leases), vec!["queued"]);
    // Finishing a leased run leaves nothing to claim, even once the lease is released.
    for lease in leases.iter().chain([&driven]) {
        journal
            .append(
                lease,
                1,
                &[Event::RunCompleted {
                    output: "ok".into(),
                }],
                Wake::Never,
            )
            .await
            .unwrap();
        journal.release(lease, 2, Wake::Never).await.unwrap();
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
        .append(old, 1, &[requested(1)], Wake::Now)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::LeaseLost { ref run_id } if run_id == "r1"),
        "{err}"
    );
    // The old holder's release does not free the new holder's lease.
    journal.release(old, 1, Wake::Now).await.unwrap();
    assert!(journal.claim("c", LONG, 5).await.unwrap().is_empty());

    assert_eq!(
        journal
            .append(new, 1, &[requested(1)], Wake::Now)
            .await
            .unwrap(),
        2
    );
    assert_eq!(journal.load("r1").await.unwrap().len(), 2);
}

/// Runs whose driver died (their lease expired) are claimed before younger queued work, so
/// a backlog cannot keep them untouched past their leases.
pub async fn expired_leases_are_claimed_before_queued_work(journal: Arc<dyn Journal>) {
    let stalled = journal
        .create(
            &new_run("stalled"),
            &[started("agent")],
            Wake::Now,
            Some(&Driver {
                owner: "dead".into(),
                ttl: Duration::ZERO,
            }),
        )
        .await
        .unwrap();
    assert!(stalled.lease.is_some());
    tokio::time::sleep(Duration::from_millis(5)).await;
    for i in 0..5 {
        create(journal.as_ref(), &format!("queued-{i}")).await;
    }
    let first = journal.claim("w", LONG, 1).await.unwrap();
    assert_eq!(ids(&first), vec!["stalled"]);
}

/// Only the lease's holder may append; nobody else may, not even with the right sequence.
/// Without a lease, only human decisions are accepted.
pub async fn an_append_without_the_live_lease_is_refused(journal: Arc<dyn Journal>) {
    let lease = create_driven(journal.as_ref(), "r1", "me").await;
    let forged = Lease {
        token: lease.token.wrapping_add(1),
        ..lease.clone()
    };
    let err = journal
        .append(&forged, 1, &[requested(1)], Wake::Now)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::LeaseLost { .. }), "{err}");
    let err = journal
        .decide("r1", 1, &[requested(1)], Wake::Now)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotADecision {
                kind: "model_requested",
                ..
            }
        ),
        "{err}"
    );
    let err = journal
        .decide("r1", 1, &[raised(), completed()], Wake::Now)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotADecision {
                kind: "run_completed",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(journal.load("r1").await.unwrap().len(), 1);
    // A decision lands while the driver holds the lease; the driver then finds the journal
    // moved (and takes the decision in).
    assert_eq!(
        journal
            .decide("r1", 1, &[raised()], Wake::Now)
            .await
            .unwrap(),
        2
    );
    assert!(matches!(
        journal.append(&lease, 1, &[requested(1)], Wake::Now).await,
        Err(Error::SequenceConflict { actual: 2, .. })
    ));
    assert_eq!(
        journal
            .append(&lease, 2, &[requested(1)], Wake::Now)
            .await
            .unwrap(),
        3
    );
    // A released lease writes nothing more.
    journal.release(&lease, 3, Wake::Now).await.unwrap();
    assert!(matches!(
        journal.append(&lease, 3, &[requested(2)], Wake::Now).await,
        Err(Error::LeaseLost { .. })
    ));
}

/// Resuming a run takes its lease, unless someone holds a live one: then the error names
/// them and until when. Waiting runs can be claimed this way too.
pub async fn claim_run_names_the_holder(journal: Arc<dyn Journal>) {
    let lease = create_driven(journal.as_ref(), "r1", "worker-7").await;
    let err = journal.claim_run("r1", "cli", LONG).await.unwrap_err();
    match err {
        Error::Held {
            run_id,
            owner,
            until_ms,
        } => {
            assert_eq!((run_id.as_str(), owner.as_str()), ("r1", "worker-7"));
            assert_eq!(until_ms, lease.until_ms);
        }
        other => panic!("expected Held, got {other}"),
    }
    journal
        .append(&lease, 1, &[waiting()], Wake::Never)
        .await
        .unwrap();
    journal.release(&lease, 2, Wake::Never).await.unwrap();
    let mine = journal.claim_run("r1", "cli", LONG).await.unwrap();
    assert_eq!(mine.worker, "cli");
    assert_ne!(mine.token, lease.token);
    assert!(journal.claim("w", LONG, 5).await.unwrap().is_empty());
    // An expired lease is no obstacle.
    let expiring = journal
        .create(
            &new_run("r3"),
            &[started("agent")],
            Wake::Now,
            Some(&Driver {
                owner: "gone".into(),
                ttl: Duration::ZERO,
            }),
        )
        .await
        .unwrap();
    assert!(expiring.lease.is_some());
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(
        journal.claim_run("r3", "cli", LONG).await.unwrap().worker,
        "cli"
    );
    // A holder known to be dead is taken over at once; anyone else's live lease is not.
    let live = create_driven(journal.as_ref(), "r4", "crashed").await;
    assert!(matches!(
        journal.take_over("r4", "someone-else", "cli", LONG).await,
        Err(Error::Held { .. })
    ));
    let taken = journal
        .take_over("r4", "crashed", "cli", LONG)
        .await
        .unwrap();
    assert_eq!(taken.worker, "cli");
    assert!(matches!(
        journal.append(&live, 1, &[requested(1)], Wake::Now).await,
        Err(Error::LeaseLost { .. })
    ));
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
        .append(&renewed, 5, &[requested(1)], Wake::Now)
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
            .append(&renewed, 1, &[requested(1), requested(2)], Wake::Now)
            .await
            .unwrap(),
        3
    );
}

/// A released run can be claimed again at once; releasing twice is harmless.
pub async fn release_makes_a_run_claimable_at_once(journal: Arc<dyn Journal>) {
    create(journal.as_ref(), "r1").await;
    let lease = journal.claim("a", LONG, 1).await.unwrap().remove(0);
    assert!(journal.claim("b", LONG, 1).await.unwrap().is_empty());
    journal.release(&lease, 1, Wake::Now).await.unwrap();
    journal.release(&lease, 1, Wake::Now).await.unwrap();
    assert!(matches!(
        journal.renew(&lease, LONG).await,
        Err(Error::LeaseLost { .. })
    ));
    let again = journal.claim("b", LONG, 1).await.unwrap();
    assert_eq!(ids(&again), vec!["r1"]);
    assert_eq!(again[0].worker, "b");
}

/// A human decision and the run's wake-up are one write: a waiting run becomes claimable
/// when the decision says so (now, or at a timer), and a driver's release after the decision
/// does not put it back to sleep.
pub async fn a_decision_and_its_wake_are_one_write(journal: Arc<dyn Journal>) {
    let lease = create_driven(journal.as_ref(), "r1", "a").await;
    journal
        .append(&lease, 1, &[waiting()], Wake::Never)
        .await
        .unwrap();
    journal.release(&lease, 2, Wake::Never).await.unwrap();
    assert!(journal.claim("b", LONG, 1).await.unwrap().is_empty());

    // A timer in the future does not make it claimable now.
    journal
        .decide("r1", 2, &[raised()], Wake::At(u64::MAX / 4))
        .await
        .unwrap();
    assert!(journal.claim("b", LONG, 1).await.unwrap().is_empty());
    // One in the past does.
    journal
        .decide("r1", 3, &[raised()], Wake::At(1))
        .await
        .unwrap();
    let leases = journal.claim("b", LONG, 1).await.unwrap();
    assert_eq!(ids(&leases), vec!["r1"]);
    // The driver saw 4 events; a decision lands (waking the run) before it releases with
    // the wake its fold computed ("never"): the decision's wake stands.
    journal
        .decide("r1", 4, &[raised()], Wake::Now)
        .await
        .unwrap();
    journal.release(&leases[0], 4, Wake::Never).await.unwrap();
    let again = journal.claim("c", LONG, 1).await.unwrap();
    assert_eq!(ids(&again), vec!["r1"]);
    // A drive that changed nothing puts the run back to sleep when it releases.
    journal.release(&again[0], 5, Wake::Never).await.unwrap();
    assert!(journal.claim("c", LONG, 1).await.unwrap().is_empty());

    // Finished runs stay put whatever a release says.
    let done = create_driven(journal.as_ref(), "done", "a").await;
    journal
        .append(
            &done,
            1,
            &[Event::RunCompleted {
                output: "ok".into(),
            }],
            Wake::Never,
        )
        .await
        .unwrap();
    journal.release(&done, 2, Wake::Never).await.unwrap();
    assert!(journal.claim("c", LONG, 5).await.unwrap().is_empty());
}

/// Listing filters by version (prefix or label), tag and creation time, and pages by cursor
/// without gaps or repeats.
pub async fn list_filters_and_pages(journal: Arc<dyn Journal>) {
    for i in 0..7 {
        let mut start = match started("agent") {
            Event::RunStarted(start) => start,
            _ => unreachable!("started() is run_started"),
        };
        start.version = if i % 2 == 0 { "aaaa1111" } else { "bbbb2222" }.to_string();
        start.version_label = (i % 2 == 0).then(|| "v1".to_string());
        start
            .tags
            .insert("suite".into(), if i < 3 { "smoke" } else { "full" }.into());
        start.forked_from = (i % 3 == 1).then(|| chassis_core::ForkedFrom {
            run: "run-0".into(),
            seq: 1,
        });
        journal
            .create(
                &new_run(&format!("run-{i}")),
                &[Event::RunStarted(start)],
                Wake::Now,
                None,
            )
            .await
            .unwrap();
    }
    let ids = |runs: Vec<crate::RunSummary>| -> Vec<String> {
        runs.into_iter().map(|r| r.run_id).collect()
    };
    let list = |filter: ListFilter| {
        let journal = Arc::clone(&journal);
        async move { journal.list(&filter).await.unwrap() }
    };
    let by_prefix = list(ListFilter {
        version: Some("aaaa".into()),
        ..ListFilter::default()
    })
    .await;
    assert_eq!(by_prefix.len(), 4);
    assert!(by_prefix.iter().all(|r| r.version == "aaaa1111"));
    let by_label = list(ListFilter {
        version: Some("v1".into()),
        ..ListFilter::default()
    })
    .await;
    assert_eq!(ids(by_label), ids(by_prefix));
    let smoke = list(ListFilter {
        tag: Some(("suite".into(), "smoke".into())),
        ..ListFilter::default()
    })
    .await;
    assert_eq!(ids(smoke), vec!["run-2", "run-1", "run-0"]);
    let all = list(ListFilter::default()).await;
    assert_eq!(all.len(), 7);
    let future = all[0].created_ms + 1;
    assert!(
        list(ListFilter {
            since_ms: Some(future),
            ..ListFilter::default()
        })
        .await
        .is_empty()
    );
    assert_eq!(
        list(ListFilter {
            until_ms: Some(future),
            ..ListFilter::default()
        })
        .await
        .len(),
        7
    );
    // Pages of three, each after the last of the one before: every run once, in order.
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = list(ListFilter {
            limit: Some(3),
            after: after.clone(),
            ..ListFilter::default()
        })
        .await;
        let Some(last) = page.last() else { break };
        after = Some((last.created_ms, last.run_id.clone()));
        paged.extend(ids(page));
    }
    assert_eq!(paged, ids(all));
    // Forks by their original, combined with the other filters.
    let forks = list(ListFilter {
        forked_from: Some("run-0".into()),
        ..ListFilter::default()
    })
    .await;
    assert_eq!(ids(forks), vec!["run-4", "run-1"]);
    let smoke_forks = list(ListFilter {
        forked_from: Some("run-0".into()),
        tag: Some(("suite".into(), "smoke".into())),
        ..ListFilter::default()
    })
    .await;
    assert_eq!(ids(smoke_forks), vec!["run-1"]);
    assert!(
        list(ListFilter {
            forked_from: Some("run-1".into()),
            ..ListFilter::default()
        })
        .await
        .is_empty()
    );
}

/// A purge deletes ended runs (events and tags too) and reports the bytes they held; a run
/// that has not ended, or is unknown, is left alone.
pub async fn purge_deletes_ended_runs_only(journal: Arc<dyn Journal>) {
    let mut tagged = match started("agent") {
        Event::RunStarted(start) => start,
        _ => unreachable!("started() is run_started"),
    };
    tagged.tags.insert("suite".into(), "purge".into());
    let ends = [
        (
            "p-completed",
            Some(Event::RunCompleted { output: "o".into() }),
        ),
        ("p-failed", Some(Event::RunFailed { error: "e".into() })),
        ("p-running", None),
        ("p-waiting", Some(waiting())),
        ("p-paused", Some(paused())),
    ];
    for (id, end) in &ends {
        let mut events = vec![Event::RunStarted(tagged.clone())];
        events.extend(end.clone());
        journal
            .create(&new_run(id), &events, Wake::Never, None)
            .await
            .unwrap();
    }
    let mut ended_bytes = 0;
    for id in ["p-completed", "p-failed"] {
        for record in journal.load(id).await.unwrap() {
            ended_bytes += crate::encode(&record.event).unwrap().len() as u64;
        }
    }
    let all: Vec<String> = ends
        .iter()
        .map(|(id, _)| id.to_string())
        .chain(["p-unknown".to_string()])
        .collect();
    // What an archive keeps of the ended runs, to restore after the purge.
    let mut archived = Vec::new();
    for id in ["p-completed", "p-failed"] {
        let summary = journal
            .list(&ListFilter {
                run_id: Some(id.into()),
                ..ListFilter::default()
            })
            .await
            .unwrap()
            .remove(0);
        archived.push((
            summary.clone(),
            crate::Restored {
                run_id: summary.run_id,
                agent: summary.agent,
                status: summary.status,
                created_ms: summary.created_ms,
                events: journal.load(id).await.unwrap(),
            },
        ));
    }
    // Snapshots go with their runs: a purged run leaves none behind, a kept one keeps its own.
    for id in ["p-completed", "p-running"] {
        journal.put_snapshot(id, 1, "{}").await.unwrap();
    }
    let purged = journal.purge(&all).await.unwrap();
    assert_eq!(journal.latest_snapshot("p-completed").await.unwrap(), None);
    assert_eq!(
        journal.latest_snapshot("p-running").await.unwrap(),
        Some((1, "{}".to_string()))
    );
    assert_eq!(
        purged,
        crate::Purged {
            runs: 2,
            bytes: ended_bytes
        }
    );
    for gone in ["p-completed", "p-failed"] {
        assert!(matches!(
            journal.load(gone).await,
            Err(Error::RunNotFound(_))
        ));
    }
    for kept in ["p-running", "p-waiting", "p-paused"] {
        assert!(!journal.load(kept).await.unwrap().is_empty(), "{kept}");
    }
    let tagged_runs = journal
        .list(&ListFilter {
            tag: Some(("suite".into(), "purge".into())),
            ..ListFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(tagged_runs.len(), 3, "the purged runs' tags went with them");
    // Purging again frees nothing.
    assert_eq!(journal.purge(&all).await.unwrap(), crate::Purged::default());

    // An import restores each exactly: events, sequences, times, status, creation, tags.
    for (summary, run) in &archived {
        journal.import(run).await.unwrap();
        assert_eq!(journal.load(&run.run_id).await.unwrap(), run.events);
        let listed = journal
            .list(&ListFilter {
                run_id: Some(run.run_id.clone()),
                ..ListFilter::default()
            })
            .await
            .unwrap()
            .remove(0);
        assert_eq!(
            (
                listed.status,
                listed.created_ms,
                listed.last_seq,
                listed.updated_ms,
                listed.wake_at_ms
            ),
            (
                summary.status,
                summary.created_ms,
                summary.last_seq,
                summary.updated_ms,
                None
            )
        );
        assert!(matches!(
            journal.import(run).await,
            Err(Error::RunExists(id)) if id == run.run_id
        ));
    }
    let tagged_runs = journal
        .list(&ListFilter {
            tag: Some(("suite".into(), "purge".into())),
            ..ListFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(
        tagged_runs.len(),
        5,
        "imported runs are found by their tags"
    );
}

/// Agent versions are kept once; tokens are kept by hash, found only while live, and a name
/// is free again once its token is revoked.
pub async fn versions_and_tokens(journal: Arc<dyn Journal>) {
    assert_eq!(journal.get_version("v").await.unwrap(), None);
    journal.put_version("v", "agent", "first").await.unwrap();
    journal.put_version("v", "agent", "second").await.unwrap();
    assert_eq!(
        journal.get_version("v").await.unwrap().as_deref(),
        Some("first")
    );
    let token = |name: &str, hash: &str| crate::TokenRecord {
        name: name.into(),
        role: "approver".into(),
        hash: hash.into(),
        created_ms: 1,
        revoked_ms: None,
    };
    journal.put_token(&token("alice", "h1")).await.unwrap();
    assert!(matches!(
        journal.put_token(&token("alice", "h2")).await,
        Err(Error::TokenExists(name)) if name == "alice"
    ));
    assert_eq!(
        journal.find_token("h1").await.unwrap().map(|t| t.name),
        Some("alice".to_string())
    );
    assert_eq!(journal.find_token("h2").await.unwrap(), None);
    assert!(journal.revoke_token("alice").await.unwrap());
    assert!(!journal.revoke_token("alice").await.unwrap());
    assert_eq!(journal.find_token("h1").await.unwrap(), None);
    journal.put_token(&token("alice", "h2")).await.unwrap();
    let all = journal.tokens().await.unwrap();
    assert_eq!(all.len(), 2);
    assert!(all[0].revoked_ms.is_some() && all[1].revoked_ms.is_none());
}

/// Waiting for work returns by the timeout at the latest (earlier is allowed): nothing else
/// ends these waits before the first, so a wait that ignored its timeout would never return
/// (the test hangs, and the test runner ends it) however fast or slow the machine.
pub async fn wait_for_work_returns_by_the_timeout(journal: Arc<dyn Journal>) {
    journal.wait_for_work(Duration::from_millis(100)).await;
    create(journal.as_ref(), "r1").await;
    journal.wait_for_work(Duration::from_millis(100)).await;
}

/// A waiting worker hears of work made through the same journal at once: a run queued, a
/// human's decision, a run given back now. Each wait is a day long, longer than any test run:
/// the work is all that can end it, so one it does not end hangs the test (and the test runner
/// ends it) instead of a slow machine failing it.
pub async fn work_made_here_ends_a_wait(journal: Arc<dyn Journal>) {
    async fn ends_wait(journal: &Arc<dyn Journal>, make: impl Future<Output = ()>) {
        let waiting = {
            let journal = Arc::clone(journal);
            tokio::spawn(async move { journal.wait_for_work(A_DAY).await })
        };
        // The waiter may or may not be waiting yet: a permit is kept either way.
        tokio::task::yield_now().await;
        make.await;
        waiting.await.expect("the waiter does not panic");
    }
    const A_DAY: Duration = Duration::from_secs(24 * 60 * 60);
    // A queued run ends the wait.
    ends_wait(&journal, create(journal.as_ref(), "queued")).await;
    let lease = create_driven(journal.as_ref(), "held", "me").await;
    // Drain a permit the driven create may have left, then wait for the decision.
    let _ = tokio::time::timeout(
        Duration::from_millis(50),
        journal.wait_for_work(Duration::from_secs(3600)),
    )
    .await;
    journal.release(&lease, 1, Wake::Never).await.unwrap();
    let _ = tokio::time::timeout(
        Duration::from_millis(50),
        journal.wait_for_work(Duration::from_secs(3600)),
    )
    .await;
    // A decision ends the wait.
    ends_wait(&journal, async {
        journal
            .decide("held", 1, &[raised()], Wake::Now)
            .await
            .unwrap();
    })
    .await;
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
            a_decision_and_its_wake_are_one_write,
            an_append_without_the_live_lease_is_refused,
            claim_run_names_the_holder,
            expired_leases_are_claimed_before_queued_work,
            list_filters_and_pages,
            versions_and_tokens,
            purge_deletes_ended_runs_only,
            wait_for_work_returns_by_the_timeout,
            work_made_here_ends_a_wait,
            notifications_go_with_their_events,
            a_delivery_is_claimed_by_one_process_at_a_time,
            failed_deliveries_retry_until_they_expire,
            a_due_schedule_fires_under_one_claim,
            rate_limits_are_shared_by_every_caller,
            the_latest_snapshot_is_kept,
            a_purge_waits_for_pending_notifications_then_takes_them,
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
