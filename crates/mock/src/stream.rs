//! Streamed answers: the events of a reply written one by one as a server-sent event stream,
//! and the faults that strike midway ([`FaultKind::StreamCut`], [`FaultKind::StreamStall`],
//! [`FaultKind::StreamMalformed`]).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body::Frame;
use tokio::sync::mpsc;

use crate::FaultKind;
use crate::server::Shared;

/// How long a cut waits before breaking the body, so the events before it reach the client
/// (the server flushes while the body has nothing to give).
const CUT_FLUSH: Duration = Duration::from_millis(20);

/// A `text/event-stream` response writing `events`, with `fault` (a mid-stream kind) striking
/// after `fault_after` events.
pub(crate) fn response(
    server: Arc<Shared>,
    events: Vec<Vec<u8>>,
    fault: Option<FaultKind>,
    fault_after: usize,
    stall: Duration,
) -> Response {
    let (sender, receiver) = mpsc::channel(16);
    // The fault always strikes before the stream is complete.
    let at = fault_after.min(events.len().saturating_sub(1));
    tokio::spawn(async move {
        for (i, event) in events.into_iter().enumerate() {
            if i == at {
                match fault {
                    Some(FaultKind::StreamCut) => {
                        server.pause(CUT_FLUSH).await;
                        let cut = io::Error::new(
                            io::ErrorKind::ConnectionAborted,
                            "stream cut by mock fault",
                        );
                        let _ = sender.send(Err(cut)).await;
                        return;
                    }
                    Some(FaultKind::StreamStall) => {
                        tokio::select! {
                            () = server.pause(stall) => {}
                            // The client gave up waiting: nobody to stall for.
                            () = sender.closed() => return,
                        }
                    }
                    _ => {}
                }
                if fault == Some(FaultKind::StreamMalformed)
                    && sender.send(Ok(malformed(&event))).await.is_err()
                {
                    return;
                }
            }
            // A client that hung up needs nothing more.
            if sender.send(Ok(Bytes::from(event))).await.is_err() {
                return;
            }
        }
    });
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        Body::new(EventBody { receiver }),
    )
        .into_response()
}

/// `event` with its (last) `data:` line cut in the middle of its JSON: a chunk as a broken
/// proxy or a crashing server would send it.
fn malformed(event: &[u8]) -> Bytes {
    let data = event
        .windows(6)
        .rposition(|w| w == b"data: ")
        .map_or(0, |i| i + 6);
    let end = event[data..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(event.len(), |i| data + i);
    let mut broken = event[..data + (end - data) / 2].to_vec();
    broken.extend_from_slice(b"\n\n");
    Bytes::from(broken)
}

/// A body fed event by event from the task writing the stream; an error breaks it.
struct EventBody {
    receiver: mpsc::Receiver<Result<Bytes, io::Error>>,
}

impl http_body::Body for EventBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.receiver
            .poll_recv(cx)
            .map(|item| item.map(|chunk| chunk.map(Frame::data)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_event_is_cut_in_its_json() {
        let event =
            b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0}\n\n";
        let broken = malformed(event);
        let text = std::str::from_utf8(&broken).unwrap();
        assert!(
            text.starts_with("event: content_block_delta\ndata: {"),
            "{text}"
        );
        assert!(text.ends_with("\n\n"), "{text}");
        let data = text.trim_end().rsplit("data: ").next().unwrap();
        assert!(
            serde_json::from_str::<serde_json::Value>(data).is_err(),
            "{data}"
        );
    }
}
