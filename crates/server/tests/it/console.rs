//! The console's pages: served without a token, with the types a browser needs and a policy
//! that lets only their own script run; and the script calls nothing but the public API.

use std::time::Duration;

use reqwest::StatusCode;

use crate::util::TestServer;

/// GETs `path` with no token; returns the status, the content type, the body and the headers.
async fn fetch(
    server: &TestServer,
    path: &str,
) -> (StatusCode, String, String, reqwest::header::HeaderMap) {
    let response = server
        .http
        .get(format!("{}{path}", server.base))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let content_type = headers
        .get(reqwest::header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (
        status,
        content_type,
        response.text().await.unwrap(),
        headers,
    )
}

#[tokio::test]
async fn the_page_and_its_assets_are_served_with_their_types() {
    let server = TestServer::start(0, Duration::ZERO).await;
    let (status, content_type, page, headers) = fetch(&server, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "text/html; charset=utf-8");
    let policy = headers["content-security-policy"].to_str().unwrap();
    assert!(policy.contains("script-src 'self'"), "{policy}");
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    assert_eq!(headers["referrer-policy"], "no-referrer");

    // Every asset the page links is served, with its type.
    let linked: Vec<&str> = page
        .split(['"', '\''])
        .filter(|part| part.starts_with("/console/"))
        .collect();
    assert_eq!(linked.len(), 3, "{linked:?}");
    for path in linked {
        let (status, content_type, body, headers) = fetch(&server, path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        let expected = match path.rsplit('.').next().unwrap() {
            "js" => "text/javascript; charset=utf-8",
            "css" => "text/css; charset=utf-8",
            "svg" => "image/svg+xml",
            other => panic!("{path}: an asset of unexpected kind {other}"),
        };
        assert_eq!(content_type, expected, "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert!(!body.is_empty(), "{path}");
    }
    let (_, _, script, _) = fetch(&server, chassis_server::console::SCRIPT_PATH).await;
    assert_eq!(script, chassis_server::console::SCRIPT);
    assert_eq!(
        fetch(&server, "/console/nothing.js").await.0,
        StatusCode::NOT_FOUND
    );
}

/// Each `/v1/…` path the script builds (`${…}` for a parameter) is, segment by segment, the
/// start of a path the OpenAPI document describes: the console uses the public API only.
#[tokio::test]
async fn the_script_calls_only_documented_endpoints() {
    let server = TestServer::start(0, Duration::ZERO).await;
    let document = server.get("/openapi.json").await;
    let documented: Vec<Vec<String>> = document["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(|path| segments(path, '{', '}'))
        .collect();
    let script = chassis_server::console::SCRIPT;
    let mut used = 0;
    for (at, _) in script.match_indices("/v1/") {
        let rest = &script[at..];
        let end = rest
            .find(|c: char| c == '\'' || c == '"' || c == '`' || c == '?' || c.is_whitespace())
            .unwrap_or(rest.len());
        let path = &rest[..end];
        let wanted = segments(path, '$', '}');
        assert!(
            documented
                .iter()
                .any(|d| d.len() >= wanted.len() && d[..wanted.len()] == wanted[..]),
            "the console calls {path}, which /openapi.json does not describe"
        );
        used += 1;
    }
    assert!(used >= 10, "only {used} API paths found in the script");
    // The token never travels in a URL: streams are read with fetch and a header.
    assert!(!script.contains("access_token"));
    assert!(!script.contains("EventSource("));
}

/// A path's segments, each parameter (from `open` to `close`) as `{}`.
fn segments(path: &str, open: char, close: char) -> Vec<String> {
    path.trim_end_matches('/')
        .split('/')
        .map(|segment| {
            if segment.starts_with(open) && segment.ends_with(close) {
                "{}".to_string()
            } else {
                segment.to_string()
            }
        })
        .collect()
}
