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
use tokio::sync::watch;

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

/// The deltas of a run's latest call, as its followers share them: one list, each follower
/// reading from its own place (no queue per follower or per run, nothing allocated until a
/// call streams), replaced when the next call begins.
#[derive(Default)]
struct DeltaLog {
    /// Bumped when a new call's deltas begin: a follower of an older call starts over.
    call: u64,
    /// The step whose deltas these are.
    step: u32,
    /// The place of `list[0]` among the call's deltas (the oldest go past `MAX_KEPT_DELTAS`).
    first: usize,
    list: std::collections::VecDeque<Arc<DeltaMessage>>,
}

/// One followed run: its durable length and the deltas of its call in flight.
struct Channel {
    seq: watch::Sender<u64>,
    deltas: watch::Sender<DeltaLog>,
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

/// What a new follower gets: wake-ups and the deltas of the run's calls.
pub struct Subscription {
    woken: watch::Receiver<u64>,
    closing: watch::Receiver<bool>,
    deltas: watch::Receiver<DeltaLog>,
}

impl Hub {
    /// Follows `run_id`.
    pub fn subscribe(&self, run_id: &str) -> Subscription {
        let Ok(mut runs) = self.runs.lock() else {
            return Subscription {
                woken: watch::channel(0).1,
                closing: self.closing.subscribe(),
                deltas: watch::channel(DeltaLog::default()).1,
            };
        };
        let now = std::time::Instant::now();
        // Runs nobody has followed for a while are dropped as others come.
        runs.retain(|_, c| {
            c.seq.receiver_count() > 0 || now.duration_since(c.last_follower) < LINGER
        });
        let channel = runs.entry(run_id.to_string()).or_insert_with(|| Channel {
            seq: watch::channel(0).0,
            deltas: watch::channel(DeltaLog::default()).0,
            last_follower: now,
        });
        channel.last_follower = now;
        Subscription {
            woken: channel.seq.subscribe(),
            closing: self.closing.subscribe(),
            deltas: channel.deltas.subscribe(),
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
        let Ok(runs) = self.runs.lock() else {
            return;
        };
        let Some(channel) = runs.get(run_id) else {
            return;
        };
        let message = Arc::new(DeltaMessage::of(step, delta));
        channel.deltas.send_modify(|log| {
            if log.step != step {
                log.call += 1;
                log.step = step;
                log.first = 0;
                log.list.clear();
            }
            if log.list.len() >= MAX_KEPT_DELTAS {
                log.list.pop_front();
                log.first += 1;
            }
            log.list.push_back(message);
        });
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
    /// The step of the last `model_responded` sent: deltas of steps up to it are stale.
    answered: u32,
    /// Whether the journal was read to its end once (live deltas go out from then on).
    caught_up: bool,
    woken: watch::Receiver<u64>,
    closing: watch::Receiver<bool>,
    deltas: watch::Receiver<DeltaLog>,
    /// The call whose deltas the stream reads, and its place among them: a stream that began
    /// while a call streamed sends what the log kept of it once the journal is caught up.
    delta_call: u64,
    delta_next: usize,
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
        delta_call: 0,
        delta_next: 0,
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
        if cursor.caught_up
            && let Some(delta) = next_delta(cursor)
        {
            return Some(delta_event(&delta));
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
        tokio::select! {
            biased;
            changed = cursor.deltas.changed() => if changed.is_err() {
                tokio::time::sleep(POLL).await;
            },
            _ = cursor.woken.changed() => {}
            closing = cursor.closing.changed() => if closing.is_err() {
                return None;
            },
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

/// The next delta of the run's call in flight the stream has not sent, if it is not stale
/// (its step answered in the journal already). A stream that fell more than the log keeps
/// behind skips what it missed: deltas are not durable, the journaled answer is whole.
fn next_delta(cursor: &mut Cursor) -> Option<Arc<DeltaMessage>> {
    let log = cursor.deltas.borrow_and_update();
    if log.call != cursor.delta_call {
        cursor.delta_call = log.call;
        cursor.delta_next = 0;
    }
    if log.step <= cursor.answered {
        return None;
    }
    let at = cursor.delta_next.max(log.first);
    let delta = log.list.get(at - log.first)?;
    cursor.delta_next = at + 1;
    Some(Arc::clone(delta))
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
