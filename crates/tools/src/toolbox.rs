//! [`Toolbox`]: the tools one agent is granted, each with its compiled argument validator.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chassis_core::spec::{McpServerSpec, McpTransport, ToolBounds, ToolSpec};
use chassis_core::{AssistantMessage, ToolDef};
use serde_json::Value;

use crate::bounded::Bounded;
use crate::command::CommandTool;
use crate::validate::{self, Refusal};
use crate::{Error, Tool, fs, http, mcp};

/// The set of tools one agent is granted, with compiled argument validators.
pub struct Toolbox {
    entries: Vec<Entry>,
    by_name: HashMap<String, usize>,
    bounds: ToolBounds,
}

struct Entry {
    tool: Arc<dyn Tool>,
    validator: validate::Validator,
}

impl Toolbox {
    /// Builds tools from validated spec entries, starting the MCP servers they use.
    ///
    /// Relative paths (an fs `root`, and a command or MCP server program that contains a `/`)
    /// are resolved against `base_dir`, the spec file's directory; command tools and stdio MCP
    /// servers also run there.
    /// Each MCP server is started once, however many entries use it, and must answer and list
    /// its tools within 10 seconds; its tools share its connection.
    /// Errors carry the spec key, e.g. `tools[0].root`, `tools[1].args_schema`,
    /// `tools[2].only` or `mcp.billing.command`, and name the server and what failed.
    ///
    /// The variables an HTTP server's `headers` and `oauth` name are read from the process's
    /// environment.
    pub async fn from_specs(
        specs: &[ToolSpec],
        mcp: &BTreeMap<String, McpServerSpec>,
        base_dir: &Path,
    ) -> Result<Toolbox, Error> {
        Toolbox::from_specs_with_env(specs, mcp, base_dir, &|name| std::env::var(name).ok()).await
    }

    /// [`Toolbox::from_specs`], reading the variables MCP credentials name through `env`
    /// rather than from the process's environment (for a program that embeds chassis and keeps
    /// its secrets elsewhere, and for tests).
    pub async fn from_specs_with_env(
        specs: &[ToolSpec],
        mcp: &BTreeMap<String, McpServerSpec>,
        base_dir: &Path,
        env: &(dyn Fn(&str) -> Option<String> + Sync),
    ) -> Result<Toolbox, Error> {
        let mut built = Vec::new();
        let mut started: BTreeMap<&str, (Arc<mcp::Server>, Vec<rmcp::model::Tool>)> =
            BTreeMap::new();
        // What MCP servers are offered as their roots: the directories fs tools may use.
        let roots: Vec<PathBuf> = specs
            .iter()
            .filter_map(|spec| match spec {
                ToolSpec::Fs { root, .. } => std::fs::canonicalize(base_dir.join(root)).ok(),
                _ => None,
            })
            .collect();
        for (index, spec) in specs.iter().enumerate() {
            let key = format!("tools[{index}]");
            let tools: Vec<Arc<dyn Tool>> = match spec {
                ToolSpec::Fs {
                    root,
                    only,
                    timeout,
                } => fs::tools(root, base_dir, only.as_deref(), *timeout)
                    .map_err(|m| Error::new(format!("{key}.root"), m))?,
                ToolSpec::Http(http) => http::tools(http),
                ToolSpec::Mcp { server, only, risk } => {
                    let Some(server_spec) = mcp.get(server) else {
                        return Err(Error::new(
                            format!("{key}.use"),
                            format!("no MCP server `{server}` is declared"),
                        ));
                    };
                    if !started.contains_key(server.as_str()) {
                        let entry = start(server, server_spec, base_dir, &roots, env).await?;
                        started.insert(server, entry);
                    }
                    let (handle, listed) = &started[server.as_str()];
                    mcp::tools(handle, listed, server_spec.trusted, only.as_deref(), risk)
                        .map_err(|(field, m)| Error::new(format!("{key}.{field}"), m))?
                }
                ToolSpec::Command(command) => {
                    let validator = validate::compile(&command.args_schema)
                        .map_err(|m| Error::new(format!("{key}.args_schema"), m))?;
                    let tool = CommandTool::new(command, base_dir)
                        .map_err(|m| Error::new(format!("{key}.command"), m))?;
                    built.push((key, Arc::new(tool) as Arc<dyn Tool>, validator));
                    continue;
                }
            };
            for tool in tools {
                let validator = validate::compile(&tool.def().parameters).map_err(|m| {
                    let what = match spec {
                        ToolSpec::Mcp { server, .. } => {
                            format!(
                                "MCP server `{server}`: the input schema of `{}`",
                                tool.def().name
                            )
                        }
                        _ => "builtin schema".to_string(),
                    };
                    Error::new(&key, format!("{what} {m}"))
                })?;
                built.push((key.clone(), tool, validator));
            }
        }
        Toolbox::assemble(built)
    }

