//! Live run streams: every journaled event of a run, once it is durable, as Server-Sent Events.
//!
//! A stream reads the journal from its cursor (`Last-Event-ID` or `?after=`), so it resumes
//! with no gap and no duplicate across a restart and from another instance: the journal, not
//! the server, is the source. Events this server's own engine makes durable wake the streams
//! that follow their run at once (the [`Hub`]); events written by other processes (another
//! instance, a `chassis worker`, a CLI) are found by polling. The stream ends after the run's
//! terminal event, or when the server stops ([`Hub::close`]): a stream never ends by itself
//! otherwise, so a stopping server ends it and the client resumes from its `Last-Event-ID` on
//! the next instance.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use chassis_core::{Event, RunState};
use chassis_store::{Journal, Record};
use futures_util::Stream;
use tokio::sync::{broadcast, watch};

use crate::api::StreamEventKind;

/// How often a stream looks at the journal when nothing in this process told it to.
const POLL: Duration = Duration::from_millis(500);

/// How often an idle stream sends a comment, so proxies keep it open.
const HEARTBEAT: Duration = Duration::from_secs(15);

/// Most events read from the journal at once.
const BATCH: usize = 500;

/// How long a run's channel (and its in-flight deltas) outlives its last follower, so a client
/// that reconnects still gets the deltas of the call in flight.
const LINGER: Duration = Duration::from_secs(60);

/// Deltas kept for the call in flight, at most (a reconnecting client replays them).
const MAX_KEPT_DELTAS: usize = 4096;

/// A piece of a model answer as it streams, as the SSE `delta` event carries it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DeltaMessage {
    /// The step whose answer this is.
    pub step: u32,
    /// `text`, `tool_call` (a call begins), `tool_args` (a piece of its arguments) or
    /// `abandon` (the attempt failed: discard what was shown for this step).
    pub kind: &'static str,
    /// The call's place in the answer, for `tool_call` and `tool_args`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// The tool, for `tool_call`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The text or the piece of arguments.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

impl DeltaMessage {
    fn of(step: u32, delta: &chassis_providers::Delta) -> DeltaMessage {
        use chassis_providers::Delta as D;
        let (kind, index, name, text) = match delta {
            D::Text(text) => ("text", None, None, Some(text.clone())),
            D::ToolCallStarted { index, name } => {
                ("tool_call", Some(*index), Some(name.clone()), None)
            }
            D::ToolArgs { index, arguments } => {
                ("tool_args", Some(*index), None, Some(arguments.clone()))
            }
            D::Abandoned => ("abandon", None, None, None),
        };
        DeltaMessage {
            step,
            kind,
            index,
            name,
            text,
        }
    }
}

/// One followed run: its durable length, its live deltas, and those of the call in flight.
struct Channel {
    seq: watch::Sender<u64>,
    deltas: broadcast::Sender<Arc<DeltaMessage>>,
    in_flight: Vec<Arc<DeltaMessage>>,
    last_follower: std::time::Instant,
}

/// Tells streams in this process that their run has new durable events, and hands them the
/// deltas of its model calls.
pub struct Hub {
    runs: Mutex<HashMap<String, Channel>>,
    /// Turns once the server stops: every stream ends.
    closing: watch::Sender<bool>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub {
            runs: Mutex::default(),
            closing: watch::channel(false).0,
        }
    }
}

/// What a new follower gets: wake-ups, live deltas, and the deltas of the call in flight.
pub struct Subscription {
    woken: watch::Receiver<u64>,
    closing: watch::Receiver<bool>,
    deltas: broadcast::Receiver<Arc<DeltaMessage>>,
    in_flight: Vec<Arc<DeltaMessage>>,
}

