//! Bounded resume: the fold's state kept every [`EVERY`] events, and loading a run from its
//! latest snapshot plus the events after it.
//!
//! A snapshot is written only of durable state (the events it folds are in the journal), so
//! it is a cache of what the journal says: one that is missing, does not decode, is of another
//! format or does not continue into the tail is ignored and the whole journal folded.

use chassis_core::RunState;
use chassis_store::Journal;
use serde::{Deserialize, Serialize};

use crate::Error;

/// Events between two snapshots of a run, by default (`DriveConfig::snapshot_every`).
pub(crate) const EVERY: u64 = 1000;

/// The stored form's version: a fold whose meaning changes bumps it, so old snapshots are
/// ignored rather than trusted (2: the fold forgets turns out of every context's reach).
const FORMAT: u32 = 2;

#[derive(Serialize)]
struct Stored<'a> {
    format: u32,
    state: &'a RunState,
}

#[derive(Deserialize)]
struct Loaded {
    format: u32,
    state: RunState,
}

/// The stored text of `state`.
pub fn encode(state: &RunState) -> Option<String> {
    serde_json::to_string(&Stored {
        format: FORMAT,
        state,
    })
    .ok()
}

/// The run's state: its latest snapshot plus the events after it, or the fold of the whole
/// journal when there is no usable snapshot.
pub(crate) async fn load(journal: &dyn Journal, run_id: &str) -> Result<RunState, Error> {
    if let Some(state) = from_snapshot(journal, run_id).await? {
        return Ok(state);
    }
    let records = journal.load(run_id).await?;
    RunState::fold(records.iter().map(|r| &r.event)).map_err(|source| Error::Replay {
        run_id: run_id.to_string(),
        source,
    })
}

async fn from_snapshot(journal: &dyn Journal, run_id: &str) -> Result<Option<RunState>, Error> {
    let Some((seq, text)) = journal.latest_snapshot(run_id).await? else {
        return Ok(None);
    };
    let mut state = match serde_json::from_str::<Loaded>(&text) {
        Ok(loaded) if loaded.format == FORMAT && loaded.state.seq() == seq => loaded.state,
        Ok(_) => return Ok(None),
        Err(e) => {
            tracing::warn!(run_id, seq, error = %e, "a snapshot does not decode; folding the whole journal");
            return Ok(None);
        }
    };
    for record in journal.load_after(run_id, seq).await? {
        if record.seq != state.seq() + 1 || state.apply(&record.event).is_err() {
            tracing::warn!(
                run_id,
                seq,
                "a snapshot does not continue into its journal; folding the whole journal"
            );
            return Ok(None);
        }
    }
    Ok(Some(state))
}
