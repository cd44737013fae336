//! Exporting spans over OTLP, configured by the standard `OTEL_*` variables.
//!
//! Spans are queued without blocking the run and sent in batches by a background task:
//! `POST {endpoint}/v1/traces` with an `ExportTraceServiceRequest` as protobuf (or JSON with
//! `OTEL_EXPORTER_OTLP_PROTOCOL=http/json`), or the same message as a unary gRPC call of
//! `TraceService/Export` over HTTP/2 with `OTEL_EXPORTER_OTLP_PROTOCOL=grpc` (h2c on `http://`,
//! ALPN `h2` on `https://`). `OTEL_EXPORTER_OTLP_COMPRESSION=gzip` compresses either.
//! An export that fails is retried a few times, then logged and dropped: telemetry never fails
//! or slows a run.

use std::time::Duration;

use chassis_http::HttpVersion;
use prost::Message;
use tokio::sync::{mpsc, oneshot};

use crate::proto::{
    ExportTraceServiceRequest, InstrumentationScope, KeyValue, Resource, ResourceSpans, ScopeSpans,
    Span,
};

/// Why the exporter could not be configured.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A variable holds a value that cannot be used.
    #[error("{var}: {message}")]
    Invalid {
        /// The variable.
        var: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The HTTP client could not be built.
    #[error("otlp exporter: {0}")]
    Client(String),
}

/// Wire encoding of the export body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// `http/protobuf`: `application/x-protobuf`.
    HttpProtobuf,
    /// `http/json`: `application/json`.
    HttpJson,
    /// `grpc`: the `TraceService/Export` unary call over HTTP/2.
    Grpc,
}

/// The gRPC method an OTLP/gRPC export calls, appended to the endpoint.
pub const GRPC_EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// Compression of the export body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// Sent as is.
    None,
    /// gzip: `Content-Encoding: gzip` over HTTP, `grpc-encoding: gzip` over gRPC.
    Gzip,
}

/// Where and how spans are exported.
#[derive(Clone, Debug, PartialEq)]
pub struct ExportConfig {
    /// The full URL posted to: `http://localhost:4318/v1/traces` over HTTP,
    /// `http://localhost:4317` + [`GRPC_EXPORT_PATH`] over gRPC.
    pub endpoint: String,
    /// Extra request headers (authentication, tenant); gRPC metadata over gRPC.
    pub headers: Vec<(String, String)>,
    /// Encoding.
    pub protocol: Protocol,
    /// Compression of the body.
    pub compression: Compression,
    /// Timeout of one export request.
    pub timeout: Duration,
    /// Longest a finished span waits before it is sent.
    pub schedule_delay: Duration,
    /// Most spans per request.
    pub max_batch: usize,
    /// Most spans waiting; more are dropped (and counted).
    pub max_queue: usize,
    /// Resource attributes: `service.name`, `OTEL_RESOURCE_ATTRIBUTES`, the SDK's own.
    pub resource: Vec<(String, String)>,
    /// Whether prompts, replies and tool payloads are recorded on spans.
    pub capture_content: bool,
}

impl ExportConfig {
    /// The configuration the process environment describes; `None` when nothing is to be
    /// exported (no endpoint, `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`).
    pub fn from_env() -> Result<Option<ExportConfig>, Error> {
        ExportConfig::from_vars(|name| std::env::var(name).ok())
    }

