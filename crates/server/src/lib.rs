//! `chassis serve`: the runtime as a service.
//!
//! One process serves the HTTP API (`/v1`, described by `/openapi.json`), streams runs from the
//! journal as Server-Sent Events, and drives runs with the same worker machinery as
//! `chassis worker` (same leases: several servers and workers share one PostgreSQL journal).
//! Every handler is a library call into the engine or telemetry, so the CLI and the API cannot
//! disagree about what "approve" or "cancel" means. Every endpoint but `/healthz` (and the
//! console's pages, which carry no data) needs a bearer token; each token has a role, and the
//! identity journaled with a decision is the token's name.

pub mod agents;
pub mod api;
pub mod auth;
mod conn;
pub mod console;
pub mod openapi;
pub mod problem;
pub mod routes;
pub mod stream;
mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use chassis_engine::{Engine, Worker, WorkerConfig};
use chassis_store::Journal;

pub use agents::Registry;
pub use problem::Problem;

/// Largest request body accepted.
pub const MAX_BODY: usize = 1024 * 1024;

/// Longest a request (other than a stream) may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How a server is set up.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where to listen.
    pub addr: SocketAddr,
    /// The directory of agent specs (each `agent.toml` under it).
    pub agents: Option<PathBuf>,
    /// Runs driven at once by this server's worker; 0 for an API-only instance.
    pub workers: usize,
    /// The worker's settings (name, leases, polling).
    pub worker: WorkerConfig,
    /// A certificate chain and key (PEM) to serve HTTPS with.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// An origin allowed to call the API from a browser (CORS); none by default.
    pub cors: Option<String>,
}

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The agents could not be loaded.
    #[error(transparent)]
    Agents(#[from] agents::Error),
    /// The address cannot be listened on.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The TLS certificate or key cannot be used.
    #[error("TLS: {0}")]
    Tls(String),
    /// The journal failed.
    #[error(transparent)]
    Store(#[from] chassis_store::Error),
}

struct Inner {
    engine: Arc<Engine>,
    registry: Registry,
    hub: Arc<stream::Hub>,
    metrics: Arc<chassis_telemetry::Metrics>,
    /// Ended runs' contributions to `/v1/stats`, read once per process.
    stats: chassis_telemetry::stats::ReportCache,
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl AppState {
    /// The engine (shared with the server's worker).
    pub fn engine(&self) -> &Arc<Engine> {
        &self.0.engine
    }

    /// The journal.
    pub fn journal(&self) -> &Arc<dyn Journal> {
        self.0.engine.journal()
    }

    /// Ended runs' contributions to `/v1/stats`.
    pub fn stats_cache(&self) -> &chassis_telemetry::stats::ReportCache {
        &self.0.stats
    }

    /// The agents on offer.
    pub fn registry(&self) -> &Registry {
        &self.0.registry
    }

    /// The streams' wake-ups.
    pub fn hub(&self) -> &stream::Hub {
        &self.0.hub
    }

    /// The server's metrics.
    pub fn metrics(&self) -> &chassis_telemetry::Metrics {
        &self.0.metrics
    }
}

/// A server ready to serve: agents loaded, engine set up.
pub struct Server {
    state: AppState,
    config: Config,
}

impl Server {
    /// Loads the agents (a bad spec stops here, naming the file and key) and sets up the
    /// engine: `engine` gets the server's observers (streams, metrics) added.
    pub async fn new(engine: Engine, config: Config) -> Result<Server, Error> {
        let hub = Arc::new(stream::Hub::default());
        let metrics = Arc::new(chassis_telemetry::Metrics::new());
        metrics.watch_journal(Arc::clone(engine.journal()));
        let mut drive = engine.drive_config().clone();
        drive.owner = config.worker.name.clone();
        drive.lease_ttl = config.worker.lease_ttl;
        drive.renew_every = config.worker.renew_every;
        let engine = engine
            .with_drive_config(drive)
            .with_observer(Arc::new(stream::HubObserver(Arc::clone(&hub))))
            .with_observer(Arc::clone(&metrics) as Arc<dyn chassis_engine::Observer>);
        let registry = Registry::load(config.agents.as_deref(), &engine).await?;
        Ok(Server {
            state: AppState(Arc::new(Inner {
                engine: Arc::new(engine),
                registry,
                hub,
                metrics,
                stats: Default::default(),
            })),
            config,
        })
    }

    /// What the handlers share.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The API's routes.
    pub fn router(&self) -> Router {
        router(self.state.clone(), self.config.cors.clone())
    }

    /// Makes the first admin token when the store has none; returns it (shown once).
    pub async fn first_token(&self) -> Result<Option<String>, Error> {
        if !self.state.journal().tokens().await?.is_empty() {
            return Ok(None);
        }
        let token = auth::create(self.state.journal().as_ref(), "admin", "admin")
            .await
            .map_err(|e| match e {
                auth::Error::Store(e) => Error::Store(e),
                other => Error::Tls(other.to_string()),
            })?;
        Ok(Some(token))
    }

    /// Serves until `shutdown` resolves: stops accepting, finishes the requests in flight,
    /// and gives the runs in flight back (as `chassis worker` does). `ready` is told the
    /// address once it listens.
    pub async fn serve(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
        ready: impl FnOnce(SocketAddr),
    ) -> Result<(), Error> {
        let listener = tokio::net::TcpListener::bind(self.config.addr)
            .await
            .map_err(|source| Error::Listen {
                addr: self.config.addr,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| Error::Listen {
            addr: self.config.addr,
            source,
        })?;
        // The finished router, cloned per connection (an `Arc`'s clone); serving a `Router`
        // through `axum::serve` rebuilt its route table for every connection (about 9 kB each,
        // measured with heaptrack over 1,000 streams).
        let router = self.router();
        let tls = match &self.config.tls {
            Some((cert, key)) => Some(tls::acceptor(cert, key).map_err(Error::Tls)?),
            None => None,
        };
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let worker = (self.config.workers > 0).then(|| {
            let mut config = self.config.worker.clone();
            config.concurrency = self.config.workers;
            let worker = Worker::shared(Arc::clone(self.state.engine()), config);
            let mut stop = stop_rx.clone();
            tokio::spawn(async move {
                worker
                    .run(async move {
                        let _ = stop.wait_for(|s| *s).await;
                    })
                    .await
            })
        });
        // Without a worker (which does both), the server delivers webhooks and fires schedules
        // itself.
        let dispatcher = (self.config.workers == 0).then(|| {
            let dispatcher = chassis_engine::Dispatcher::for_engine(
                self.state.engine(),
                self.config.worker.name.clone(),
            );
            let scheduler = chassis_engine::Scheduler::new(
                Arc::clone(self.state.engine()),
                self.config.worker.name.clone(),
            );
            let (mut stop, mut stop_too) = (stop_rx.clone(), stop_rx.clone());
            tokio::spawn(async move {
                let deliver = async {
                    match dispatcher {
                        Ok(dispatcher) => {
                            dispatcher
                                .run(async move {
                                    let _ = stop.wait_for(|s| *s).await;
                                })
                                .await
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "webhooks are not delivered by this server")
                        }
                    }
                };
                let fire = scheduler.run(async move {
                    let _ = stop_too.wait_for(|s| *s).await;
                });
                tokio::join!(deliver, fire);
            })
        });
        let hup = reload_on_hangup(self.state.clone());
        let warm = warm_stats(self.state.clone());
        ready(addr);
        let mut stop_serving = stop_rx.clone();
        let graceful = async move {
            let _ = stop_serving.wait_for(|s| *s).await;
        };
        let state = self.state.clone();
        let trigger = tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
            // Streams would hold their connections open for as long as their runs go on.
            state.hub().close();
        });
        conn::serve(listener, tls, router, graceful).await;
        hup.abort();
        warm.abort();
        trigger.abort();
        if let Some(dispatcher) = dispatcher {
            let _ = dispatcher.await;
        }
        if let Some(worker) = worker {
            match worker.await {
                Ok(report) => tracing::info!(?report, "the server's worker stopped"),
                Err(e) => tracing::error!(error = %e, "the server's worker panicked"),
            }
        }
        Ok(())
    }
}

