//! One MCP server and its connection, shared by its tools and restarted when it fails.
//!
//! A call that times out, or finds the transport closed, drops the connection (which stops a
//! stdio server); the next call starts a new one. A hung or crashed server therefore costs one
//! failed call, never a hung run.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use chassis_core::spec::{HttpVersion, McpServerSpec, McpTransport, ToolEnv};
use futures_util::StreamExt;
use rmcp::ClientHandler;
use rmcp::handler::client::progress::ProgressDispatcher;
use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResult, CancelledNotification,
    CancelledNotificationParam, ClientCapabilities, ClientConfig, ClientRequest, ErrorData,
    Implementation, JsonObject, ProgressNotificationParam, RequestMetaObject, ServerResult,
};
use rmcp::service::{
    ClientInitializeError, NotificationContext, PeerRequestOptions, RoleClient, RunningService,
    ServiceError, ServiceExt,
};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::{
    StreamableHttpClientTransportConfig, StreamableHttpError,
};
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::time::Instant;

use super::auth::{Auth, AuthClient, failure_in, refusal_in};
use super::tasks::{Sniff, TaskSupport};
use crate::command::{format_duration, resolve_program};
use crate::{CallContext, ToolError};

/// How long starting a server (spawn or connect, initialize) and listing its tools may take.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How much of the end of a stdio server's stderr failure messages quote.
const STDERR_TAIL_BYTES: usize = 1024;

/// How long a failure message waits for a dead server's stderr to be drained.
const STDERR_WAIT: Duration = Duration::from_millis(500);

type Client = RunningService<RoleClient, Handler>;

/// How to reach a server.
enum Launch {
    Stdio {
        program: PathBuf,
        args: Vec<String>,
        env: ToolEnv,
        working_dir: PathBuf,
    },
    Http {
        url: String,
        /// The HTTP client, with the server's credentials.
        client: AuthClient,
    },
}

/// One `[mcp.NAME]` server.
pub(crate) struct Server {
    name: String,
    launch: Launch,
    /// Time limit of one tool call, all its attempts included.
    timeout: Duration,
    /// How long a call may go without an answer or a progress notification.
    idle_timeout: Option<Duration>,
    /// The directories the agent's fs tools may use, offered to the server as its `roots`.
    roots: Vec<PathBuf>,
    /// The connection in use; `None` after a failure, until the next call restarts it.
    live: tokio::sync::Mutex<Option<Arc<Connection>>>,
    /// What the server's `tools/list` said of each tool's `execution.taskSupport`.
    tasks: TaskSupport,
}

/// The end of a stdio server's stderr, kept by the task that drains it.
#[derive(Clone)]
struct Tail {
    bytes: Arc<std::sync::Mutex<VecDeque<u8>>>,
    /// Becomes true when stderr is closed, i.e. the server has exited.
    closed: tokio::sync::watch::Receiver<bool>,
}

/// A started server.
struct Connection {
    client: Client,
    /// The end of a stdio server's stderr, to explain a crash.
    stderr: Option<Tail>,
    /// A stdio server's process, killed when the connection is dropped.
    _process: Option<tokio::process::Child>,
}

/// `; its stderr ends with: …`, or nothing when the server wrote nothing there.
///
/// Waits a little for stderr to close first, so a server that just died has its last words
/// read.
async fn stderr_note(tail: &Option<Tail>) -> String {
    let Some(tail) = tail else {
        return String::new();
    };
    let mut closed = tail.closed.clone();
    let _ = tokio::time::timeout(STDERR_WAIT, closed.wait_for(|c| *c)).await;
    let bytes: Vec<u8> = tail
        .bytes
        .lock()
        .map(|t| t.iter().copied().collect())
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes);
    let text = text.trim();
    if text.is_empty() {
        String::new()
    } else {
        format!("; its stderr ends with: {text}")
    }
}

