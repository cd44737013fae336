//! Live run streams: every journaled event of a run, once it is durable, as Server-Sent Events.
//!
//! A stream reads the journal from its cursor (`Last-Event-ID` or `?after=`), so it resumes
//! with no gap and no duplicate across a restart and from another instance: the journal, not
//! the server, is the source. Events this server's own engine makes durable wake the streams
//! that follow their run at once (the [`Hub`]); events written by other processes (another
//! instance, a `chassis worker`, a CLI) are found by polling. The stream ends after the run's
//! terminal event.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use chassis_core::{Event, RunState};
use chassis_store::{Journal, Record};
use futures_util::Stream;
use tokio::sync::watch;

/// How often a stream looks at the journal when nothing in this process told it to.
const POLL: Duration = Duration::from_millis(500);

/// How often an idle stream sends a comment, so proxies keep it open.
const HEARTBEAT: Duration = Duration::from_secs(15);

/// Most events read from the journal at once.
const BATCH: usize = 500;

/// Tells streams in this process that their run has new durable events.
#[derive(Default)]
pub struct Hub {
    runs: Mutex<HashMap<String, watch::Sender<u64>>>,
}

impl Hub {
    /// A receiver that changes whenever `run_id` has new durable events here.
    pub fn subscribe(&self, run_id: &str) -> watch::Receiver<u64> {
        let Ok(mut runs) = self.runs.lock() else {
            return watch::channel(0).1;
        };
        // Runs nobody follows any more are dropped as others come.
        runs.retain(|_, tx| tx.receiver_count() > 0);
        runs.entry(run_id.to_string())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    fn durable(&self, run_id: &str, seq: u64) {
        if let Ok(runs) = self.runs.lock()
            && let Some(tx) = runs.get(run_id)
        {
            tx.send_replace(seq);
        }
    }
}

/// The engine observer that feeds the hub.
pub struct HubObserver(pub Arc<Hub>);

impl chassis_engine::Observer for HubObserver {
    fn on_event(&self, _run_id: &str, _state: &RunState, _event: &Event) {}

    fn on_durable(&self, run_id: &str, seq: u64) {
        self.0.durable(run_id, seq);
    }
}

/// Where a stream is.
struct Cursor {
    journal: Arc<dyn Journal>,
    run_id: String,
    after: u64,
    pending: std::collections::VecDeque<Record>,
    woken: watch::Receiver<u64>,
    ended: bool,
}

/// The SSE response following `run_id` from after `after`.
pub fn follow(
    journal: Arc<dyn Journal>,
    hub: &Hub,
    run_id: String,
    after: u64,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>> + use<>> {
    let cursor = Cursor {
        woken: hub.subscribe(&run_id),
        journal,
        run_id,
        after,
        pending: Default::default(),
        ended: false,
    };
    let stream = futures_util::stream::unfold(cursor, |mut cursor| async move {
        let event = next(&mut cursor).await?;
        Some((Ok(event), cursor))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(HEARTBEAT).text("heartbeat"))
}

/// The next SSE event of a stream, `None` once the run has ended and everything was sent.
async fn next(cursor: &mut Cursor) -> Option<SseEvent> {
    loop {
        if let Some(record) = cursor.pending.pop_front() {
            cursor.after = record.seq;
            if chassis_core::RunStatus::after(&record.event).is_some_and(|s| s.is_terminal()) {
                cursor.ended = true;
            }
            let data = serde_json::to_string(&record.to_json()).unwrap_or_default();
            return Some(
                SseEvent::default()
                    .id(record.seq.to_string())
                    .event("event")
                    .data(data),
            );
        }
        if cursor.ended {
            return None;
        }
        match cursor
            .journal
            .load_after(&cursor.run_id, cursor.after)
            .await
        {
            Ok(records) if !records.is_empty() => {
                cursor.pending.extend(records.into_iter().take(BATCH));
                continue;
            }
            Ok(_) => {}
            Err(chassis_store::Error::RunNotFound(_)) => {
                cursor.ended = true;
                return Some(
                    SseEvent::default()
                        .event("error")
                        .data(format!("run {} not found", cursor.run_id)),
                );
            }
            Err(e) => {
                tracing::warn!(run_id = %cursor.run_id, error = %e, "stream cannot read the journal; retrying");
            }
        }
        // Nothing new: wait for this process to make something durable, or poll.
        tokio::select! {
            _ = cursor.woken.changed() => {}
            () = tokio::time::sleep(POLL) => {}
        }
    }
}
