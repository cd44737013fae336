use axum::Router;
use axum::extract::RawQuery;
use axum::http::header::{CONTENT_TYPE, LOCATION};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{any, get as route_get};
use chassis_core::spec::HttpToolSpec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

/// A test server on 127.0.0.1; gives its base URL.
async fn server() -> String {
    let redirect = |status: StatusCode| {
        move |query: RawQuery| async move {
            (status, [(LOCATION, query.0.unwrap_or_default())]).into_response()
        }
    };
    let app = Router::new()
        .route("/hello", route_get(|| async { "hello" }))
        .route(
            "/missing",
            route_get(|| async { (StatusCode::NOT_FOUND, "no such page") }),
        )
        .route(
            "/echo",
            any(
                |method: Method, headers: HeaderMap, body: String| async move {
                    let header = |name: &str| {
                        headers
                            .get(name)
                            .map(|v| v.to_str().unwrap().to_string())
                            .unwrap_or_default()
                    };
                    format!(
                        "{method} [{}] [{}] [{}] {body}",
                        header("content-type"),
                        header("x-test"),
                        header("authorization")
                    )
                },
            ),
        )
        .route("/found", any(redirect(StatusCode::FOUND)))
        .route("/see-other", any(redirect(StatusCode::SEE_OTHER)))
        .route("/temporary", any(redirect(StatusCode::TEMPORARY_REDIRECT)))
        .route(
            "/loop",
            route_get(|| async { (StatusCode::FOUND, [(LOCATION, "/loop")]) }),
        )
        .route("/big", route_get(|| async { "x".repeat(5000) }))
        .route(
            "/slow",
            route_get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "late"
            }),
        )
        .route(
            "/latin1",
            route_get(|| async { ([(CONTENT_TYPE, "text/plain")], vec![b'c', b'a', b'f', 0xe9]) }),
        )
        .route(
            "/binary",
            route_get(|| async { ([(CONTENT_TYPE, "image/png")], vec![0x89, b'P', 0, 0xff]) }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// A server that sends a chunked body that never ends, with no length announced.
async fn endless_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                // Answer once the request head has arrived, as a real server would.
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n";
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = format!("400\r\n{}\r\n", "y".repeat(0x400));
                while socket.write_all(chunk.as_bytes()).await.is_ok() {}
            });
        }
    });
    format!("http://{addr}")
}

fn spec(allow_private: bool) -> HttpToolSpec {
    HttpToolSpec {
        allow_hosts: vec!["127.0.0.1".into(), "localhost".into()],
        allow_private,
        only: None,
        timeout: Duration::from_secs(10),
        max_bytes: 1000,
        post_risk: RiskClass::Irreversible,
    }
}

async fn toolbox(spec: HttpToolSpec) -> Toolbox {
    build(&[ToolSpec::Http(spec)], Path::new("."))
        .await
        .unwrap()
}

async fn get(toolbox: &Toolbox, url: &str) -> Result<String, ToolError> {
    call(toolbox, "http_get", json!({"url": url})).await
}

#[tokio::test]
async fn defs_are_strict_and_post_is_irreversible_by_default() {
    let defs = toolbox(spec(false)).await.defs();
    let summary: Vec<(&str, RiskClass)> = defs.iter().map(|d| (d.name.as_str(), d.risk)).collect();
    assert_eq!(
        summary,
        [
            ("http_get", RiskClass::ReadOnly),
            ("http_post", RiskClass::Irreversible)
        ]
    );
    for def in &defs {
        assert_eq!(def.parameters["additionalProperties"], false);
        assert_eq!(def.parameters["properties"]["url"]["maxLength"], 2048);
        assert!(
            def.description.contains("127.0.0.1, localhost"),
            "{}",
            def.description
        );
    }
    let reversible = toolbox(HttpToolSpec {
        post_risk: RiskClass::Reversible,
        only: Some(vec!["http_post".into()]),
        ..spec(false)
    })
    .await;
    assert_eq!(reversible.defs()[0].name, "http_post");
    assert_eq!(reversible.defs()[0].risk, RiskClass::Reversible);
}

