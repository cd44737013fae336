//! What the clients put on the wire, captured by a bare TCP server.

use std::time::Duration;

use chassis_providers::{AnthropicClient, ModelClient};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::{SECRET_KEY, request, user};

/// The request head (lowercased) and body of the one request a client sends to `listener`,
/// answered with a minimal Messages reply.
async fn capture(listener: TcpListener) -> (String, Value) {
    let (mut stream, _) = listener.accept().await.unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let (head, body_start) = loop {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "connection closed before the request head");
        received.extend_from_slice(&buf[..n]);
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            break (
                String::from_utf8_lossy(&received[..end]).to_lowercase(),
                end + 4,
            );
        }
    };
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .expect("a content-length header")
        .trim()
        .parse()
        .unwrap();
    while received.len() < body_start + length {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "connection closed before the request body");
        received.extend_from_slice(&buf[..n]);
    }
    let body = serde_json::from_slice(&received[body_start..body_start + length]).unwrap();
    let reply = json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "m",
        "content": [{"type": "text", "text": "ok"}],
        "stop_reason": "end_turn", "usage": {"input_tokens": 1, "output_tokens": 1}
    })
    .to_string();
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
        reply.len()
    );
    stream.write_all(response.as_bytes()).await.unwrap();
    (head, body)
}

#[tokio::test]
async fn sends_the_key_version_and_path() {
    for (suffix, api_key) in [("", Some(SECRET_KEY.to_owned())), ("/v1/", None)] {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}{suffix}", listener.local_addr().unwrap());
        let keyed = api_key.is_some();
        let client = AnthropicClient::new("a", &base, api_key, Duration::from_secs(10)).unwrap();
        let server = tokio::spawn(capture(listener));
        let response = client.complete(&request(vec![user("hi")])).await.unwrap();
        assert_eq!(response.message.content.as_deref(), Some("ok"));
        let (head, body) = server.await.unwrap();

        assert!(head.starts_with("post /v1/messages http/1.1\r\n"), "{head}");
        assert!(head.contains("\r\nanthropic-version: 2023-06-01"), "{head}");
        assert!(
            head.contains("\r\ncontent-type: application/json"),
            "{head}"
        );
        let key_header = format!("\r\nx-api-key: {}", SECRET_KEY.to_lowercase());
        assert_eq!(head.contains(&key_header), keyed, "{head}");
        assert!(!head.contains("authorization"), "{head}");
        let agent = format!("\r\nuser-agent: chassis/{}\r\n", env!("CARGO_PKG_VERSION"));
        assert!(head.contains(&agent), "{head}");
        // Streamed by default, with the tool choice beside the tools; a server that answers
        // with one JSON body anyway (as this one does) is read all the same.
        assert_eq!(body["stream"], true);
        assert_eq!(body["tool_choice"], json!({"type": "auto"}));
        assert_eq!(body["max_tokens"], 1024);
        assert_eq!(body["messages"], json!([{"role": "user", "content": "hi"}]));
        assert_eq!(
            body["tools"][0]["input_schema"]["required"],
            json!(["path"])
        );
    }
}

#[tokio::test]
async fn openai_sends_its_agent_tool_choice_and_stream_options() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    let client =
        chassis_providers::OpenAiClient::new("o", &base, None, Duration::from_secs(10)).unwrap();
    let server = tokio::spawn(capture(listener));
    // The captured reply is in Anthropic's shape: not a chat completion.
    let err = client
        .complete(&request(vec![user("hi")]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, chassis_providers::Error::InvalidResponse { .. }),
        "{err:?}"
    );
    let (head, body) = server.await.unwrap();
    assert!(
        head.starts_with("post /v1/chat/completions http/1.1\r\n"),
        "{head}"
    );
    let agent = format!("\r\nuser-agent: chassis/{}\r\n", env!("CARGO_PKG_VERSION"));
    assert!(head.contains(&agent), "{head}");
    assert_eq!(body["tool_choice"], "auto");
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"], json!({"include_usage": true}));
}

/// Reads one request head and body from `stream` and answers with a stream that never ends:
/// a complete completion, `[DONE]`, then keep-alive comments.
async fn talk_past_done(listener: TcpListener) {
    let (mut stream, _) = listener.accept().await.unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut received = Vec::new();
    while !received.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await.unwrap();
        received.extend_from_slice(&buf[..n]);
    }
    let chunk = json!({
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": "ok"}, "finish_reason": "stop"}],
    });
    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";
    let events = format!("data: {chunk}\n\ndata: [DONE]\n\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(events.as_bytes()).await.unwrap();
    for _ in 0..500 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        if stream.write_all(b": keep-alive\n\n").await.is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn a_stream_that_talks_past_its_end_is_complete_at_done() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    let client =
        chassis_providers::OpenAiClient::new("o", &base, None, Duration::from_secs(2)).unwrap();
    let server = tokio::spawn(talk_past_done(listener));
    // Were the end waited for, the 2 s total timeout would fail the call.
    let response = client.complete(&request(vec![user("hi")])).await.unwrap();
    assert_eq!(response.message.content.as_deref(), Some("ok"));
    server.abort();
}
