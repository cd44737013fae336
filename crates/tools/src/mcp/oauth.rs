//! OAuth 2.1 client credentials for a streamable-HTTP MCP server: the token endpoint (given,
//! or discovered), a bearer token kept until it expires, and a new one when the server
//! refuses the old.
//!
//! Discovery follows the MCP authorization spec: the server's protected-resource metadata
//! (RFC 9728; the URL a 401's `WWW-Authenticate: … resource_metadata="…"` names, else
//! `/.well-known/oauth-protected-resource` with and without the endpoint's path) names its
//! authorization server, whose metadata (RFC 8414 `oauth-authorization-server`, else OpenID
//! `openid-configuration`) names the token endpoint. The metadata's `issuer` must be the
//! server asked, and discovered endpoints must be `https` unless on a loopback address, since
//! the client secret is sent to them. The token request names the MCP endpoint as its
//! `resource` (RFC 8707).
//!
//! No message quotes a token or the secret: what a server says back is scrubbed of both.

use std::time::Duration;

use reqwest::Url;
use serde_json::Value;
use tokio::time::Instant;

use crate::mcp::server::root_cause;

/// How long one request to the token endpoint or a metadata document may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest answer read from the token endpoint or a metadata document.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// A token is replaced this long before it expires (at most half its life).
const EXPIRY_MARGIN: Duration = Duration::from_secs(30);

/// What replaces a secret in text a server sent back.
const REDACTED: &str = "[REDACTED]";

/// The client's credentials and the token it holds.
pub(crate) struct OAuth {
    resource: String,
    client_id: String,
    client_secret: String,
    id_env: String,
    secret_env: String,
    token_url: Option<String>,
    scope: Option<String>,
    http: reqwest::Client,
    state: tokio::sync::Mutex<State>,
}

#[derive(Default)]
struct State {
    endpoint: Option<Endpoint>,
    token: Option<Token>,
    /// The resource metadata URL a 401 named.
    hint: Option<String>,
    /// Every token handed out, to scrub from what the server sends back.
    issued: Vec<String>,
}

#[derive(Clone)]
struct Endpoint {
    url: String,
    /// `client_secret_basic` (the default), else `client_secret_post`.
    basic: bool,
}

struct Token {
    value: String,
    /// `None` when the server gave no lifetime: kept until refused.
    renew_at: Option<Instant>,
}

/// The settings of an [`OAuth`] client, as the spec and the environment give them.
pub(crate) struct Settings {
    pub(crate) resource: String,
    pub(crate) client_id: String,
    pub(crate) client_secret: String,
    pub(crate) id_env: String,
    pub(crate) secret_env: String,
    pub(crate) token_url: Option<String>,
    pub(crate) scope: Option<String>,
}

impl OAuth {
    pub(crate) fn new(settings: Settings, http: reqwest::Client) -> OAuth {
        OAuth {
            resource: settings.resource,
            client_id: settings.client_id,
            client_secret: settings.client_secret,
            id_env: settings.id_env,
            secret_env: settings.secret_env,
            token_url: settings.token_url,
            scope: settings.scope,
            http,
            state: tokio::sync::Mutex::new(State::default()),
        }
    }

    /// A token that has not expired, fetching one if needed.
    pub(crate) async fn token(&self) -> Result<String, String> {
        let mut state = self.state.lock().await;
        if let Some(token) = &state.token
            && token.renew_at.is_none_or(|at| Instant::now() < at)
        {
            return Ok(token.value.clone());
        }
        self.fetch(&mut state).await
    }

    /// A new token in place of `refused`, unless another request already replaced it.
    pub(crate) async fn refresh(&self, refused: &str) -> Result<String, String> {
        let mut state = self.state.lock().await;
        if let Some(token) = &state.token
            && token.value != refused
        {
            return Ok(token.value.clone());
        }
        state.token = None;
        self.fetch(&mut state).await
    }

    /// Remembers where a 401's challenge says the resource metadata is.
    pub(crate) async fn challenged(&self, www_authenticate: &str) {
        if let Some(url) = challenge_param(www_authenticate, "resource_metadata") {
            self.state.lock().await.hint = Some(url);
        }
    }

