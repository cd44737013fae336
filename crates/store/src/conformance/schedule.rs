//! Conformance checks of schedules: a due schedule goes to one claimer, bookings are fenced
//! by the claim, and a slot is booked once.

use std::sync::Arc;
use std::time::Duration;

use crate::{Fired, Journal, Schedule};

fn schedule(id: &str, next_slot_ms: i64) -> Schedule {
    Schedule {
        schedule_id: id.to_string(),
        agent: "agent".to_string(),
        spec_path: "agent.toml".to_string(),
        cron: "0 6 * * MON-FRI".to_string(),
        timezone: "Europe/Berlin".to_string(),
        input: "morning report".to_string(),
        overlap: "skip".to_string(),
        catch_up: "last".to_string(),
        created_ms: 1,
        next_slot_ms,
        last_run_id: None,
        token: 0,
    }
}

/// A due schedule is claimed by one of two claimers; only its claim books slots, each once;
/// a schedule not yet due is not claimed; a removed one is gone.
pub async fn a_due_schedule_fires_under_one_claim(journal: Arc<dyn Journal>) {
    journal
        .put_schedule(&schedule("sch_due", 1_000))
        .await
        .unwrap();
    journal
        .put_schedule(&schedule("sch_later", i64::MAX / 2))
        .await
        .unwrap();
    assert!(journal.put_schedule(&schedule("sch_due", 5)).await.is_err());
    let (a, b) = tokio::join!(
        journal.claim_schedules("a", Duration::from_secs(60), 10),
        journal.claim_schedules("b", Duration::from_secs(60), 10),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.len() + b.len(), 1, "one claimer gets the due schedule");
    let claimed = a.into_iter().chain(b).next().unwrap();
    assert_eq!(claimed.schedule_id, "sch_due");
    let stale = Schedule {
        token: claimed.token.wrapping_add(1),
        ..claimed.clone()
    };
    let fired = [
        Fired {
            slot_ms: 1_000,
            run_id: Some("run_1".to_string()),
            outcome: "started".to_string(),
        },
        Fired {
            slot_ms: 2_000,
            run_id: None,
            outcome: "missed".to_string(),
        },
    ];
    assert!(!journal.record_fired(&stale, &fired, 3_000).await.unwrap());
    assert!(journal.record_fired(&claimed, &fired, 3_000).await.unwrap());
    // The claim is spent: booking again is refused.
    assert!(!journal.record_fired(&claimed, &fired, 4_000).await.unwrap());
    let slots = journal.fired_slots("sch_due").await.unwrap();
    assert_eq!(slots, fired);
    let all = journal.schedules().await.unwrap();
    assert_eq!(all.len(), 2);
    let due = all.iter().find(|s| s.schedule_id == "sch_due").unwrap();
    assert_eq!(due.next_slot_ms, 3_000);
    assert_eq!(due.last_run_id.as_deref(), Some("run_1"));
    // Due again (3,000 ms is long past): claimable, and a slot booked twice stays as it was.
    let again = journal
        .claim_schedules("a", Duration::from_secs(60), 10)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    let dup = [Fired {
        slot_ms: 1_000,
        run_id: Some("run_2".to_string()),
        outcome: "started".to_string(),
    }];
    assert!(journal.record_fired(&again[0], &dup, 5_000).await.unwrap());
    assert_eq!(journal.fired_slots("sch_due").await.unwrap(), fired);
    assert!(journal.next_schedule_ms().await.unwrap().is_some());
    assert!(journal.remove_schedule("sch_due").await.unwrap());
    assert!(!journal.remove_schedule("sch_due").await.unwrap());
    assert_eq!(journal.schedules().await.unwrap().len(), 1);
}