    /// [`ExportConfig::from_env`] over any source of variables.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<ExportConfig>, Error> {
        let get = |name: &str| {
            var(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        if get("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        if let Some(exporters) = get("OTEL_TRACES_EXPORTER")
            && !exporters.split(',').any(|e| e.trim() == "otlp")
        {
            return Ok(None);
        }
        let protocol_var = if get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").is_some() {
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
        } else {
            "OTEL_EXPORTER_OTLP_PROTOCOL"
        };
        let protocol = match get(protocol_var).as_deref() {
            None | Some("http/protobuf") => Protocol::HttpProtobuf,
            Some("http/json") => Protocol::HttpJson,
            Some("grpc") => Protocol::Grpc,
            Some(other) => {
                return Err(Error::Invalid {
                    var: protocol_var,
                    message: format!(
                        "`{other}` is not an OTLP protocol: use grpc, http/protobuf or http/json"
                    ),
                });
            }
        };
        let (endpoint_var, endpoint) = match (
            get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            get("OTEL_EXPORTER_OTLP_ENDPOINT"),
        ) {
            // The signal's own endpoint is the whole URL over HTTP; over gRPC the method's
            // path follows whatever was given, as the specification has it.
            (Some(url), _) if protocol == Protocol::Grpc => (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                format!("{}{GRPC_EXPORT_PATH}", url.trim_end_matches('/')),
            ),
            (Some(url), _) => ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", url),
            (None, Some(base)) if protocol == Protocol::Grpc => (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("{}{GRPC_EXPORT_PATH}", base.trim_end_matches('/')),
            ),
            (None, Some(base)) => (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("{}/v1/traces", base.trim_end_matches('/')),
            ),
            (None, None) => return Ok(None),
        };
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(Error::Invalid {
                var: endpoint_var,
                message: "must be an http:// or https:// URL".into(),
            });
        }
        let compression_var = if get("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION").is_some() {
            "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION"
        } else {
            "OTEL_EXPORTER_OTLP_COMPRESSION"
        };
        let compression = match get(compression_var).as_deref() {
            None | Some("none") => Compression::None,
            Some("gzip") => Compression::Gzip,
            Some(other) => {
                return Err(Error::Invalid {
                    var: compression_var,
                    message: format!("`{other}` is not a compression: use gzip or none"),
                });
            }
        };
        let mut headers = parse_pairs(get("OTEL_EXPORTER_OTLP_HEADERS").as_deref().unwrap_or(""));
        for (key, value) in parse_pairs(
            get("OTEL_EXPORTER_OTLP_TRACES_HEADERS")
                .as_deref()
                .unwrap_or(""),
        ) {
            headers.retain(|(k, _)| !k.eq_ignore_ascii_case(&key));
            headers.push((key, value));
        }
        let millis = |name: &'static str, default: u64| -> Result<Duration, Error> {
            match get(name) {
                None => Ok(Duration::from_millis(default)),
                Some(text) => {
                    // Capped, so that adding it to now cannot overflow (a panic).
                    text.parse::<u64>()
                        .map(|ms| Duration::from_millis(ms).min(chassis_core::duration::MAX))
                        .map_err(|_| Error::Invalid {
                            var: name,
                            message: format!("`{text}` is not a number of milliseconds"),
                        })
                }
            }
        };
        let count = |name: &'static str, default: usize| -> Result<usize, Error> {
            match get(name) {
                None => Ok(default),
                Some(text) => text
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| Error::Invalid {
                        var: name,
                        message: format!("`{text}` is not a positive number"),
                    }),
            }
        };
        let timeout = match get("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT") {
            Some(_) => millis("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", 10_000)?,
            None => millis("OTEL_EXPORTER_OTLP_TIMEOUT", 10_000)?,
        };
        let mut resource = parse_pairs(get("OTEL_RESOURCE_ATTRIBUTES").as_deref().unwrap_or(""));
        let service = get("OTEL_SERVICE_NAME")
            .or_else(|| {
                resource
                    .iter()
                    .find(|(k, _)| k == "service.name")
                    .map(|(_, v)| v.clone())
            })
            .unwrap_or_else(|| "chassis".into());
        resource.retain(|(k, _)| k != "service.name");
        resource.extend([
            ("service.name".to_string(), service),
            ("telemetry.sdk.name".into(), "chassis".into()),
            ("telemetry.sdk.language".into(), "rust".into()),
            (
                "telemetry.sdk.version".into(),
                env!("CARGO_PKG_VERSION").into(),
            ),
        ]);
        Ok(Some(ExportConfig {
            endpoint,
            headers,
            protocol,
            compression,
            timeout,
            schedule_delay: millis("OTEL_BSP_SCHEDULE_DELAY", 5_000)?,
            max_batch: count("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512)?,
            max_queue: count("OTEL_BSP_MAX_QUEUE_SIZE", 2_048)?,
            resource,
            capture_content: get("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT")
                .is_some_and(|v| v.eq_ignore_ascii_case("true")),
        }))
    }

    /// The header values: secrets to keep out of logs.
    pub fn header_values(&self) -> impl Iterator<Item = &str> {
        self.headers.iter().map(|(_, v)| v.as_str())
    }
}

