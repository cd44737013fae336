//! Command tools: a program run without a shell, JSON arguments on stdin, the result on stdout;
//! a process per call, or one long-lived process for every call (`persistent.rs`).

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use chassis_core::ToolDef;
use chassis_core::spec::{CommandToolSpec, ToolEnv};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{ChildStdin, Command};

use crate::{CallContext, Tool, ToolError};

/// Most stdout a call may produce; more is an error rather than a flooded context.
const MAX_STDOUT_BYTES: usize = 1024 * 1024;

/// How much of the end of stderr (or stdout) a failure message quotes.
const TAIL_BYTES: usize = 2048;

/// A program declared in the spec as a tool.
pub(crate) struct CommandTool {
    def: ToolDef,
    /// What to execute: an absolute path when the spec named one with a `/`, else a name
    /// looked up on `PATH`.
    program: PathBuf,
    args: Vec<String>,
    /// The spec file's directory.
    working_dir: PathBuf,
    timeout: Duration,
    /// What the process finds in its environment besides the default set.
    env: ToolEnv,
    /// With `persistent = true`: the one process that answers every call.
    persistent: Option<crate::persistent::Persistent>,
}

impl CommandTool {
    /// Builds the tool, checking that its program exists; the error is the message for the
    /// spec's `command` key.
    pub(crate) fn new(spec: &CommandToolSpec, base_dir: &Path) -> Result<CommandTool, String> {
        let (written, args) = spec
            .command
            .split_first()
            .ok_or_else(|| "must list the program and its arguments".to_string())?;
        let (program, working_dir) = resolve_program(written, base_dir)?;
        let def = ToolDef {
            name: spec.name.clone(),
            description: spec.description.clone(),
            parameters: spec.args_schema.clone(),
            risk: spec.risk,
            idempotent: spec.idempotent,
            max_attempts: spec.max_attempts,
        };
        let persistent = spec.persistent.then(|| {
            crate::persistent::Persistent::new(
                &def,
                program.clone(),
                args.to_vec(),
                working_dir.clone(),
                spec.env.clone(),
                spec.timeout,
            )
        });
        Ok(CommandTool {
            def,
            program,
            args: args.to_vec(),
            working_dir,
            timeout: spec.timeout,
            env: spec.env.clone(),
            persistent,
        })
    }

    fn name(&self) -> &str {
        &self.def.name
    }
}

/// Finds the program a spec names, and the absolute directory it runs in (`base_dir`).
///
/// A program written with a `/` is resolved against `base_dir` and must exist; a bare name must
/// be on `PATH`. The error is the message for the spec's `command` key.
pub(crate) fn resolve_program(
    written: &str,
    base_dir: &Path,
) -> Result<(PathBuf, PathBuf), String> {
    let working_dir = std::path::absolute(base_dir)
        .map_err(|e| format!("cannot resolve directory {}: {e}", base_dir.display()))?;
    let program = if written.contains('/') {
        // Absolute, so that the program does not depend on how `current_dir` and a relative
        // program path interact, which std leaves platform-specific.
        let path = working_dir.join(written);
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => return Err(format!("program `{written}` is not a file")),
            Err(_) => {
                return Err(format!(
                    "program `{written}` does not exist (looked for {})",
                    path.display()
                ));
            }
        }
        path
    } else {
        if !on_path(written) {
            return Err(format!("program `{written}` not found on PATH"));
        }
        PathBuf::from(written)
    };
    Ok((program, working_dir))
}

/// Whether `name` is an executable file in one of the `PATH` directories.
fn on_path(name: &str) -> bool {
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path)
        .filter(|dir| !dir.as_os_str().is_empty())
        .any(|dir| is_executable(&dir.join(name)))
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file()
}

/// How a call that ran to its end went.
struct Finished {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr_tail: Tail,
}

/// The end of a stream, and whether anything before it was dropped.
struct Tail {
    bytes: Vec<u8>,
    cut: bool,
}

/// Why a call was cut short while its output was being read.
enum Cut {
    StdoutTooLong,
    Io(std::io::Error),
}

#[async_trait::async_trait]
impl Tool for CommandTool {
    fn def(&self) -> &ToolDef {
        &self.def
    }

