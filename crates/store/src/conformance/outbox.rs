//! Conformance checks of the outbox: notifications are written with their events or not at
//! all, a delivery is claimed by one process at a time, and failures retry until the expiry.

use std::sync::Arc;
use std::time::Duration;

use chassis_core::Wake;

use super::{completed, create_driven, requested};
use crate::{Attempt, DeliveryStatus, Journal, Lease, Notification, OutboxFilter};

fn note(run_id: &str, seq: u64, expire_after: Duration) -> Notification {
    Notification {
        delivery_id: crate::delivery_id(run_id, seq),
        run_id: run_id.to_string(),
        seq,
        kind: "run_completed".to_string(),
        url: "http://127.0.0.1:9/hook".to_string(),
        secret_env: "HOOK_SECRET".to_string(),
        body: format!("{{\"run_id\":\"{run_id}\"}}"),
        expire_after,
    }
}

const DAY: Duration = Duration::from_secs(86_400);

/// A notification is written in the same transaction as its events: a refused append (a stale
/// sequence, a lost lease) queues nothing, an accepted one queues it once.
pub async fn notifications_go_with_their_events(journal: Arc<dyn Journal>) {
    let lease = create_driven(journal.as_ref(), "r1", "me").await;
    let refused = journal
        .append_with(
            &lease,
            5,
            &[completed()],
            Wake::Never,
            &[note("r1", 6, DAY)],
        )
        .await;
    assert!(refused.is_err());
    let forged = Lease {
        token: lease.token.wrapping_add(1),
        ..lease.clone()
    };
    let refused = journal
        .append_with(
            &forged,
            1,
            &[completed()],
            Wake::Never,
            &[note("r1", 2, DAY)],
        )
        .await;
    assert!(refused.is_err());
    assert!(
        journal
            .deliveries(&OutboxFilter::default())
            .await
            .unwrap()
            .is_empty(),
        "a refused append queued a notification"
    );
    journal
        .append_with(&lease, 1, &[requested(1)], Wake::Now, &[])
        .await
        .unwrap();
    let seq = journal
        .append_with(
            &lease,
            2,
            &[completed()],
            Wake::Never,
            &[note("r1", 3, DAY)],
        )
        .await
        .unwrap();
    assert_eq!(seq, 3);
    let all = journal.deliveries(&OutboxFilter::default()).await.unwrap();
    assert_eq!(all.len(), 1);
    let d = &all[0];
    assert_eq!(
        (d.delivery_id.as_str(), d.run_id.as_str(), d.seq, d.status),
        ("r1.3", "r1", 3, DeliveryStatus::Pending)
    );
    assert_eq!(d.attempts, 0);
    assert!(d.expires_ms >= d.created_ms + 86_400_000);
    assert_eq!(d.secret_env, "HOOK_SECRET");
    assert!(journal.next_delivery_ms().await.unwrap().is_some());
}

