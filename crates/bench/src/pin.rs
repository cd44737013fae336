//! Pinning the runtime and the mock to separate CPUs with `taskset`.
//!
//! The workspace forbids `unsafe`, so the affinity system call is made by `taskset`
//! (util-linux) rather than through libc. Threads and child processes inherit the affinity
//! of the thread that creates them, so pinning this process early covers the journal's writer
//! thread, tokio's blocking pool and every `chassis run` spawned for the cold-start figure.

use std::process::{Command, Stdio};

/// Which CPUs the runtime and the mock were given, or why they were not.
#[derive(Clone, Debug)]
pub(crate) struct Pinning {
    /// The CPU this process runs on, when pinned.
    pub(crate) runtime_cpu: Option<usize>,
    /// The CPU the mock model is started on, when pinned.
    pub(crate) mock_cpu: Option<usize>,
    /// Why pinning was not done, if it was asked for and failed.
    pub(crate) warning: Option<String>,
    reason: &'static str,
}

impl Pinning {
    /// No pinning, for `reason`.
    pub(crate) fn none(reason: &'static str) -> Pinning {
        Pinning {
            runtime_cpu: None,
            mock_cpu: None,
            warning: None,
            reason,
        }
    }

    /// Pins every thread of this process to CPU 0 and reserves CPU 1 for the mock.
    pub(crate) fn apply(cpus: usize) -> Pinning {
        if cpus < 2 {
            return Pinning {
                warning: Some(format!("{cpus} CPU available; runtime and mock share it")),
                ..Pinning::none("fewer than 2 CPUs")
            };
        }
        match taskset(&["-a", "-p", "-c", "0", &std::process::id().to_string()]) {
            Ok(()) => Pinning {
                runtime_cpu: Some(0),
                mock_cpu: Some(1),
                warning: None,
                reason: "",
            },
            Err(message) => Pinning {
                warning: Some(format!("not pinned: {message}")),
                ..Pinning::none("taskset failed")
            },
        }
    }

    /// One line for the report header.
    pub(crate) fn describe(&self) -> String {
        match (self.runtime_cpu, self.mock_cpu) {
            (Some(runtime), Some(mock)) => {
                format!("runtime pinned to CPU {runtime}, mock model to CPU {mock}")
            }
            _ => format!("not pinned ({})", self.reason),
        }
    }

    /// Pins the calling thread to the mock's CPU (a helper thread that plays the mock).
    pub(crate) fn pin_thread_to_mock_cpu(&self) {
        let Some(cpu) = self.mock_cpu else { return };
        // `/proc/thread-self` links to `PID/task/TID`.
        let Some(tid) = std::fs::read_link("/proc/thread-self")
            .ok()
            .and_then(|link| link.file_name().map(|n| n.to_string_lossy().into_owned()))
        else {
            return;
        };
        // A thread left unpinned only makes the figure a little noisier.
        let _ = taskset(&["-p", "-c", &cpu.to_string(), &tid]);
    }
}

fn taskset(args: &[&str]) -> Result<(), String> {
    let output = Command::new("taskset")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run taskset: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "taskset {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}