/// Reloads the agents directory on SIGHUP, for as long as the server runs.
/// Reads every ended run into the stats cache in the background, so the first `/v1/stats` on
/// a large journal answers from memory instead of replaying every run inside one request.
fn warm_stats(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let began = std::time::Instant::now();
        let all = chassis_telemetry::stats::ReportFilter {
            include_eval: true,
            ..Default::default()
        };
        match chassis_telemetry::stats::report_cached(
            state.journal().as_ref(),
            &all,
            state.stats_cache(),
        )
        .await
        {
            Ok(_) => tracing::debug!(
                runs = state.stats_cache().len(),
                ms = began.elapsed().as_millis() as u64,
                "stats cache warmed"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "cannot warm the stats cache; /v1/stats reads the journal")
            }
        }
    })
}

fn reload_on_hangup(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let Ok(mut hangups) = signal(SignalKind::hangup()) else {
                return;
            };
            while hangups.recv().await.is_some() {
                match state.registry().reload(state.engine()).await {
                    Ok(count) => tracing::info!(agents = count, "SIGHUP: agents reloaded"),
                    Err(e) => {
                        tracing::error!(error = %e, "SIGHUP: agents not reloaded; the previous ones stay")
                    }
                }
            }
        }
        #[cfg(not(unix))]
        let _ = state;
    })
}

