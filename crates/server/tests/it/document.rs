//! `/openapi.json` as served describes what the server answers (what schemathesis checks in
//! `.ci/python.sh`, kept here as tests of each thing it found): errors are
//! `application/problem+json`, a refused parameter is a documented 400, links name real
//! operations, the stream's events follow their schema, and parameters stay within `int64`.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::streams::read_stream;
use crate::util::TestServer;

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Every operation of the document: (method, path, operation).
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            if let Some(operation) = item.get(method) {
                out.push((method.to_string(), path.clone(), operation.clone()));
            }
        }
    }
    out
}

/// The `Problem` responses were documented as `application/json`, so a client or schemathesis
/// reading `application/problem+json` found an undocumented content type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_is_documented_and_answered_as_problem_json() {
    let s = TestServer::start(1, Duration::ZERO).await;
    let doc = s.get("/openapi.json").await;
    let problem = Value::String("#/components/schemas/Problem".into());
    let mut errors = 0;
    for (method, path, operation) in operations(&doc) {
        for (status, response) in operation["responses"].as_object().unwrap() {
            let content = response["content"].as_object().cloned().unwrap_or_default();
            for (media, body) in &content {
                if body["schema"]["$ref"] == problem {
                    assert_eq!(
                        media, "application/problem+json",
                        "{method} {path} {status}"
                    );
                    errors += 1;
                }
            }
            if status.starts_with('4') || status.starts_with('5') {
                assert!(
                    content.contains_key("application/problem+json"),
                    "{method} {path} {status} is not a problem: {response}"
                );
            }
        }
    }
    assert!(errors > 50, "only {errors} error responses documented");
    let response = s
        .http
        .get(format!("{}/v1/runs/run_nope", s.base))
        .bearer_auth(&s.tokens.viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
}

/// `GET /v1/runs/{id}/events` refused a bad `after` with a 400 it did not document.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_that_reads_parameters_or_a_body_documents_400() {
    let s = TestServer::start(1, Duration::ZERO).await;
    let doc = s.get("/openapi.json").await;
    for (method, path, operation) in operations(&doc) {
        let reads = operation["requestBody"].is_object()
            || operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p["in"] != "path");
        if reads {
            assert!(
                operation["responses"]["400"].is_object(),
                "{method} {path} reads a query, header or body but documents no 400"
            );
        }
    }
    let run = s.start_run("talk to me").await;
    let (status, problem) = s
        .call(
            Method::GET,
            &format!("/v1/runs/{run}/events?after=-1"),
            Some(&s.tokens.viewer),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
}

/// utoipa writes a link's fields in snake case (`operation_id`), which no OpenAPI tool reads:
/// the document as served uses the spec's `operationId`, and each names an operation of the
/// document and its parameters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_name_operations_of_the_document() {
    let s = TestServer::start(1, Duration::ZERO).await;
    let doc = s.get("/openapi.json").await;
    let all = operations(&doc);
    let mut links = 0;
    for (method, path, operation) in &all {
        for response in operation["responses"].as_object().unwrap().values() {
            for (name, link) in response["links"].as_object().into_iter().flatten() {
                links += 1;
                assert!(
                    link.get("operation_id").is_none() && link.get("request_body").is_none(),
                    "{method} {path} link {name} in snake case: {link}"
                );
                let id = link["operationId"].as_str().unwrap();
                let (_, _, target) = all
                    .iter()
                    .find(|(_, _, o)| o["operationId"] == id)
                    .unwrap_or_else(|| panic!("link {name} names no operation: {id}"));
                let params: BTreeSet<&str> = target["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p["name"].as_str())
                    .collect();
                for param in link["parameters"].as_object().unwrap().keys() {
                    assert!(params.contains(param.as_str()), "{id} has no `{param}`");
                }
            }
        }
    }
    assert!(links >= 10, "only {links} links");
}

/// The document gives sequence numbers as `int64` and page sizes as unbounded integers; the
/// server read them as `u64` and took `after=2^63`, which the document does not allow, and
/// refused `limit=10^38`, which it does. Every integer parameter is now an `int64`, and one
/// above is refused, naming the parameter; `i64::MAX` itself is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameters_above_int64_are_refused() {
    let s = TestServer::start(1, Duration::ZERO).await;
    let doc = s.get("/openapi.json").await;
    for (method, path, operation) in operations(&doc) {
        for param in operation["parameters"].as_array().into_iter().flatten() {
            if param["schema"]["type"] == "integer" {
                assert_eq!(
                    param["schema"]["format"], "int64",
                    "{method} {path} {}: an integer without bounds",
                    param["name"]
                );
            }
        }
    }
    let run = s.start_run("talk to me").await;
    s.until_status(&run, &["completed"]).await;
    let too_big = 1u64 << 63;
    for (path, field) in [
        (format!("/v1/runs/{run}/events?after={too_big}"), "after"),
        (format!("/v1/runs/{run}/events?limit={too_big}"), "limit"),
        (format!("/v1/runs/{run}/stream?after={too_big}"), "after"),
        (format!("/v1/runs?limit={too_big}"), "limit"),
    ] {
        let (status, problem) = s
            .call(Method::GET, &path, Some(&s.tokens.viewer), None)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {problem}");
        assert_eq!(problem["field"], field, "{path}");
    }
    let response = s
        .http
        .get(format!("{}/v1/runs/{run}/stream", s.base))
        .bearer_auth(&s.tokens.viewer)
        .header("Last-Event-ID", too_big.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let page = s
        .get(&format!("/v1/runs/{run}/events?after={}", i64::MAX))
        .await;
    assert_eq!(page["events"], Value::Array(Vec::new()));
}

/// The stream's 200 was documented as a string, so each event (what an SSE client reads) did
/// not match it; now each is a `StreamEvent`, and every event of a real stream matches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_events_match_their_documented_schema() {
    let s = TestServer::start(2, Duration::from_millis(100)).await;
    let doc = s.get("/openapi.json").await;
    let documented = &doc["paths"]["/v1/runs/{id}/stream"]["get"]["responses"]["200"]["content"]["text/event-stream"]
        ["schema"]["$ref"];
    assert_eq!(documented, "#/components/schemas/StreamEvent");
    let schema = &doc["components"]["schemas"]["StreamEvent"];
    let required: BTreeSet<&str> = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(required, BTreeSet::from(["event", "data"]));
    let kinds: BTreeSet<&str> = doc["components"]["schemas"]["StreamEventKind"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();

    let run = s.start_run("talk to me").await;
    let got = read_stream(&s, &format!("/v1/runs/{run}/stream"), None, |_| false).await;
    assert!(got.iter().any(|r| r.event == "delta"), "{got:?}");
    for received in &got {
        assert!(kinds.contains(received.event.as_str()), "{received:?}");
        assert!(!received.data.is_null(), "{received:?}");
        assert_eq!(
            received.id.is_some(),
            received.event == "event",
            "{received:?}"
        );
    }
}