/// `k1=v1,k2=v2` with percent-encoded values, as the `OTEL_*` list variables are written.
fn parse_pairs(text: &str) -> Vec<(String, String)> {
    text.split(',')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (percent_decode(k.trim()), percent_decode(v.trim())))
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

enum Command {
    Span(Box<Span>),
    Flush(oneshot::Sender<()>),
}

/// The handle that queues spans for the background exporter.
#[derive(Clone)]
pub struct Exporter {
    queue: mpsc::Sender<Command>,
    dropped: std::sync::Arc<std::sync::atomic::AtomicU64>,
    timeout: Duration,
}

impl Exporter {
    /// Starts the background task (on the current tokio runtime).
    pub fn start(config: ExportConfig) -> Result<Exporter, Error> {
        // gRPC is HTTP/2 only: h2c from the first byte on http://, ALPN h2 on https://.
        let version = match config.protocol {
            Protocol::Grpc => HttpVersion::Http2,
            Protocol::HttpProtobuf | Protocol::HttpJson => HttpVersion::Auto,
        };
        let client = chassis_http::builder(version)
            .timeout(config.timeout)
            .build()
            .map_err(|e| Error::Client(e.to_string()))?;
        let (queue, commands) = mpsc::channel(config.max_queue);
        let timeout = config.timeout;
        let dropped = std::sync::Arc::<std::sync::atomic::AtomicU64>::default();
        tokio::spawn(export_loop(client, config, commands, dropped.clone()));
        Ok(Exporter {
            queue,
            dropped,
            timeout,
        })
    }

    /// Queues a finished span; drops it when the queue is full.
    pub fn send(&self, span: Span) {
        if self.queue.try_send(Command::Span(Box::new(span))).is_err() {
            let dropped = self
                .dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if dropped == 0 {
                tracing::warn!("otlp export queue is full; dropping spans");
            }
        }
    }

    /// Spans dropped so far: queued when the queue was full, or refused or undeliverable
    /// after the retries.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Sends everything queued so far; waits at most the export timeout, so a collector that
    /// is down delays the end of a command by no more than that.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.queue.send(Command::Flush(done)).await.is_ok() {
            let _ = tokio::time::timeout(self.timeout, wait).await;
        }
    }
}

async fn export_loop(
    client: reqwest::Client,
    config: ExportConfig,
    mut commands: mpsc::Receiver<Command>,
    dropped: std::sync::Arc<std::sync::atomic::AtomicU64>,
) {
    let export = async |client: &reqwest::Client, config: &ExportConfig, spans: Vec<Span>| {
        let lost = export(client, config, spans).await;
        dropped.fetch_add(lost, std::sync::atomic::Ordering::Relaxed);
    };
    let mut batch: Vec<Span> = Vec::new();
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        let command = match deadline {
            Some(at) => match tokio::time::timeout_at(at, commands.recv()).await {
                Ok(command) => command,
                Err(_) => {
                    deadline = None;
                    export(&client, &config, std::mem::take(&mut batch)).await;
                    continue;
                }
            },
            None => commands.recv().await,
        };
        match command {
            Some(Command::Span(span)) => {
                batch.push(*span);
                deadline.get_or_insert_with(|| tokio::time::Instant::now() + config.schedule_delay);
                if batch.len() >= config.max_batch {
                    deadline = None;
                    export(&client, &config, std::mem::take(&mut batch)).await;
                }
            }
            Some(Command::Flush(done)) => {
                deadline = None;
                export(&client, &config, std::mem::take(&mut batch)).await;
                let _ = done.send(());
            }
            None => {
                export(&client, &config, std::mem::take(&mut batch)).await;
                return;
            }
        }
    }
}

