//! MCP servers that need credentials: a streamable-HTTP server (the test server behind a
//! bearer-token check) and a small OAuth authorization server with a client-credentials token
//! endpoint, both in this process. The variables the spec names are given through
//! `Toolbox::from_specs_with_env`, since this process's environment cannot be changed safely.

use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chassis_core::spec::{HeaderValue, McpServerSpec, McpTransport, OAuthSpec};

use super::*;
use crate::mcp_server;

const TOKEN: &str = "billing-token-5a1f0c9e7d3b";
const CLIENT_ID: &str = "crm-client";
const SECRET: &str = "crm-secret-77c2e4a9b1f0";

/// What the server accepts, and what it and the token endpoint saw.
#[derive(Default)]
struct Seen {
    /// `Authorization` values the MCP endpoint accepts besides the issued tokens.
    accepted: Vec<String>,
    /// Issued tokens numbered below this are refused (revoked).
    revoked_below: usize,
    /// Refuse every request, whatever its token.
    refuse_all: bool,
    /// Answer requests with an accepted token 403, as a server does for a token without the
    /// scope a tool needs.
    forbidden: bool,
    /// `Authorization` and `X-Tenant` of each request to the MCP endpoint.
    requests: Vec<(Option<String>, Option<String>)>,
    /// `Authorization` and body of each request to the token endpoint.
    token_requests: Vec<(Option<String>, String)>,
    /// Tokens issued so far.
    issued: usize,
    /// The lifetime of the tokens issued.
    expires_in: u64,
}

#[derive(Clone)]
struct Fixture {
    base: String,
    seen: Arc<Mutex<Seen>>,
}

impl Fixture {
    /// The MCP server at `/mcp`, its resource metadata, and an authorization server at `/auth`.
    async fn start() -> Fixture {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let fixture = Fixture {
            base,
            seen: Arc::new(Mutex::new(Seen {
                expires_in: 3600,
                ..Seen::default()
            })),
        };
        let mcp = axum::Router::new()
            .nest_service("/mcp", mcp_server::service())
            .layer(axum::middleware::from_fn_with_state(fixture.clone(), guard));
        let app = axum::Router::new()
            .route(
                "/.well-known/oauth-protected-resource/mcp",
                axum::routing::get(resource_metadata),
            )
            .route(
                "/.well-known/oauth-authorization-server/auth",
                axum::routing::get(server_metadata),
            )
            .route("/auth/token", axum::routing::post(token))
            .with_state(fixture.clone())
            .merge(mcp);
        tokio::spawn(async move { axum::serve(listener, app).await });
        fixture
    }

    fn url(&self) -> String {
        format!("{}/mcp", self.base)
    }

    fn seen<T>(&self, f: impl FnOnce(&mut Seen) -> T) -> T {
        f(&mut self.seen.lock().unwrap())
    }
}

fn issued_token(n: usize) -> String {
    format!("issued-token-{n}-0f1e2d3c4b5a")
}

async fn guard(State(fx): State<Fixture>, request: Request, next: Next) -> Response {
    // Owned, so that no borrow of the request (whose body is not `Sync`) lives across `await`.
    let (authorization, tenant) = {
        let header = |name: &str| -> Option<String> {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        (header("authorization"), header("x-tenant"))
    };
    let accepted = fx.seen(|seen| {
        seen.requests.push((authorization.clone(), tenant));
        let issued = (seen.revoked_below..=seen.issued)
            .filter(|n| *n > 0)
            .any(|n| authorization.as_deref() == Some(&format!("Bearer {}", issued_token(n))));
        !seen.refuse_all
            && (issued
                || authorization
                    .as_ref()
                    .is_some_and(|a| seen.accepted.contains(a)))
    });
    if accepted && fx.seen(|seen| seen.forbidden) {
        let challenge = "Bearer error=\"insufficient_scope\", scope=\"billing:write\"";
        return (
            StatusCode::FORBIDDEN,
            [("www-authenticate", challenge)],
            "not with that token",
        )
            .into_response();
    }
    if accepted {
        return next.run(request).await;
    }
    let challenge = format!(
        "Bearer error=\"invalid_token\", resource_metadata=\"{}/.well-known/oauth-protected-resource/mcp\"",
        fx.base
    );
    (
        StatusCode::UNAUTHORIZED,
        [("www-authenticate", challenge)],
        "who are you?",
    )
        .into_response()
}

async fn resource_metadata(State(fx): State<Fixture>) -> Response {
    axum::Json(json!({
        "resource": fx.url(),
        "authorization_servers": [format!("{}/auth", fx.base)],
    }))
    .into_response()
}

async fn server_metadata(State(fx): State<Fixture>) -> Response {
    axum::Json(json!({
        "issuer": format!("{}/auth", fx.base),
        "token_endpoint": format!("{}/auth/token", fx.base),
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic"],
    }))
    .into_response()
}

async fn token(State(fx): State<Fixture>, headers: HeaderMap, body: String) -> Response {
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let expected = format!("Basic {}", base64(&format!("{CLIENT_ID}:{SECRET}")));
    fx.seen(|seen| {
        seen.token_requests
            .push((authorization.clone(), body.clone()));
        if authorization.as_deref() != Some(expected.as_str()) {
            // A careless server that echoes what it was sent.
            let sent = authorization.clone().unwrap_or_default();
            return (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({
                    "error": "invalid_client",
                    "error_description": format!("bad client authentication: {sent}"),
                })),
            )
                .into_response();
        }
        seen.issued += 1;
        axum::Json(json!({
            "access_token": issued_token(seen.issued),
            "token_type": "Bearer",
            "expires_in": seen.expires_in,
        }))
        .into_response()
    })
}

