//! Run streams: every journaled event exactly once, in order, resumed with `Last-Event-ID`
//! with no gap and no duplicate; token deltas between them, without an id; the end after the
//! terminal event.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::util::TestServer;

/// One SSE event as received.
#[derive(Debug)]
pub(crate) struct Received {
    pub id: Option<u64>,
    pub event: String,
    pub data: Value,
}

/// Reads the stream at `path` to its end (or until `stop` says so), parsing each event.
pub(crate) async fn read_stream(
    s: &TestServer,
    path: &str,
    last_event_id: Option<u64>,
    stop: impl Fn(&[Received]) -> bool,
) -> Vec<Received> {
    let mut request = s
        .http
        .get(format!("{}{path}", s.base))
        .bearer_auth(&s.tokens.viewer);
    if let Some(id) = last_event_id {
        request = request.header("Last-Event-ID", id.to_string());
    }
    let mut response = request.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut buffer = String::new();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .expect("the stream keeps going")
            .unwrap();
        let Some(chunk) = chunk else { break };
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let (mut id, mut event, mut data) = (None, String::new(), String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    id = v.parse().ok();
                } else if let Some(v) = line.strip_prefix("event: ") {
                    event = v.to_string();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data.push_str(v);
                }
            }
            if event.is_empty() {
                continue; // a heartbeat comment
            }
            out.push(Received {
                id,
                event,
                data: serde_json::from_str(&data).unwrap_or(Value::Null),
            });
        }
        if stop(&out) {
            break;
        }
    }
    out
}

/// A stream from the start sees every event once, in order, ends after the terminal event;
/// one resumed with `Last-Event-ID` in the middle sees exactly the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_resumes_with_no_gap_and_no_duplicate() {
    let s = TestServer::start(4, Duration::from_millis(100)).await;
    let run = s.start_run("invoice 11").await;
    let path = format!("/v1/runs/{run}/stream");
    // Follow until the run waits for approval, then stop reading (a client that went away).
    let first = read_stream(&s, &path, None, |got| {
        got.iter()
            .any(|r| r.event == "event" && r.data["kind"] == "run_waiting")
    })
    .await;
    let last = first.iter().filter_map(|r| r.id).max().unwrap();
    let (status, _) = s
        .call(
            reqwest::Method::POST,
            &format!("/v1/runs/{run}/calls/1.0/approve"),
            Some(&s.tokens.approver),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let rest = read_stream(&s, &path, Some(last), |_| false).await;
    let ids: Vec<u64> = first
        .iter()
        .chain(&rest)
        .filter(|r| r.event == "event")
        .map(|r| r.id.expect("journaled events carry their seq"))
        .collect();
    let journal = s.journal.load(&run).await.unwrap();
    let expected: Vec<u64> = journal.iter().map(|r| r.seq).collect();
    assert_eq!(ids, expected, "every event once, in order");
    let ended = rest.last().unwrap();
    assert_eq!(ended.data["kind"], "run_completed");
    // `?after=` does the same; a stream of a finished run ends at once.
    let tail = read_stream(
        &s,
        &format!("{path}?after={}", expected.len() - 1),
        None,
        |_| false,
    )
    .await;
    assert_eq!(tail.len(), 1);
}

/// While the model writes, its answer streams as `delta` events (no id) before the journaled
/// `model_responded` of that step; the deltas add up to the journaled text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deltas_stream_between_journaled_events() {
    let s = TestServer::start(4, Duration::from_millis(300)).await;
    let run = s.start_run("talk to me").await;
    let got = read_stream(&s, &format!("/v1/runs/{run}/stream"), None, |_| false).await;
    let deltas: Vec<&Received> = got.iter().filter(|r| r.event == "delta").collect();
    assert!(!deltas.is_empty(), "no deltas in {got:#?}");
    assert!(
        deltas.iter().all(|d| d.id.is_none()),
        "deltas are not durable"
    );
    let text: String = deltas
        .iter()
        .filter(|d| d.data["kind"] == "text")
        .map(|d| d.data["text"].as_str().unwrap_or(""))
        .collect();
    let responded = got
        .iter()
        .position(|r| r.data["kind"] == "model_responded")
        .unwrap();
    let first_delta = got.iter().position(|r| r.event == "delta").unwrap();
    assert!(
        first_delta < responded,
        "deltas come before the answer is journaled"
    );
    assert_eq!(
        text,
        got[responded].data["message"]["content"].as_str().unwrap(),
        "the deltas add up to the journaled answer"
    );
}
