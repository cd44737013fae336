//! The HTTP server: routes, the one request flow behind every model endpoint, and the handle
//! that stops it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::anthropic::Anthropic;
use crate::conn::{Connection, CutListener};
use crate::dialect::{Dialect, Failure, Streaming, ToolUse};
use crate::fault::FaultPicker;
use crate::openai::OpenAi;
use crate::reply;
use crate::stats::StatsRecorder;
use crate::{FaultKind, MockConfig, Script, Stats, ToolsWithoutChoice};

/// Long conversations are the point of some benchmarks; axum's 2 MB default is too small.
const BODY_LIMIT: usize = 64 * 1024 * 1024;

/// How long [`MockHandle::shutdown`] waits for open connections before aborting them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Names the injected fault on a response, to make captured traffic easy to read.
const FAULT_HEADER: HeaderName = HeaderName::from_static("x-mock-fault");

/// Everything a request handler needs, shared by all connections.
pub(crate) struct Shared {
    script: Script,
    picker: FaultPicker,
    stats: Arc<StatsRecorder>,
    latency: Duration,
    hang: Duration,
    retry_after: HeaderValue,
    next_id: AtomicU64,
    stopping: watch::Receiver<bool>,
    stream_chunk_chars: usize,
    stream_fault_after: usize,
    tools_without_choice: ToolsWithoutChoice,
    reject_null_tool_call_content: bool,
    require_user_agent: bool,
    unstreamable_auto_tools: bool,
    /// The requests-per-minute limit and the times of the requests accepted in the last minute.
    rpm_limit: Option<(
        u32,
        std::sync::Mutex<std::collections::VecDeque<std::time::Instant>>,
    )>,
}

impl Shared {
    /// Whether a request now goes over the requests-per-minute limit (a sliding minute: the
    /// requests accepted in the 60 s before now); an accepted one is counted.
    fn over_rpm_limit(&self) -> bool {
        let Some((limit, accepted)) = &self.rpm_limit else {
            return false;
        };
        let Ok(mut accepted) = accepted.lock() else {
            return false;
        };
        let now = std::time::Instant::now();
        while accepted
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
        {
            accepted.pop_front();
        }
        if accepted.len() >= *limit as usize {
            return true;
        }
        accepted.push_back(now);
        false
    }

    /// Sleeps for `duration`, or less if the server is shutting down.
    pub(crate) async fn pause(&self, duration: Duration) {
        if duration.is_zero() {
            return;
        }
        let mut stopping = self.stopping.clone();
        tokio::select! {
            () = tokio::time::sleep(duration) => {}
            _ = stopping.wait_for(|stop| *stop) => {}
        }
    }
}

/// Binds `addr` (port 0 picks a free port) and serves the mock on the current tokio runtime.
///
/// Returns as soon as the socket is bound; the server runs until [`MockHandle::shutdown`] or
/// until the handle is dropped.
pub async fn start(
    config: MockConfig,
    script: Script,
    addr: SocketAddr,
) -> std::io::Result<MockHandle> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let (stop, stopping) = watch::channel(false);
    let shared = Arc::new(Shared {
        script,
        picker: FaultPicker::new(config.seed, config.fault_rate, &config.faults),
        stats: Arc::default(),
        latency: config.latency,
        hang: config.hang,
        retry_after: HeaderValue::from(config.retry_after_secs),
        next_id: AtomicU64::new(1),
        stopping: stopping.clone(),
        stream_chunk_chars: config.stream_chunk_chars,
        stream_fault_after: config.stream_fault_after,
        tools_without_choice: config.tools_without_choice,
        reject_null_tool_call_content: config.reject_null_tool_call_content,
        require_user_agent: config.require_user_agent,
        unstreamable_auto_tools: config.unstreamable_auto_tools,
        rpm_limit: config.rpm_limit.map(|n| (n, Default::default())),
    });
    let app = Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/messages", post(messages))
        .route("/v1/models", get(models))
        .route("/_mock/stats", get(stats))
        .route("/_mock/reset", post(reset))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(Arc::clone(&shared));
    let mut signal = stopping;
    let server = axum::serve(
        CutListener::new(listener, Arc::clone(&shared.stats)),
        app.into_make_service_with_connect_info::<Connection>(),
    )
    .with_graceful_shutdown(async move {
        // An error means the handle is gone, which also means stop.
        let _ = signal.wait_for(|stop| *stop).await;
    });
    let task = tokio::spawn(async move {
        if let Err(err) = server.await {
            tracing::error!("mock server on {addr} stopped: {err}");
        }
    });
    tracing::debug!("mock server listening on {addr}");
    Ok(MockHandle {
        addr,
        shared,
        stop,
        task: Some(task),
    })
}

