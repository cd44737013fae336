//! `chassis check AGENT.toml`: load an agent as `run` would, run nothing, journal nothing.

use std::path::PathBuf;

use chassis_engine::Agent;

// Arguments of `chassis check`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// The agent spec (agent.toml)
    agent: PathBuf,
    /// Also start the MCP servers and list their tools (without it, only their configuration
    /// is checked, and the version cannot be computed)
    #[arg(long)]
    connect: bool,
    /// Print one JSON object {"agent", "version", "version_label", "model", "fallbacks",
    /// "tools", "mcp_not_started"}
    #[arg(long)]
    json: bool,
}

/// Checks the spec, its prompt template, its tools and its models; exit 0 when the agent would
/// load, 2 with the same message `chassis run` gives when it would not.
pub(crate) async fn run(args: Args) -> anyhow::Result<u8> {
    let checked = Agent::check(&args.agent, args.connect).await?;
    if args.json {
        outln!(
            "{}",
            serde_json::json!({
                "agent": checked.name,
                "version": checked.version,
                "version_label": checked.version_label,
                "model": checked.model,
                "fallbacks": checked.fallbacks,
                "tools": checked.tools,
                "mcp_not_started": checked.mcp_not_started,
            })
        );
        return Ok(crate::exit::COMPLETED);
    }
    let version = match (&checked.version, &checked.version_label) {
        (Some(v), Some(label)) => format!("{v} ({label})"),
        (Some(v), None) => v.clone(),
        (None, Some(label)) => format!("unknown until MCP servers are started ({label})"),
        (None, None) => "unknown until MCP servers are started".to_string(),
    };
    outln!("agent    {}", checked.name);
    outln!("version  {version}");
    let mut models = vec![checked.model.clone()];
    models.extend(checked.fallbacks.iter().cloned());
    outln!("models   {}", models.join(", "));
    outln!(
        "tools    {}",
        if checked.tools.is_empty() {
            "(none)".to_string()
        } else {
            checked.tools.join(", ")
        }
    );
    if !checked.mcp_not_started.is_empty() {
        noteln!(
            "note: MCP server(s) {} checked but not started; `--connect` starts them and lists their tools",
            checked.mcp_not_started.join(", ")
        );
    }
    noteln!("{}: ok", args.agent.display());
    Ok(crate::exit::COMPLETED)
}
