//! Persistent command tools (`persistent = true`): one long-lived process answers every call,
//! one JSON request per line on its stdin, one JSON answer per line on its stdout.
//!
//! A request is `{"id": N, "args": {...}, "run_id": "...", "call_id": "...",
//! "idempotency_key": "..."}`; the answer is `{"id": N, "result": ...}` (a string is the
//! result as it is; any other JSON value is sent to the model as JSON) or
//! `{"id": N, "error": "..."}` (the call failed and did not act, as a non-zero exit of a
//! per-call tool). Several requests may be in flight at once (one per run calling the tool);
//! answers may come in any order, matched by `id`. Stdout carries answers only: logs go to
//! stderr, whose end is quoted when the process dies.
//!
//! The process is started at the first call, with the environment a per-call command tool
//! gets (the `CHASSIS_*` call variables travel in each request instead), and started again at
//! the next call after it died. Exactly-once holds as for any tool: a request is *sent* once
//! its line is written whole into the process's stdin; a call whose request was sent and that
//! got no answer — the process exited, was killed, broke the protocol, or the call timed out
//! (which kills the process, since it may be wedged) — is indeterminate, so an effect that is
//! not safe to repeat becomes an unknown outcome for a human, never a second request. A
//! request that could not be written whole (the process was already gone) was never sent: the
//! process is started again and the request written once more, once.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chassis_core::ToolDef;
use chassis_core::spec::ToolEnv;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::oneshot;

use crate::{CallContext, ToolError};

/// Longest answer line; a longer one breaks the protocol (as more than 1 MiB of stdout fails a
/// per-call tool).
const MAX_LINE_BYTES: usize = 1024 * 1024;

/// How much of the end of stderr a message about a dead process quotes.
const TAIL_BYTES: usize = 2048;

/// What a call gets back from the process.
type Answer = Result<Result<String, String>, String>;

/// One persistent command tool: its program and the process running it, if any.
pub(crate) struct Persistent {
    name: String,
    program: PathBuf,
    args: Vec<String>,
    working_dir: PathBuf,
    env: ToolEnv,
    timeout: Duration,
    /// The live process; replaced when it has died.
    process: tokio::sync::Mutex<Option<Arc<Process>>>,
    next_id: std::sync::atomic::AtomicU64,
}

/// A running process and the calls waiting for its answers.
struct Process {
    stdin: tokio::sync::Mutex<ChildStdin>,
    /// Calls sent and not answered, by request id; `None` once the process is dead, with why.
    waiting: Mutex<Result<HashMap<u64, oneshot::Sender<Answer>>, String>>,
    child: Mutex<Option<Child>>,
}

impl Process {
    /// Marks the process dead for `why`: every call waiting on it hears that, and it is
    /// killed (and reaped in the background).
    fn die(&self, why: &str) {
        let waiting = match self.waiting.lock() {
            Ok(mut waiting) => std::mem::replace(&mut *waiting, Err(why.to_string())),
            Err(_) => return,
        };
        if let Ok(waiting) = waiting {
            for (_, call) in waiting {
                let _ = call.send(Err(why.to_string()));
            }
        }
        let child = self.child.lock().ok().and_then(|mut c| c.take());
        if let Some(mut child) = child {
            // `start_kill` signals now; waiting for the exit frees the process table entry.
            let _ = child.start_kill();
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    runtime.spawn(async move {
                        let _ = child.wait().await;
                    });
                }
                // Dropped where no runtime runs (an agent outliving its `block_on`): tokio
                // keeps the killed child as an orphan and reaps it when a runtime next sees a
                // child exit; spawning here would panic.
                Err(_) => drop(child),
            }
        }
    }

    fn is_dead(&self) -> bool {
        self.waiting.lock().map_or(true, |w| w.is_err())
    }
}

impl Drop for Persistent {
    fn drop(&mut self) {
        if let Some(process) = self.process.get_mut().take() {
            process.die("the tool was dropped");
        }
    }
}

impl Persistent {
    pub(crate) fn new(
        def: &ToolDef,
        program: PathBuf,
        args: Vec<String>,
        working_dir: PathBuf,
        env: ToolEnv,
        timeout: Duration,
    ) -> Persistent {
        Persistent {
            name: def.name.clone(),
            program,
            args,
            working_dir,
            env,
            timeout,
            process: tokio::sync::Mutex::new(None),
            next_id: std::sync::atomic::AtomicU64::new(1),
        }
    }