/// A running mock server; dropping it stops the server too.
pub struct MockHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for MockHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockHandle")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl MockHandle {
    /// The bound address, with the real port if port 0 was asked for.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The OpenAI base URL, e.g. `http://127.0.0.1:PORT/v1`; a wildcard bind uses loopback.
    #[must_use]
    pub fn base_url(&self) -> String {
        format!("{}/v1", self.anthropic_base_url())
    }

    /// The Anthropic base URL, e.g. `http://127.0.0.1:PORT`, to which clients append
    /// `/v1/messages`; a wildcard bind uses loopback.
    #[must_use]
    pub fn anthropic_base_url(&self) -> String {
        let mut addr = self.addr;
        if addr.ip().is_unspecified() {
            let loopback = match addr.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
            };
            addr.set_ip(loopback);
        }
        format!("http://{addr}")
    }

    /// The counters also served at `GET /_mock/stats`.
    #[must_use]
    pub fn stats(&self) -> Stats {
        self.shared.stats.snapshot()
    }

    /// Stops accepting, ends pending latency and hangs, and waits for open connections to close
    /// (aborting them after a few seconds).
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
                .await
                .is_err()
        {
            tracing::warn!(
                "mock server on {}: connections still open, aborting",
                self.addr
            );
            task.abort();
        }
    }
}

impl Drop for MockHandle {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// Messages of the injected HTTP errors, the same on every endpoint.
const RATE_LIMITED: &str = "Rate limit reached (injected by the mock)";
const SERVER_ERROR: &str =
    "The server had an error while processing your request (injected by the mock)";
const UNAVAILABLE: &str = "The server is overloaded or not ready yet (injected by the mock)";

async fn chat_completions(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(connection): ConnectInfo<Connection>,
    version: Version,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.stats.record_protocol(version);
    shared
        .stats
        .record_user_agent(headers.get(header::USER_AGENT));
    answer::<OpenAi>(shared, &connection, &headers, &body).await
}

async fn messages(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(connection): ConnectInfo<Connection>,
    version: Version,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.stats.record_protocol(version);
    shared
        .stats
        .record_user_agent(headers.get(header::USER_AGENT));
    answer::<Anthropic>(shared, &connection, &headers, &body).await
}

/// The flow of every model endpoint: read, enforce the configured rules, count, draw a fault,
/// wait, then fail or answer (whole, or streamed).
async fn answer<D: Dialect>(
    shared: Arc<Shared>,
    connection: &Connection,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let request = match D::read(headers, body) {
        Ok(request) => request,
        Err(message) => {
            shared.stats.record_invalid();
            return error_response::<D>(Failure::InvalidRequest, &message);
        }
    };
    if let Some((failure, message)) = refusal::<D>(&shared, headers, &request) {
        shared.stats.record_invalid();
        return error_response::<D>(failure, &message);
    }
    let streaming = D::stream(&request).map(|streaming| Streaming {
        chunk_chars: shared.stream_chunk_chars,
        ..streaming
    });
    let conv = D::conversation(&request);
    shared
        .stats
        .record(conv.turn, &conv.input, conv.prompt_chars);
    if shared.over_rpm_limit() {
        shared.stats.record_fault("rpm_limit");
        let mut response = error_response::<D>(Failure::RateLimited, RATE_LIMITED);
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, shared.retry_after.clone());
        return response;
    }
    if shared.unstreamable_auto_tools && streaming.is_some() && D::unstreamable(&request) {
        // What llama-cpp-python sends when its handler raises inside the stream.
        return (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream; charset=utf-8"),
            )],
            "",
        )
            .into_response();
    }
    let drawn = shared.picker.draw();
    // A mid-stream fault drawn for an answer that is not streamed strikes as its likeness.
    let fault = match streaming {
        Some(_) => drawn,
        None => drawn.map(FaultKind::unstreamed),
    };
    // Counted as drawn, so every configured kind shows up in the stats whatever the clients
    // ask for; the `x-mock-fault` header names what struck.
    if let Some(kind) = drawn {
        shared.stats.record_fault(kind.name());
        tracing::debug!(
            fault = kind.name(),
            turn = conv.turn,
            "mock: injecting fault"
        );
    }
    shared.pause(shared.latency).await;

    match fault {
        Some(FaultKind::RateLimited) => {
            let mut response = error_response::<D>(Failure::RateLimited, RATE_LIMITED);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, shared.retry_after.clone());
            return with_fault(response, FaultKind::RateLimited);
        }
        Some(FaultKind::ServerError) => {
            let response = error_response::<D>(Failure::ServerError, SERVER_ERROR);
            return with_fault(response, FaultKind::ServerError);
        }
        Some(FaultKind::Unavailable) => {
            let response = error_response::<D>(Failure::Unavailable, UNAVAILABLE);
            return with_fault(response, FaultKind::Unavailable);
        }
        Some(FaultKind::Cut) => {
            connection.cut();
            // Never reaches the client: writing it fails and the connection is dropped.
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
        Some(FaultKind::Hang) => shared.pause(shared.hang).await,
        Some(
            FaultKind::Malformed
            | FaultKind::BadArgs
            | FaultKind::StreamCut
            | FaultKind::StreamStall
            | FaultKind::StreamMalformed,
        )
        | None => {}
    }

    // A model may call no tool when told `none`, nor when its server drops tools it was not
    // told what to do with.
    let tools_dropped = match D::tool_use(&request) {
        ToolUse::Forbidden => true,
        ToolUse::Unsaid => shared.tools_without_choice == ToolsWithoutChoice::Ignore,
        ToolUse::NoTools | ToolUse::Auto | ToolUse::Forced => false,
    };
    let break_arguments = fault == Some(FaultKind::BadArgs) && !tools_dropped;
    let Some(mut reply) = reply::answer(&shared.script, &conv, break_arguments) else {
        return error_response::<D>(
            Failure::InvalidRequest,
            &format!(
                "no mock scenario matches the first user message {:?}",
                conv.input
            ),
        );
    };
    if tools_dropped {
        reply = reply.without_tools();
    }
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let model = D::model(&request).unwrap_or("mock");
    if let Some(streaming) = streaming
        && fault != Some(FaultKind::Malformed)
    {
        let events = D::stream_events(id, model, &conv, &reply, streaming);
        let (after, stall) = (shared.stream_fault_after, shared.hang);
        let response = crate::stream::response(Arc::clone(&shared), events, fault, after, stall);
        return match fault {
            Some(kind) => with_fault(response, kind),
            None => response,
        };
    }
    let mut body = D::reply_body(id, model, &conv, &reply);
    if fault == Some(FaultKind::Malformed) {
        // A strict prefix of a JSON object is never valid JSON.
        body.truncate(body.len() / 2);
    }
    let response = json_response(StatusCode::OK, body);
    match fault {
        Some(kind) => with_fault(response, kind),
        None => response,
    }
}

