//! How connections are served: HTTP/1.1 and HTTP/2 with prior knowledge (h2c) on one port, each
//! with its own hyper connection, and a stop that closes idle connections and returns.

use std::time::Duration;

use chassis_http::HttpVersion;
use reqwest::{StatusCode, Version};

use crate::util::TestServer;

/// A client speaking only `version` (HTTP/2 with prior knowledge: the preface, no upgrade).
fn client(version: HttpVersion) -> reqwest::Client {
    chassis_http::builder(version).build().unwrap()
}

#[tokio::test]
async fn one_port_answers_http1_and_h2c_requests_and_streams() {
    let server = TestServer::start(0, Duration::ZERO).await;
    let run_id = server.start_run("pay the invoice").await;
    for (version, expected) in [
        (HttpVersion::Http1, Version::HTTP_11),
        (HttpVersion::Http2, Version::HTTP_2),
    ] {
        let http = client(version);
        let health = http
            .get(format!("{}/healthz", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(health.version(), expected, "{version:?}: {health:?}");
        assert_eq!(health.status(), StatusCode::OK, "{version:?}: {health:?}");
        let me = http
            .get(format!("{}/v1/me", server.base))
            .bearer_auth(&server.tokens.viewer)
            .send()
            .await
            .unwrap();
        assert_eq!(me.version(), expected);
        let me: serde_json::Value = me.json().await.unwrap();
        assert_eq!(me["role"], "viewer", "{version:?}: {me}");
        // A stream: its first event is the run's start, from the journal.
        let mut stream = http
            .get(format!("{}/v1/runs/{run_id}/stream", server.base))
            .bearer_auth(&server.tokens.viewer)
            .send()
            .await
            .unwrap();
        assert_eq!(stream.version(), expected);
        assert_eq!(stream.status(), StatusCode::OK, "{version:?}: {stream:?}");
        let mut read = String::new();
        while !read.contains("\n\n") {
            let chunk = stream
                .chunk()
                .await
                .unwrap()
                .expect("the stream stays open");
            read.push_str(&String::from_utf8_lossy(&chunk));
        }
        assert!(
            read.contains("id: 1\n") && read.contains("run_started"),
            "{version:?}: {read}"
        );
    }
    server.shut_down().await;
}

#[tokio::test]
async fn a_stop_closes_idle_connections_and_refuses_new_ones() {
    let server = TestServer::start(0, Duration::ZERO).await;
    let base = server.base.clone();
    // Keep-alive connections left idle in each client's pool.
    let (h1, h2) = (client(HttpVersion::Http1), client(HttpVersion::Http2));
    for http in [&h1, &h2] {
        let health = http.get(format!("{base}/healthz")).send().await.unwrap();
        assert_eq!(health.status(), StatusCode::OK);
    }
    // `serve` returns: the idle connections were closed, not waited on.
    server.shut_down().await;
    for http in [&h1, &h2] {
        let refused = http.get(format!("{base}/healthz")).send().await;
        assert!(refused.is_err(), "served after the stop: {refused:?}");
    }
}

/// A stop ends the streams that follow runs still going (they would hold their connections for
/// as long as the runs last): each follower, HTTP/1.1 and HTTP/2, sees its stream end without
/// a terminal event (the sign to resume from its `Last-Event-ID` elsewhere), and the server
/// returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_ends_the_streams_of_runs_still_going() {
    let server = TestServer::start(0, Duration::ZERO).await;
    let run_id = server.start_run("pay the invoice").await;
    let mut streams = Vec::new();
    for version in [HttpVersion::Http1, HttpVersion::Http2] {
        let mut stream = client(version)
            .get(format!("{}/v1/runs/{run_id}/stream", server.base))
            .bearer_auth(&server.tokens.viewer)
            .send()
            .await
            .unwrap();
        assert_eq!(stream.status(), StatusCode::OK);
        // Read up to the first event: the stream has begun and caught up with the journal.
        let mut read = String::new();
        while !read.contains("\n\n") {
            let chunk = stream.chunk().await.unwrap().expect("the stream is open");
            read.push_str(&String::from_utf8_lossy(&chunk));
        }
        streams.push((version, stream, read));
    }
    // Generous bounds: without the stop ending them, neither would ever return.
    tokio::time::timeout(Duration::from_secs(60), server.shut_down())
        .await
        .expect("the server returns with streams open");
    for (version, mut stream, mut read) in streams {
        let ended = tokio::time::timeout(Duration::from_secs(60), async {
            while let Ok(Some(chunk)) = stream.chunk().await {
                read.push_str(&String::from_utf8_lossy(&chunk));
            }
        })
        .await;
        assert!(ended.is_ok(), "{version:?}: the stream did not end: {read}");
        assert!(read.contains("run_started"), "{version:?}: {read}");
        assert!(
            !read.contains("run_completed") && !read.contains("run_failed"),
            "{version:?}: the run had not ended: {read}"
        );
    }
}