    async fn call(&self, args: Value, ctx: &CallContext) -> Result<String, ToolError> {
        if let Some(persistent) = &self.persistent {
            return persistent.call(args, ctx).await;
        }
        let name = self.name();
        let input = serde_json::to_vec(&args).map_err(|e| {
            ToolError::failed(format!("cannot serialize arguments for `{name}`: {e}"))
        })?;
        let mut command = Command::new(&self.program);
        // A cleared environment: the default set and what the spec names, never chassis's
        // secrets. The call's own variables come last, so the spec cannot shadow them.
        crate::env::apply(&mut command, &self.env);
        let mut child = command
            .args(&self.args)
            .current_dir(&self.working_dir)
            .env("CHASSIS_RUN_ID", &ctx.run_id)
            .env("CHASSIS_CALL_ID", &ctx.call_id)
            .env("CHASSIS_IDEMPOTENCY_KEY", &ctx.idempotency_key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                ToolError::failed(format!(
                    "`{name}` could not start program `{}`: {e}",
                    self.program.display()
                ))
            })?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let run = async {
            // Feed stdin while draining stdout and stderr, so a program that writes before it
            // has read all its input cannot deadlock against us.
            let ((), stdout, stderr_tail) = tokio::try_join!(
                feed(stdin, &input),
                read_capped(stdout, MAX_STDOUT_BYTES),
                read_tail(stderr, TAIL_BYTES),
            )?;
            let status = child.wait().await.map_err(Cut::Io)?;
            Ok::<_, Cut>(Finished {
                status,
                stdout,
                stderr_tail,
            })
        };
        let outcome = tokio::time::timeout(self.timeout, run).await;
        let finished = match outcome {
            Ok(Ok(finished)) => finished,
            Ok(Err(cut)) => {
                // Kill (and reap) the child now rather than leave it to `kill_on_drop`.
                let _ = child.kill().await;
                return Err(ToolError::indeterminate(match cut {
                    Cut::StdoutTooLong => format!(
                        "`{name}` wrote more than 1 MiB ({MAX_STDOUT_BYTES} bytes) to stdout"
                    ),
                    Cut::Io(e) => format!("`{name}`: reading its output failed: {e}"),
                }));
            }
            Err(_elapsed) => {
                let _ = child.kill().await;
                return Err(ToolError::indeterminate(format!(
                    "`{name}` timed out after {}",
                    format_duration(self.timeout)
                )));
            }
        };
        if !finished.status.success() {
            return Err(if finished.status.code().is_none() {
                // Killed by a signal (not by chassis): it stopped midway, whatever it did.
                ToolError::indeterminate(failure_message(name, &finished))
            } else {
                ToolError::failed(failure_message(name, &finished))
            });
        }
        let stdout = String::from_utf8(finished.stdout)
            .map_err(|_| ToolError::failed(format!("`{name}` wrote output that is not UTF-8")))?;
        Ok(stdout.trim_end_matches(['\n', '\r']).to_string())
    }
}

/// Writes the arguments and closes stdin. A program that exits without reading them is not an
/// error here: its exit status says whether the call worked.
async fn feed(stdin: Option<ChildStdin>, input: &[u8]) -> Result<(), Cut> {
    if let Some(mut stdin) = stdin {
        let _ = stdin.write_all(input).await;
        let _ = stdin.shutdown().await;
    }
    Ok(())
}

async fn read_capped(pipe: Option<impl AsyncRead + Unpin>, limit: usize) -> Result<Vec<u8>, Cut> {
    let mut bytes = Vec::new();
    if let Some(pipe) = pipe {
        pipe.take(limit as u64 + 1)
            .read_to_end(&mut bytes)
            .await
            .map_err(Cut::Io)?;
    }
    if bytes.len() > limit {
        return Err(Cut::StdoutTooLong);
    }
    Ok(bytes)
}

/// Reads the pipe to its end, keeping at least the last `keep` bytes.
async fn read_tail(pipe: Option<impl AsyncRead + Unpin>, keep: usize) -> Result<Tail, Cut> {
    let mut tail = Tail {
        bytes: Vec::new(),
        cut: false,
    };
    let Some(mut pipe) = pipe else {
        return Ok(tail);
    };
    let mut chunk = [0u8; 8192];
    loop {
        match pipe.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => {
                tail.bytes.extend_from_slice(&chunk[..n]);
                if tail.bytes.len() > 2 * keep {
                    tail.bytes.drain(..tail.bytes.len() - keep);
                    tail.cut = true;
                }
            }
            // Stderr only decorates an error message; losing its end is not worth failing for.
            Err(_) => break,
        }
    }
    Ok(tail)
}

