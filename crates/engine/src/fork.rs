//! Forks: a new run whose history is the first events of another, runnable from there.
//!
//! Nothing of the copied part runs again: the fork's journal holds its outcomes, and the fold
//! gives them to the model as they were. A call the copied part started without an outcome is
//! what a crash leaves, and the fork's first drive treats it as a resume would: a read or an
//! idempotent call runs again, anything else becomes an unknown outcome for a human to settle.

use chassis_core::{Event, ForkedFrom, RunState, RunStatus};
use chassis_store::NewRun;

use crate::{Engine, Error};

impl Engine {
    /// Creates a run whose journal is the first `at` events of `run_id` (its `run_started`
    /// naming the original and `at` in `forked_from`), then, with `input`, a new user message
    /// after them. The fork runs under the original's agent version, with its limits and
    /// policy; its wake time is the fold's, so a worker (or `chassis resume`) drives it.
    /// Returns the new run's id.
    ///
    /// Refused, with nothing created: `at` outside the journal; a prefix that ends the run
    /// without an answer (failed, cancelled); a completed prefix without `input` (it would
    /// have nothing to do); `input` where a call waits for its result.
    pub async fn fork(
        &self,
        run_id: &str,
        at: u64,
        input: Option<&str>,
        by: &str,
    ) -> Result<String, Error> {
        let records = self.journal().load(run_id).await?;
        let len = records.len() as u64;
        if at == 0 || at > len {
            return Err(Error::Invalid(format!(
                "--at {at}: run {run_id} has events 1 to {len}"
            )));
        }
        let mut events: Vec<Event> = records
            .into_iter()
            .take(usize::try_from(at).unwrap_or(usize::MAX))
            .map(|r| r.event)
            .collect();
        let Some(Event::RunStarted(start)) = events.first_mut() else {
            return Err(Error::Replay {
                run_id: run_id.to_string(),
                source: chassis_core::state::FoldError::BadStart {
                    seq: 1,
                    kind: "missing",
                },
            });
        };
        start.forked_from = Some(ForkedFrom {
            run: run_id.to_string(),
            seq: at,
        });
        let agent = start.agent.clone();
        let new_id = crate::new_run_id();
        let replay = |source| Error::Replay {
            run_id: run_id.to_string(),
            source,
        };
        let mut state = RunState::fold(events.iter()).map_err(replay)?;
        match (state.status(), input) {
            (RunStatus::Failed | RunStatus::Cancelled, _) => {
                return Err(Error::Refused(format!(
                    "run {run_id} has ended ({}) by event {at}; fork at an earlier event",
                    state.status()
                )));
            }
            (RunStatus::Completed, None) => {
                return Err(Error::Refused(format!(
                    "run {run_id} has completed by event {at}: give the fork a new message (--input) or fork at an earlier event"
                )));
            }
            _ => {}
        }
        if let Some(text) = input {
            if text.trim().is_empty() {
                return Err(Error::Invalid("--input: the message is empty".to_string()));
            }
            let message = self
                .human_redactor(&state)
                .redact_event(Event::UserMessage {
                    text: text.to_string(),
                    by: by.to_string(),
                    at_ms: self.now_ms(),
                });
            state.apply(&message).map_err(|source| {
                Error::Refused(format!(
                    "run {run_id} at event {at} cannot take a message: {source}; fork where no call waits for its result"
                ))
            })?;
            events.push(message);
        }
        self.journal()
            .create(
                &NewRun {
                    run_id: new_id.clone(),
                    agent,
                    idempotency_key: None,
                },
                &events,
                state.wake(),
                None,
            )
            .await?;
        tracing::info!(run_id = %new_id, from = %run_id, at, "run forked");
        Ok(new_id)
    }
}