fn base64(text: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in text.as_bytes().chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn headers(pairs: &[(&str, &str)]) -> BTreeMap<String, HeaderValue> {
    pairs
        .iter()
        .map(|(name, value)| (name.to_string(), HeaderValue::parse(value, "h").unwrap()))
        .collect()
}

fn server(
    url: String,
    headers: BTreeMap<String, HeaderValue>,
    oauth: Option<OAuthSpec>,
) -> McpServerSpec {
    McpServerSpec {
        transport: McpTransport::Http {
            url,
            headers,
            oauth,
        },
        trusted: true,
        timeout: Duration::from_secs(20),
        idle_timeout: None,
    }
}

fn oauth(token_url: Option<String>) -> OAuthSpec {
    OAuthSpec {
        client_id_env: "CRM_CLIENT_ID".into(),
        client_secret_env: "CRM_CLIENT_SECRET".into(),
        token_url,
        scope: Some("crm:read".into()),
    }
}

/// The toolbox of server `name`, the variables taken from `env`.
async fn load(
    name: &str,
    spec: McpServerSpec,
    env: &[(&str, &str)],
) -> Result<Toolbox, chassis_tools::Error> {
    let env: BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let entry = ToolSpec::Mcp {
        server: name.into(),
        only: Some(vec!["echo".into(), "whoami".into()]),
        risk: Default::default(),
    };
    let servers = BTreeMap::from([(name.to_string(), spec)]);
    Toolbox::from_specs_with_env(&[entry], &servers, &std::env::temp_dir(), &|var| {
        env.get(var).cloned()
    })
    .await
}

const CRM_ENV: [(&str, &str); 2] = [("CRM_CLIENT_ID", CLIENT_ID), ("CRM_CLIENT_SECRET", SECRET)];

#[tokio::test]
async fn headers_take_their_secrets_from_the_environment() {
    let fx = Fixture::start().await;
    fx.seen(|s| s.accepted.push(format!("Bearer {TOKEN}")));
    let spec = server(
        fx.url(),
        headers(&[
            ("Authorization", "Bearer ${env:BILLING_TOKEN}"),
            ("X-Tenant", "acme"),
        ]),
        None,
    );
    let toolbox = load("billing", spec, &[("BILLING_TOKEN", TOKEN)])
        .await
        .unwrap();
    assert_eq!(
        call(&toolbox, "echo", json!({"text": "paid"}))
            .await
            .unwrap(),
        "paid"
    );
    let requests = fx.seen(|s| s.requests.clone());
    assert!(!requests.is_empty());
    for (authorization, tenant) in requests {
        assert_eq!(authorization, Some(format!("Bearer {TOKEN}")));
        assert_eq!(tenant.as_deref(), Some("acme"));
    }
}

#[tokio::test]
async fn an_unset_variable_is_refused_before_anything_is_sent() {
    let fx = Fixture::start().await;
    let spec = server(
        fx.url(),
        headers(&[("Authorization", "Bearer ${env:BILLING_TOKEN}")]),
        None,
    );
    let e = load("billing", spec, &[]).await.unwrap_err();
    assert_eq!(e.key, "mcp.billing.headers.Authorization");
    assert_eq!(e.message, "server `billing`: BILLING_TOKEN is not set");
    assert!(fx.seen(|s| s.requests.is_empty()));
    let e = load(
        "crm",
        server(fx.url(), BTreeMap::new(), Some(oauth(None))),
        &CRM_ENV[..1],
    )
    .await
    .unwrap_err();
    assert_eq!(e.key, "mcp.crm.oauth.client_secret_env");
    assert_eq!(e.message, "server `crm`: CRM_CLIENT_SECRET is not set");
}

#[tokio::test]
async fn a_refused_token_is_named_at_load_by_its_variable() {
    let fx = Fixture::start().await;
    let wrong = "wrong-token-3c2b1a0f9e8d";
    let spec = server(
        fx.url(),
        headers(&[("Authorization", "Bearer ${env:BILLING_TOKEN}")]),
        None,
    );
    let e = load("billing", spec, &[("BILLING_TOKEN", wrong)])
        .await
        .unwrap_err();
    assert_eq!(e.key, "mcp.billing.url");
    assert_eq!(
        e.message,
        "MCP server `billing`: 401 Unauthorized — check the Authorization header's variable \
         BILLING_TOKEN"
    );
    // Without credentials, the message says how to give them.
    let e = load("billing", server(fx.url(), BTreeMap::new(), None), &[])
        .await
        .unwrap_err();
    assert!(
        e.message.starts_with(
            "MCP server `billing`: 401 Unauthorized — the server wants credentials: give \
             [mcp.billing] `headers`"
        ),
        "{e}"
    );
}

#[tokio::test]
async fn a_token_revoked_after_load_is_a_tool_error_naming_the_server() {
    let fx = Fixture::start().await;
    fx.seen(|s| s.accepted.push(format!("Bearer {TOKEN}")));
    let spec = server(
        fx.url(),
        headers(&[("Authorization", "Bearer ${env:BILLING_TOKEN}")]),
        None,
    );
    let toolbox = load("billing", spec, &[("BILLING_TOKEN", TOKEN)])
        .await
        .unwrap();
    fx.seen(|s| s.accepted.clear());
    let e = call(&toolbox, "echo", json!({"text": "paid"}))
        .await
        .unwrap_err();
    assert_eq!(
        e.message(),
        "`echo` (MCP server `billing`) was refused: 401 Unauthorized — check the Authorization \
         header's variable BILLING_TOKEN"
    );
    // Refused before it ran: the tool did not act.
    assert!(!e.is_indeterminate());
    // Valid again, the same connection works.
    fx.seen(|s| s.accepted.push(format!("Bearer {TOKEN}")));
    assert_eq!(
        call(&toolbox, "echo", json!({"text": "ok"})).await.unwrap(),
        "ok"
    );
}

#[tokio::test]
async fn a_403_at_a_call_is_a_tool_error_naming_the_server_and_the_variable() {
    let fx = Fixture::start().await;
    fx.seen(|s| s.accepted.push(format!("Bearer {TOKEN}")));
    let spec = server(
        fx.url(),
        headers(&[("Authorization", "Bearer ${env:BILLING_TOKEN}")]),
        None,
    );
    let toolbox = load("billing", spec, &[("BILLING_TOKEN", TOKEN)])
        .await
        .unwrap();
    fx.seen(|s| s.forbidden = true);
    let e = call(&toolbox, "echo", json!({"text": "paid"}))
        .await
        .unwrap_err();
    let message = e.message();
    assert!(
        message.starts_with("`echo` (MCP server `billing`) was refused: 403 Forbidden"),
        "{e}"
    );
    assert!(
        message.ends_with("check the Authorization header's variable BILLING_TOKEN"),
        "{e}"
    );
    assert!(!message.contains(TOKEN), "{e}");
    // Refused before it ran: the tool did not act.
    assert!(!e.is_indeterminate());
}

#[tokio::test]
async fn client_credentials_give_a_token_kept_until_it_expires() {
    let fx = Fixture::start().await;
    let token_url = format!("{}/auth/token", fx.base);
    let spec = server(fx.url(), BTreeMap::new(), Some(oauth(Some(token_url))));
    let toolbox = load("crm", spec, &CRM_ENV).await.unwrap();
    for text in ["one", "two", "three"] {
        assert_eq!(
            call(&toolbox, "echo", json!({"text": text})).await.unwrap(),
            text
        );
    }
    let (requests, token_requests) = fx.seen(|s| (s.requests.clone(), s.token_requests.clone()));
    assert_eq!(
        token_requests.len(),
        1,
        "the token is kept: {token_requests:?}"
    );
    let (authorization, body) = &token_requests[0];
    assert_eq!(
        authorization.as_deref(),
        Some(format!("Basic {}", base64(&format!("{CLIENT_ID}:{SECRET}"))).as_str())
    );
    let resource = fx.url().replace(':', "%3A").replace('/', "%2F");
    assert_eq!(
        body,
        &format!("grant_type=client_credentials&resource={resource}&scope=crm%3Aread")
    );
    for (authorization, _) in requests {
        assert_eq!(authorization, Some(format!("Bearer {}", issued_token(1))));
    }
}

#[tokio::test]
async fn an_expired_token_is_replaced_before_it_is_sent() {
    let fx = Fixture::start().await;
    fx.seen(|s| s.expires_in = 1);
    let token_url = format!("{}/auth/token", fx.base);
    let spec = server(fx.url(), BTreeMap::new(), Some(oauth(Some(token_url))));
    let toolbox = load("crm", spec, &CRM_ENV).await.unwrap();
    assert_eq!(fx.seen(|s| s.issued), 1);
    // A one-second token is replaced half a second before it expires.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        call(&toolbox, "echo", json!({"text": "x"})).await.unwrap(),
        "x"
    );
    assert_eq!(fx.seen(|s| s.issued), 2);
    let last = fx.seen(|s| s.requests.last().cloned().unwrap().0);
    assert_eq!(last, Some(format!("Bearer {}", issued_token(2))));
}