    /// Checks the MCP servers' configuration as [`Toolbox::from_specs`] would before starting
    /// them (a stdio server's program exists, the variables an HTTP server's credentials name
    /// are set), without starting any; for `chassis check`, which starts them only when asked
    /// to.
    pub fn check_mcp(mcp: &BTreeMap<String, McpServerSpec>, base_dir: &Path) -> Result<(), Error> {
        for (name, spec) in mcp {
            mcp::Server::new(name, spec, base_dir, &|var| std::env::var(var).ok())?;
        }
        Ok(())
    }

    /// Builds a toolbox from ready tools, compiling each one's parameter schema.
    ///
    /// Errors name the tool by its position, e.g. `tools[2].parameters`; two tools with the
    /// same name are refused.
    pub fn new(tools: Vec<Arc<dyn Tool>>) -> Result<Toolbox, Error> {
        let mut built = Vec::with_capacity(tools.len());
        for (index, tool) in tools.into_iter().enumerate() {
            let key = format!("tools[{index}]");
            let validator = validate::compile(&tool.def().parameters)
                .map_err(|m| Error::new(format!("{key}.parameters"), m))?;
            built.push((key, tool, validator));
        }
        Toolbox::assemble(built)
    }

    /// This toolbox and `tools` (tools written in Rust by the program that embeds chassis),
    /// each schema compiled; errors name the added tool by its position, `rust_tools[i]`, and
    /// a name already in the toolbox is refused.
    pub fn with_tools(self, tools: Vec<Arc<dyn Tool>>) -> Result<Toolbox, Error> {
        let bounds = self.bounds;
        let mut built: Vec<(String, Arc<dyn Tool>, validate::Validator)> = self
            .entries
            .into_iter()
            .map(|entry| {
                let key = format!("the spec's tool `{}`", entry.tool.def().name);
                (key, entry.tool, entry.validator)
            })
            .collect();
        for (index, tool) in tools.into_iter().enumerate() {
            let key = format!("rust_tools[{index}]");
            let validator = validate::compile(&tool.def().parameters)
                .map_err(|m| Error::new(format!("{key}.parameters"), m))?;
            built.push((key, tool, validator));
        }
        Ok(Toolbox::assemble(built)?.with_bounds(bounds))
    }

    /// This toolbox with `bounds` on every call's arguments and result (the defaults, 1 MiB
    /// each, until this is called).
    pub fn with_bounds(mut self, bounds: ToolBounds) -> Toolbox {
        self.bounds = bounds;
        self
    }

    fn assemble(
        built: Vec<(String, Arc<dyn Tool>, validate::Validator)>,
    ) -> Result<Toolbox, Error> {
        let mut entries = Vec::with_capacity(built.len());
        let mut by_name = HashMap::new();
        let mut keys: Vec<String> = Vec::with_capacity(built.len());
        for (key, tool, validator) in built {
            let name = tool.def().name.clone();
            if let Some(&first) = by_name.get(&name) {
                let first_key: &String = &keys[first];
                return Err(Error::new(
                    key,
                    format!("tool name `{name}` is already defined by {first_key}"),
                ));
            }
            by_name.insert(name, entries.len());
            keys.push(key);
            entries.push(Entry { tool, validator });
        }
        Ok(Toolbox {
            entries,
            by_name,
            bounds: ToolBounds::default(),
        })
    }