#[tokio::test]
async fn hostile_arguments_are_refused_before_anything_runs() {
    let toolbox = toolbox(spec(true)).await;
    let long = format!("http://127.0.0.1/{}", "a".repeat(3000));
    // The offending value is echoed back cut short, so the refusal stays small.
    let e = refusal(&toolbox, "http_get", &json!({"url": long}).to_string());
    assert!(
        e.starts_with(
            "arguments for `http_get` do not match its schema: /url: \"http://127.0.0.1/aaa"
        ) && e.len() < 600,
        "{e}"
    );
    let e = refusal(&toolbox, "http_get", r#"{"url": 5}"#);
    assert_eq!(
        e,
        r#"arguments for `http_get` do not match its schema: /url: 5 is not of type "string""#
    );
    let e = refusal(&toolbox, "http_get", r#"{"url": "ftp://127.0.0.1/x"}"#);
    assert!(
        e.contains("does not match \"^[Hh][Tt][Tt][Pp][Ss]?://\""),
        "{e}"
    );
    let e = refusal(
        &toolbox,
        "http_get",
        r#"{"url": "http://127.0.0.1/", "method": "DELETE"}"#,
    );
    assert!(e.contains("Additional properties are not allowed"), "{e}");
    let e = refusal(
        &toolbox,
        "http_get",
        r#"{"url": "http://127.0.0.1/", "headers": {"X-A": 1}}"#,
    );
    assert!(
        e.contains("/headers/X-A: 1 is not of type \"string\""),
        "{e}"
    );
    let e = refusal(&toolbox, "http_post", r#"{"url": "http://127.0.0.1/"}"#);
    assert!(e.contains("\"body\" is a required property"), "{e}");
    let too_long =
        json!({"url": "http://127.0.0.1/", "body": "b".repeat(2 * 1024 * 1024)}).to_string();
    let e = refusal(&toolbox, "http_post", &too_long);
    assert!(
        e.starts_with("arguments for `http_post` are 2097189 bytes, more than the 1048576"),
        "{e}"
    );
    // Past a larger bound on arguments, the schema's own limit on the body still holds.
    let toolbox = toolbox.with_bounds(chassis_core::spec::ToolBounds {
        max_args_bytes: 4 * 1024 * 1024,
        max_result_bytes: 1024 * 1024,
    });
    let e = refusal(&toolbox, "http_post", &too_long);
    assert!(
        e.starts_with("arguments for `http_post` do not match its schema: /body: \"bbb")
            && e.len() < 600,
        "{e}"
    );
    let e = call(
        &toolbox,
        "http_get",
        json!({"url": "http://127.0.0.1/", "headers": {"Host": "evil.com"}}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.message(), "header `Host` cannot be set");
}

#[tokio::test]
async fn private_addresses_are_refused_by_default() {
    let base = server().await;
    let toolbox = toolbox(spec(false)).await;
    let e = get(&toolbox, &format!("{base}/hello")).await.unwrap_err();
    assert_eq!(
        e.message(),
        "`127.0.0.1` is a loopback address; set allow_private = true to allow it"
    );
    let port = base.rsplit(':').next().unwrap();
    let e = get(&toolbox, &format!("http://localhost:{port}/hello"))
        .await
        .unwrap_err();
    assert!(
        e.message().starts_with("`localhost` resolves to ")
            && e.message()
                .ends_with(", a loopback address; set allow_private = true to allow it"),
        "{e}"
    );
}

#[tokio::test]
async fn hosts_outside_the_allowlist_are_refused() {
    let toolbox = toolbox(spec(true)).await;
    let e = get(&toolbox, "https://evil.com/x").await.unwrap_err();
    assert_eq!(e.message(), "host `evil.com` is not in allow_hosts");
    let e = get(&toolbox, "http://127.0.0.2/x").await.unwrap_err();
    assert_eq!(e.message(), "host `127.0.0.2` is not in allow_hosts");
}

#[tokio::test]
async fn get_returns_status_type_and_body() {
    let base = server().await;
    let toolbox = toolbox(spec(true)).await;
    assert_eq!(
        get(&toolbox, &format!("{base}/hello")).await.unwrap(),
        "HTTP 200 OK\ntext/plain; charset=utf-8\n\nhello"
    );
    // An error status is a result the model reads, not a failed call.
    assert_eq!(
        get(&toolbox, &format!("{base}/missing")).await.unwrap(),
        "HTTP 404 Not Found\ntext/plain; charset=utf-8\n\nno such page"
    );
    let port = base.rsplit(':').next().unwrap();
    let out = get(&toolbox, &format!("http://localhost:{port}/hello"))
        .await
        .unwrap();
    assert!(out.ends_with("\n\nhello"), "{out}");
}

#[tokio::test]
async fn post_sends_text_or_json_with_headers() {
    let base = server().await;
    let toolbox = toolbox(spec(true)).await;
    let url = format!("{base}/echo");
    let out = call(
        &toolbox,
        "http_post",
        json!({"url": url, "body": {"amount": 5}, "headers": {"X-Test": "yes"}}),
    )
    .await
    .unwrap();
    assert_eq!(
        out,
        "HTTP 200 OK\ntext/plain; charset=utf-8\n\nPOST [application/json] [yes] [] {\"amount\":5}"
    );
    let out = call(
        &toolbox,
        "http_post",
        json!({"url": url, "body": "plain words"}),
    )
    .await
    .unwrap();
    assert!(
        out.ends_with("POST [text/plain; charset=utf-8] [] [] plain words"),
        "{out}"
    );
}

#[tokio::test]
async fn redirects_are_followed_and_checked_at_every_hop() {
    let base = server().await;
    let toolbox = toolbox(spec(true)).await;
    let out = get(&toolbox, &format!("{base}/found?/hello"))
        .await
        .unwrap();
    assert_eq!(out, "HTTP 200 OK\ntext/plain; charset=utf-8\n\nhello");
    let e = get(
        &toolbox,
        &format!("{base}/found?https://evil.example/steal"),
    )
    .await
    .unwrap_err();
    assert_eq!(e.message(), "host `evil.example` is not in allow_hosts");
    let e = get(&toolbox, &format!("{base}/found?file:///etc/passwd"))
        .await
        .unwrap_err();
    assert_eq!(
        e.message(),
        "only http and https URLs are allowed, not `file:`"
    );
    let e = get(&toolbox, &format!("{base}/loop")).await.unwrap_err();
    assert_eq!(
        e.message(),
        "too many redirects (more than 5), the last from `127.0.0.1`"
    );

    // 303 turns a POST into a GET without a body; 307 repeats it.
    let post = |path: &str| {
        let toolbox = &toolbox;
        let url = format!("{base}{path}");
        async move {
            call(
                toolbox,
                "http_post",
                json!({"url": url, "body": "b", "headers": {"Authorization": "secret"}}),
            )
            .await
            .unwrap()
        }
    };
    let out = post("/see-other?/echo").await;
    assert!(out.ends_with("\n\nGET [] [] [secret] "), "{out}");
    let out = post("/temporary?/echo").await;
    assert!(
        out.ends_with("\n\nPOST [text/plain; charset=utf-8] [] [secret] b"),
        "{out}"
    );
    // Credentials are not carried to another host.
    let port = base.rsplit(':').next().unwrap();
    let out = post(&format!("/temporary?http://localhost:{port}/echo")).await;
    assert!(
        out.ends_with("\n\nPOST [text/plain; charset=utf-8] [] [] b"),
        "{out}"
    );
}

#[tokio::test]
async fn bodies_over_max_bytes_are_refused() {
    let base = server().await;
    let toolbox = toolbox(spec(true)).await;
    let e = get(&toolbox, &format!("{base}/big")).await.unwrap_err();
    assert_eq!(
        e.message(),
        "the response from `127.0.0.1` is larger than max_bytes (1000 bytes)"
    );
    // Without a length announced, reading stops once the limit is passed.
    let endless = endless_server().await;
    // The body never ends: only the limit can end the call.
    let e = get(&toolbox, &format!("{endless}/")).await.unwrap_err();
    assert_eq!(
        e.message(),
        "the response from `127.0.0.1` is larger than max_bytes (1000 bytes)"
    );
}

#[tokio::test]
async fn a_slow_server_times_out() {
    let base = server().await;
    let toolbox = toolbox(HttpToolSpec {
        timeout: Duration::from_secs(1),
        ..spec(true)
    })
    .await;
    let e = get(&toolbox, &format!("{base}/slow")).await.unwrap_err();
    assert_eq!(e.message(), "request to `127.0.0.1` timed out after 1s");
}

#[tokio::test]
async fn bodies_that_are_not_utf8_are_noted_or_refused() {
    let base = server().await;
    let toolbox = toolbox(spec(true)).await;
    assert_eq!(
        get(&toolbox, &format!("{base}/latin1")).await.unwrap(),
        "HTTP 200 OK\ntext/plain\n\n(the body is not valid UTF-8; invalid bytes are shown as \
         U+FFFD)\ncaf\u{fffd}"
    );
    let e = get(&toolbox, &format!("{base}/binary")).await.unwrap_err();
    assert_eq!(
        e.message(),
        "the response from `127.0.0.1` is binary (4 bytes of image/png), not text"
    );
}

#[tokio::test]
async fn a_refused_connection_names_the_host() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let toolbox = toolbox(spec(true)).await;
    let e = get(&toolbox, &format!("http://127.0.0.1:{port}/"))
        .await
        .unwrap_err();
    assert!(
        e.message()
            .starts_with("request to `127.0.0.1` failed: could not connect"),
        "{e}"
    );
}