#[tokio::test]
async fn a_401_fetches_a_new_token_once() {
    let fx = Fixture::start().await;
    let token_url = format!("{}/auth/token", fx.base);
    let spec = server(
        fx.url(),
        BTreeMap::new(),
        Some(oauth(Some(token_url.clone()))),
    );
    let toolbox = load("crm", spec, &CRM_ENV).await.unwrap();
    // The server revokes the token: the next call gets a new one and succeeds.
    fx.seen(|s| s.revoked_below = 2);
    assert_eq!(
        call(&toolbox, "echo", json!({"text": "again"}))
            .await
            .unwrap(),
        "again"
    );
    assert_eq!(fx.seen(|s| s.issued), 2);
    // A server that refuses fresh tokens too costs one new token per call, not a loop.
    fx.seen(|s| s.refuse_all = true);
    let e = call(&toolbox, "echo", json!({"text": "no"}))
        .await
        .unwrap_err();
    assert_eq!(
        e.message(),
        format!(
            "`echo` (MCP server `crm`) was refused: 401 Unauthorized — the server refused a fresh \
             token from {token_url}: check the grants of the client in CRM_CLIENT_ID"
        )
    );
    assert_eq!(fx.seen(|s| s.issued), 3);
}

#[tokio::test]
async fn the_token_endpoint_is_discovered_from_the_server() {
    let fx = Fixture::start().await;
    let spec = server(fx.url(), BTreeMap::new(), Some(oauth(None)));
    let toolbox = load("crm", spec, &CRM_ENV).await.unwrap();
    assert_eq!(
        call(&toolbox, "echo", json!({"text": "found"}))
            .await
            .unwrap(),
        "found"
    );
    assert_eq!(fx.seen(|s| s.token_requests.len()), 1);
}