impl Server {
    /// Checks the spec and describes the server, reading the variables its credentials name
    /// through `env`; nothing is started yet.
    ///
    /// The error names the spec key at fault: `mcp.NAME.command` (a program that cannot be
    /// found), or the header or OAuth field whose variable is not set.
    pub(crate) fn new(
        name: &str,
        spec: &McpServerSpec,
        base_dir: &Path,
        env: &(dyn Fn(&str) -> Option<String> + Sync),
    ) -> Result<Server, crate::Error> {
        let tasks = TaskSupport::default();
        let launch = match &spec.transport {
            McpTransport::Stdio { command, env } => {
                let at = |m: String| {
                    crate::Error::new(
                        format!("mcp.{name}.command"),
                        format!("server `{name}`: {m}"),
                    )
                };
                let (written, args) = command
                    .split_first()
                    .ok_or_else(|| at("must list the program and its arguments".to_string()))?;
                let (program, working_dir) = resolve_program(written, base_dir).map_err(at)?;
                Launch::Stdio {
                    program,
                    args: args.to_vec(),
                    env: env.clone(),
                    working_dir,
                }
            }
            McpTransport::Http {
                url,
                headers,
                oauth,
            } => {
                let http = http_client().map_err(|m| {
                    crate::Error::new(format!("mcp.{name}.url"), format!("server `{name}`: {m}"))
                })?;
                let auth = Auth::new(name, url, headers, oauth.as_ref(), env, http.clone())
                    .map_err(|(key, m)| crate::Error::new(key, format!("server `{name}`: {m}")))?;
                Launch::Http {
                    url: url.clone(),
                    client: AuthClient {
                        http,
                        auth: Arc::new(auth),
                        tasks: tasks.clone(),
                    },
                }
            }
        };
        Ok(Server {
            name: name.to_string(),
            launch,
            timeout: spec.timeout,
            idle_timeout: spec.idle_timeout,
            roots: Vec::new(),
            live: tokio::sync::Mutex::new(None),
            tasks,
        })
    }

    /// `text` without any token this server's OAuth client was given (the values of its
    /// headers' variables are the agent redactor's to remove).
    pub(crate) fn scrub(&self, text: &str) -> String {
        match &self.launch {
            Launch::Http { client, .. } => client.auth.scrub(text),
            Launch::Stdio { .. } => text.to_string(),
        }
    }

    /// This server, offered `roots` (directories, absolute) as the roots the agent may use.
    pub(crate) fn with_roots(mut self, roots: Vec<PathBuf>) -> Server {
        self.roots = roots;
        self
    }

    /// The server's name in the spec.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The `execution.taskSupport` the server listed `tool` with, if any.
    pub(crate) fn task_support(&self, tool: &str) -> Option<String> {
        self.tasks.of(tool)
    }

    /// Starts the server and lists its tools, all within [`START_TIMEOUT`]; the connection is
    /// kept for the calls that follow.
    pub(crate) async fn start(&self) -> Result<Vec<rmcp::model::Tool>, String> {
        let name = &self.name;
        let deadline = Instant::now() + START_TIMEOUT;
        let connection = self.connect(deadline).await?;
        let listing = connection.client.peer().list_all_tools();
        let listed = match tokio::time::timeout_at(deadline, listing).await {
            Ok(Ok(listed)) => listed,
            Ok(Err(e)) => {
                if let Some(failure) = failure_in(&e) {
                    return Err(format!("MCP server `{name}`: {failure}"));
                }
                return Err(format!(
                    "server `{name}` failed to list its tools: {}{}",
                    describe(&e),
                    stderr_note(&connection.stderr).await
                ));
            }
            Err(_) => {
                return Err(format!(
                    "server `{name}` did not start and list its tools within {}",
                    format_duration(START_TIMEOUT)
                ));
            }
        };
        *self.live.lock().await = Some(Arc::new(connection));
        Ok(listed)
    }

