//! The role × endpoint matrix: without a token every endpoint but `/healthz` answers 401; with
//! a token whose role is below the endpoint's, 403; from the endpoint's role up, the request
//! goes through (to a 404 for the unknown run asked about, so nothing changes).

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::util::TestServer;

/// The endpoints, the least role each needs, and a body (for the ones that take one).
fn matrix() -> Vec<(Method, &'static str, &'static str, Option<Value>)> {
    let run = "/v1/runs/run_nope";
    vec![
        (Method::GET, "/readyz", "viewer", None),
        (Method::GET, "/metrics", "viewer", None),
        (Method::GET, "/openapi.json", "viewer", None),
        (Method::GET, "/v1/me", "viewer", None),
        (Method::GET, "/v1/agents", "viewer", None),
        (Method::GET, "/v1/runs", "viewer", None),
        (Method::GET, "/v1/runs/run_nope", "viewer", None),
        (Method::GET, "/v1/runs/run_nope/events", "viewer", None),
        (Method::GET, "/v1/runs/run_nope/stream", "viewer", None),
        (Method::GET, "/v1/runs/run_nope/trace", "viewer", None),
        (Method::GET, "/v1/approvals", "viewer", None),
        (Method::GET, "/v1/stats", "viewer", None),
        (
            Method::POST,
            "/v1/runs",
            "operator",
            Some(json!({ "agent": "nobody", "input": "x" })),
        ),
        (
            Method::POST,
            leak(format!("{run}/resume")),
            "operator",
            Some(json!({})),
        ),
        (
            Method::POST,
            leak(format!("{run}/cancel")),
            "operator",
            Some(json!({ "reason": "r" })),
        ),
        (
            Method::POST,
            leak(format!("{run}/messages")),
            "operator",
            Some(json!({ "text": "and then?" })),
        ),
        (
            Method::POST,
            leak(format!("{run}/fork")),
            "operator",
            Some(json!({ "at": 1 })),
        ),
        (
            Method::POST,
            leak(format!("{run}/calls/1.0/approve")),
            "approver",
            Some(json!({})),
        ),
        (
            Method::POST,
            leak(format!("{run}/calls/1.0/reject")),
            "approver",
            Some(json!({ "reason": "r" })),
        ),
        (
            Method::POST,
            leak(format!("{run}/calls/1.0/resolve")),
            "approver",
            Some(json!({ "outcome": "retry" })),
        ),
        (
            Method::POST,
            leak(format!("{run}/limit/approve")),
            "approver",
            Some(json!({ "raise": { "max_steps": 3 } })),
        ),
        (
            Method::POST,
            leak(format!("{run}/limit/reject")),
            "approver",
            Some(json!({ "reason": "r" })),
        ),
        (Method::GET, "/v1/tokens", "admin", None),
        (Method::GET, "/v1/outbox", "admin", None),
        (Method::GET, "/v1/schedules", "viewer", None),
        (
            Method::POST,
            "/v1/schedules",
            "operator",
            Some(json!({ "agent": "nobody", "cron": "0 6 * * *", "input": "x" })),
        ),
        (Method::DELETE, "/v1/schedules/sch_nope", "operator", None),
        (
            Method::POST,
            "/v1/tokens",
            "admin",
            Some(json!({ "name": "bad name!", "role": "viewer" })),
        ),
        (Method::DELETE, "/v1/tokens/nobody", "admin", None),
        (Method::POST, "/v1/agents/reload", "admin", None),
    ]
}

fn leak(path: String) -> &'static str {
    Box::leak(path.into_boxed_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_checks_the_token_and_its_role() {
    let s = TestServer::start(0, Duration::ZERO).await;
    let roles = [
        ("viewer", s.tokens.viewer.clone()),
        ("operator", s.tokens.operator.clone()),
        ("approver", s.tokens.approver.clone()),
        ("admin", s.tokens.admin.clone()),
    ];
    let rank = |role: &str| roles.iter().position(|(r, _)| *r == role).unwrap();
    for (method, path, least, body) in matrix() {
        let (status, problem) = s.call(method.clone(), path, None, body.clone()).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{method} {path}: {problem}"
        );
        assert_eq!(problem["type"], "/problems/unauthorized");
        let (status, _) = s
            .call(method.clone(), path, Some("chs_not_a_token"), body.clone())
            .await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{method} {path} with a bad token"
        );
        for (role, token) in &roles {
            let (status, answer) = s
                .call(method.clone(), path, Some(token), body.clone())
                .await;
            if rank(role) < rank(least) {
                assert_eq!(
                    status,
                    StatusCode::FORBIDDEN,
                    "{method} {path} as {role}: {answer}"
                );
                assert_eq!(answer["type"], "/problems/forbidden");
            } else {
                assert!(
                    status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                    "{method} {path} as {role}: {status} {answer}"
                );
                assert!(
                    status.as_u16() < 500,
                    "{method} {path} as {role}: {status} {answer}"
                );
            }
        }
    }
    // Nothing was journaled by any of it.
    assert_eq!(s.get("/v1/runs").await["runs"], json!([]));
    let (status, _) = s.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK, "/healthz needs no token");
}

/// With `--cors ORIGIN`, that origin (and only it) gets the CORS headers, and its preflight is
/// answered without a token; without `--cors`, nobody gets them.
#[tokio::test]
async fn cors_answers_the_one_origin_it_was_given() {
    let origin = "https://app.example";
    let server = TestServer::start_with_cors(0, Duration::ZERO, Some(origin.into())).await;
    let request = |method: Method, from: &str| {
        server
            .http
            .request(method, format!("{}/v1/me", server.base))
            .header("Origin", from)
    };
    let preflight = request(Method::OPTIONS, origin).send().await.unwrap();
    assert_eq!(preflight.status(), StatusCode::NO_CONTENT);
    assert_eq!(preflight.headers()["access-control-allow-origin"], origin);
    assert!(
        preflight.headers()["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("authorization")
    );
    let allowed = request(Method::GET, origin)
        .bearer_auth(&server.tokens.viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), StatusCode::OK);
    assert_eq!(allowed.headers()["access-control-allow-origin"], origin);
    let other = request(Method::GET, "https://evil.example")
        .bearer_auth(&server.tokens.viewer)
        .send()
        .await
        .unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    let other_preflight = request(Method::OPTIONS, "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_ne!(other_preflight.status(), StatusCode::NO_CONTENT);

    let closed = TestServer::start(0, Duration::ZERO).await;
    let response = closed
        .http
        .get(format!("{}/v1/me", closed.base))
        .header("Origin", origin)
        .bearer_auth(&closed.tokens.viewer)
        .send()
        .await
        .unwrap();
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

/// A token in the query string is not a credential: URLs end up in logs and histories.
#[tokio::test]
async fn a_token_in_the_url_is_refused() {
    let server = TestServer::start(0, Duration::ZERO).await;
    let token = &server.tokens.admin;
    let (status, _) = server
        .call(
            Method::GET,
            &format!("/v1/me?access_token={token}"),
            None,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = server.call(Method::GET, "/v1/me", Some(token), None).await;
    assert_eq!(status, StatusCode::OK);
}