    /// The token endpoint, if known yet, for messages.
    pub(crate) async fn endpoint(&self) -> Option<String> {
        let state = self.state.lock().await;
        state
            .endpoint
            .as_ref()
            .map(|e| e.url.clone())
            .or_else(|| self.token_url.clone())
    }

    /// The variable holding the client id, for messages.
    pub(crate) fn id_env(&self) -> &str {
        &self.id_env
    }

    /// The scope asked for, for messages.
    pub(crate) fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// `text` without any token handed out to this client.
    pub(crate) fn scrub(&self, text: &str) -> String {
        let Ok(state) = self.state.try_lock() else {
            return text.to_string();
        };
        state.issued.iter().fold(text.to_string(), |text, token| {
            text.replace(token.as_str(), REDACTED)
        })
    }

    /// `text` from a server, without the client's secret (as sent, alone or in the Basic
    /// credentials) nor its id, which could be one.
    fn clean(&self, text: &str) -> String {
        let basic = base64(&format!(
            "{}:{}",
            form_encode(&self.client_id),
            form_encode(&self.client_secret)
        ));
        let mut text = text
            .replace(&basic, REDACTED)
            .replace(&form_encode(&self.client_secret), REDACTED)
            .replace(&self.client_secret, REDACTED);
        if self.client_id.len() >= 8 {
            text = text.replace(&self.client_id, REDACTED);
        }
        text.chars().take(300).collect()
    }