impl Hub {
    /// Follows `run_id`.
    pub fn subscribe(&self, run_id: &str) -> Subscription {
        let Ok(mut runs) = self.runs.lock() else {
            return Subscription {
                woken: watch::channel(0).1,
                closing: self.closing.subscribe(),
                deltas: broadcast::channel(1).1,
                in_flight: Vec::new(),
            };
        };
        let now = std::time::Instant::now();
        // Runs nobody has followed for a while are dropped as others come.
        runs.retain(|_, c| {
            c.seq.receiver_count() > 0 || now.duration_since(c.last_follower) < LINGER
        });
        let channel = runs.entry(run_id.to_string()).or_insert_with(|| Channel {
            seq: watch::channel(0).0,
            deltas: broadcast::channel(256).0,
            in_flight: Vec::new(),
            last_follower: now,
        });
        channel.last_follower = now;
        Subscription {
            woken: channel.seq.subscribe(),
            closing: self.closing.subscribe(),
            deltas: channel.deltas.subscribe(),
            in_flight: channel.in_flight.clone(),
        }
    }

    /// Ends every stream, now and from now on: the server is stopping (the clients resume
    /// elsewhere, or once it is back, from their `Last-Event-ID`).
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    fn durable(&self, run_id: &str, seq: u64) {
        if let Ok(mut runs) = self.runs.lock()
            && let Some(channel) = runs.get_mut(run_id)
        {
            channel.seq.send_replace(seq);
            if channel.seq.receiver_count() > 0 {
                channel.last_follower = std::time::Instant::now();
            }
        }
    }

    fn delta(&self, run_id: &str, step: u32, delta: &chassis_providers::Delta) {
        let Ok(mut runs) = self.runs.lock() else {
            return;
        };
        let Some(channel) = runs.get_mut(run_id) else {
            return;
        };
        let message = Arc::new(DeltaMessage::of(step, delta));
        if channel.in_flight.first().is_some_and(|d| d.step != step) {
            channel.in_flight.clear();
        }
        if channel.in_flight.len() < MAX_KEPT_DELTAS {
            channel.in_flight.push(Arc::clone(&message));
        }
        let _ = channel.deltas.send(message);
    }
}

/// The engine observer that feeds the hub.
pub struct HubObserver(pub Arc<Hub>);

impl chassis_engine::Observer for HubObserver {
    fn on_event(&self, _run_id: &str, _state: &RunState, _event: &Event) {}

    fn on_durable(&self, run_id: &str, seq: u64) {
        self.0.durable(run_id, seq);
    }

    fn wants_deltas(&self) -> bool {
        true
    }

    fn on_delta(&self, run_id: &str, step: u32, delta: &chassis_providers::Delta) {
        self.0.delta(run_id, step, delta);
    }
}

/// Where a stream is.
struct Cursor {
    journal: Arc<dyn Journal>,
    run_id: String,
    after: u64,
    pending: std::collections::VecDeque<Record>,
    /// Deltas of the call in flight when the stream began, sent once the journal is caught up.
    replay: std::collections::VecDeque<Arc<DeltaMessage>>,
    /// The step of the last `model_responded` sent: deltas of steps up to it are stale.
    answered: u32,
    /// Whether the journal was read to its end once (live deltas go out from then on).
    caught_up: bool,
    woken: watch::Receiver<u64>,
    closing: watch::Receiver<bool>,
    deltas: broadcast::Receiver<Arc<DeltaMessage>>,
    ended: bool,
}

