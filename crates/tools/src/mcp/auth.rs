//! Credentials on every request to a streamable-HTTP MCP server, and a refusal in words.
//!
//! [`AuthClient`] is the HTTP client rmcp's transport calls: it adds the spec's `headers`
//! (their `${env:NAME}` values read once, when the agent loads) and, with `oauth`, a bearer
//! token; a 401 fetches a new token and sends the request once more. A request the server
//! still refuses (401, 403) or a token that cannot be had fails as an [`AuthFailure`] that says
//! which variable to check, found in the error chain by [`failure_in`]. No message holds a
//! header value or a token.

use std::collections::HashMap;
use std::sync::Arc;

use chassis_core::spec::{HeaderValue as SpecValue, OAuthSpec};
use futures_util::StreamExt;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue};
use rmcp::model::{ClientJsonRpcMessage, ClientRequest, ServerJsonRpcMessage, ServerResult};
use rmcp::transport::common::client_side_sse::BoxedSseResponse;
use rmcp::transport::streamable_http_client::{
    StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
    StreamableHttpResponseLimits,
};

use super::oauth::{self, OAuth};
use super::tasks::TaskSupport;

type HttpError = StreamableHttpError<reqwest::Error>;

/// A request the server refused for its credentials, or credentials that could not be had;
/// the message names what to check, never a secret.
#[derive(Debug)]
pub(crate) struct AuthFailure(pub(crate) String);

impl std::fmt::Display for AuthFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AuthFailure {}

/// The [`AuthFailure`] somewhere in `error`'s chain (an IO error's payload included).
pub(crate) fn failure_in<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a AuthFailure> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(failure) = e.downcast_ref::<AuthFailure>() {
            return Some(failure);
        }
        // An IO error's `source` skips its payload.
        if let Some(payload) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<AuthFailure>())
        {
            return Some(payload);
        }
        if let Some(payload) = e
            .downcast_ref::<HttpError>()
            .and_then(|http| match http {
                StreamableHttpError::Io(io) => io.get_ref(),
                _ => None,
            })
            .and_then(|inner| inner.downcast_ref::<AuthFailure>())
        {
            return Some(payload);
        }
        current = e.source();
    }
    None
}

/// What the server answered, when it refused a request by a 4xx status (other than for its
/// credentials, which [`failure_in`] finds): the request was not carried out.
pub(crate) fn refusal_in(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut current = Some(error);
    while let Some(e) = current {
        match e.downcast_ref::<HttpError>() {
            Some(StreamableHttpError::SessionExpired) => {
                return Some("the server no longer knows the session, even a new one".into());
            }
            Some(StreamableHttpError::UnexpectedServerResponse(text))
                if text.starts_with("HTTP 4") =>
            {
                return Some(text.to_string());
            }
            Some(StreamableHttpError::Client(e))
                if e.status().is_some_and(|s| s.is_client_error()) =>
            {
                return Some(e.to_string());
            }
            _ => {}
        }
        current = e.source();
    }
    None
}

/// Whether `error` is a 400 that blames the session: what some servers (older TypeScript SDKs
/// among them) answer for a session they do not know, where the spec says 404.
fn session_refused(error: &HttpError) -> bool {
    match error {
        StreamableHttpError::UnexpectedServerResponse(text) => {
            text.starts_with("HTTP 400") && text.to_ascii_lowercase().contains("session")
        }
        _ => false,
    }
}

/// Whether a JSON-RPC error says the server does not know the session: what the TypeScript
/// SDK's servers answer (400, code -32000 "Bad Request: No valid session ID provided", or
/// -32001 "Session not found"), often without the request's id, so that the request would
/// wait for its timeout.
fn session_unknown(error: &rmcp::model::ErrorData) -> bool {
    matches!(error.code.0, -32001 | -32000)
        && error.message.to_ascii_lowercase().contains("session")
}

fn fail(message: String) -> HttpError {
    StreamableHttpError::Io(std::io::Error::other(AuthFailure(message)))
}

/// One server's credentials.
pub(crate) struct Auth {
    server: String,
    /// Headers from the spec, values read from the environment.
    headers: Vec<(HeaderName, HeaderValue)>,
    /// Each header that reads variables, with their names, to say what to check.
    header_vars: Vec<(String, Vec<String>)>,
    oauth: Option<OAuth>,
}