/// The configured rule of a real server that `request` breaks, as the failure to answer with.
fn refusal<D: Dialect>(
    shared: &Shared,
    headers: &HeaderMap,
    request: &D::Request,
) -> Option<(Failure, String)> {
    if shared.require_user_agent
        && headers
            .get(header::USER_AGENT)
            .is_none_or(|v| v.as_bytes().is_empty())
    {
        return Some((
            Failure::Forbidden,
            "requests without a User-Agent header are refused".to_owned(),
        ));
    }
    if shared.tools_without_choice == ToolsWithoutChoice::Refuse
        && D::tool_use(request) == ToolUse::Unsaid
    {
        return Some((
            Failure::InvalidRequest,
            "tool_choice: required when tools are given".to_owned(),
        ));
    }
    if shared.reject_null_tool_call_content
        && let Some(i) = D::null_tool_call_content(request)
    {
        // FastAPI's words for pydantic's error, as llama-cpp-python 0.3 answers with them.
        return Some((
            Failure::ValidationCrash,
            format!(
                "1 validation error:\n  {{'type': 'string_type', 'loc': ('body', 'messages', {i}, \
                 'ChatCompletionRequestAssistantMessage', 'content'), 'msg': 'Input should be a \
                 valid string', 'input': None}}"
            ),
        ));
    }
    None
}

async fn models() -> Response {
    json_response(
        StatusCode::OK,
        br#"{"object":"list","data":[{"id":"mock","object":"model","owned_by":"chassis"}]}"#
            .to_vec(),
    )
}

async fn stats(State(shared): State<Arc<Shared>>) -> Response {
    let body = serde_json::to_vec(&shared.stats.snapshot()).expect("stats always serialize");
    json_response(StatusCode::OK, body)
}

async fn reset(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.stats.reset();
    StatusCode::NO_CONTENT
}

/// Unknown paths get an error in the dialect the client seems to speak.
async fn not_found(headers: HeaderMap) -> Response {
    const MESSAGE: &str = "unknown mock endpoint";
    if headers.contains_key("anthropic-version") {
        error_response::<Anthropic>(Failure::NotFound, MESSAGE)
    } else {
        error_response::<OpenAi>(Failure::NotFound, MESSAGE)
    }
}

fn error_response<D: Dialect>(failure: Failure, message: &str) -> Response {
    json_response(failure.status(), D::error_body(failure, message))
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

fn with_fault(mut response: Response, kind: FaultKind) -> Response {
    response
        .headers_mut()
        .insert(FAULT_HEADER, HeaderValue::from_static(kind.name()));
    response
}