    async fn fetch(&self, state: &mut State) -> Result<String, String> {
        let endpoint = match (&state.endpoint, &self.token_url) {
            (Some(endpoint), _) => endpoint.clone(),
            (None, Some(url)) => Endpoint {
                url: url.clone(),
                basic: true,
            },
            (None, None) => self.discover(state.hint.as_deref()).await?,
        };
        state.endpoint = Some(endpoint.clone());
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("resource", &self.resource),
        ];
        if let Some(scope) = &self.scope {
            form.push(("scope", scope));
        }
        if !endpoint.basic {
            form.push(("client_id", &self.client_id));
            form.push(("client_secret", &self.client_secret));
        }
        let body = form
            .iter()
            .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let mut request = self
            .http
            .post(&endpoint.url)
            .timeout(REQUEST_TIMEOUT)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(body);
        if endpoint.basic {
            // RFC 6749 2.3.1: both are form-encoded before they are joined.
            request = request.basic_auth(
                form_encode(&self.client_id),
                Some(form_encode(&self.client_secret)),
            );
        }
        let url = &endpoint.url;
        let response = request.send().await.map_err(|e| {
            format!(
                "cannot reach the token endpoint {url}: {}",
                self.clean(&root_cause(&e))
            )
        })?;
        let status = response.status();
        let body = read_limited(response)
            .await
            .map_err(|m| format!("the token endpoint {url}: {}", self.clean(&m)))?;
        let json: Option<Value> = serde_json::from_slice(&body).ok();
        let field = |name: &str| {
            json.as_ref()
                .and_then(|j| j.get(name))
                .and_then(Value::as_str)
                .map(|s| self.clean(s))
        };
        if !status.is_success() {
            let error = match (field("error"), field("error_description")) {
                (Some(e), Some(d)) => format!(": {e} ({d})"),
                (Some(e), None) => format!(": {e}"),
                _ => String::new(),
            };
            return Err(format!(
                "the token endpoint {url} refused the client credentials ({status}{error}), \
                 check {} and {}",
                self.id_env, self.secret_env
            ));
        }
        let Some(token) = json
            .as_ref()
            .and_then(|j| j.get("access_token"))
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        else {
            return Err(format!(
                "the token endpoint {url} answered without an access_token"
            ));
        };
        if let Some(kind) = field("token_type")
            && !kind.eq_ignore_ascii_case("bearer")
        {
            return Err(format!(
                "the token endpoint {url} issued a `{kind}` token; only bearer tokens are \
                 supported"
            ));
        }
        let lifetime = json
            .as_ref()
            .and_then(|j| j.get("expires_in"))
            .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
            .map(Duration::from_secs);
        let renew_at = lifetime.map(|life| {
            let margin = EXPIRY_MARGIN.min(life / 2);
            let now = Instant::now();
            now.checked_add(life - margin)
                .unwrap_or(now + chassis_core::duration::MAX)
        });
        let token = token.to_string();
        chassis_redact::remember(&token);
        if !state.issued.contains(&token) {
            state.issued.push(token.clone());
        }
        state.token = Some(Token {
            value: token.clone(),
            renew_at,
        });
        Ok(token)
    }

    /// The token endpoint, from the server's protected-resource metadata and its
    /// authorization server's metadata.
    async fn discover(&self, hint: Option<&str>) -> Result<Endpoint, String> {
        let resource = Url::parse(&self.resource)
            .map_err(|e| format!("`{}` is not a URL: {e}", self.resource))?;
        let mut candidates: Vec<String> = hint.map(str::to_string).into_iter().collect();
        candidates.extend(well_known(&resource, "oauth-protected-resource"));
        let (found_at, metadata) = self.first_document(&candidates, "resource").await?;
        let issuer = metadata
            .get("authorization_servers")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(Value::as_str)
            .ok_or_else(|| {
                format!(
                    "the resource metadata at {found_at} names no authorization server; set \
                     oauth.token_url"
                )
            })?
            .to_string();
        let issuer_url = Url::parse(&issuer).map_err(|e| {
            format!("the authorization server `{issuer}` ({found_at}) is not a URL: {e}")
        })?;
        check_secure(&issuer_url)?;
        let mut candidates = well_known(&issuer_url, "oauth-authorization-server");
        candidates.extend(well_known(&issuer_url, "openid-configuration"));
        let appended = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        if !candidates.contains(&appended) {
            candidates.push(appended);
        }
        let (found_at, metadata) = self
            .first_document(&candidates, "authorization server")
            .await?;
        let named = metadata.get("issuer").and_then(Value::as_str).unwrap_or("");
        if named.trim_end_matches('/') != issuer.trim_end_matches('/') {
            return Err(format!(
                "the authorization server metadata at {found_at} is for issuer `{named}`, not \
                 `{issuer}`; set oauth.token_url"
            ));
        }
        if let Some(grants) = metadata
            .get("grant_types_supported")
            .and_then(Value::as_array)
            && !grants.iter().any(|g| g == "client_credentials")
        {
            return Err(format!(
                "the authorization server {issuer} does not offer the client_credentials grant \
                 (its metadata at {found_at} lists {})",
                Value::Array(grants.clone())
            ));
        }
        let url = metadata
            .get("token_endpoint")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("the metadata at {found_at} names no token_endpoint"))?;
        let parsed = Url::parse(url)
            .map_err(|e| format!("the token endpoint `{url}` ({found_at}) is not a URL: {e}"))?;
        check_secure(&parsed)?;
        let methods = metadata
            .get("token_endpoint_auth_methods_supported")
            .and_then(Value::as_array);
        let basic = methods.is_none_or(|m| {
            m.iter().any(|v| v == "client_secret_basic")
                || !m.iter().any(|v| v == "client_secret_post")
        });
        Ok(Endpoint {
            url: url.to_string(),
            basic,
        })
    }

    /// The first of `urls` that answers 200 with a JSON object.
    async fn first_document(&self, urls: &[String], what: &str) -> Result<(String, Value), String> {
        let mut tried = Vec::new();
        for url in urls {
            let outcome = match self
                .http
                .get(url)
                .timeout(REQUEST_TIMEOUT)
                .header("accept", "application/json")
                .send()
                .await
            {
                Err(e) => Err(root_cause(&e)),
                Ok(response) if !response.status().is_success() => {
                    Err(response.status().to_string())
                }
                Ok(response) => read_limited(response).await.and_then(|body| {
                    serde_json::from_slice::<Value>(&body)
                        .ok()
                        .filter(Value::is_object)
                        .ok_or_else(|| "not a JSON object".to_string())
                }),
            };
            match outcome {
                Ok(document) => return Ok((url.clone(), document)),
                Err(why) => tried.push(format!("{url} ({})", self.clean(&why))),
            }
        }
        Err(format!(
            "cannot discover the token endpoint: no {what} metadata at {}; set oauth.token_url",
            tried.join(", ")
        ))
    }
}

