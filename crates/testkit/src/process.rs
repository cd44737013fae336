//! A child process in its own process group, for tests that start the real binary: wait for
//! a line it prints, stop it as a service manager would (SIGTERM), or crash it (SIGKILL, as
//! `kill -9`) with the tools it runs, and reap them all.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The longest any one command may take before a test gives up on it: generous, so that a
/// busy machine makes the suite slower rather than red.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// How a finished command exited and what it printed.
#[derive(Debug)]
pub struct Output {
    /// Exit code; `None` when a signal ended the process.
    pub code: Option<i32>,
    /// Everything printed on stdout.
    pub stdout: String,
    /// Everything printed on stderr.
    pub stderr: String,
}

impl Output {
    /// Stdout parsed as one JSON value.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON value ({e}): {self:#?}"))
    }

    /// Panics, showing the output, unless the exit code is `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Output {
        assert_eq!(self.code, Some(code), "unexpected exit code: {self:#?}");
        self
    }
}

/// A child process in its own process group, its output going to temporary files.
///
/// The group lets a test kill chassis together with the tools it is running, and reap them.
pub struct Spawned {
    child: Child,
    stdout: File,
    stderr: File,
}

impl Spawned {
    /// Starts `command` as the leader of a new process group.
    pub fn start(command: &mut Command) -> Spawned {
        use std::os::unix::process::CommandExt;

        let stdout = tempfile::tempfile().expect("temporary file for stdout");
        let stderr = tempfile::tempfile().expect("temporary file for stderr");
        let child = command
            .process_group(0)
            .stdout(stdout.try_clone().expect("clone stdout file"))
            .stderr(stderr.try_clone().expect("clone stderr file"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        Spawned {
            child,
            stdout,
            stderr,
        }
    }

    /// The process id (and process group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has exited (it is reaped if so).
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Sends SIGTERM and waits for the process to exit, as a service manager stops it.
    #[allow(
        unsafe_code,
        reason = "std cannot send SIGTERM; the process is one this test started"
    )]
    pub fn terminate(self) -> Output {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) takes no pointers.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        self.finish()
    }

    /// Writes `bytes` to the process's stdin (started piped) and closes it.
    pub fn feed(&mut self, bytes: &[u8]) {
        let mut stdin = self.child.stdin.take().expect("stdin is piped");
        stdin.write_all(bytes).expect("write stdin");
    }

    /// Waits for the process to exit (at most [`COMMAND_TIMEOUT`]) and collects its output.
    pub fn finish(mut self) -> Output {
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        let status = loop {
            match self.child.try_wait().expect("wait for chassis") {
                Some(status) => break status,
                None if Instant::now() > deadline => {
                    let pid = self.child.id();
                    self.crash(None);
                    panic!(
                        "chassis (pid {pid}) still running after {COMMAND_TIMEOUT:?}; killed it"
                    );
                }
                // Polling granularity only; nothing is asserted about how long this takes.
                None => std::thread::sleep(Duration::from_millis(5)),
            }
        };
        self.output(status)
    }

    /// SIGKILLs the process; with `tools_outlive_it`, the rest of its group (the tool it was
    /// running) lives on that long before it is killed too. Everything is reaped.
    pub fn crash(mut self, tools_outlive_it: Option<Duration>) {
        let group = self.child.id();
        match tools_outlive_it {
            None => kill_group(group),
            Some(grace) => {
                // Only chassis dies; it stays a zombie (so its pid cannot be reused as a group
                // id) until the whole group is killed below.
                let _ = self.child.kill();
                std::thread::sleep(grace);
                kill_group(group);
            }
        }
        let _ = self.child.wait();
        reap_group(group);
    }

    fn output(mut self, status: ExitStatus) -> Output {
        let read = |file: &mut File| {
            let mut text = String::new();
            file.rewind().expect("rewind output file");
            file.read_to_string(&mut text).expect("output is UTF-8");
            text
        };
        Output {
            code: status.code(),
            stdout: read(&mut self.stdout),
            stderr: read(&mut self.stderr),
        }
    }
}

/// Runs `command` to its end (at most [`COMMAND_TIMEOUT`]).
pub fn run(command: &mut Command) -> Output {
    Spawned::start(command).finish()
}

/// Sends SIGKILL to every process of the group led by `leader`.
#[allow(
    unsafe_code,
    reason = "std has no safe way to signal a process group; the group is one this test started"
)]
fn kill_group(leader: u32) {
    let group = libc::pid_t::try_from(leader).expect("pid fits pid_t");
    // SAFETY: kill(2) takes no pointers; a group that is already gone gives ESRCH, ignored.
    unsafe {
        libc::kill(-group, libc::SIGKILL);
    }
}

/// Reaps the group's processes that were re-parented to this process (see
/// [`become_subreaper`]), so killed tools do not linger as zombies.
#[allow(
    unsafe_code,
    reason = "std cannot wait for a process group; the group is one this test started"
)]
fn reap_group(leader: u32) {
    let group = libc::pid_t::try_from(leader).expect("pid fits pid_t");
    loop {
        let mut status = 0;
        // SAFETY: `status` is a valid, writable int for the duration of the call.
        let reaped = unsafe { libc::waitpid(-group, &mut status, 0) };
        if reaped > 0 {
            continue;
        }
        if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        // ECHILD: none of the group is (any longer) a child of this process.
        return;
    }
}

/// Makes this process adopt the orphans of the processes it starts, so the tools of a killed
/// chassis can be reaped by [`Spawned::crash`] instead of piling up as zombies under an init
/// that may not reap them.
#[cfg(target_os = "linux")]
#[allow(
    unsafe_code,
    reason = "prctl has no safe wrapper in std; PR_SET_CHILD_SUBREAPER affects only this process"
)]
pub fn become_subreaper() {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes plain integers and no pointers.
    unsafe {
        libc::prctl(
            libc::PR_SET_CHILD_SUBREAPER,
            1 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        );
    }
}

/// Elsewhere orphans go to init; reaping them is then its job.
#[cfg(not(target_os = "linux"))]
pub fn become_subreaper() {}

impl Spawned {
    /// Waits (at most `timeout`) until the process has printed a line containing `needle`, on
    /// stdout or stderr, and returns that line; `None` if it exited or the time ran out first.
    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            for file in [&mut self.stdout, &mut self.stderr] {
                let mut text = String::new();
                if file.rewind().is_ok()
                    && file.read_to_string(&mut text).is_ok()
                    && let Some(line) = text.lines().find(|l| l.contains(needle))
                {
                    return Some(line.to_string());
                }
            }
            if self.exited() || Instant::now() > deadline {
                return None;
            }
            // Polling granularity only; nothing is asserted about how long this takes.
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
