//! Exit codes, and which errors map to which.

use chassis_core::RunStatus;

/// The run completed.
pub(crate) const COMPLETED: u8 = 0;
/// The run failed, or chassis itself did.
pub(crate) const FAILED: u8 = 1;
/// Bad usage or a bad agent spec; nothing was journaled.
pub(crate) const USAGE: u8 = 2;
/// The run waits for a human or is paused.
pub(crate) const WAITING: u8 = 3;
/// Another process drives the run (it holds the run's lease); nothing was journaled.
pub(crate) const HELD: u8 = 4;
/// A person interrupted the command (Ctrl-C, SIGTERM); the run stopped at a safe point and
/// says how to continue. 130 is what shells report for a program ended by SIGINT.
pub(crate) const INTERRUPTED: u8 = 130;

/// An error the user must fix in what they typed or wrote (exit code 2).
#[derive(Debug)]
pub(crate) struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// The exit code for a run's status.
pub(crate) fn of_status(status: RunStatus) -> u8 {
    match status {
        RunStatus::Completed => COMPLETED,
        RunStatus::Failed | RunStatus::Cancelled | RunStatus::Running => FAILED,
        RunStatus::Waiting | RunStatus::Paused => WAITING,
    }
}

/// The exit code for an error that ended a command.
pub(crate) fn code_of(error: &anyhow::Error) -> u8 {
    let held = error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<chassis_engine::Error>(),
            Some(chassis_engine::Error::Store(
                chassis_store::Error::Held { .. }
            ))
        ) || matches!(
            cause.downcast_ref::<chassis_store::Error>(),
            Some(chassis_store::Error::Held { .. })
        )
    });
    if held {
        return HELD;
    }
    let usage = error.chain().any(|cause| {
        cause.is::<UsageError>()
            || cause.is::<chassis_engine::LoadError>()
            || matches!(
                cause.downcast_ref::<chassis_engine::Error>(),
                Some(
                    chassis_engine::Error::Refused(_)
                        | chassis_engine::Error::Invalid(_)
                        | chassis_engine::Error::VersionChanged { .. }
                )
            )
            || matches!(
                cause.downcast_ref::<chassis_engine::Error>(),
                Some(
                    chassis_engine::Error::Load(_)
                        | chassis_engine::Error::Store(chassis_store::Error::RunNotFound(_))
                )
            )
            || matches!(
                cause.downcast_ref::<chassis_store::Error>(),
                Some(
                    chassis_store::Error::RunNotFound(_)
                        | chassis_store::Error::InvalidTarget { .. }
                )
            )
    });
    if usage { USAGE } else { FAILED }
}
