//! The mock model in its own process: `chassis mock-model`, optionally pinned with `taskset`.
//!
//! A separate process keeps the mock's CPU time out of the runtime's and lets it run on the
//! other core; its CPU time is read from `/proc` so a figure can say who was busy.

use std::io::{BufRead, BufReader, Read as _, Seek as _, SeekFrom};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use crate::{Error, measure};

/// A running `chassis mock-model`; killed on drop.
pub(crate) struct MockProcess {
    child: Child,
    base_url: String,
    /// Kept open: the mock may still write to it.
    _stdout: BufReader<ChildStdout>,
}

impl MockProcess {
    /// Starts the mock with `script` and `latency`, on `cpu` when given, and waits for its
    /// base URL (the first line it prints).
    pub(crate) fn start(
        chassis: &Path,
        script: &Path,
        latency: Duration,
        cpu: Option<usize>,
    ) -> Result<MockProcess, Error> {
        MockProcess::start_with(chassis, script, latency, cpu, &[])
    }

    /// [`MockProcess::start`] with more arguments for `chassis mock-model` (`--rpm-limit N`).
    pub(crate) fn start_with(
        chassis: &Path,
        script: &Path,
        latency: Duration,
        cpu: Option<usize>,
        extra: &[String],
    ) -> Result<MockProcess, Error> {
        let mut command = match cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpu.to_string()).arg(chassis);
                c
            }
            None => Command::new(chassis),
        };
        command
            .arg("mock-model")
            .arg("--script")
            .arg(script)
            .args(["--host", "127.0.0.1", "--port", "0"])
            .arg("--latency")
            .arg(format!("{}ms", latency.as_millis()))
            .args(extra)
            .env_remove("CHASSIS_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        let program = chassis.display().to_string();
        let mock_err = |message: String| Error::Mock {
            program: program.clone(),
            message,
        };
        // A file, not a pipe: nobody reads it while the mock runs, and a closed pipe would make
        // the mock's own diagnostics fail.
        let mut stderr = tempfile::tempfile()
            .map_err(|e| mock_err(format!("cannot create a file for its stderr: {e}")))?;
        let stderr_handle = stderr
            .try_clone()
            .map_err(|e| mock_err(format!("cannot create a file for its stderr: {e}")))?;
        command.stderr(stderr_handle);
        let mut child = command
            .spawn()
            .map_err(|e| mock_err(format!("cannot start: {e}")))?;
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        let mut line = String::new();
        let read = stdout.read_line(&mut line);
        let base_url = line.trim().to_string();
        if read.is_err() || !base_url.starts_with("http://") {
            let _ = child.kill();
            let _ = child.wait();
            let mut said = String::new();
            let _ = stderr
                .seek(SeekFrom::Start(0))
                .and_then(|_| stderr.read_to_string(&mut said));
            return Err(mock_err(format!(
                "expected its base URL on stdout, got {base_url:?}; stderr: {}",
                said.trim()
            )));
        }
        Ok(MockProcess {
            child,
            base_url,
            _stdout: stdout,
        })
    }

    /// The OpenAI base URL, e.g. `http://127.0.0.1:PORT/v1`.
    pub(crate) fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The mock's counters (`GET /_mock/stats`: requests, faults, connections, …), read with
    /// `client`.
    pub(crate) async fn stats(
        &self,
        client: &reqwest::Client,
    ) -> Result<serde_json::Value, String> {
        let url = format!("{}/_mock/stats", self.base_url.trim_end_matches("/v1"));
        let body = client
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("the mock's stats: {e}"))?
            .text()
            .await
            .map_err(|e| format!("the mock's stats: {e}"))?;
        serde_json::from_str(&body).map_err(|e| format!("the mock's stats: {e}"))
    }

    /// CPU time the mock has used so far.
    pub(crate) fn cpu_seconds(&self) -> Option<f64> {
        measure::cpu_seconds(Some(self.child.id()))
    }
}

impl Drop for MockProcess {
    fn drop(&mut self) {
        // Our own child, by its handle.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