/// `scheme://host/.well-known/NAME/path` and `scheme://host/.well-known/NAME` (RFC 8414 3.1),
/// without duplicates.
fn well_known(url: &Url, name: &str) -> Vec<String> {
    let origin = url.origin().ascii_serialization();
    let path = url.path().trim_end_matches('/');
    let mut urls = Vec::new();
    if !path.is_empty() {
        urls.push(format!("{origin}/.well-known/{name}{path}"));
    }
    urls.push(format!("{origin}/.well-known/{name}"));
    urls
}

/// A discovered URL the secret may go to: `https`, or plain HTTP on this machine.
fn check_secure(url: &Url) -> Result<(), String> {
    let host = url.host_str().unwrap_or_default();
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if url.scheme() == "https" || (url.scheme() == "http" && loopback) {
        Ok(())
    } else {
        Err(format!(
            "discovery named {url}, which is not https; the client secret goes only over TLS \
             (set oauth.token_url to use it anyway)"
        ))
    }
}

/// A parameter of a `WWW-Authenticate` challenge, quoted or not.
fn challenge_param(header: &str, name: &str) -> Option<String> {
    let lower = header.to_ascii_lowercase();
    let at = lower.find(&format!("{name}="))?;
    let value = &header[at + name.len() + 1..];
    let value = match value.strip_prefix('"') {
        Some(quoted) => &quoted[..quoted.find('"')?],
        None => value.split([',', ' ']).next()?,
    };
    (!value.is_empty()).then(|| value.to_string())
}

/// `application/x-www-form-urlencoded` for one key or value.
fn form_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Standard base64, padded: how Basic credentials look on the wire.
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

/// A response body of at most [`MAX_BODY_BYTES`].
async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| root_cause(&e))? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_BODY_BYTES {
            return Err(format!("answered more than {MAX_BODY_BYTES} bytes"));
        }
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_urls_keep_the_path_after_the_name() {
        let url = Url::parse("https://h.example:8443/api/mcp/").unwrap();
        assert_eq!(
            well_known(&url, "oauth-protected-resource"),
            [
                "https://h.example:8443/.well-known/oauth-protected-resource/api/mcp",
                "https://h.example:8443/.well-known/oauth-protected-resource"
            ]
        );
        let url = Url::parse("https://auth.example").unwrap();
        assert_eq!(
            well_known(&url, "openid-configuration"),
            ["https://auth.example/.well-known/openid-configuration"]
        );
    }

    #[test]
    fn challenges_give_their_parameters() {
        let header = r#"Bearer error="invalid_token", resource_metadata="https://h/.well-known/x""#;
        assert_eq!(
            challenge_param(header, "resource_metadata").as_deref(),
            Some("https://h/.well-known/x")
        );
        assert_eq!(
            challenge_param(
                "Bearer resource_metadata=https://h/m, x=1",
                "resource_metadata"
            )
            .as_deref(),
            Some("https://h/m")
        );
        assert_eq!(challenge_param("Bearer", "resource_metadata"), None);
    }

    #[test]
    fn only_tls_or_loopback_receives_the_secret() {
        for ok in [
            "https://a.example/t",
            "http://127.0.0.1:9/t",
            "http://localhost/t",
            "http://[::1]/t",
        ] {
            assert!(check_secure(&Url::parse(ok).unwrap()).is_ok(), "{ok}");
        }
        let err = check_secure(&Url::parse("http://auth.example/t").unwrap()).unwrap_err();
        assert!(err.contains("not https"), "{err}");
    }

    #[test]
    fn base64_pads_like_basic_credentials() {
        assert_eq!(base64("a:b"), "YTpi");
        assert_eq!(base64("ab:cd"), "YWI6Y2Q=");
        assert_eq!(base64("abc:de"), "YWJjOmRl");
        assert_eq!(base64("a:"), "YTo=");
    }

    #[test]
    fn form_encoding_escapes_all_but_unreserved() {
        assert_eq!(form_encode("a b+c/d:é~"), "a%20b%2Bc%2Fd%3A%C3%A9~");
    }
}