    /// Spawns or connects, and initializes, by `deadline`.
    async fn connect(&self, deadline: Instant) -> Result<Connection, String> {
        let name = &self.name;
        let info = Handler::new(&self.roots);
        match &self.launch {
            Launch::Stdio {
                program,
                args,
                env,
                working_dir,
            } => {
                let mut command = tokio::process::Command::new(program);
                // A cleared environment: the default set and what the spec names.
                crate::env::apply(&mut command, env);
                command
                    .args(args)
                    .current_dir(working_dir)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .kill_on_drop(true);
                let mut process = command.spawn().map_err(|e| {
                    format!(
                        "server `{name}`: could not start program `{}`: {e}",
                        program.display()
                    )
                })?;
                let (Some(stdin), Some(stdout)) = (process.stdin.take(), process.stdout.take())
                else {
                    return Err(format!(
                        "server `{name}`: program `{}` was started without pipes to talk to",
                        program.display()
                    ));
                };
                let tail = process.stderr.take().map(|stderr| {
                    let bytes = Arc::default();
                    let (done, closed) = tokio::sync::watch::channel(false);
                    tokio::spawn(keep_tail(stderr, Arc::clone(&bytes), done));
                    Tail { bytes, closed }
                });
                // rmcp reads stdout after the sniffer, which sees each message first.
                let transport = (Sniff::new(stdout, self.tasks.clone()), stdin);
                let client = initialize(name, info.serve(transport), deadline, &tail).await?;
                Ok(Connection {
                    client,
                    stderr: tail,
                    _process: Some(process),
                })
            }
            Launch::Http { url, client } => {
                let config = StreamableHttpClientTransportConfig::with_uri(url.as_str());
                let transport = StreamableHttpClientTransport::with_client(client.clone(), config);
                let client = initialize(name, info.serve(transport), deadline, &None).await?;
                Ok(Connection {
                    client,
                    stderr: None,
                    _process: None,
                })
            }
        }
    }

    /// The live connection, starting the server again (within [`START_TIMEOUT`]) if the last
    /// one failed. The caller bounds the whole by the call's own deadline.
    async fn connection(&self) -> Result<Arc<Connection>, ToolError> {
        let mut live = self.live.lock().await;
        if let Some(connection) = live.as_ref()
            && !connection.client.peer().is_transport_closed()
        {
            return Ok(connection.clone());
        }
        // Not sent yet, so a server that died between calls can be replaced for this one.
        *live = None;
        let deadline = Instant::now() + START_TIMEOUT;
        let connection = Arc::new(self.connect(deadline).await.map_err(|m| {
            ToolError::failed(format!(
                "MCP server `{}` could not be restarted: {m}",
                self.name
            ))
        })?);
        *live = Some(connection.clone());
        Ok(connection)
    }

    /// Forgets `connection` if it is still the live one, which stops the server once calls
    /// still holding it are done.
    async fn discard(&self, connection: &Arc<Connection>) {
        let mut live = self.live.lock().await;
        if live.as_ref().is_some_and(|c| Arc::ptr_eq(c, connection)) {
            *live = None;
        }
    }

