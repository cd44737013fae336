//! `builtin:http`: `http_get` and `http_post` to an allowlist of hosts.
//!
//! Each hop (the first request and every redirect, followed by hand) is checked by
//! [`Policy::check`] and sent by a client pinned to the checked addresses, with no proxy and a
//! resolver that refuses everything else. The whole call, redirects and body included, has one
//! time limit, and the body is streamed and abandoned past `max_bytes`.

mod policy;

use std::sync::Arc;
use std::time::Duration;

use chassis_core::spec::{BUILTIN_HTTP_TOOLS, HttpToolSpec, HttpVersion};
use chassis_core::{RiskClass, ToolDef};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, LOCATION};
use reqwest::{Method, StatusCode, Url};
use serde_json::{Value, json};

use crate::command::format_duration;
use crate::{CallContext, Tool, ToolError};
use policy::{Classify, Policy};

/// Redirects followed before giving up.
const MAX_REDIRECTS: usize = 5;

/// Longest URL accepted.
const MAX_URL_CHARS: usize = 2048;

/// Largest request body `http_post` sends.
const MAX_REQUEST_BODY_BYTES: usize = 1024 * 1024;

/// Headers the model may not set: they belong to the connection, not the request.
const FORBIDDEN_HEADERS: [&str; 8] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "proxy-authorization",
];

/// Headers dropped when a redirect leaves the origin (scheme, host, port) they were meant for.
const CREDENTIAL_HEADERS: [&str; 3] = ["authorization", "cookie", "proxy-authorization"];

/// Builds the `builtin:http` tools named in `only` (all of them when `None`), in that order.
pub(crate) fn tools(spec: &HttpToolSpec) -> Vec<Arc<dyn Tool>> {
    tools_with(spec, policy::classify)
}

fn tools_with(spec: &HttpToolSpec, classify: Classify) -> Vec<Arc<dyn Tool>> {
    let shared = Arc::new(Shared {
        policy: Policy::new(&spec.allow_hosts, spec.allow_private, classify),
        timeout: spec.timeout,
        max_bytes: spec.max_bytes,
    });
    let names: Vec<&str> = match &spec.only {
        Some(only) => only.iter().map(String::as_str).collect(),
        None => BUILTIN_HTTP_TOOLS.to_vec(),
    };
    let mut tools: Vec<Arc<dyn Tool>> = Vec::new();
    for name in names {
        if tools.iter().any(|t| t.def().name == name) {
            continue;
        }
        let (method, risk) = match name {
            "http_get" => (Method::GET, RiskClass::ReadOnly),
            "http_post" => (Method::POST, spec.post_risk),
            // The spec's `only` was checked against BUILTIN_HTTP_TOOLS.
            _ => continue,
        };
        tools.push(Arc::new(HttpTool {
            def: def(name, &method, risk, spec),
            method,
            shared: shared.clone(),
        }));
    }
    tools
}

fn def(name: &str, method: &Method, risk: RiskClass, spec: &HttpToolSpec) -> ToolDef {
    let hosts = spec.allow_hosts.join(", ");
    let mut properties = serde_json::Map::new();
    properties.insert(
        "url".into(),
        json!({
            "type": "string",
            "format": "uri",
            "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://",
            "minLength": 1,
            "maxLength": MAX_URL_CHARS,
            "description": format!("An http:// or https:// URL on one of these hosts: {hosts}."),
        }),
    );
    properties.insert(
        "headers".into(),
        json!({
            "type": "object",
            "maxProperties": 32,
            "propertyNames": {"pattern": "^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$"},
            "additionalProperties": {"type": "string", "maxLength": 4096},
            "description": "Extra request headers, e.g. {\"Accept\": \"application/json\"}.",
        }),
    );
    let mut required = vec!["url"];
    let description = if *method == Method::POST {
        properties.insert(
            "body".into(),
            json!({
                "type": ["string", "object", "array"],
                "maxLength": MAX_REQUEST_BODY_BYTES,
                "description": "The request body: a string is sent as is (text/plain unless a \
                    Content-Type header says otherwise), an object or array as JSON.",
            }),
        );
        required.push("body");
        format!(
            "Send an HTTP POST request. Allowed hosts: {hosts}. {}",
            result_shape(spec)
        )
    } else {
        format!(
            "Fetch a URL with HTTP GET. Allowed hosts: {hosts}. {}",
            result_shape(spec)
        )
    };
    ToolDef {
        name: name.to_string(),
        description,
        parameters: json!({
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": false,
        }),
        risk,
        idempotent: false,
        max_attempts: chassis_core::tool::DEFAULT_TOOL_ATTEMPTS,
    }
}