/// The SSE response following `run_id` from after `after`.
pub fn follow(
    journal: Arc<dyn Journal>,
    hub: &Hub,
    run_id: String,
    after: u64,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>> + use<>> {
    let subscription = hub.subscribe(&run_id);
    let cursor = Cursor {
        woken: subscription.woken,
        closing: subscription.closing,
        deltas: subscription.deltas,
        replay: subscription.in_flight.into(),
        answered: 0,
        caught_up: false,
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

fn delta_event(delta: &DeltaMessage) -> SseEvent {
    SseEvent::default()
        .event(StreamEventKind::Delta.as_str())
        .data(serde_json::to_string(delta).unwrap_or_default())
}

/// The next SSE event of a stream, `None` once the run has ended and everything was sent.
///
/// First the journal after the cursor, then the deltas of the call in flight when the stream
/// began; from then on, deltas are drained before the journal is read again: the engine sends
/// a call's deltas before it journals the answer, so none is overtaken by its own answer.
async fn next(cursor: &mut Cursor) -> Option<SseEvent> {
    loop {
        if *cursor.closing.borrow() {
            return None;
        }
        // Deltas first: every delta of a call was sent before its answer was journaled, so one
        // waiting in the channel may belong to an answer already read from the journal.
        if cursor.caught_up {
            while let Some(delta) = cursor.replay.pop_front() {
                if delta.step > cursor.answered {
                    return Some(delta_event(&delta));
                }
            }
            match cursor.deltas.try_recv() {
                Ok(delta) if delta.step > cursor.answered => return Some(delta_event(&delta)),
                // Stale, or the follower fell behind the deltas (they are not durable: it
                // simply misses some; the journaled answer is whole).
                Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) => continue,
                Err(
                    broadcast::error::TryRecvError::Empty | broadcast::error::TryRecvError::Closed,
                ) => {}
            }
        }
        if let Some(record) = cursor.pending.pop_front() {
            cursor.after = record.seq;
            if chassis_core::RunStatus::after(&record.event).is_some_and(|s| s.is_terminal()) {
                cursor.ended = true;
            }
            if let Some(step) = answers_step(&record.event) {
                cursor.answered = cursor.answered.max(step);
            }
            let data = serde_json::to_string(&record.to_json()).unwrap_or_default();
            return Some(
                SseEvent::default()
                    .id(record.seq.to_string())
                    .event(StreamEventKind::Event.as_str())
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
            Ok(_) => {
                if !cursor.caught_up {
                    cursor.caught_up = true;
                    continue;
                }
            }
            Err(chassis_store::Error::RunNotFound(_)) => {
                cursor.ended = true;
                return Some(
                    SseEvent::default()
                        .event(StreamEventKind::Error.as_str())
                        .data(format!("run {} not found", cursor.run_id)),
                );
            }
            Err(e) => {
                tracing::warn!(run_id = %cursor.run_id, error = %e, "stream cannot read the journal; retrying");
            }
        }
        // Nothing new: wait for a delta, for this process to make something durable, or poll.
        // An idle stream keeps no room for records it has sent (a batch of events each).
        if cursor.pending.capacity() > 0 {
            cursor.pending = Default::default();
        }
        if cursor.replay.is_empty() && cursor.replay.capacity() > 0 {
            cursor.replay = Default::default();
        }
        tokio::select! {
            biased;
            delta = cursor.deltas.recv() => match delta {
                Ok(delta) if delta.step > cursor.answered => return Some(delta_event(&delta)),
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => tokio::time::sleep(POLL).await,
            },
            _ = cursor.woken.changed() => {}
            closing = cursor.closing.changed() => if closing.is_err() {
                return None;
            },
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

/// The step whose streamed deltas `event` makes stale: its journaled answer. Every event is
/// named, so a new one is weighed here before the stream compiles.
fn answers_step(event: &Event) -> Option<u32> {
    match event {
        Event::ModelResponded { step, .. } => Some(*step),
        // A failed call's deltas were voided by `abandoned` as they streamed.
        Event::ModelFailed { .. }
        | Event::RunStarted(_)
        | Event::ModelRequested { .. }
        | Event::ModelAttemptFailed { .. }
        | Event::ModelCircuitOpen { .. }
        | Event::ModelFallback { .. }
        | Event::ModelSwitched { .. }
        | Event::ContextCompacted { .. }
        | Event::ToolRefused { .. }
        | Event::ToolStarted { .. }
        | Event::ToolFinished { .. }
        | Event::ToolAttemptFailed { .. }
        | Event::ApprovalRequested { .. }
        | Event::ApprovalDecided { .. }
        | Event::ApprovalEscalated { .. }
        | Event::OutcomeResolved { .. }
        | Event::ToolOutcomeUnknown { .. }
        | Event::LimitReached { .. }
        | Event::LimitRaised { .. }
        | Event::LimitRejected { .. }
        | Event::CancelRequested { .. }
        | Event::ResumeRequested { .. }
        | Event::UserMessage { .. }
        | Event::RunWaiting { .. }
        | Event::RunPaused { .. }
        | Event::RunResumed { .. }
        | Event::RunCompleted { .. }
        | Event::RunFailed { .. }
        | Event::RunCancelled { .. } => None,
    }
}