/// The request carrying `spans`.
pub fn request(config: &ExportConfig, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: config
                    .resource
                    .iter()
                    .map(|(k, v)| KeyValue::str(k, v.clone()))
                    .collect(),
                dropped_attributes_count: 0,
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "chassis".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..InstrumentationScope::default()
                }),
                spans,
                schema_url: crate::spans::SCHEMA_URL.into(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// Exports `spans` in batches; how many were dropped.
async fn export(client: &reqwest::Client, config: &ExportConfig, spans: Vec<Span>) -> u64 {
    let mut dropped = 0;
    for chunk in spans.chunks(config.max_batch) {
        let request = request(config, chunk.to_vec());
        let body = encode(config, &request);
        if !send(client, config, body, chunk.len()).await {
            dropped += chunk.len() as u64;
        }
    }
    dropped
}

/// The body of one export request carrying `request`, encoded and compressed as configured;
/// over gRPC, one length-prefixed message.
pub fn encode(config: &ExportConfig, request: &ExportTraceServiceRequest) -> Vec<u8> {
    let message = match config.protocol {
        Protocol::HttpProtobuf | Protocol::Grpc => request.encode_to_vec(),
        Protocol::HttpJson => crate::proto::to_json(request).to_string().into_bytes(),
    };
    let message = match config.compression {
        Compression::None => message,
        Compression::Gzip => gzip(&message),
    };
    match config.protocol {
        Protocol::Grpc => {
            // gRPC's framing: a compressed flag, a big-endian length, the message. A batch is
            // far below 4 GiB (a span is kilobytes, a batch at most 512 of them by default).
            let length = u32::try_from(message.len()).unwrap_or(u32::MAX);
            let mut framed = Vec::with_capacity(message.len() + 5);
            framed.push(u8::from(config.compression == Compression::Gzip));
            framed.extend_from_slice(&length.to_be_bytes());
            framed.extend_from_slice(&message);
            framed
        }
        Protocol::HttpProtobuf | Protocol::HttpJson => message,
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 4),
        flate2::Compression::fast(),
    );
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(bytes);
    encoder.finish().unwrap_or_default()
}

/// What one attempt came to.
enum Outcome {
    Sent,
    Retry(String),
    Refused(String),
}

/// Posts one body, retrying what OTLP says is retryable (HTTP 429, 502, 503, 504; gRPC
/// CANCELLED, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED, OUT_OF_RANGE, UNAVAILABLE,
/// DATA_LOSS; no connection). Whether it was delivered.
async fn send(
    client: &reqwest::Client,
    config: &ExportConfig,
    body: Vec<u8>,
    spans: usize,
) -> bool {
    const ATTEMPTS: u32 = 3;
    for attempt in 1..=ATTEMPTS {
        let mut post = client.post(&config.endpoint).body(body.clone());
        post = match config.protocol {
            Protocol::Grpc => {
                let post = post
                    .header(reqwest::header::CONTENT_TYPE, "application/grpc")
                    .header(reqwest::header::TE, "trailers")
                    .header(
                        reqwest::header::USER_AGENT,
                        concat!("chassis/", env!("CARGO_PKG_VERSION")),
                    );
                match config.compression {
                    Compression::Gzip => post.header("grpc-encoding", "gzip"),
                    Compression::None => post,
                }
            }
            Protocol::HttpProtobuf | Protocol::HttpJson => {
                let content_type = match config.protocol {
                    Protocol::HttpJson => "application/json",
                    _ => "application/x-protobuf",
                };
                let post = post.header(reqwest::header::CONTENT_TYPE, content_type);
                match config.compression {
                    Compression::Gzip => post.header(reqwest::header::CONTENT_ENCODING, "gzip"),
                    Compression::None => post,
                }
            }
        };
        for (key, value) in &config.headers {
            post = post.header(key.as_str(), value.as_str());
        }
        let outcome = match post.send().await {
            Ok(response) if config.protocol == Protocol::Grpc => grpc_outcome(response).await,
            Ok(response) if response.status().is_success() => Outcome::Sent,
            Ok(response) => {
                let status = response.status().as_u16();
                if matches!(status, 429 | 502 | 503 | 504) {
                    Outcome::Retry(format!("HTTP {status}"))
                } else {
                    Outcome::Refused(format!("HTTP {status}"))
                }
            }
            // Without the URL: it may carry credentials.
            Err(error) => Outcome::Retry(error.without_url().to_string()),
        };
        match outcome {
            Outcome::Sent => return true,
            Outcome::Refused(why) => {
                tracing::warn!(status = %why, spans, "otlp export refused; spans dropped");
                return false;
            }
            Outcome::Retry(why) if attempt == ATTEMPTS => {
                tracing::warn!(error = %why, spans, "otlp export failed; spans dropped");
                return false;
            }
            Outcome::Retry(_) => tokio::time::sleep(Duration::from_millis(250 << attempt)).await,
        }
    }
    false
}