impl Auth {
    /// Reads the headers' variables through `env`; the error is `(key, message)`, the key
    /// being the header's (`mcp.NAME.headers.H`) or the OAuth field's.
    pub(crate) fn new(
        server: &str,
        url: &str,
        headers: &std::collections::BTreeMap<String, SpecValue>,
        oauth: Option<&OAuthSpec>,
        env: &(dyn Fn(&str) -> Option<String> + Sync),
        http: reqwest::Client,
    ) -> Result<Auth, (String, String)> {
        let mut resolved = Vec::new();
        let mut header_vars = Vec::new();
        for (name, value) in headers {
            let key = format!("mcp.{server}.headers.{name}");
            let text = value.resolve(env).map_err(|m| (key.clone(), m))?;
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| (key.clone(), format!("`{name}` is not an HTTP header name")))?;
            let mut value_bytes = HeaderValue::from_str(&text).map_err(|_| {
                let vars: Vec<&str> = value.env_names().collect();
                (
                    key.clone(),
                    format!(
                        "the value of {} holds characters an HTTP header cannot carry",
                        vars.join(", ")
                    ),
                )
            })?;
            value_bytes.set_sensitive(true);
            resolved.push((header, value_bytes));
            let vars: Vec<String> = value.env_names().map(str::to_string).collect();
            if !vars.is_empty() {
                header_vars.push((name.clone(), vars));
            }
        }
        let oauth = match oauth {
            None => None,
            Some(spec) => {
                let read = |var: &str, field: &str| {
                    env(var).filter(|v| !v.is_empty()).ok_or_else(|| {
                        (
                            format!("mcp.{server}.oauth.{field}"),
                            format!("{var} is not set"),
                        )
                    })
                };
                let client_id = read(&spec.client_id_env, "client_id_env")?;
                let client_secret = read(&spec.client_secret_env, "client_secret_env")?;
                Some(OAuth::new(
                    oauth::Settings {
                        resource: url.to_string(),
                        client_id,
                        client_secret,
                        id_env: spec.client_id_env.clone(),
                        secret_env: spec.client_secret_env.clone(),
                        token_url: spec.token_url.clone(),
                        scope: spec.scope.clone(),
                    },
                    http,
                ))
            }
        };
        Ok(Auth {
            server: server.to_string(),
            headers: resolved,
            header_vars,
            oauth,
        })
    }

    /// `text` without any token this server was given.
    pub(crate) fn scrub(&self, text: &str) -> String {
        match &self.oauth {
            Some(oauth) => oauth.scrub(text),
            None => text.to_string(),
        }
    }

    /// The request's headers with the credentials added, and the token used (if any).
    async fn headers(
        &self,
        mut headers: HashMap<HeaderName, HeaderValue>,
        token: Option<String>,
    ) -> Result<(HashMap<HeaderName, HeaderValue>, Option<String>), HttpError> {
        for (name, value) in &self.headers {
            headers.insert(name.clone(), value.clone());
        }
        let Some(oauth) = &self.oauth else {
            return Ok((headers, None));
        };
        let token = match token {
            Some(token) => token,
            None => oauth.token().await.map_err(fail)?,
        };
        let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            fail("the token endpoint issued a token that is not header text".into())
        })?;
        value.set_sensitive(true);
        headers.insert(AUTHORIZATION, value);
        Ok((headers, Some(token)))
    }

    /// A new token after `refused` was refused, when there is a token to renew.
    async fn renewed(
        &self,
        refused: Option<&str>,
        error: &HttpError,
    ) -> Option<Result<String, HttpError>> {
        let (oauth, refused) = (self.oauth.as_ref()?, refused?);
        if let StreamableHttpError::AuthRequired(e) = error {
            oauth.challenged(&e.www_authenticate_header).await;
        }
        Some(oauth.refresh(refused).await.map_err(fail))
    }

    /// The refusal in words: what to check.
    async fn refused(&self, error: HttpError) -> HttpError {
        if let Some(scope) = forbidden(&error) {
            let needs = scope
                .map(|s| format!(" (the server asks for scope `{s}`)"))
                .unwrap_or_default();
            let check = match &self.oauth {
                Some(oauth) => format!(
                    "check the grants of the client in {}{}",
                    oauth.id_env(),
                    oauth
                        .scope()
                        .map(|s| format!(" and oauth.scope (`{s}`)"))
                        .unwrap_or_default()
                ),
                None => self.check_headers(),
            };
            return fail(format!("403 Forbidden{needs} — {check}"));
        }
        if !unauthorized(&error) {
            return error;
        }
        let check = match &self.oauth {
            Some(oauth) => format!(
                "the server refused a fresh token from {}: check the grants of the client in {}",
                oauth
                    .endpoint()
                    .await
                    .unwrap_or_else(|| "the token endpoint".into()),
                oauth.id_env()
            ),
            None => self.check_headers(),
        };
        fail(format!("401 Unauthorized — {check}"))
    }

    fn check_headers(&self) -> String {
        if self.header_vars.is_empty() {
            return format!(
                "the server wants credentials: give [mcp.{}] `headers` (e.g. Authorization = \
                 \"Bearer ${{env:NAME}}\") or `oauth`",
                self.server
            );
        }
        let parts: Vec<String> = self
            .header_vars
            .iter()
            .map(|(header, vars)| {
                let (noun, names) = if vars.len() == 1 {
                    ("variable", vars[0].clone())
                } else {
                    ("variables", vars.join(", "))
                };
                format!("the {header} header's {noun} {names}")
            })
            .collect();
        format!("check {}", parts.join(" and "))
    }
}