#[tokio::test]
async fn a_refused_client_is_named_without_its_secret() {
    let fx = Fixture::start().await;
    let wrong = "crm-wrong-secret-a9b8c7d6";
    let spec = server(fx.url(), BTreeMap::new(), Some(oauth(None)));
    let e = load(
        "crm",
        spec,
        &[("CRM_CLIENT_ID", CLIENT_ID), ("CRM_CLIENT_SECRET", wrong)],
    )
    .await
    .unwrap_err();
    assert_eq!(e.key, "mcp.crm.url");
    assert!(
        e.message.starts_with(&format!(
            "MCP server `crm`: the token endpoint {}/auth/token refused the client credentials \
             (401 Unauthorized: invalid_client (bad client authentication: Basic ",
            fx.base
        )),
        "{e}"
    );
    assert!(
        e.message
            .ends_with("check CRM_CLIENT_ID and CRM_CLIENT_SECRET"),
        "{e}"
    );
    assert!(!e.message.contains(wrong), "{e}");
    // The server echoed the Basic credentials, which encode the secret.
    let echoed = base64(&format!("{CLIENT_ID}:{wrong}"));
    assert!(!e.message.contains(&echoed), "{e}");
}

#[tokio::test]
async fn a_token_the_server_sends_back_is_scrubbed() {
    let fx = Fixture::start().await;
    let token_url = format!("{}/auth/token", fx.base);
    let spec = server(fx.url(), BTreeMap::new(), Some(oauth(Some(token_url))));
    let toolbox = load("crm", spec, &CRM_ENV).await.unwrap();
    assert_eq!(
        call(&toolbox, "whoami", json!({})).await.unwrap(),
        "you sent: Bearer [REDACTED]"
    );
}
