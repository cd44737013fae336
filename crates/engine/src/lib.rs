//! The chassis driver: loads agents, executes what core decides, journals every outcome.
//!
//! The engine is the only part of chassis that touches the world for a run: it calls
//! models and tools, and it writes the journal. What to do next is always
//! [`chassis_core::decide()`]'s answer over the fold of the journal, live or after a crash.

mod agent;
mod alerts;
mod approvals;
mod archive;
mod compact;
mod error;
mod fork;
mod outbox;
mod query;
mod retention;
mod run;
mod schedule;
mod snapshot;

/// The stored form of a run's state snapshot, as the driver keeps it (benchmarks and tools
/// that build journals write theirs with it).
pub use snapshot::encode as encode_snapshot;
mod tokens;
mod version;
mod worker;

pub use agent::{Agent, Checked, LoadError, Sources};
pub use alerts::Alerts;
pub use approvals::{Cancelled, Inbox, InboxItem, Resolution, inbox_items};
pub use archive::{ArchiveError, Imported};
pub use chassis_core::observe::Observer;
pub use chassis_redact::{MIN_SECRET_LEN, REDACTED, Redactor, SettingError};
pub use error::Error;
pub use outbox::{
    DELIVERY_HEADER, DeliveryView, Dispatcher, MIN_WEBHOOK_SECRET_LEN, SIGNATURE_HEADER,
    TIMESTAMP_HEADER, list_deliveries, sign, verify,
};
pub use query::{Decided, MAX_PAGE, RunPage, RunQuery, RunView, Usage, Waiting, waiting};
pub use retention::PurgeFilter;
pub use run::{
    AgentPaths, DriveConfig, Engine, Interrupt, RunOutcome, StartOptions, Submitted, default_owner,
};
pub use schedule::{
    CatchUp, GRACE, NewSchedule, Overlap, ScheduleView, Scheduler, next_slot, time_zone,
};
pub use worker::{Worker, WorkerConfig, WorkerReport, default_worker_name};

/// Now, in milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A fresh run id: unique across processes and restarts (time plus 80 random bits).
pub fn new_run_id() -> String {
    format!("run_{}", ulid::Ulid::new().to_string().to_lowercase())
}