    /// Puts `wrap` around every tool (a cassette's recorder or replay), keeping each one's
    /// compiled validator: the wrapper must offer the same definition.
    pub fn map_tools(&mut self, mut wrap: impl FnMut(Arc<dyn Tool>) -> Arc<dyn Tool>) {
        for entry in &mut self.entries {
            entry.tool = wrap(entry.tool.clone());
        }
    }

    /// The definitions sent to the model, in declaration order.
    pub fn defs(&self) -> Vec<ToolDef> {
        self.entries.iter().map(|e| e.tool.def().clone()).collect()
    }

    /// The tool called `name`, if granted.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Tool>> {
        self.by_name.get(name).map(|&i| &self.entries[i].tool)
    }

    /// Validates a model's raw call before anything runs.
    ///
    /// Refuses an unknown tool, arguments larger than the toolbox's bound (before parsing
    /// them, naming their size), arguments that are not JSON or not an object, and arguments
    /// that fail the tool's schema (listing every violation with its JSON pointer).
    /// Whitespace-only arguments count as `{}`.
    /// On success, gives the parsed arguments and the tool to call, whose result (or error) is
    /// clipped at the toolbox's bound.
    pub fn prepare(
        &self,
        name: &str,
        raw_arguments: &str,
    ) -> Result<(Value, Arc<dyn Tool>), Refusal> {
        let Some(&index) = self.by_name.get(name) else {
            return Err(Refusal::UnknownTool {
                name: name.to_string(),
                available: self.names().map(str::to_string).collect(),
            });
        };
        let bytes = raw_arguments.len() as u64;
        if bytes > self.bounds.max_args_bytes {
            return Err(Refusal::ArgumentsTooLarge {
                tool: name.to_string(),
                bytes,
                limit: self.bounds.max_args_bytes,
            });
        }
        let entry = &self.entries[index];
        let args = validate::check(name, &entry.validator, raw_arguments)?;
        let tool: Arc<dyn Tool> = Arc::new(Bounded {
            inner: entry.tool.clone(),
            max_bytes: self.bounds.max_result_bytes,
        });
        Ok((args, tool))
    }

    /// Leaves out of `reply` the arguments past the toolbox's bound, as soon as the reply is
    /// read: each is replaced by a note naming its size (a JSON object, as providers require),
    /// so it is never parsed, journaled, folded or sent again. Gives each such call's index in
    /// the reply with its refusal, which names the size.
    pub fn leave_out_oversized(&self, reply: &mut AssistantMessage) -> Vec<(usize, Refusal)> {
        let limit = self.bounds.max_args_bytes;
        let mut refused = Vec::new();
        for (index, call) in reply.tool_calls.iter_mut().enumerate() {
            let bytes = call.arguments.len() as u64;
            if bytes > limit {
                call.arguments = serde_json::json!({
                    "left_out": format!(
                        "arguments of {bytes} bytes, past limits.max_tool_args_bytes ({limit})"
                    )
                })
                .to_string();
                refused.push((
                    index,
                    Refusal::ArgumentsTooLarge {
                        tool: call.name.clone(),
                        bytes,
                        limit,
                    },
                ));
            }
        }
        refused
    }

    fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.tool.def().name.as_str())
    }
}

impl std::fmt::Debug for Toolbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

/// Starts one MCP server and lists its tools; errors are keyed by the server's `command` or
/// `url`.
async fn start(
    name: &str,
    spec: &McpServerSpec,
    base_dir: &Path,
    roots: &[PathBuf],
    env: &(dyn Fn(&str) -> Option<String> + Sync),
) -> Result<(Arc<mcp::Server>, Vec<rmcp::model::Tool>), Error> {
    let key = match spec.transport {
        McpTransport::Stdio { .. } => format!("mcp.{name}.command"),
        McpTransport::Http { .. } => format!("mcp.{name}.url"),
    };
    let server = mcp::Server::new(name, spec, base_dir, env)?.with_roots(roots.to_vec());
    let listed = server.start().await.map_err(|m| Error::new(&key, m))?;
    Ok((Arc::new(server), listed))
}
