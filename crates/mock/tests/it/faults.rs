//! Every fault kind as a real HTTP client sees it, and determinism by seed.

use std::time::{Duration, Instant};

use chassis_mock::{FaultKind, MockConfig, MockHandle};
use serde_json::{Value, json};

use crate::{SCRIPT, client, client_with_timeout, post_chat, serve, user};

fn always(kind: FaultKind) -> MockConfig {
    MockConfig {
        fault_rate: 1.0,
        faults: vec![kind],
        ..MockConfig::default()
    }
}

async fn faulted(kind: FaultKind) -> (MockHandle, reqwest::Response) {
    let mock = serve(always(kind), SCRIPT).await;
    let response = post_chat(&client(), &mock, json!([user("hi")]))
        .await
        .expect("an HTTP response");
    (mock, response)
}

#[tokio::test]
async fn rate_limited_is_429_with_retry_after() {
    let config = MockConfig {
        retry_after_secs: 7,
        ..always(FaultKind::RateLimited)
    };
    let mock = serve(config, SCRIPT).await;
    let response = post_chat(&client(), &mock, json!([user("hi")]))
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "7");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert_eq!(mock.stats().faults["429"], 1);
    mock.shutdown().await;
}

#[tokio::test]
async fn server_error_is_500() {
    let (mock, response) = faulted(FaultKind::ServerError).await;
    assert_eq!(response.status(), 500);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "server_error");
    mock.shutdown().await;
}

#[tokio::test]
async fn unavailable_is_503() {
    let (mock, response) = faulted(FaultKind::Unavailable).await;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"]["message"].is_string());
    mock.shutdown().await;
}

#[tokio::test]
async fn hang_outlasts_the_client_timeout() {
    // A hang no test outlasts: shutdown returning at all shows it ended the hang.
    let config = MockConfig {
        hang: Duration::from_secs(24 * 60 * 60),
        ..always(FaultKind::Hang)
    };
    let mock = serve(config, SCRIPT).await;
    let client = client_with_timeout(Duration::from_millis(200));
    let err = post_chat(&client, &mock, json!([user("hi")]))
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(mock.stats().faults["hang"], 1);
    // Shutdown ends the pending hang instead of waiting it out.
    mock.shutdown().await;
}

#[tokio::test]
async fn hang_then_answers() {
    let config = MockConfig {
        hang: Duration::from_millis(50),
        ..always(FaultKind::Hang)
    };
    let mock = serve(config, SCRIPT).await;
    let response = post_chat(&client(), &mock, json!([user("hi")]))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    mock.shutdown().await;
}

#[tokio::test]
async fn cut_closes_the_connection_without_a_response() {
    let mock = serve(always(FaultKind::Cut), SCRIPT).await;
    let err = post_chat(&client(), &mock, json!([user("hi")]))
        .await
        .unwrap_err();
    assert!(err.status().is_none(), "{err:?}");
    assert!(!err.is_timeout(), "{err:?}");
    assert!(err.is_request(), "{err:?}");
    assert_eq!(mock.stats().faults["cut"], 1);
    mock.shutdown().await;
}

#[tokio::test]
async fn malformed_is_200_with_a_body_that_is_not_json() {
    let (mock, response) = faulted(FaultKind::Malformed).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(!text.is_empty());
    assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");
    mock.shutdown().await;
}

#[tokio::test]
async fn bad_args_is_a_tool_call_with_unparseable_arguments() {
    let (mock, response) = faulted(FaultKind::BadArgs).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
    let function = &body["choices"][0]["message"]["tool_calls"][0]["function"];
    // The catch-all scenario is text only, so the script's first tool is used.
    assert_eq!(function["name"], "read_file");
    let arguments = function["arguments"].as_str().unwrap();
    assert!(
        serde_json::from_str::<Value>(arguments).is_err(),
        "{arguments}"
    );
    mock.shutdown().await;
}

#[tokio::test]
async fn latency_delays_every_answer() {
    let config = MockConfig {
        latency: Duration::from_millis(150),
        ..MockConfig::default()
    };
    let mock = serve(config, SCRIPT).await;
    let started = Instant::now();
    let response = post_chat(&client(), &mock, json!([user("hi")]))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(150));
    mock.shutdown().await;
}

/// What a client observed for one request: a status, or a connection error.
async fn outcomes(seed: u64) -> (Vec<Option<u16>>, chassis_mock::Stats) {
    let config = MockConfig {
        seed,
        fault_rate: 0.5,
        hang: Duration::from_millis(20),
        ..MockConfig::default()
    };
    let mock = serve(config, SCRIPT).await;
    let client = client();
    let mut seen = Vec::new();
    for i in 0..20 {
        let input = format!("request {i}");
        let outcome = post_chat(&client, &mock, json!([user(&input)])).await;
        seen.push(outcome.ok().map(|r| r.status().as_u16()));
    }
    let stats = mock.stats();
    mock.shutdown().await;
    (seen, stats)
}

#[tokio::test]
async fn same_seed_same_faults() {
    let (first, first_stats) = outcomes(1234).await;
    let (second, second_stats) = outcomes(1234).await;
    assert_eq!(first, second);
    assert_eq!(first_stats, second_stats);
    let injected: u64 = first_stats.faults.values().sum();
    assert!(injected > 0 && injected < 20, "{first_stats:?}");

    let (other, other_stats) = outcomes(4321).await;
    assert!(other != first || other_stats.faults != first_stats.faults);
}
