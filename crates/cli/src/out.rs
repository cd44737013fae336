//! Writing to stdout and stderr without panicking when the reader has gone.
//!
//! `println!` panics when its stream is a pipe whose reader has exited (`chassis runs | head -1`):
//! Rust ignores SIGPIPE, so the write fails with EPIPE and the macro panics (exit 101).
//! Resetting SIGPIPE to its default, as git and ripgrep do, would let the kernel end chassis
//! silently instead; but it would also kill chassis mid-run whenever a command tool or an MCP
//! server exits before reading the arguments written to its stdin, since those are pipes too.
//! So SIGPIPE stays ignored and the binary writes only through these macros (the crate denies
//! `print!` and friends): once a stream's reader has gone, further writes to it are dropped and
//! the command finishes what it was doing (journal writes, telemetry flush) and exits with its
//! own code, quietly. Any other write error on stdout (a full disk) is reported at exit.

use std::io::{ErrorKind, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

/// Set once stdout cannot be written any more.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);
/// Set once stderr cannot be written any more.
static STDERR_CLOSED: AtomicBool = AtomicBool::new(false);
/// The first stdout error that was not a reader going away.
static STDOUT_FAILURE: Mutex<Option<String>> = Mutex::new(None);
/// `-q`: warnings, notes and progress are not printed.
static QUIET: AtomicBool = AtomicBool::new(false);
/// The secrets stderr is cleaned of: the log's, which learn every agent the process meets.
static REDACTION: OnceLock<chassis_telemetry::logs::LogRedaction> = OnceLock::new();

/// Cleans every later line on stderr (notes, progress, warnings, errors) of `redaction`'s
/// secrets: a note may echo what a person typed, a secret included.
pub(crate) fn redact_stderr(redaction: chassis_telemetry::logs::LogRedaction) {
    let _ = REDACTION.set(redaction);
}

/// Prints to stdout (results only); dropped once stdout's reader has gone.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::out::write_stdout(format_args!($($arg)*), false)
    };
}

/// Prints a line to stdout (results only); dropped once stdout's reader has gone.
macro_rules! outln {
    () => {
        $crate::out::write_stdout(format_args!(""), true)
    };
    ($($arg:tt)*) => {
        $crate::out::write_stdout(format_args!($($arg)*), true)
    };
}

/// Prints a line to stderr (errors and diagnostics that `-q` keeps).
macro_rules! errln {
    () => {
        $crate::out::write_stderr(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::out::write_stderr(format_args!($($arg)*))
    };
}

/// Prints a line to stderr unless `-q` was given (notes, hints, progress).
macro_rules! noteln {
    () => {
        if !$crate::out::quiet() {
            $crate::out::write_stderr(format_args!(""))
        }
    };
    ($($arg:tt)*) => {
        if !$crate::out::quiet() {
            $crate::out::write_stderr(format_args!($($arg)*))
        }
    };
}

/// Writes `args` (and a newline with `line`) to stdout, unless its reader has gone.
pub(crate) fn write_stdout(args: std::fmt::Arguments<'_>, line: bool) {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    let written = stdout.write_fmt(args).and_then(|()| {
        if line {
            stdout.write_all(b"\n")
        } else {
            Ok(())
        }
    });
    if let Err(e) = written {
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
        if e.kind() != ErrorKind::BrokenPipe
            && let Ok(mut failure) = STDOUT_FAILURE.lock()
        {
            failure.get_or_insert_with(|| e.to_string());
        }
    }
}

/// Writes `args` and a newline to stderr, unless its reader has gone.
pub(crate) fn write_stderr(args: std::fmt::Arguments<'_>) {
    if STDERR_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let line = match REDACTION.get() {
        Some(redaction) => redaction.redact(&args.to_string()),
        None => args.to_string(),
    };
    let mut stderr = std::io::stderr().lock();
    if stderr
        .write_all(line.as_bytes())
        .and_then(|()| stderr.write_all(b"\n"))
        .is_err()
    {
        STDERR_CLOSED.store(true, Ordering::Relaxed);
    }
}

/// Writes `text` to stderr as it is (no end of line added: streamed answers), unless its
/// reader has gone.
pub(crate) fn write_stderr_raw(text: &str) {
    if STDERR_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut stderr = std::io::stderr().lock();
    if stderr
        .write_all(text.as_bytes())
        .and_then(|()| stderr.flush())
        .is_err()
    {
        STDERR_CLOSED.store(true, Ordering::Relaxed);
    }
}

/// Flushes stdout; a closed pipe is not an error, anything else is returned to report.
pub(crate) fn finish() -> Option<String> {
    if !STDOUT_CLOSED.load(Ordering::Relaxed)
        && let Err(e) = std::io::stdout().lock().flush()
        && e.kind() != ErrorKind::BrokenPipe
    {
        return Some(e.to_string());
    }
    STDOUT_FAILURE.lock().ok().and_then(|f| f.clone())
}

/// Sets `-q`.
pub(crate) fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// True under `-q`: warnings, notes and progress are not printed.
pub(crate) fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}