fn unauthorized(error: &HttpError) -> bool {
    match error {
        StreamableHttpError::AuthRequired(_) => true,
        StreamableHttpError::UnexpectedServerResponse(text) => text.starts_with("HTTP 401"),
        StreamableHttpError::Client(e) => e.status().is_some_and(|s| s.as_u16() == 401),
        _ => false,
    }
}

/// `Some(required scope)` for a 403.
fn forbidden(error: &HttpError) -> Option<Option<String>> {
    match error {
        StreamableHttpError::InsufficientScope(e) => Some(e.required_scope.clone()),
        StreamableHttpError::UnexpectedServerResponse(text) if text.starts_with("HTTP 403") => {
            Some(None)
        }
        StreamableHttpError::Client(e) if e.status().is_some_and(|s| s.as_u16() == 403) => {
            Some(None)
        }
        _ => None,
    }
}

impl AuthClient {
    /// Sends `tools/list` again, as it was sent, and notes its raw answer's tools: rmcp parsed
    /// the JSON answer into tools without their `execution`. Listing tools changes nothing,
    /// so the second request is harmless; only servers that answer in JSON rather than SSE
    /// are asked twice.
    async fn list_again(
        &self,
        uri: &str,
        message: &ClientJsonRpcMessage,
        session_id: Option<&str>,
        headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> Result<(), HttpError> {
        let unexpected = |what: String| {
            StreamableHttpError::UnexpectedServerResponse(
                format!("`tools/list` sent again to read the tools' `execution`: {what}").into(),
            )
        };
        let mut request = self
            .http
            .post(uri)
            .header(ACCEPT, "application/json, text/event-stream")
            .json(message);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        if let Some(session) = session_id {
            request = request.header("Mcp-Session-Id", session);
        }
        let mut response = request.send().await.map_err(StreamableHttpError::Client)?;
        if !response.status().is_success() {
            return Err(unexpected(format!("HTTP {}", response.status())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(StreamableHttpError::Client)?
        {
            if body.len() + chunk.len() > limits.max_json_response_size {
                return Err(unexpected(format!(
                    "the answer is longer than {} bytes",
                    limits.max_json_response_size
                )));
            }
            body.extend_from_slice(&chunk);
        }
        let sse = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if sse {
            // The event's `data:` lines, each a message here.
            for line in body.split(|&b| b == b'\n') {
                if let Some(data) = line.strip_prefix(b"data:") {
                    self.tasks.read(data);
                }
            }
        } else {
            self.tasks.read(&body);
        }
        Ok(())
    }
}

/// Whether `message` is a `tools/list` request and `answer` its successful answer.
fn lists_tools(message: &ClientJsonRpcMessage, answer: &ServerJsonRpcMessage) -> bool {
    let ClientJsonRpcMessage::Request(request) = message else {
        return false;
    };
    matches!(request.request, ClientRequest::ListToolsRequest(_))
        && matches!(answer, ServerJsonRpcMessage::Response(r)
            if matches!(&r.result, ServerResult::ListToolsResult(list) if !list.tools.is_empty()))
}

/// rmcp's HTTP client with the server's credentials on every request.
#[derive(Clone)]
pub(crate) struct AuthClient {
    pub(crate) http: reqwest::Client,
    pub(crate) auth: Arc<Auth>,
    /// Where the tools' `execution.taskSupport` the server lists are noted.
    pub(crate) tasks: TaskSupport,
}

impl StreamableHttpClient for AuthClient {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, HttpError> {
        self.post_message_with_response_limits(
            uri,
            message,
            session_id,
            auth_header,
            custom_headers,
            StreamableHttpResponseLimits::default(),
        )
        .await
    }

    async fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<StreamableHttpPostResponse, HttpError> {
        let mut limits = StreamableHttpResponseLimits::default();
        limits.max_sse_event_size = max_sse_event_size;
        self.post_message_with_response_limits(
            uri,
            message,
            session_id,
            auth_header,
            custom_headers,
            limits,
        )
        .await
    }

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> Result<StreamableHttpPostResponse, HttpError> {
        let mut token = None;
        let mut renewed = false;
        loop {
            let (headers, used) = self.auth.headers(custom_headers.clone(), token).await?;
            let outcome = self
                .http
                .post_message_with_response_limits(
                    uri.clone(),
                    message.clone(),
                    session_id.clone(),
                    None,
                    headers.clone(),
                    limits,
                )
                .await;
            match outcome {
                Err(e) if unauthorized(&e) && !renewed => {
                    match self.auth.renewed(used.as_deref(), &e).await {
                        Some(fresh) => {
                            token = Some(fresh?);
                            renewed = true;
                        }
                        None => return Err(self.auth.refused(e).await),
                    }
                }
                // rmcp initializes a new session and sends the request again, once.
                Err(e) if session_id.is_some() && session_refused(&e) => {
                    return Err(StreamableHttpError::SessionExpired);
                }
                Err(e) => return Err(self.auth.refused(e).await),
                Ok(StreamableHttpPostResponse::Json(ServerJsonRpcMessage::Error(e), _))
                    if session_id.is_some() && session_unknown(&e.error) =>
                {
                    return Err(StreamableHttpError::SessionExpired);
                }
                Ok(StreamableHttpPostResponse::Sse(events, session)) => {
                    // Each event's raw data, before rmcp parses it.
                    let tasks = self.tasks.clone();
                    let events = events
                        .inspect(move |event| {
                            if let Ok(data) = event.as_ref().map(|e| e.data.as_deref()) {
                                tasks.read(data.unwrap_or_default().as_bytes());
                            }
                        })
                        .boxed();
                    return Ok(StreamableHttpPostResponse::Sse(events, session));
                }
                Ok(StreamableHttpPostResponse::Json(answer, session)) => {
                    if lists_tools(&message, &answer) {
                        self.list_again(&uri, &message, session_id.as_deref(), headers, limits)
                            .await?;
                    }
                    return Ok(StreamableHttpPostResponse::Json(answer, session));
                }
                Ok(response) => return Ok(response),
            }
        }
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), HttpError> {
        let (headers, _) = self.auth.headers(custom_headers, None).await?;
        self.http
            .delete_session(uri, session_id, None, headers)
            .await
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxedSseResponse, HttpError> {
        self.get_stream_with_max_sse_event_size(
            uri,
            session_id,
            last_event_id,
            auth_header,
            custom_headers,
            StreamableHttpResponseLimits::default().max_sse_event_size,
        )
        .await
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<BoxedSseResponse, HttpError> {
        let mut token = None;
        let mut renewed = false;
        loop {
            let (headers, used) = self.auth.headers(custom_headers.clone(), token).await?;
            let outcome = self
                .http
                .get_stream_with_max_sse_event_size(
                    uri.clone(),
                    session_id.clone(),
                    last_event_id.clone(),
                    None,
                    headers,
                    max_sse_event_size,
                )
                .await;
            match outcome {
                Err(e) if unauthorized(&e) && !renewed => {
                    match self.auth.renewed(used.as_deref(), &e).await {
                        Some(fresh) => {
                            token = Some(fresh?);
                            renewed = true;
                        }
                        None => return Err(self.auth.refused(e).await),
                    }
                }
                Err(e) => return Err(self.auth.refused(e).await),
                Ok(stream) => return Ok(stream),
            }
        }
    }
}
