//! Cold start: from spawning `chassis run` to its first model request arriving.
//!
//! Method: a minimal HTTP responder in this process (on the mock's CPU when pinned) notes the
//! instant each request has fully arrived and answers with a one-line final reply, so the run
//! completes in one step. `chassis run` is spawned against it (the binary given in
//! [`Options::chassis`](crate::Options::chassis), on an existing journal, as a user would run
//! it a second time); cold start = first request's arrival − the instant before `spawn`. Median
//! over the runs, after one untimed run that creates the journal and warms the page cache.
//! For scale, the time to spawn `chassis --version` and see it exit is measured the same way.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::measure::{median, ms};
use crate::{Bench, Error, Figure, Target, Unit};

/// The target, in milliseconds.
const TARGET_MS: f64 = 20.0;

/// How long one `chassis run` may take before the benchmark gives up on it.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(60);

/// Variables that would point the child elsewhere: another journal, logs, a proxy.
const SCRUBBED_ENV: [&str; 9] = [
    "CHASSIS_DB",
    "CHASSIS_LOG",
    "OPENAI_BASE_URL",
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// The final reply every request gets.
const REPLY: &str = r#"{"id":"chatcmpl-cold","object":"chat.completion","created":0,"model":"bench-model","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#;

pub(crate) fn run(bench: &Bench) -> Result<Vec<Figure>, Error> {
    let iters = bench.sizes.cold_iters;
    bench.say(&format!(
        "cold start: {iters} × `{} run`",
        bench.chassis.display()
    ));
    let responder = Responder::start(bench)?;
    // The responder speaks HTTP/1.1 only.
    let spec = bench.fixture.spec_with(
        "cold-start",
        &responder.base_url,
        crate::HttpVersion::Http1,
        // `chassis run` knows only the spec's tools; the responder calls none.
        crate::BenchTool::Fs,
        false,
    )?;
    let db = bench.fixture.db("cold-start");

    let mut first_request = Vec::with_capacity(iters);
    let mut whole = Vec::with_capacity(iters);
    for pass in 0..=iters {
        let (first, exit) = one_run(bench, &responder, &spec, &db)?;
        if pass > 0 {
            first_request.push(ms(first));
            whole.push(ms(exit));
        }
    }
    let mut version = Vec::with_capacity(iters);
    for _ in 0..iters {
        let began = Instant::now();
        let status = child(bench.chassis)
            .arg("--version")
            .status()
            .map_err(Error::io(format!(
                "running {} --version",
                bench.chassis.display()
            )))?;
        version.push(ms(began.elapsed()));
        if !status.success() {
            return Err(bench.failed(format!("`chassis --version` exited with {status}")));
        }
    }
    responder.stop();

    let mut figure = bench.figure(
        "cold start: spawn → first model request, median",
        median(&first_request),
        Unit::Millis,
    );
    figure.target = Some(Target::AtMost(TARGET_MS));
    Ok(vec![
        figure,
        bench.figure(
            "`chassis run` of one step, spawn → exit, median",
            median(&whole),
            Unit::Millis,
        ),
        bench.figure(
            "`chassis --version`, spawn → exit, median",
            median(&version),
            Unit::Millis,
        ),
    ])
}

/// One `chassis run`: the time to its first request and to its exit.
fn one_run(
    bench: &Bench,
    responder: &Responder,
    spec: &Path,
    db: &Path,
) -> Result<(Duration, Duration), Error> {
    // Requests left over from an earlier run would be taken for this one's.
    while responder.arrivals.try_recv().is_ok() {}
    let mut command = child(bench.chassis);
    command.arg("--db").arg(db).arg("run").arg(spec).args([
        "--input",
        "Summarize the note.",
        "--quiet",
    ]);
    let began = Instant::now();
    let mut process = command
        .spawn()
        .map_err(Error::io(format!("starting {}", bench.chassis.display())))?;
    let first = responder.arrivals.recv_timeout(PROCESS_TIMEOUT);
    let status = loop {
        match process.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if began.elapsed() > PROCESS_TIMEOUT => {
                let _ = process.kill();
                let _ = process.wait();
                break Err(bench.failed(format!(
                    "`chassis run` still running after {PROCESS_TIMEOUT:?}; killed it"
                )));
            }
            // Reaping granularity only: the exit figure is for scale, not a target.
            Ok(None) => std::thread::sleep(Duration::from_micros(200)),
            Err(e) => break Err(Error::io("waiting for `chassis run`")(e)),
        }
    }?;
    let exit = began.elapsed();
    let first = first.map_err(|_| {
        bench.failed(format!(
            "`chassis run` ({status}) sent no model request within {PROCESS_TIMEOUT:?}"
        ))
    })?;
    if !status.success() {
        return Err(bench.failed(format!("`chassis run` exited with {status}")));
    }
    Ok((first.saturating_duration_since(began), exit))
}

/// The `chassis` binary with a scrubbed environment and no standard streams.
fn child(chassis: &Path) -> Command {
    let mut command = Command::new(chassis);
    for var in SCRUBBED_ENV {
        command.env_remove(var);
    }
    command
        .env("NO_PROXY", "127.0.0.1,localhost")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

/// Answers every chat-completions request with [`REPLY`] and reports when each arrived.
struct Responder {
    base_url: String,
    arrivals: mpsc::Receiver<Instant>,
    stopping: Arc<AtomicBool>,
    addr: std::net::SocketAddr,
    thread: std::thread::JoinHandle<()>,
}

impl Responder {
    fn start(bench: &Bench) -> Result<Responder, Error> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .map_err(Error::io("binding the cold-start responder on 127.0.0.1"))?;
        let addr = listener
            .local_addr()
            .map_err(Error::io("reading the responder's address"))?;
        let (tx, arrivals) = mpsc::channel();
        let stopping = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&stopping);
        let pinning = bench.pinning.clone();
        let thread = std::thread::Builder::new()
            .name("cold-start-responder".into())
            .spawn(move || {
                pinning.pin_thread_to_mock_cpu();
                for stream in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    // A broken connection only loses that request; the run then fails loudly.
                    if let Ok(stream) = stream {
                        let _ = answer(stream, &tx);
                    }
                }
            })
            .map_err(Error::io("starting the responder thread"))?;
        Ok(Responder {
            base_url: format!("http://{addr}/v1"),
            arrivals,
            stopping,
            addr,
            thread,
        })
    }

    fn stop(self) {
        self.stopping.store(true, Ordering::Relaxed);
        // Wakes the blocking accept so the thread sees the flag.
        let _ = TcpStream::connect(self.addr);
        let _ = self.thread.join();
    }
}

/// Reads one request (head and body), notes its arrival, answers and closes.
fn answer(mut stream: TcpStream, arrivals: &mpsc::Sender<Instant>) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            break end + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let _ = arrivals.send(Instant::now());
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{REPLY}",
        REPLY.len()
    );
    stream.write_all(response.as_bytes())?;
    stream.flush()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