    /// Calls `tool` within the server's timeout, restarting the server first if its last
    /// connection failed: one deadline, counted from the call's first attempt
    /// ([`CallContext::began`]), covers waiting for the connection, starting the server again
    /// and every attempt, so no call outlives its `timeout` however often it is retried.
    ///
    /// The idempotency key, run id and call id go in the request's `_meta` as
    /// `chassis/idempotency_key`, `chassis/run_id` and `chassis/call_id`. The server's
    /// `notifications/progress` for the call are logged as they come, and each one gives a
    /// call under `idle_timeout` that long again (never past `timeout`).
    pub(crate) async fn call(
        &self,
        tool: &str,
        arguments: JsonObject,
        ctx: &CallContext,
    ) -> Result<CallToolResult, ToolError> {
        let name = &self.name;
        let timeout = format_duration(self.timeout);
        // Saturating: a timeout built in code may be longer than any spec allows.
        let deadline = ctx
            .began
            .checked_add(self.timeout)
            .unwrap_or_else(|| ctx.began + chassis_core::duration::MAX);
        if Instant::now() >= deadline {
            // Nothing is sent: earlier attempts used the time up.
            return Err(ToolError::failed(format!(
                "`{tool}` (MCP server `{name}`) timed out: its {timeout} were used up by \
                 earlier attempts"
            ))
            .last());
        }
        let connection = match tokio::time::timeout_at(deadline, self.connection()).await {
            Ok(connection) => connection?,
            // Nothing was sent: the tool did not act.
            Err(_elapsed) => {
                return Err(ToolError::failed(format!(
                    "`{tool}` (MCP server `{name}`) timed out after {timeout} before the call \
                     could be sent (the server was being started)"
                ))
                .last());
            }
        };
        let mut meta = JsonObject::new();
        meta.insert(
            "chassis/idempotency_key".into(),
            Value::String(ctx.idempotency_key.clone()),
        );
        meta.insert("chassis/run_id".into(), Value::String(ctx.run_id.clone()));
        meta.insert("chassis/call_id".into(), Value::String(ctx.call_id.clone()));
        let mut params = CallToolRequestParams::new(tool.to_string()).with_arguments(arguments);
        params.meta = Some(RequestMetaObject::from(meta));
        let outcome =
            tokio::time::timeout_at(deadline, self.send(&connection, tool, params, ctx)).await;
        match outcome {
            Ok(Ok(Answer::Result(result))) => Ok(result),
            // chassis never offers the tasks extension, so a server that conforms never does
            // this; one that does has started the work, and chassis cannot follow it.
            Ok(Ok(Answer::Task)) => Err(ToolError::indeterminate(format!(
                "`{tool}` (MCP server `{name}`) was answered with a task (MCP tasks), which \
                 chassis does not support: the work may be going on at the server"
            ))
            .last()),
            // Refused before it was carried out: the tool did not act.
            Ok(Err(e)) if failure_in(&e).is_some() => Err(ToolError::failed(format!(
                "`{tool}` (MCP server `{name}`) was refused: {}",
                failure_in(&e).map(ToString::to_string).unwrap_or_default()
            ))),
            // The server refused the request by its status: it was not carried out.
            Ok(Err(e)) if refusal_in(&e).is_some() => Err(ToolError::failed(format!(
                "`{tool}` (MCP server `{name}`) was refused: {}",
                refusal_in(&e).unwrap_or_default()
            ))),
            // Nothing reached the server: it is gone (a stdio server's exit is TransportClosed).
            Ok(Err(e)) if unreachable(&e) => {
                self.discard(&connection).await;
                Err(ToolError::failed(format!(
                    "MCP server `{name}` could not be reached for the call to `{tool}` ({}); \
                     it will be connected to again on the next call",
                    describe(&e)
                )))
            }
            // The server's JSON-RPC error answers the request: another attempt gets the same.
            Ok(Err(ServiceError::McpError(error))) => Err(ToolError::answered(format!(
                "`{tool}` (MCP server `{name}`) failed: {}",
                error.message
            ))),
            Ok(Err(e @ (ServiceError::TransportClosed | ServiceError::TransportSend(_)))) => {
                self.discard(&connection).await;
                let cause = match &e {
                    ServiceError::TransportSend(_) => format!(" ({})", describe(&e)),
                    _ => String::new(),
                };
                Err(ToolError::indeterminate(format!(
                    "MCP server `{name}` closed the connection during the call to `{tool}`{cause}; \
                    it will be restarted on the next call{}",
                    stderr_note(&connection.stderr).await
                )))
            }
            Ok(Err(ServiceError::Timeout { timeout: idle })) => {
                self.discard(&connection).await;
                Err(ToolError::indeterminate(format!(
                    "`{tool}` (MCP server `{name}`) went {} without an answer or a progress \
                    notification; the server will be restarted on the next call",
                    format_duration(idle)
                )))
            }
            Ok(Err(e)) => Err(ToolError::failed(format!(
                "`{tool}` (MCP server `{name}`) failed: {}",
                describe(&e)
            ))),
            Err(_elapsed) => {
                self.discard(&connection).await;
                Err(ToolError::indeterminate(format!(
                    "`{tool}` (MCP server `{name}`) timed out after {timeout}; the server will \
                    be restarted on the next call"
                ))
                .last())
            }
        }
    }

