//! Observability for chassis: OpenTelemetry GenAI traces exported over OTLP/HTTP, Prometheus
//! metrics at `/metrics`, redacted logs (text or JSON), and, from the journal alone, a run's
//! timeline (`chassis trace`) and aggregates over runs (`chassis stats`).
//!
//! Traces and metrics are [`chassis_core::Observer`]s: they see every event as the engine
//! records it, already redacted, and never slow or fail a run. A run's trace id is derived from
//! its run id ([`ids`]), so a resumed run continues the same trace with nothing new journaled.

pub mod ids;
pub mod logs;
pub mod metrics;
pub mod otlp;
pub mod proto;
pub mod registry;
pub mod spans;
pub mod stats;
pub mod time;
pub mod timeline;

use std::net::SocketAddr;
use std::sync::Arc;

use chassis_core::Observer;
use chassis_redact::Redactor;
use chassis_store::Journal;

pub use logs::{LogFormat, LogRedaction};
pub use metrics::{Metrics, MetricsServer};
pub use otlp::{ExportConfig, Exporter};
pub use spans::Tracer;

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The `OTEL_*` configuration is unusable.
    #[error(transparent)]
    Export(#[from] otlp::Error),
    /// The metrics address cannot be listened on.
    #[error("--metrics-addr {addr}: cannot listen: {source}")]
    Listen {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// The process's telemetry: what is exported and served, and the log redaction.
pub struct Telemetry {
    redaction: LogRedaction,
    tracer: Option<(Arc<Tracer>, Exporter)>,
    metrics: Option<(Arc<Metrics>, MetricsServer)>,
}

impl Telemetry {
    /// Starts span export when the `OTEL_*` variables ask for it and serves `/metrics` at
    /// `metrics_addr` when given. Call inside the tokio runtime, after [`logs::install`].
    pub async fn start(
        redaction: LogRedaction,
        metrics_addr: Option<SocketAddr>,
    ) -> Result<Telemetry, Error> {
        let tracer = match ExportConfig::from_env()? {
            Some(config) => {
                // Collector credentials are secrets too.
                redaction.add(&Redactor::new(config.header_values().map(String::from)));
                let capture = config.capture_content;
                let exporter = Exporter::start(config)?;
                let sink = exporter.clone();
                let tracer = Tracer::new(capture, move |span| sink.send(span));
                Some((Arc::new(tracer), exporter))
            }
            None => None,
        };
        let metrics = match metrics_addr {
            Some(addr) => {
                let metrics = Arc::new(Metrics::new());
                let server = MetricsServer::start(Arc::clone(&metrics), addr)
                    .await
                    .map_err(|source| Error::Listen { addr, source })?;
                Some((metrics, server))
            }
            None => None,
        };
        Ok(Telemetry {
            redaction,
            tracer,
            metrics,
        })
    }

    /// Telemetry that exports and serves nothing (logs are still redacted through `redaction`).
    pub fn disabled(redaction: LogRedaction) -> Telemetry {
        Telemetry {
            redaction,
            tracer: None,
            metrics: None,
        }
    }

    /// The observers to attach to every engine that drives runs.
    pub fn observers(&self) -> Vec<Arc<dyn Observer>> {
        let mut out: Vec<Arc<dyn Observer>> = Vec::new();
        if let Some((tracer, _)) = &self.tracer {
            out.push(Arc::clone(tracer) as Arc<dyn Observer>);
        }
        if let Some((metrics, _)) = &self.metrics {
            out.push(Arc::clone(metrics) as Arc<dyn Observer>);
        }
        out
    }

    /// The observers for an engine that writes to `journal` and finds its runs' agents with
    /// `locate` (its `AgentPaths::locate`): traces and metrics, and the secrets of every agent
    /// it drives kept out of the log. `/metrics` also reads `journal`'s run gauges.
    pub fn observers_for(
        &self,
        journal: &Arc<dyn Journal>,
        locate: logs::Locate,
    ) -> Vec<Arc<dyn Observer>> {
        if let Some((metrics, _)) = &self.metrics {
            metrics.watch_journal(Arc::clone(journal));
        }
        let spec_secrets = Arc::new(logs::SpecSecrets::finding_agents(
            self.redaction.clone(),
            locate,
        )) as Arc<dyn Observer>;
        std::iter::once(spec_secrets)
            .chain(self.observers())
            .collect()
    }

    /// Where `/metrics` is served, if it is.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|(_, server)| server.addr())
    }

    /// Keeps `redactor`'s secrets out of the log too (call once an agent is loaded).
    pub fn redact_logs(&self, redactor: &Redactor) {
        self.redaction.add(redactor);
    }

    /// Keeps the secrets of the agent loaded from `spec_path` (as its runs journal it) out of
    /// the log, from now on: its runs' start then costs no second reading of its spec.
    pub fn redact_agent_logs(&self, spec_path: &str, redactor: &Redactor) {
        self.redaction.add_agent(spec_path, redactor);
    }

    /// `text` without any secret known to the log (for messages printed outside `tracing`).
    pub fn redact(&self, text: &str) -> String {
        self.redaction.redact(text)
    }

    /// Ends spans still open, sends every queued span (bounded by the export timeout) and
    /// stops serving `/metrics`.
    pub async fn shutdown(&self) {
        if let Some((tracer, exporter)) = &self.tracer {
            tracer.end_all();
            exporter.flush().await;
        }
        if let Some((_, server)) = &self.metrics {
            server.stop();
        }
    }
}