fn result_shape(spec: &HttpToolSpec) -> String {
    format!(
        "Returns \"HTTP <status>\", the content type and a blank line, then the body as text; \
        bodies over {} bytes are refused and redirects are followed up to {MAX_REDIRECTS} times.",
        spec.max_bytes
    )
}

/// What the tools of one `builtin:http` entry share.
struct Shared {
    policy: Policy,
    timeout: Duration,
    max_bytes: u64,
}

/// `http_get` or `http_post`.
struct HttpTool {
    def: ToolDef,
    method: Method,
    shared: Arc<Shared>,
}

/// A request as the model asked for it.
struct Request {
    headers: HeaderMap,
    body: Option<(Vec<u8>, &'static str)>,
}

#[async_trait::async_trait]
impl Tool for HttpTool {
    fn def(&self) -> &ToolDef {
        &self.def
    }

    async fn call(&self, args: Value, _ctx: &CallContext) -> Result<String, ToolError> {
        let url = match args.get("url") {
            Some(Value::String(url)) => url,
            Some(_) => return Err(ToolError::failed("argument `url` must be a string")),
            None => return Err(ToolError::failed("argument `url` is required")),
        };
        if url.chars().count() > MAX_URL_CHARS {
            return Err(ToolError::failed(format!(
                "the URL is longer than {MAX_URL_CHARS} characters"
            )));
        }
        let url =
            Url::parse(url).map_err(|e| ToolError::failed(format!("`{url}` is not a URL: {e}")))?;
        let request = self.request(&args)?;
        let mut at = url.host_str().unwrap_or_default().to_string();
        let timeout = self.shared.timeout;
        match tokio::time::timeout(timeout, self.fetch(url, request, &mut at)).await {
            Ok(outcome) => outcome.map_err(ToolError::failed),
            Err(_elapsed) => Err(ToolError::indeterminate(format!(
                "request to `{at}` timed out after {}",
                format_duration(timeout)
            ))),
        }
    }
}

impl HttpTool {
    /// Checks the headers and body arguments; `Toolbox::prepare` has checked their types, but
    /// a direct caller may not have.
    fn request(&self, args: &Value) -> Result<Request, ToolError> {
        let mut headers = HeaderMap::new();
        match args.get("headers") {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) => {
                for (name, value) in map {
                    let Value::String(value) = value else {
                        return Err(ToolError::failed(format!(
                            "header `{name}` must be a string"
                        )));
                    };
                    let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                        ToolError::failed(format!("`{name}` is not a valid header name"))
                    })?;
                    if FORBIDDEN_HEADERS.contains(&header.as_str()) {
                        return Err(ToolError::failed(format!("header `{name}` cannot be set")));
                    }
                    let value = HeaderValue::from_str(value).map_err(|_| {
                        ToolError::failed(format!("the value of header `{name}` is not valid"))
                    })?;
                    headers.append(header, value);
                }
            }
            Some(_) => return Err(ToolError::failed("argument `headers` must be an object")),
        }
        let body = if self.method == Method::POST {
            let (bytes, content_type) = match args.get("body") {
                None => return Err(ToolError::failed("argument `body` is required")),
                Some(Value::String(text)) => {
                    (text.as_bytes().to_vec(), "text/plain; charset=utf-8")
                }
                Some(json) => (
                    serde_json::to_vec(json)
                        .map_err(|e| ToolError::failed(format!("cannot serialize `body`: {e}")))?,
                    "application/json",
                ),
            };
            if bytes.len() > MAX_REQUEST_BODY_BYTES {
                return Err(ToolError::failed(format!(
                    "the body is {} bytes; http_post sends at most {MAX_REQUEST_BODY_BYTES}",
                    bytes.len()
                )));
            }
            Some((bytes, content_type))
        } else {
            None
        };
        Ok(Request { headers, body })
    }

    /// Sends the request, following redirects by hand so each hop is checked; `at` is kept
    /// up to date with the host being talked to, for the timeout message.
    async fn fetch(
        &self,
        mut url: Url,
        mut request: Request,
        at: &mut String,
    ) -> Result<String, String> {
        let mut method = self.method.clone();
        let mut redirects = 0;
        loop {
            let target = self.shared.policy.check(&url).await?;
            *at = target.host.clone();
            let host = &target.host;
            let mut builder = chassis_http::builder(HttpVersion::Auto)
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .dns_resolver(Arc::new(PinnedOnly));
            if let Some(addrs) = &target.pinned {
                builder = builder.resolve_to_addrs(host, addrs);
            }
            let client = builder
                .build()
                .map_err(|e| format!("cannot build an HTTP client: {}", describe(&e)))?;
            let mut send = client
                .request(method.clone(), url.clone())
                .headers(request.headers.clone());
            if let Some((bytes, content_type)) = &request.body {
                if !request.headers.contains_key(CONTENT_TYPE) {
                    send = send.header(CONTENT_TYPE, *content_type);
                }
                send = send.body(bytes.clone());
            }
            let response = send
                .send()
                .await
                .map_err(|e| format!("request to `{host}` failed: {}", describe(&e)))?;
            let status = response.status();
            let location = response.headers().get(LOCATION);
            if !status.is_redirection() || location.is_none() {
                return self.read(response, host).await;
            }
            redirects += 1;
            if redirects > MAX_REDIRECTS {
                return Err(format!(
                    "too many redirects (more than {MAX_REDIRECTS}), the last from `{host}`"
                ));
            }
            let location = location
                .and_then(|l| l.to_str().ok())
                .ok_or_else(|| format!("`{host}` redirected to a location that is not text"))?;
            let next = url
                .join(location)
                .map_err(|e| format!("`{host}` redirected to `{location}`, not a URL: {e}"))?;
            // 301 and 302 turn a POST into a GET by long practice, 303 by definition; 307 and
            // 308 repeat the request as it was.
            if status == StatusCode::SEE_OTHER
                || (method == Method::POST
                    && matches!(status, StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND))
            {
                method = Method::GET;
                request.body = None;
                request.headers.remove(CONTENT_TYPE);
            }
            if next.origin() != url.origin() {
                for name in CREDENTIAL_HEADERS {
                    request.headers.remove(name);
                }
            }
            url = next;
        }
    }

    /// Reads the body up to `max_bytes` and renders the result for the model.
    async fn read(&self, mut response: reqwest::Response, host: &str) -> Result<String, String> {
        let max = self.shared.max_bytes;
        let too_big =
            || format!("the response from `{host}` is larger than max_bytes ({max} bytes)");
        if response.content_length().is_some_and(|n| n > max) {
            return Err(too_big());
        }
        let status = response.status();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| {
            format!(
                "reading the response from `{host}` failed: {}",
                describe(&e)
            )
        })? {
            if (body.len() + chunk.len()) as u64 > max {
                return Err(too_big());
            }
            body.extend_from_slice(&chunk);
        }
        let text = match String::from_utf8(body) {
            Ok(text) => text,
            Err(e) if e.as_bytes().contains(&0) => {
                return Err(format!(
                    "the response from `{host}` is binary ({} bytes of {}), not text",
                    e.as_bytes().len(),
                    if content_type.is_empty() {
                        "unknown type"
                    } else {
                        &content_type
                    }
                ));
            }
            Err(e) => format!(
                "(the body is not valid UTF-8; invalid bytes are shown as U+FFFD)\n{}",
                String::from_utf8_lossy(e.as_bytes())
            ),
        };
        Ok(format!("HTTP {status}\n{content_type}\n\n{text}"))
    }
}

/// The DNS resolver of every client: overrides pin the checked host, and nothing else may be
/// looked up, so a name that escaped the pinning fails rather than resolving unchecked.
struct PinnedOnly;

impl reqwest::dns::Resolve for PinnedOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let name = name.as_str().to_string();
        Box::pin(
            async move { Err(format!("`{name}` was not checked against the allowlist").into()) },
        )
    }
}

/// A reqwest error with its causes, which hold the useful part ("connection refused").
fn describe(error: &reqwest::Error) -> String {
    let mut text = if error.is_connect() {
        "could not connect".to_string()
    } else if error.is_timeout() {
        "timed out".to_string()
    } else if error.is_body() || error.is_decode() {
        "the body could not be read".to_string()
    } else {
        "the request failed".to_string()
    };
    let mut source = std::error::Error::source(error);
    let mut last = None;
    while let Some(cause) = source {
        last = Some(cause.to_string());
        source = cause.source();
    }
    if let Some(cause) = last {
        text.push_str(": ");
        text.push_str(&cause);
    }
    text
}

#[cfg(test)]
mod tests;
