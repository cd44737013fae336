//! Redirect checks that need a "public" server: here 127.0.0.2 counts as public, so a test
//! server on it can redirect to addresses the real rules refuse.

use std::net::IpAddr;

use axum::Router;
use axum::http::header::LOCATION;
use axum::response::IntoResponse;
use axum::routing::get;
use chassis_core::spec::DEFAULT_HTTP_MAX_BYTES;

use super::*;

fn ctx() -> CallContext {
    CallContext {
        run_id: "r".into(),
        call_id: "c".into(),
        idempotency_key: "k".into(),
        began: tokio::time::Instant::now(),
        progress: Default::default(),
    }
}

/// The real rules, except that 127.0.0.2 is public.
fn pretend_public(ip: IpAddr) -> Option<&'static str> {
    if ip == IpAddr::from([127, 0, 0, 2]) {
        None
    } else {
        policy::classify(ip)
    }
}

/// Serves `/ok` and `/to?url` (a 302 to `url`) on 127.0.0.2; gives its base URL.
async fn public_server() -> String {
    let app = Router::new().route("/ok", get(|| async { "fine" })).route(
        "/to",
        get(|query: axum::extract::RawQuery| async move {
            (StatusCode::FOUND, [(LOCATION, query.0.unwrap_or_default())]).into_response()
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn get_tool() -> Arc<dyn Tool> {
    let spec = HttpToolSpec {
        allow_hosts: vec!["127.0.0.2".into(), "127.0.0.1".into(), "localhost".into()],
        allow_private: false,
        only: Some(vec!["http_get".into()]),
        timeout: Duration::from_secs(10),
        max_bytes: DEFAULT_HTTP_MAX_BYTES,
        post_risk: RiskClass::Irreversible,
    };
    tools_with(&spec, pretend_public).remove(0)
}

#[tokio::test]
async fn a_public_host_is_reached_without_allow_private() {
    let base = public_server().await;
    let out = get_tool()
        .call(json!({"url": format!("{base}/ok")}), &ctx())
        .await
        .unwrap();
    assert_eq!(out, "HTTP 200 OK\ntext/plain; charset=utf-8\n\nfine");
}

#[tokio::test]
async fn a_redirect_to_loopback_is_refused() {
    let base = public_server().await;
    let tool = get_tool();
    let e = tool
        .call(
            json!({"url": format!("{base}/to?http://127.0.0.1:9/")}),
            &ctx(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        e.message(),
        "`127.0.0.1` is a loopback address; set allow_private = true to allow it"
    );
    let e = tool
        .call(
            json!({"url": format!("{base}/to?http://localhost:9/")}),
            &ctx(),
        )
        .await
        .unwrap_err();
    assert!(
        e.message().starts_with("`localhost` resolves to ")
            && e.message()
                .ends_with("a loopback address; set allow_private = true to allow it"),
        "{e}"
    );
    // Relative locations are resolved against the hop that sent them.
    let out = tool
        .call(json!({"url": format!("{base}/to?/ok")}), &ctx())
        .await
        .unwrap();
    assert!(out.ends_with("\n\nfine"), "{out}");
}