/// A due delivery goes to one claimer at a time; once its claim lapses another may take it,
/// and then the first claimer's failure no longer counts, though its success does.
pub async fn a_delivery_is_claimed_by_one_process_at_a_time(journal: Arc<dyn Journal>) {
    let lease = create_driven(journal.as_ref(), "r1", "me").await;
    journal
        .append_with(
            &lease,
            1,
            &[completed()],
            Wake::Never,
            &[note("r1", 2, DAY)],
        )
        .await
        .unwrap();
    let (a, b) = tokio::join!(
        journal.claim_deliveries("a", Duration::from_secs(2), 10),
        journal.claim_deliveries("b", Duration::from_secs(2), 10),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.len() + b.len(), 1, "both claimers got the delivery");
    let first = a.into_iter().chain(b).next().unwrap();
    assert!(
        journal
            .claim_deliveries("c", Duration::from_secs(60), 10)
            .await
            .unwrap()
            .is_empty()
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let second = journal
        .claim_deliveries("c", Duration::from_secs(60), 10)
        .await
        .unwrap();
    assert_eq!(second.len(), 1, "a lapsed claim is claimable again");
    assert_ne!(second[0].token, first.token);
    let stale = Attempt::Failed {
        error: "503".to_string(),
        retry_in: Some(Duration::ZERO),
    };
    assert!(!journal.record_attempt(&first, stale).await.unwrap());
    assert!(
        journal
            .record_attempt(&first, Attempt::Delivered)
            .await
            .unwrap()
    );
    let listed = journal
        .deliveries(&OutboxFilter {
            status: Some(DeliveryStatus::Delivered),
            ..OutboxFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].done_ms.is_some());
    // Delivered is final: the second claimer's late failure changes nothing.
    let late = Attempt::Failed {
        error: "timeout".to_string(),
        retry_in: Some(Duration::ZERO),
    };
    assert!(!journal.record_attempt(&second[0], late).await.unwrap());
    assert_eq!(journal.next_delivery_ms().await.unwrap(), None);
}

/// A failed attempt makes the delivery due again after its backoff; a retry that would come
/// after the expiry gives it up as failed.
pub async fn failed_deliveries_retry_until_they_expire(journal: Arc<dyn Journal>) {
    let lease = create_driven(journal.as_ref(), "r1", "me").await;
    journal
        .append_with(
            &lease,
            1,
            &[completed()],
            Wake::Never,
            &[note("r1", 2, Duration::from_secs(3600))],
        )
        .await
        .unwrap();
    let claimed = journal
        .claim_deliveries("a", Duration::from_secs(60), 10)
        .await
        .unwrap();
    let failed = Attempt::Failed {
        error: "503 Service Unavailable".to_string(),
        retry_in: Some(Duration::ZERO),
    };
    assert!(journal.record_attempt(&claimed[0], failed).await.unwrap());
    let again = journal
        .claim_deliveries("a", Duration::from_secs(60), 10)
        .await
        .unwrap();
    assert_eq!(again.len(), 1, "retried at once after a zero backoff");
    assert_eq!(again[0].attempts, 1);
    assert_eq!(
        again[0].last_error.as_deref(),
        Some("503 Service Unavailable")
    );
    let later = Attempt::Failed {
        error: "connection refused".to_string(),
        retry_in: Some(Duration::from_secs(600)),
    };
    assert!(journal.record_attempt(&again[0], later).await.unwrap());
    assert!(
        journal
            .claim_deliveries("a", Duration::from_secs(60), 10)
            .await
            .unwrap()
            .is_empty(),
        "not due before its backoff"
    );
    let pending = journal
        .deliveries(&OutboxFilter {
            status: Some(DeliveryStatus::Pending),
            ..OutboxFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(pending.len(), 1);
    assert!(pending[0].next_attempt_ms >= pending[0].created_ms + 590_000);

    // A second notification whose retry would outlive it is given up.
    journal
        .append_with(
            &lease,
            2,
            &[requested(2)],
            Wake::Now,
            &[note("r1", 3, Duration::from_secs(3600))],
        )
        .await
        .unwrap();
    let due = journal
        .claim_deliveries("a", Duration::from_secs(60), 10)
        .await
        .unwrap();
    assert_eq!(due.len(), 1);
    let past = Attempt::Failed {
        error: "410 Gone".to_string(),
        retry_in: Some(Duration::from_secs(7200)),
    };
    assert!(journal.record_attempt(&due[0], past).await.unwrap());
    let failed = journal
        .deliveries(&OutboxFilter {
            status: Some(DeliveryStatus::Failed),
            ..OutboxFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].delivery_id, "r1.3");
    assert_eq!(failed[0].last_error.as_deref(), Some("410 Gone"));
    assert!(failed[0].done_ms.is_some());
    let about_r1 = journal
        .deliveries(&OutboxFilter {
            run_id: Some("r1".to_string()),
            limit: Some(1),
            ..OutboxFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(about_r1.len(), 1);
}

/// A purge leaves an ended run whose notification is still pending (it would be lost), and once
/// it is delivered takes the run with its notifications: nothing of a purged run stays behind.
pub async fn a_purge_waits_for_pending_notifications_then_takes_them(journal: Arc<dyn Journal>) {
    let lease = create_driven(journal.as_ref(), "r1", "me").await;
    journal
        .append_with(
            &lease,
            1,
            &[completed()],
            Wake::Never,
            &[note("r1", 2, DAY)],
        )
        .await
        .unwrap();
    let ids = ["r1".to_string()];
    assert_eq!(journal.purge(&ids).await.unwrap().runs, 0);
    assert_eq!(journal.load("r1").await.unwrap().len(), 2);
    let claimed = journal
        .claim_deliveries("a", Duration::from_secs(60), 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert!(
        journal
            .record_attempt(&claimed[0], Attempt::Delivered)
            .await
            .unwrap()
    );
    assert_eq!(journal.purge(&ids).await.unwrap().runs, 1);
    let left = journal
        .deliveries(&OutboxFilter {
            run_id: Some("r1".to_string()),
            ..OutboxFilter::default()
        })
        .await
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
}
