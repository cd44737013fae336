//! OTLP over gRPC against a receiver chassis shares no code with: grpcio (gRPC's reference C
//! core) with the official OTLP messages, from PyPI (`.ci/python-tools.sh`). One run's spans
//! go to it and to the OTLP/HTTP receiver at once; both must hold the same spans.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chassis_core::RunStatus;
use chassis_engine::Observer;
use chassis_telemetry::proto::{ExportTraceServiceRequest, Span};
use chassis_telemetry::{ExportConfig, Exporter, Tracer};
use prost::Message;

use crate::agent::Desk;
use crate::receiver::Receiver;

/// The grpcio receiver as a child process; killed when dropped.
struct GrpcReceiver {
    child: Child,
    port: u16,
    calls: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl GrpcReceiver {
    /// `None` (the test is skipped with a note) when the Python tools are not installed,
    /// except under `CI=true`, where that fails the test.
    fn start() -> Option<GrpcReceiver> {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let python = root.join("../../target/py-tools/bin/python");
        if !python.exists() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{} is missing: run .ci/python-tools.sh",
                python.display()
            );
            eprintln!("skipped: no {}; run .ci/python-tools.sh", python.display());
            return None;
        }
        let mut child = Command::new(python)
            .arg(root.join("tests/fixtures/otlp_grpc_receiver.py"))
            .stdout(Stdio::piped())
            .spawn()
            .expect("the receiver starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let port = lines
            .next()
            .expect("the receiver prints its port")
            .unwrap()
            .trim()
            .parse()
            .expect("a port");
        let calls = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&calls);
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let call: serde_json::Value = serde_json::from_str(&line).unwrap();
                sink.lock().unwrap().push(call);
            }
        });
        Some(GrpcReceiver { child, port, calls })
    }

    /// Every Export call so far, waiting up to 10 s for at least `n`.
    fn calls(&self, n: usize) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.calls.lock().unwrap().len() < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.calls.lock().unwrap().clone()
    }
}

impl Drop for GrpcReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn exporter(vars: &[(&str, String)]) -> Exporter {
    let config = ExportConfig::from_vars(|name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    })
    .unwrap()
    .expect("an endpoint is configured");
    Exporter::start(config).unwrap()
}

fn spans_of(requests: impl IntoIterator<Item = ExportTraceServiceRequest>) -> Vec<Span> {
    let mut spans: Vec<Span> = requests
        .into_iter()
        .flat_map(|r| r.resource_spans)
        .flat_map(|rs| rs.scope_spans)
        .flat_map(|ss| ss.spans)
        .collect();
    spans.sort_by(|a, b| a.span_id.cmp(&b.span_id));
    spans
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_exported_over_grpc_with_gzip_arrives_as_over_http() {
    let Some(grpc) = GrpcReceiver::start() else {
        return;
    };
    let http = Receiver::start().await;
    let delay = ("OTEL_BSP_SCHEDULE_DELAY", "20".to_string());
    let over_http = exporter(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", http.endpoint()),
        delay.clone(),
    ]);
    let over_grpc = exporter(&[
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{}", grpc.port),
        ),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".into()),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip".into()),
        ("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=desk".into()),
        delay,
    ]);
    let (to_http, to_grpc) = (over_http.clone(), over_grpc.clone());
    let tracer = Arc::new(Tracer::new(true, move |span| {
        to_http.send(span.clone());
        to_grpc.send(span);
    }));
    let desk = Desk::new("max_steps = 5").await;
    let engine = desk.engine(&[tracer as Arc<dyn Observer>]);
    let outcome = engine
        .start(&desk.agent().await, "summarize the note")
        .await
        .unwrap();
    assert_eq!(outcome.status, RunStatus::Completed, "{outcome:?}");
    over_http.flush().await;
    over_grpc.flush().await;

    let from_http = spans_of(
        http.requests()
            .iter()
            .map(|r| ExportTraceServiceRequest::decode(&r.body[..]).unwrap()),
    );
    assert!(from_http.len() >= 3, "a run, a model call, a tool call");
    let calls = grpc.calls(1);
    assert!(!calls.is_empty(), "nothing arrived over gRPC");
    let from_grpc = spans_of(calls.iter().map(|call| {
        assert_eq!(call["metadata"]["x-tenant"], "desk", "{call}");
        let bytes = decode_base64(call["request"].as_str().unwrap());
        // grpcio decompresses before the handler sees metadata or message; what came over the
        // wire was smaller than the framed message: it was compressed.
        let on_the_wire: usize = call["metadata"]["content-length"]
            .as_str()
            .and_then(|n| n.parse().ok())
            .expect("a content-length");
        assert!(
            on_the_wire < bytes.len() + 5,
            "{on_the_wire} >= {}",
            bytes.len() + 5
        );
        ExportTraceServiceRequest::decode(&bytes[..]).unwrap()
    }));
    assert_eq!(from_grpc, from_http);
    // grpcio answers with `grpc-status: 0` in trailers after the message: read as delivered.
    assert_eq!(over_grpc.dropped(), 0);
    assert_eq!(over_http.dropped(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_error_status_drops_the_batch_without_failing_the_run() {
    let Some(grpc) = GrpcReceiver::start() else {
        return;
    };
    // A path the receiver does not serve: grpcio answers UNIMPLEMENTED (12), which is not
    // retryable, so the spans are counted as dropped.
    let exporter = exporter(&[
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            format!("http://127.0.0.1:{}/wrong", grpc.port),
        ),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".into()),
    ]);
    exporter.send(Span {
        name: "chat mock".into(),
        ..Span::default()
    });
    exporter.flush().await;
    assert_eq!(exporter.dropped(), 1);
    assert!(grpc.calls(0).is_empty());
}

/// Standard base64 with padding, as Python writes it.
fn decode_base64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let mut out = Vec::new();
    for chunk in text.trim_end_matches('=').as_bytes().chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &c)| n | u32::from(value(c)) << (18 - 6 * i));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}