    /// One call: a request line out, its answer line back.
    pub(crate) async fn call(&self, args: Value, ctx: &CallContext) -> Result<String, ToolError> {
        let name = &self.name;
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut line = serde_json::to_vec(&json!({
            "id": id,
            "args": args,
            "run_id": ctx.run_id,
            "call_id": ctx.call_id,
            "idempotency_key": ctx.idempotency_key,
        }))
        .map_err(|e| ToolError::failed(format!("cannot serialize arguments for `{name}`: {e}")))?;
        line.push(b'\n');
        let deadline = tokio::time::Instant::now() + self.timeout;
        let (process, answer) = match tokio::time::timeout_at(deadline, self.send(id, &line)).await
        {
            Ok(sent) => sent?,
            // Nothing was written whole: the request was never sent.
            Err(_) => {
                return Err(ToolError::failed(format!(
                    "`{name}` timed out after {} before its request could be sent",
                    crate::command::format_duration(self.timeout)
                )));
            }
        };
        match tokio::time::timeout_at(deadline, answer).await {
            Ok(Ok(Ok(Ok(result)))) => Ok(result),
            Ok(Ok(Ok(Err(error)))) => Err(ToolError::failed(format!("`{name}`: {error}"))),
            Ok(Ok(Err(why))) => Err(ToolError::indeterminate(format!(
                "`{name}` gave no answer: {why}"
            ))),
            Ok(Err(_)) => Err(ToolError::indeterminate(format!(
                "`{name}` gave no answer: its process went away"
            ))),
            Err(_) => {
                // A process that does not answer in time may be wedged: the next call starts a
                // new one, and the calls still waiting on this one are cut off with it.
                let why = format!(
                    "`{name}` timed out after {}",
                    crate::command::format_duration(self.timeout)
                );
                process.die(&format!("it was killed after a call {why}"));
                Err(ToolError::indeterminate(why))
            }
        }
    }

    /// Writes the request to the live process (starting one if needed) and registers for its
    /// answer. A write that fails means the process is gone and never got the whole line: a new
    /// one is started and the line written again, once.
    async fn send(
        &self,
        id: u64,
        line: &[u8],
    ) -> Result<(Arc<Process>, oneshot::Receiver<Answer>), ToolError> {
        let mut last_error = String::new();
        for _ in 0..2 {
            let process = self.live().await?;
            let (tx, rx) = oneshot::channel();
            {
                let mut waiting = process
                    .waiting
                    .lock()
                    .map_err(|_| ToolError::failed("a lock was poisoned"))?;
                match waiting.as_mut() {
                    Ok(waiting) => {
                        waiting.insert(id, tx);
                    }
                    // Died between `live` and here: nothing was written.
                    Err(why) => {
                        last_error = why.clone();
                        continue;
                    }
                }
            }
            let written = {
                let mut stdin = process.stdin.lock().await;
                match stdin.write_all(line).await {
                    Ok(()) => stdin.flush().await,
                    Err(e) => Err(e),
                }
            };
            match written {
                Ok(()) => return Ok((process, rx)),
                Err(e) => {
                    if let Ok(Ok(waiting)) = process.waiting.lock().as_deref_mut() {
                        waiting.remove(&id);
                    }
                    last_error = format!("writing its request failed: {e}");
                    process.die(&last_error);
                }
            }
        }
        Err(ToolError::failed(format!(
            "`{}` could not be sent its request: {last_error}",
            self.name
        )))
    }

    /// The live process, started if there is none or the last one died.
    async fn live(&self) -> Result<Arc<Process>, ToolError> {
        let mut slot = self.process.lock().await;
        if let Some(process) = slot.as_ref()
            && !process.is_dead()
        {
            return Ok(Arc::clone(process));
        }
        let process = self.start()?;
        *slot = Some(Arc::clone(&process));
        Ok(process)
    }

    fn start(&self) -> Result<Arc<Process>, ToolError> {
        let name = &self.name;
        let mut command = Command::new(&self.program);
        crate::env::apply(&mut command, &self.env);
        let mut child = command
            .args(&self.args)
            .current_dir(&self.working_dir)
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
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            let _ = child.start_kill();
            return Err(ToolError::failed(format!(
                "`{name}`: no pipes to its process"
            )));
        };
        tracing::debug!(tool = %name, pid = child.id(), "persistent tool process started");
        let process = Arc::new(Process {
            stdin: tokio::sync::Mutex::new(stdin),
            waiting: Mutex::new(Ok(HashMap::new())),
            child: Mutex::new(Some(child)),
        });
        let tail = Arc::new(Mutex::new(Vec::new()));
        tokio::spawn(keep_tail(stderr, Arc::clone(&tail)));
        tokio::spawn(read_answers(
            stdout,
            Arc::downgrade(&process),
            tail,
            name.clone(),
        ));
        Ok(process)
    }
}

