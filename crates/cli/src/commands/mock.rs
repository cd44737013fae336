//! `chassis mock-model`: the project's OpenAI-compatible mock server.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use chassis_mock::{FaultKind, MockConfig, Script};

use crate::exit::UsageError;

// Arguments of `chassis mock-model`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// Script of replies (TOML or JSON); the built-in demo script when absent
    #[arg(long, value_name = "FILE")]
    script: Option<PathBuf>,
    /// Address to listen on (loopback only by default)
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port; 0 picks a free one
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Seed of the fault generator
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Delay before every reply, e.g. 50ms
    #[arg(long, default_value = "0ms", value_parser = parse_latency)]
    latency: Duration,
    /// Share of requests that get a fault, 0.0 to 1.0
    #[arg(long, default_value_t = 0.0)]
    fault_rate: f64,
    /// Faults to draw from (comma-separated): 429, 500, 503, hang, cut, malformed, bad_args,
    /// stream_cut, stream_stall, stream_malformed; all when absent
    #[arg(long, value_delimiter = ',')]
    faults: Vec<FaultKind>,
    /// Retry-After seconds sent with 429
    #[arg(long, default_value_t = 1)]
    retry_after: u64,
    /// How long a `hang` fault holds the request
    #[arg(long, default_value = "600s", value_parser = chassis_core::duration::parse)]
    hang: Duration,
    /// Behave as llama-cpp-python's server does: tools are ignored without `tool_choice`, a
    /// streamed call with `tool_choice` auto gets an empty stream, and an assistant message
    /// that calls tools with `content: null` gets HTTP 500
    #[arg(long)]
    llama_cpp: bool,
    /// Answer 429 (with Retry-After) to a request when N were accepted in the minute before
    /// it, as a provider's requests-per-minute limit does (counted as the `rpm_limit` fault)
    #[arg(long, value_name = "N")]
    rpm_limit: Option<u32>,
}

fn parse_latency(text: &str) -> Result<Duration, String> {
    if text
        .trim_start_matches('0')
        .trim_end_matches("ms")
        .trim_end_matches('s')
        .is_empty()
    {
        return Ok(Duration::ZERO);
    }
    chassis_core::duration::parse(text)
}

/// The script `chassis demo` uses, also the default of `chassis mock-model`.
pub(crate) const DEMO_SCRIPT: &str = include_str!("../demo/script.toml");

/// Serves until interrupted; the first stdout line is the base URL.
pub(crate) async fn run(args: Args) -> anyhow::Result<u8> {
    if !(0.0..=1.0).contains(&args.fault_rate) {
        return Err(UsageError(format!(
            "--fault-rate: {} is not between 0.0 and 1.0",
            args.fault_rate
        ))
        .into());
    }
    let script = match &args.script {
        Some(path) => Script::from_path(path).map_err(|e| UsageError(e.to_string()))?,
        None => Script::from_toml_str(DEMO_SCRIPT).context("built-in demo script")?,
    };
    let rules = if args.llama_cpp {
        MockConfig::llama_cpp()
    } else {
        MockConfig::default()
    };
    let config = MockConfig {
        seed: args.seed,
        latency: args.latency,
        fault_rate: args.fault_rate,
        faults: args.faults,
        retry_after_secs: args.retry_after,
        hang: args.hang,
        rpm_limit: args.rpm_limit,
        ..rules
    };
    let mock = chassis_mock::start(config, script, SocketAddr::new(args.host, args.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
    outln!("{}", mock.base_url());
    noteln!(
        "mock model listening on {} (stats: http://{}/_mock/stats); Ctrl-C stops it",
        mock.base_url(),
        mock.addr()
    );
    shutdown_signal().await;
    mock.shutdown().await;
    Ok(crate::exit::COMPLETED)
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match term.as_mut() {
                Some(term) => { term.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}