/// A gRPC answer: HTTP 200 and `grpc-status` 0, in the headers of a trailers-only answer or in
/// the trailers after the (empty) response message.
async fn grpc_outcome(response: reqwest::Response) -> Outcome {
    use http_body_util::BodyExt;
    let status = response.status();
    if !status.is_success() {
        // An HTTP error before gRPC: a proxy or a server that does not speak gRPC.
        return match status.as_u16() {
            429 | 502 | 503 | 504 => Outcome::Retry(format!("HTTP {status}")),
            _ => Outcome::Refused(format!("HTTP {status} (is the endpoint an OTLP/gRPC one?)")),
        };
    }
    let grpc_status = |headers: &reqwest::header::HeaderMap| {
        headers.get("grpc-status").map(|v| {
            let code = v.to_str().ok().and_then(|v| v.parse::<u32>().ok());
            let message = headers
                .get("grpc-message")
                .and_then(|m| m.to_str().ok())
                .unwrap_or("")
                .to_string();
            (code, message)
        })
    };
    let mut found = grpc_status(response.headers());
    if found.is_none() {
        let response: axum::http::Response<reqwest::Body> = response.into();
        match response.into_body().collect().await {
            Ok(collected) => found = collected.trailers().and_then(grpc_status),
            Err(e) => return Outcome::Retry(format!("reading the answer: {e}")),
        }
    }
    match found {
        Some((Some(0), _)) => Outcome::Sent,
        Some((Some(code @ (1 | 4 | 8 | 10 | 11 | 14 | 15)), message)) => {
            Outcome::Retry(format!("gRPC status {code} {message}"))
        }
        Some((code, message)) => Outcome::Refused(format!(
            "gRPC status {} {message}",
            code.map_or_else(|| "unreadable".to_string(), |c| c.to_string())
        )),
        None => Outcome::Refused("an answer without grpc-status".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Option<ExportConfig> {
        ExportConfig::from_vars(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
        .unwrap()
    }

    #[test]
    fn nothing_is_exported_without_an_endpoint_or_when_disabled() {
        assert_eq!(config(&[]), None);
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://h:4318");
        assert_eq!(config(&[endpoint, ("OTEL_SDK_DISABLED", "true")]), None);
        assert_eq!(config(&[endpoint, ("OTEL_TRACES_EXPORTER", "none")]), None);
    }

    #[test]
    fn standard_variables_are_followed() {
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://h:4318/"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=a%20b,x-tenant=t1"),
            ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "X-Tenant=t2"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ("OTEL_SERVICE_NAME", "desk"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=prod,service.name=x",
            ),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true"),
        ])
        .unwrap();
        let huge = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://h:4318"),
            ("OTEL_BSP_SCHEDULE_DELAY", "18446744073709551615"),
        ])
        .unwrap();
        assert_eq!(huge.schedule_delay, chassis_core::duration::MAX);
        assert_eq!(c.endpoint, "http://h:4318/v1/traces");
        assert_eq!(
            c.headers,
            [
                ("api-key".into(), "a b".into()),
                ("X-Tenant".into(), "t2".into())
            ]
        );
        assert_eq!(c.protocol, Protocol::HttpJson);
        assert_eq!(c.timeout, Duration::from_millis(2500));
        assert_eq!(c.schedule_delay, Duration::from_millis(100));
        assert!(c.capture_content);
        assert!(c.resource.contains(&("service.name".into(), "desk".into())));
        assert!(
            c.resource
                .contains(&("deployment.environment".into(), "prod".into()))
        );
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://h:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t/custom"),
        ])
        .unwrap();
        assert_eq!(c.endpoint, "http://t/custom");
        assert_eq!(c.protocol, Protocol::HttpProtobuf);
        assert!(!c.capture_content);
    }

    #[test]
    fn bad_values_name_the_variable() {
        let e = ExportConfig::from_vars(|name| match name {
            "OTEL_EXPORTER_OTLP_ENDPOINT" => Some("http://h".into()),
            "OTEL_EXPORTER_OTLP_TIMEOUT" => Some("soon".into()),
            _ => None,
        })
        .unwrap_err();
        assert!(
            e.to_string().starts_with("OTEL_EXPORTER_OTLP_TIMEOUT:"),
            "{e}"
        );
        let e = ExportConfig::from_vars(|name| match name {
            "OTEL_EXPORTER_OTLP_ENDPOINT" => Some("http://h:4317".into()),
            "OTEL_EXPORTER_OTLP_PROTOCOL" => Some("grpc/protobuf".into()),
            _ => None,
        })
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("OTEL_EXPORTER_OTLP_PROTOCOL: `grpc/protobuf` is not"),
            "{e}"
        );
        let e = ExportConfig::from_vars(|name| match name {
            "OTEL_EXPORTER_OTLP_ENDPOINT" => Some("http://h:4317".into()),
            "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION" => Some("zstd".into()),
            _ => None,
        })
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION: `zstd`"),
            "{e}"
        );
    }

    #[test]
    fn grpc_calls_the_export_method_at_the_endpoint() {
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317/"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
        ])
        .unwrap();
        assert_eq!(c.protocol, Protocol::Grpc);
        assert_eq!(c.compression, Compression::Gzip);
        assert_eq!(
            c.endpoint,
            "http://collector:4317/opentelemetry.proto.collector.trace.v1.TraceService/Export"
        );
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "https://c:4317"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ])
        .unwrap();
        assert_eq!(c.protocol, Protocol::Grpc);
        assert_eq!(c.compression, Compression::None);
        assert_eq!(
            c.endpoint,
            "https://c:4317/opentelemetry.proto.collector.trace.v1.TraceService/Export"
        );
    }

    #[test]
    fn a_grpc_body_is_one_length_prefixed_message_compressed_when_asked() {
        use std::io::Read;
        let span = Span {
            name: "chat mock".into(),
            ..Span::default()
        };
        for compression in [Compression::None, Compression::Gzip] {
            let mut c = config(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://h:4317"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ])
            .unwrap();
            c.compression = compression;
            let request = request(&c, vec![span.clone(), span.clone()]);
            let body = encode(&c, &request);
            assert_eq!(body[0], u8::from(compression == Compression::Gzip));
            let length = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
            assert_eq!(length, body.len() - 5);
            let mut message = body[5..].to_vec();
            if compression == Compression::Gzip {
                let mut plain = Vec::new();
                flate2::read::GzDecoder::new(&body[5..])
                    .read_to_end(&mut plain)
                    .unwrap();
                message = plain;
            }
            assert_eq!(
                ExportTraceServiceRequest::decode(&message[..]).unwrap(),
                request
            );
        }
    }
}