    /// Sends `tools/call` on `connection` and waits for its result, logging the server's
    /// progress notifications for it; without either for `idle_timeout`, it is a
    /// [`ServiceError::Timeout`]. The caller bounds the whole wait.
    async fn send(
        &self,
        connection: &Connection,
        tool: &str,
        params: CallToolRequestParams,
        ctx: &CallContext,
    ) -> Result<Answer, ServiceError> {
        let request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
        let mut handle = connection
            .client
            .peer()
            .send_request_with_option(request, PeerRequestOptions::no_options())
            .await?;
        let mut progress = connection
            .client
            .service()
            .progress
            .subscribe(handle.progress_token.clone())
            .await;
        let mut cancel = CancelOnDrop(Some((connection.client.peer().clone(), handle.id.clone())));
        let idle = self.idle_timeout.unwrap_or(Duration::MAX);
        let quiet = tokio::time::sleep(idle.min(chassis_core::duration::MAX));
        tokio::pin!(quiet);
        let answer = loop {
            tokio::select! {
                answer = &mut handle.rx => break answer,
                () = &mut quiet, if self.idle_timeout.is_some() => {
                    return Err(ServiceError::Timeout { timeout: idle });
                }
                Some(note) = progress.next() => {
                    if let Some(idle) = self.idle_timeout {
                        quiet.as_mut().reset(Instant::now() + idle);
                    }
                    ctx.progress.report(chassis_core::ToolProgress {
                        tool: tool.to_string(),
                        progress: note.progress,
                        total: note.total,
                        message: note.message.clone(),
                    });
                    let total = note.total.map(|t| format!("/{t}")).unwrap_or_default();
                    tracing::info!(
                        run_id = %ctx.run_id,
                        call_id = %ctx.call_id,
                        server = %self.name,
                        tool,
                        progress = %format!("{}{total}", note.progress),
                        message = note.message.as_deref().unwrap_or_default(),
                        "MCP tool progress"
                    );
                }
            }
        };
        cancel.0 = None;
        match answer.map_err(|_| ServiceError::TransportClosed)?? {
            ServerResult::CallToolResult(result) => Ok(Answer::Result(result)),
            ServerResult::CreateTaskResult(_) => Ok(Answer::Task),
            _ => Err(ServiceError::UnexpectedResponse),
        }
    }
}

/// What a server answered to `tools/call`.
enum Answer {
    Result(CallToolResult),
    /// A task (the MCP tasks extension) that will carry the call out.
    Task,
}

/// Tells the server a call was abandoned (timed out, or its run interrupted) unless it was
/// answered.
struct CancelOnDrop(Option<(rmcp::service::Peer<RoleClient>, rmcp::model::RequestId)>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some((peer, id)) = self.0.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let cancelled = CancelledNotification::new(CancelledNotificationParam::new(
                Some(id),
                Some("the call was abandoned".into()),
            ));
            let _ = peer.send_notification(cancelled.into()).await;
        });
    }
}

/// What chassis tells a server about itself, and how it hears the server's notifications.
pub(crate) struct Handler {
    info: ClientConfig,
    /// Progress notifications, by the token of the call they belong to.
    progress: ProgressDispatcher,
    /// What `roots/list` answers: each root's URI and name.
    roots: Vec<(String, String)>,
}

impl Handler {
    fn new(roots: &[PathBuf]) -> Handler {
        let mut capabilities = ClientCapabilities::default();
        if !roots.is_empty() {
            capabilities.roots = Some(rmcp::model::RootsCapabilities::default());
        }
        Handler {
            info: ClientConfig::new(
                capabilities,
                Implementation::new("chassis", env!("CARGO_PKG_VERSION")),
            ),
            progress: ProgressDispatcher::new(),
            roots: roots
                .iter()
                .map(|dir| {
                    let name = dir
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_else(|| dir.display().to_string());
                    (file_uri(dir), name)
                })
                .collect(),
        }
    }
}

/// `file://` and the path, its bytes percent-encoded where a URI needs it.
fn file_uri(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut uri = String::from("file://");
    for &byte in path.as_os_str().as_bytes() {
        if byte.is_ascii_alphanumeric() || b"/-._~".contains(&byte) {
            uri.push(char::from(byte));
        } else {
            uri.push_str(&format!("%{byte:02X}"));
        }
    }
    uri
}

impl ClientHandler for Handler {
    fn get_info(&self) -> ClientConfig {
        self.info.clone()
    }