/// The API's routes over `state`.
pub fn router(state: AppState, cors: Option<String>) -> Router {
    use routes::*;
    let api = Router::new()
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi::document))
        .route("/v1/me", get(me))
        .route("/v1/agents", get(agents))
        .route("/v1/agents/reload", post(reload))
        .route("/v1/runs", post(start_run).get(list_runs))
        .route("/v1/runs/{id}", get(get_run))
        .route("/v1/runs/{id}/events", get(events))
        .route("/v1/runs/{id}/trace", get(trace))
        .route("/v1/runs/{id}/resume", post(resume))
        .route("/v1/runs/{id}/cancel", post(cancel))
        .route("/v1/runs/{id}/messages", post(send_message))
        .route("/v1/runs/{id}/fork", post(fork_run))
        .route("/v1/runs/{id}/calls/{call}/approve", post(approve))
        .route("/v1/runs/{id}/calls/{call}/reject", post(reject))
        .route("/v1/runs/{id}/calls/{call}/resolve", post(resolve))
        .route("/v1/runs/{id}/limit/approve", post(approve_limit))
        .route("/v1/runs/{id}/limit/reject", post(reject_limit))
        .route("/v1/approvals", get(inbox))
        .route("/v1/stats", get(stats))
        .route("/v1/tokens", post(create_token).get(list_tokens))
        .route("/v1/tokens/{name}", delete(revoke_token))
        .route("/v1/outbox", get(routes::outbox))
        .route(
            "/v1/schedules",
            get(routes::list_schedules).post(routes::create_schedule),
        )
        .route("/v1/schedules/{id}", delete(routes::remove_schedule))
        .layer(middleware::from_fn(time_limit));
    // Streams are long by design: no time limit.
    let streams = Router::new().route("/v1/runs/{id}/stream", get(stream_run));
    let authenticated = api
        .merge(streams)
        .layer(middleware::from_fn_with_state(state.clone(), authenticate));
    let public = Router::new()
        .route("/healthz", get(healthz))
        .merge(console::routes());
    let router = authenticated
        .merge(public)
        .fallback(|| async { Problem::not_found("no such endpoint (see /openapi.json)") })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state);
    match cors {
        Some(origin) => router.layer(middleware::from_fn_with_state(
            Arc::new(origin),
            allow_origin,
        )),
        None => router,
    }
}

/// Identifies the caller from `Authorization: Bearer TOKEN`; refuses the rest. A token in the
/// query string is not read: URLs end up in logs, histories and proxies (the console reads its
/// streams with `fetch`, which sends the header).
async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    let token = match header {
        Some(value) => match value.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
                Some(token.trim().to_string())
            }
            _ => {
                return Problem::unauthorized("Authorization must be `Bearer TOKEN`")
                    .at("Authorization")
                    .into_response();
            }
        },
        None => None,
    };
    let Some(token) = token else {
        return Problem::unauthorized(
            "send a token: `Authorization: Bearer TOKEN` (see `chassis tokens create`)",
        )
        .at("Authorization")
        .into_response();
    };
    match auth::identify(state.journal(), &token).await {
        Ok(identity) => {
            request.extensions_mut().insert(identity);
            next.run(request).await
        }
        Err(problem) => problem.into_response(),
    }
}

/// Bounds a request's time.
async fn time_limit(request: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => Problem::unavailable(format!(
            "the request took longer than {}s",
            REQUEST_TIMEOUT.as_secs()
        ))
        .into_response(),
    }
}

/// CORS for one origin: preflights answered, responses marked.
async fn allow_origin(State(origin): State<Arc<String>>, request: Request, next: Next) -> Response {
    let from_origin = request
        .headers()
        .get(header::ORIGIN)
        .is_some_and(|o| o.as_bytes() == origin.as_bytes());
    let preflight = request.method() == Method::OPTIONS;
    let mut response = if preflight && from_origin {
        axum::http::StatusCode::NO_CONTENT.into_response()
    } else {
        next.run(request).await
    };
    if from_origin && let Ok(value) = HeaderValue::from_str(&origin) {
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type, idempotency-key, last-event-id"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, DELETE, OPTIONS"),
        );
    }
    response
}
