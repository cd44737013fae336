//! `chassis serve`: the HTTP API, run streams and a worker, in one process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chassis_engine::{WorkerConfig, default_worker_name};
use chassis_server::{Config, Server};

use crate::commands::{describe_db, open_journal};
use crate::exit::UsageError;

// Arguments of `chassis serve`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// Where to listen
    #[arg(long, default_value = "127.0.0.1:7700", value_name = "ADDR")]
    addr: SocketAddr,
    /// The agents on offer: every agent.toml under this directory (reloaded on SIGHUP)
    #[arg(long, value_name = "DIR")]
    agents: Option<PathBuf>,
    /// Runs driven at once by this server; 0 for an API-only instance (other servers or
    /// `chassis worker` processes on the same journal drive the runs)
    #[arg(long, default_value_t = 16, value_name = "N")]
    workers: usize,
    /// Serve HTTPS with this certificate chain (PEM)
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM)
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve plain HTTP on a non-loopback address (behind a TLS-terminating proxy)
    #[arg(long)]
    insecure_http: bool,
    /// Allow browser calls from this origin (CORS), e.g. `https://ops.example.com`
    #[arg(long, value_name = "ORIGIN")]
    cors: Option<String>,
    /// The server's name in leases and logs (default: host-pid-nonce)
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// How long a claim on a run lasts without renewal
    #[arg(long, default_value = "30s", value_parser = chassis_core::duration::parse, value_name = "DURATION")]
    lease_ttl: Duration,
    /// Longest wait between two looks for work
    #[arg(long, default_value = "1s", value_parser = chassis_core::duration::parse, value_name = "DURATION")]
    poll_interval: Duration,
    /// On SIGTERM or Ctrl-C, how long runs in flight may go on before they are given back
    #[arg(long, default_value = "30s", value_parser = chassis_core::duration::parse, value_name = "DURATION")]
    shutdown_grace: Duration,
}

/// Serves until SIGTERM or Ctrl-C.
pub(crate) async fn run(db: &Path, args: Args) -> anyhow::Result<u8> {
    if !args.addr.ip().is_loopback() && args.tls_cert.is_none() && !args.insecure_http {
        return Err(UsageError(format!(
            "--addr {}: a non-loopback address needs --tls-cert and --tls-key, or --insecure-http behind a TLS proxy",
            args.addr
        ))
        .into());
    }
    let journal = open_journal(db).await?;
    let mut worker = WorkerConfig::new(args.name.unwrap_or_else(default_worker_name));
    worker.lease_ttl = args.lease_ttl;
    worker.renew_every = args.lease_ttl / 3;
    worker.poll_interval = args.poll_interval;
    worker.shutdown_grace = args.shutdown_grace;
    let engine = crate::observed(crate::commands::engine(db, journal));
    let config = Config {
        addr: args.addr,
        agents: args.agents.clone(),
        workers: args.workers,
        worker,
        tls: args.tls_cert.zip(args.tls_key),
        cors: args.cors,
    };
    let https = config.tls.is_some();
    let server = Server::new(engine, config).await.map_err(|e| match e {
        chassis_server::Error::Agents(e) => anyhow::Error::from(UsageError(e.to_string())),
        other => other.into(),
    })?;
    let agents = server.state().registry().all();
    let first = server.first_token().await?;
    let scheme = if https { "https" } else { "http" };
    let db_shown = describe_db(db);
    let workers = args.workers;
    server
        .serve(
            async {
                let signal = crate::signals::next_signal().await;
                noteln!("{signal}: no new requests; runs in flight are given back");
            },
            move |addr| {
                let host = if addr.ip().is_unspecified() {
                    "127.0.0.1".to_string()
                } else {
                    addr.ip().to_string()
                };
                let base = format!("{scheme}://{host}:{}", addr.port());
                noteln!(
                    "chassis serve: {} agent(s) on {base} (journal {db_shown}, {workers} run(s) at once); SIGHUP reloads the agents",
                    agents.len()
                );
                for agent in &agents {
                    noteln!("  {} (version {})", agent.spec.name, agent.version);
                }
                match &first {
                    Some(token) => {
                        // In the fragment: a browser never sends it, so no server or proxy logs it;
                        // the console moves it to the tab's storage and out of the address bar.
                        noteln!("an admin token was made (shown once); open the console:");
                        outln!("{base}/#token={token}");
                    }
                    None => outln!("{base}/"),
                }
            },
        )
        .await?;
    Ok(crate::exit::COMPLETED)
}