    // Roots are deprecated by a later protocol revision (SEP-2577), which servers of today do
    // not speak.
    #[expect(deprecated)]
    async fn list_roots(
        &self,
        _context: rmcp::service::RequestContext<RoleClient>,
    ) -> Result<rmcp::model::ListRootsResult, ErrorData> {
        let roots = self
            .roots
            .iter()
            .map(|(uri, name)| rmcp::model::Root::new(uri.as_str()).with_name(name.as_str()))
            .collect();
        Ok(rmcp::model::ListRootsResult::new(roots))
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.progress.handle_notification(params).await;
    }
}

/// The client for streamable-HTTP servers, HTTP/1.1 (as rmcp's own default client).
///
/// Redirects are not followed: a session id sent on to another origin would leak, and MCP
/// endpoints are configured exactly.
fn http_client() -> Result<reqwest::Client, String> {
    chassis_http::builder(HttpVersion::Http1)
        .redirect(reqwest::redirect::Policy::none())
        // As rmcp's own default: reusing a connection whose last body was not read to the end
        // can stall on delayed ACKs.
        .pool_max_idle_per_host(0)
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))
}

/// Waits for `initialize` until `deadline`, naming the server and what failed.
async fn initialize<F>(
    name: &str,
    serving: F,
    deadline: Instant,
    tail: &Option<Tail>,
) -> Result<Client, String>
where
    F: Future<Output = Result<Client, ClientInitializeError>>,
{
    match tokio::time::timeout_at(deadline, serving).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(e)) if init_failure(&e).is_some() => Err(format!(
            "MCP server `{name}`: {}",
            init_failure(&e)
                .map(ToString::to_string)
                .unwrap_or_default()
        )),
        Ok(Err(e)) => Err(format!(
            "server `{name}` failed to initialize: {}{}",
            describe_init(&e),
            stderr_note(tail).await
        )),
        // A hung server's stderr stays open; waiting on it would only add delay.
        Err(_) => Err(format!(
            "server `{name}` did not answer `initialize` within {}",
            format_duration(START_TIMEOUT)
        )),
    }
}

/// The credentials failure behind a failed `initialize`, if that is what it was (the transport
/// error is not the initialize error's `source`).
fn init_failure(error: &ClientInitializeError) -> Option<&super::auth::AuthFailure> {
    failure_in(error).or(match error {
        ClientInitializeError::TransportError { error, .. } => failure_in(error),
        _ => None,
    })
}

/// Drains a server's stderr, keeping its last [`STDERR_TAIL_BYTES`] bytes; says when it closes.
async fn keep_tail(
    mut stderr: tokio::process::ChildStderr,
    tail: Arc<std::sync::Mutex<VecDeque<u8>>>,
    done: tokio::sync::watch::Sender<bool>,
) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = stderr.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let Ok(mut tail) = tail.lock() else { break };
        tail.extend(&buf[..n]);
        let excess = tail.len().saturating_sub(STDERR_TAIL_BYTES);
        tail.drain(..excess);
    }
    let _ = done.send(true);
}

/// Whether the request could not be sent because no connection to the server could be made.
fn unreachable(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        let client = match e.downcast_ref::<StreamableHttpError<reqwest::Error>>() {
            Some(StreamableHttpError::Client(client)) => Some(client),
            _ => e.downcast_ref::<reqwest::Error>(),
        };
        if client.is_some_and(reqwest::Error::is_connect) {
            return true;
        }
        current = e.source();
    }
    false
}

fn describe(error: &ServiceError) -> String {
    match error {
        ServiceError::TransportClosed => "the transport is closed".to_string(),
        ServiceError::TransportSend(e) => format!("sending failed: {}", root_cause(e)),
        ServiceError::McpError(data) => data.message.to_string(),
        other => other.to_string(),
    }
}

fn describe_init(error: &ClientInitializeError) -> String {
    match error {
        ClientInitializeError::ConnectionClosed(_) => {
            "the connection closed before it answered".to_string()
        }
        ClientInitializeError::TransportError { error, context } => {
            format!("{context}: {}", root_cause(error))
        }
        ClientInitializeError::JsonRpcError(data) => format!("it answered: {}", data.message),
        other => other.to_string(),
    }
}

/// The innermost cause, which says what happened ("Connection refused") without the layers
/// of transport names around it.
pub(crate) fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}