fn failure_message(name: &str, finished: &Finished) -> String {
    let how = match finished.status.code() {
        Some(code) => format!("exited with status {code}"),
        None => match signal(finished.status) {
            Some(signal) => format!("was killed by signal {signal}"),
            None => "failed".to_string(),
        },
    };
    // Many programs report errors on stdout; quote it when stderr has nothing to say.
    let stderr = tail_text(
        &finished.stderr_tail.bytes,
        finished.stderr_tail.cut,
        TAIL_BYTES,
    );
    let said = if stderr.is_empty() {
        tail_text(&finished.stdout, false, TAIL_BYTES)
    } else {
        stderr
    };
    if said.is_empty() {
        format!("`{name}` {how} and printed nothing")
    } else {
        format!("`{name}` {how}: {said}")
    }
}

#[cfg(unix)]
fn signal(status: ExitStatus) -> Option<i32> {
    std::os::unix::process::ExitStatusExt::signal(&status)
}

#[cfg(not(unix))]
fn signal(_status: ExitStatus) -> Option<i32> {
    None
}

/// The last `keep` bytes as trimmed text, marked with `…` when anything before them is
/// missing (`cut` says whether `bytes` itself is already the end of something longer).
fn tail_text(bytes: &[u8], cut: bool, keep: usize) -> String {
    let mut start = bytes.len().saturating_sub(keep);
    // Do not start inside a UTF-8 sequence.
    while start < bytes.len() && start > 0 && bytes[start] & 0xC0 == 0x80 {
        start += 1;
    }
    let text = String::from_utf8_lossy(&bytes[start..]);
    let text = text.trim();
    if (cut || start > 0) && !text.is_empty() {
        format!("…{text}")
    } else {
        text.to_string()
    }
}

pub(crate) fn format_duration(duration: Duration) -> String {
    if duration.subsec_millis() == 0 {
        format!("{}s", duration.as_secs())
    } else {
        format!("{}ms", duration.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_the_spec() {
        assert_eq!(format_duration(Duration::from_secs(2)), "2s");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn tails_are_cut_at_character_boundaries() {
        assert_eq!(tail_text(b"  short\n", false, 10), "short");
        assert_eq!(tail_text(b"short", true, 10), "…short");
        assert_eq!(tail_text("aéb".as_bytes(), false, 2), "…b");
        assert_eq!(tail_text(b"", true, 10), "");
    }

    #[tokio::test]
    async fn read_tail_keeps_the_end() {
        let input: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let tail = read_tail(Some(&input[..]), 100).await.ok().unwrap();
        assert!(tail.bytes.len() >= 100 && tail.bytes.len() <= 200);
        assert!(input.ends_with(&tail.bytes));
        assert!(tail.cut);
        let whole = read_tail(Some(&input[..50]), 100).await.ok().unwrap();
        assert_eq!((whole.bytes.as_slice(), whole.cut), (&input[..50], false));
    }

    #[tokio::test]
    async fn read_capped_refuses_one_byte_too_many() {
        assert!(read_capped(Some(&[1u8; 10][..]), 10).await.is_ok());
        assert!(matches!(
            read_capped(Some(&[1u8; 11][..]), 10).await,
            Err(Cut::StdoutTooLong)
        ));
    }

    #[test]
    fn missing_programs_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let spec = |program: &str| CommandToolSpec {
            name: "t".into(),
            description: String::new(),
            command: vec![program.into()],
            args_schema: serde_json::json!({"type": "object"}),
            risk: chassis_core::RiskClass::ReadOnly,
            timeout: Duration::from_secs(1),
            idempotent: false,
            max_attempts: 1,
            env: ToolEnv::default(),
            persistent: false,
        };
        let e = CommandTool::new(&spec("no-such-program-xyz"), dir.path())
            .err()
            .unwrap();
        assert_eq!(e, "program `no-such-program-xyz` not found on PATH");
        let e = CommandTool::new(&spec("./tool.py"), dir.path())
            .err()
            .unwrap();
        assert!(
            e.starts_with("program `./tool.py` does not exist (looked for /"),
            "{e}"
        );
        assert!(CommandTool::new(&spec("cat"), dir.path()).is_ok());
    }
}