/// Hands each answer line to the call waiting for it; when stdout ends or a line breaks the
/// protocol, the process is dead and every call still waiting hears why.
async fn read_answers(
    stdout: tokio::process::ChildStdout,
    process: std::sync::Weak<Process>,
    tail: Arc<Mutex<Vec<u8>>>,
    name: String,
) {
    let mut reader = BufReader::new(stdout);
    let mut line = Vec::new();
    let why = loop {
        line.clear();
        let read = (&mut reader)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut line)
            .await;
        match read {
            Ok(0) => break "its process exited".to_string(),
            Ok(_) if line.len() > MAX_LINE_BYTES => {
                break format!("it wrote an answer line longer than {MAX_LINE_BYTES} bytes");
            }
            Ok(_) if !line.ends_with(b"\n") => {
                break "its process exited in the middle of an answer".to_string();
            }
            Ok(_) => {}
            Err(e) => break format!("reading its answers failed: {e}"),
        }
        let text = String::from_utf8_lossy(&line);
        if text.trim().is_empty() {
            continue;
        }
        let Some((id, answer)) = parse_answer(&text) else {
            break format!(
                "it wrote a line that is not an answer ({}): stdout is for answers only, \
                 one JSON object with `id` and `result` or `error` per line",
                clip(text.trim(), 200)
            );
        };
        let Some(process) = process.upgrade() else {
            return;
        };
        let call = match process.waiting.lock().as_deref_mut() {
            Ok(Ok(waiting)) => waiting.remove(&id),
            _ => None,
        };
        match call {
            Some(call) => {
                let _ = call.send(Ok(answer));
            }
            // A call that timed out was answered late, or the id was made up: nothing waits.
            None => tracing::debug!(tool = %name, id, "answer for no waiting call"),
        }
    };
    if let Some(process) = process.upgrade() {
        // Give stderr a moment to be read to its end: it says why the process went.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let said = tail
            .lock()
            .map(|t| String::from_utf8_lossy(&t).trim().to_string())
            .unwrap_or_default();
        let why = if said.is_empty() {
            why
        } else {
            format!("{why}; stderr: {said}")
        };
        tracing::warn!(tool = %name, reason = %why, "persistent tool process stopped");
        process.die(&why);
    }
}

/// Keeps the last [`TAIL_BYTES`] of the process's stderr.
async fn keep_tail(mut stderr: tokio::process::ChildStderr, tail: Arc<Mutex<Vec<u8>>>) {
    let mut chunk = [0u8; 4096];
    while let Ok(n) = stderr.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        if let Ok(mut tail) = tail.lock() {
            tail.extend_from_slice(&chunk[..n]);
            if tail.len() > TAIL_BYTES {
                let cut = tail.len() - TAIL_BYTES;
                tail.drain(..cut);
            }
        }
    }
}

/// `{"id": N, "result": ...}` or `{"id": N, "error": "..."}`.
fn parse_answer(line: &str) -> Option<(u64, Result<String, String>)> {
    let value: Value = serde_json::from_str(line).ok()?;
    let id = value.get("id")?.as_u64()?;
    if let Some(error) = value.get("error") {
        let text = match error {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        return Some((id, Err(text)));
    }
    let result = match value.get("result")? {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    Some((id, Ok(result)))
}

fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse() {
        assert_eq!(
            parse_answer(r#"{"id": 3, "result": "ok"}"#),
            Some((3, Ok("ok".into())))
        );
        assert_eq!(
            parse_answer(r#"{"id": 4, "result": {"a": 1}}"#),
            Some((4, Ok(r#"{"a":1}"#.into())))
        );
        assert_eq!(
            parse_answer(r#"{"id": 5, "error": "no such row"}"#),
            Some((5, Err("no such row".into())))
        );
        assert_eq!(parse_answer(r#"{"result": "ok"}"#), None);
        assert_eq!(parse_answer("hello"), None);
        assert_eq!(parse_answer(r#"{"id": 6}"#), None);
    }

    #[test]
    fn clips_at_characters() {
        assert_eq!(clip("abc", 5), "abc");
        assert_eq!(clip("ééé", 2), "éé…");
    }
}
