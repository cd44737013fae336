//! Ctrl-C and SIGTERM while a command drives a run: stop at a safe point, say where the run
//! stands and how to continue.
//!
//! The first signal triggers the engine's [`Interrupt`]: the drive stops at its next safe
//! point (a tool in flight gets a short grace, else its outcome becomes unknown), journals that
//! it stopped, and gives the run back. A second signal ends the process at once; nothing that
//! was journaled is lost either way, and the run's lease simply expires.

use chassis_engine::Interrupt;

/// An interrupt triggered by the first SIGINT or SIGTERM this process receives.
pub(crate) fn interrupt_on_signals() -> Interrupt {
    let interrupt = Interrupt::new();
    let trigger = interrupt.clone();
    tokio::spawn(async move {
        let first = next_signal().await;
        errln!(
            "{first}: stopping at the next safe point (a tool in flight gets a few seconds); press Ctrl-C again to quit at once"
        );
        trigger.trigger(first);
        let second = next_signal().await;
        errln!("{second} again: quitting now; the run's lease expires by itself");
        std::process::exit(i32::from(crate::exit::INTERRUPTED));
    });
    interrupt
}

/// Resolves on the next SIGTERM or Ctrl-C (SIGINT), naming it.
pub(crate) async fn next_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            tokio::select! {
                _ = term.recv() => return "SIGTERM",
                _ = int.recv() => return "SIGINT",
            }
        }
    }
    let _ = tokio::signal::ctrl_c().await;
    "SIGINT"
}

/// Says on stderr where an interrupted run stands and how to continue; returns the exit code.
pub(crate) fn report_interrupted(outcome: &chassis_engine::RunOutcome) -> u8 {
    let run = &outcome.run_id;
    let how = match outcome.status {
        chassis_core::RunStatus::Waiting => format!(
            "it waits for a human: {}; see `chassis approvals`",
            outcome.reason.as_deref().unwrap_or("see `chassis show`")
        ),
        chassis_core::RunStatus::Paused => {
            format!(
                "it is paused; continue it with `chassis resume {run}` (or `chassis resume {run} --detach` for a worker)"
            )
        }
        status => format!("it is {status}"),
    };
    errln!("run {run} interrupted: {how}");
    crate::exit::INTERRUPTED
}
