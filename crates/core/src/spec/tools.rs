//! `[[tools]]` entries and `[mcp.NAME]` servers: raw TOML and validated [`ToolSpec`]s.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::credentials::{CredentialVar, HeaderValue, OAuthSpec, RawOAuth, parse_headers};
use super::{Error, duration_or, invalid, positive};
use crate::tool::RiskClass;

/// Names of the tools `builtin:fs` provides.
pub const BUILTIN_FS_TOOLS: [&str; 3] = ["read_file", "list_dir", "write_file"];

/// Names of the tools `builtin:http` provides.
pub const BUILTIN_HTTP_TOOLS: [&str; 2] = ["http_get", "http_post"];

/// Default timeout of one call of a command tool, an fs or HTTP tool, or an MCP server.
pub const DEFAULT_TOOL_TIMEOUT: Duration = Duration::from_secs(30);

/// Default cap on an HTTP tool's response body.
pub const DEFAULT_HTTP_MAX_BYTES: u64 = 1024 * 1024;

/// One `[[tools]]` entry.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolSpec {
    /// `use = "builtin:fs"`: file tools confined to `root`.
    Fs {
        /// Directory the tools are confined to, as written (relative to the spec's directory).
        root: String,
        /// Subset of [`BUILTIN_FS_TOOLS`] granted; all when `None`.
        only: Option<Vec<String>>,
        /// How long one call may take (a file on a hung network mount must not hang the run).
        timeout: Duration,
    },
    /// `use = "builtin:http"`: GET and POST to an allowlist of hosts.
    Http(HttpToolSpec),
    /// `use = "mcp:NAME"`: the tools of an MCP server declared in `[mcp.NAME]`.
    Mcp {
        /// Key of the server in [`super::AgentSpec::mcp`].
        server: String,
        /// Tools granted; all the server lists when `None`.
        only: Option<Vec<String>>,
        /// Risk class per tool name, overriding the server's annotations.
        risk: BTreeMap<String, RiskClass>,
    },
    /// A program run without a shell, JSON arguments on stdin, result on stdout.
    Command(CommandToolSpec),
}

/// `builtin:http`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HttpToolSpec {
    /// Hosts that may be called: exact names, or `*.example.com` for subdomains.
    pub allow_hosts: Vec<String>,
    /// Allow private, loopback and link-local addresses (refused by default).
    pub allow_private: bool,
    /// Subset of [`BUILTIN_HTTP_TOOLS`] granted; all when `None`.
    pub only: Option<Vec<String>>,
    /// Timeout of one request.
    pub timeout: Duration,
    /// Largest response body accepted.
    pub max_bytes: u64,
    /// Risk class of `http_post` (irreversible unless the spec says otherwise).
    pub post_risk: RiskClass,
}

/// What a tool process (a command tool, a stdio MCP server) finds in its environment besides
/// the small default set (`PATH`, `HOME`, `LANG`, `LC_ALL`, `TMPDIR`, `TZ`, when chassis has
/// them): nothing of chassis's own environment is inherited unless named here, so a provider's
/// API key never reaches a tool by accident.
///
/// In the spec, `env = ["NAME", …]` passes variables through from chassis's environment and
/// `env = { NAME = "value" }` sets them.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ToolEnv {
    /// Variables passed through from chassis's environment (when set there), by name.
    pub pass: Vec<String>,
    /// Variables set to a value.
    pub set: BTreeMap<String, String>,
}

impl ToolEnv {
    /// `env = [...]` or `env = {...}` as written at `key`; the error names the entry at fault.
    fn parse(value: Option<toml::Value>, key: &str) -> Result<ToolEnv, Error> {
        let mut env = ToolEnv::default();
        match value {
            None => {}
            Some(toml::Value::Array(names)) => {
                for (i, name) in names.into_iter().enumerate() {
                    let at = format!("{key}[{i}]");
                    let toml::Value::String(name) = name else {
                        return Err(invalid(
                            at,
                            "must be the name of a variable to pass through",
                        ));
                    };
                    check_var_name(&name, &at)?;
                    if !env.pass.contains(&name) {
                        env.pass.push(name);
                    }
                }
            }
            Some(toml::Value::Table(table)) => {
                for (name, value) in table {
                    let at = format!("{key}.{name}");
                    check_var_name(&name, &at)?;
                    let toml::Value::String(value) = value else {
                        return Err(invalid(
                            at,
                            format!("must be a string, got {}", value.type_str()),
                        ));
                    };
                    if value.contains('\0') {
                        return Err(invalid(at, "must not contain a NUL character"));
                    }
                    env.set.insert(name, value);
                }
            }
            Some(other) => {
                return Err(invalid(
                    key,
                    format!(
                        "must be a list of variables to pass through ([\"NAME\"]) or a table of \
                         variables to set ({{ NAME = \"value\" }}), got {}",
                        other.type_str()
                    ),
                ));
            }
        }
        Ok(env)
    }
}

/// A name a process environment can hold.
fn check_var_name(name: &str, key: &str) -> Result<(), Error> {
    if name.is_empty() || name.contains(['=', '\0']) || name.trim() != name {
        return Err(invalid(
            key,
            format!("`{name}` is not the name of an environment variable"),
        ));
    }
    Ok(())
}

/// How to reach an MCP server.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum McpTransport {
    /// A child process speaking MCP over stdin and stdout.
    Stdio {
        /// Program and arguments; no shell.
        command: Vec<String>,
        /// What the process finds in its environment besides the default set.
        env: ToolEnv,
    },
    /// Streamable HTTP.
    Http {
        /// Endpoint URL.
        url: String,
        /// Headers sent with every request, values possibly read from the environment
        /// (`${env:NAME}`).
        #[serde(skip_serializing_if = "BTreeMap::is_empty")]
        headers: BTreeMap<String, HeaderValue>,
        /// OAuth 2.1 client credentials, for a bearer token fetched and refreshed by chassis.
        #[serde(skip_serializing_if = "Option::is_none")]
        oauth: Option<OAuthSpec>,
    },
}

/// One `[mcp.NAME]` table.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct McpServerSpec {
    /// How to reach it.
    pub transport: McpTransport,
    /// Whether its tool annotations (read-only, destructive) are believed.
    pub trusted: bool,
    /// Timeout of one tool call, all its attempts included.
    pub timeout: Duration,
    /// How long a call may go without an answer or a progress notification (within
    /// `timeout`); `None`: only `timeout` applies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<Duration>,
}

impl McpServerSpec {
    /// The variables this server's credentials read (header values, OAuth client id and
    /// secret), each with its key under `mcp.NAME` (`name` is the server's name).
    pub fn credential_vars(&self, name: &str) -> Vec<CredentialVar> {
        let McpTransport::Http { headers, oauth, .. } = &self.transport else {
            return Vec::new();
        };
        let mut vars = Vec::new();
        for (header, value) in headers {
            for var in value.env_names() {
                vars.push(CredentialVar {
                    key: format!("mcp.{name}.headers.{header}"),
                    name: var.to_string(),
                    secret: true,
                });
            }
        }
        if let Some(oauth) = oauth {
            vars.push(CredentialVar {
                key: format!("mcp.{name}.oauth.client_id_env"),
                name: oauth.client_id_env.clone(),
                secret: false,
            });
            vars.push(CredentialVar {
                key: format!("mcp.{name}.oauth.client_secret_env"),
                name: oauth.client_secret_env.clone(),
                secret: true,
            });
        }
        vars
    }
}

/// A command tool declared in the spec.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CommandToolSpec {
    /// Tool name shown to the model.
    pub name: String,
    /// Description shown to the model.
    pub description: String,
    /// Program and arguments; no shell is involved.
    pub command: Vec<String>,
    /// JSON Schema for the arguments.
    pub args_schema: serde_json::Value,
    /// Risk class; irreversible when not declared.
    pub risk: RiskClass,
    /// How long one call may take.
    pub timeout: Duration,
    /// Declared safe to repeat, so failures are retried even if not read-only.
    pub idempotent: bool,
    /// Attempts in all for a retryable tool.
    pub max_attempts: u32,
    /// What the process finds in its environment besides the default set and the call's
    /// `CHASSIS_*` variables.
    pub env: ToolEnv,
    /// One long-lived process answers every call, a JSON request and a JSON answer per line,
    /// instead of a process per call. Left out of the serialized spec when false, so the
    /// version of an agent that does not set it stays what it was.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub persistent: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTool {
    #[serde(rename = "use")]
    use_: Option<String>,
    root: Option<String>,
    only: Option<Vec<String>>,
    name: Option<String>,
    description: Option<String>,
    command: Option<Vec<String>>,
    args_schema: Option<toml::Value>,
    risk: Option<toml::Value>,
    timeout: Option<String>,
    idempotent: Option<bool>,
    max_attempts: Option<i64>,
    allow_hosts: Option<Vec<String>>,
    allow_private: Option<bool>,
    max_bytes: Option<i64>,
    post_risk: Option<String>,
    env: Option<toml::Value>,
    persistent: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMcp {
    command: Option<Vec<String>>,
    url: Option<String>,
    env: Option<toml::Value>,
    #[serde(default)]
    trusted: bool,
    timeout: Option<String>,
    idle_timeout: Option<String>,
    headers: Option<BTreeMap<String, String>>,
    oauth: Option<RawOAuth>,
}

impl RawMcp {
    pub(super) fn validate(self, key: &str) -> Result<McpServerSpec, Error> {
        let transport = match (self.command, self.url) {
            (Some(command), None) => {
                if command.first().is_none_or(|p| p.is_empty()) {
                    return Err(invalid(
                        format!("{key}.command"),
                        "must list the program and its arguments",
                    ));
                }
                for (field, set) in [
                    ("headers", self.headers.is_some()),
                    ("oauth", self.oauth.is_some()),
                ] {
                    if set {
                        return Err(invalid(
                            format!("{key}.{field}"),
                            "only allowed with `url` (a streamable HTTP server); a stdio \
                             server gets its credentials through `env`",
                        ));
                    }
                }
                McpTransport::Stdio {
                    command,
                    env: ToolEnv::parse(self.env, &format!("{key}.env"))?,
                }
            }
            (None, Some(url)) => {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(invalid(
                        format!("{key}.url"),
                        format!("`{url}` is not an http:// or https:// URL"),
                    ));
                }
                if self.env.is_some() {
                    return Err(invalid(
                        format!("{key}.env"),
                        "only allowed with `command` (a stdio server)",
                    ));
                }
                let headers =
                    parse_headers(self.headers.unwrap_or_default(), &format!("{key}.headers"))?;
                let oauth = self
                    .oauth
                    .map(|raw| raw.validate(&format!("{key}.oauth")))
                    .transpose()?;
                if oauth.is_some()
                    && let Some(name) = headers
                        .keys()
                        .find(|n| n.eq_ignore_ascii_case("authorization"))
                {
                    return Err(invalid(
                        format!("{key}.oauth"),
                        format!(
                            "sets the Authorization header, as `headers.{name}` does; keep one"
                        ),
                    ));
                }
                McpTransport::Http {
                    url,
                    headers,
                    oauth,
                }
            }
            (Some(_), Some(_)) => {
                return Err(invalid(
                    key,
                    "set either `command` (stdio) or `url` (HTTP), not both",
                ));
            }
            (None, None) => {
                return Err(invalid(
                    key,
                    "needs `command` (stdio) or `url` (streamable HTTP)",
                ));
            }
        };
        let timeout = duration_or(
            &self.timeout,
            DEFAULT_TOOL_TIMEOUT,
            &format!("{key}.timeout"),
        )?;
        let idle_timeout = match &self.idle_timeout {
            None => None,
            Some(text) => {
                let idle_key = format!("{key}.idle_timeout");
                let idle = crate::duration::parse(text).map_err(|m| invalid(&idle_key, m))?;
                if idle > timeout {
                    return Err(invalid(
                        idle_key,
                        "must not be longer than `timeout`, which bounds every call",
                    ));
                }
                Some(idle)
            }
        };
        Ok(McpServerSpec {
            transport,
            trusted: self.trusted,
            timeout,
            idle_timeout,
        })
    }
}

fn risk_of(text: &str, key: &str) -> Result<RiskClass, Error> {
    RiskClass::parse(text).ok_or_else(|| {
        invalid(
            key,
            format!("unknown risk class `{text}` (use read_only, reversible or irreversible)"),
        )
    })
}

fn check_only(
    only: &Option<Vec<String>>,
    known: &[&str],
    source: &str,
    key: &str,
) -> Result<(), Error> {
    if let Some(bad) = only.iter().flatten().find(|n| !known.contains(&n.as_str())) {
        return Err(invalid(
            format!("{key}.only"),
            format!(
                "{source} has no tool `{bad}` (it has: {})",
                known.join(", ")
            ),
        ));
    }
    Ok(())
}

impl RawTool {
    pub(super) fn validate(
        self,
        key: &str,
        mcp: &BTreeMap<String, McpServerSpec>,
    ) -> Result<ToolSpec, Error> {
        if let Some(use_) = self.use_.clone() {
            return self.validate_use(&use_, key, mcp);
        }
        let builtin_only = [
            ("root", self.root.is_some()),
            ("only", self.only.is_some()),
            ("allow_hosts", self.allow_hosts.is_some()),
            ("allow_private", self.allow_private.is_some()),
            ("max_bytes", self.max_bytes.is_some()),
            ("post_risk", self.post_risk.is_some()),
        ];
        if let Some((field, _)) = builtin_only.iter().find(|(_, set)| *set) {
            return Err(invalid(
                format!("{key}.{field}"),
                "only allowed with `use = \"builtin:…\"` or `use = \"mcp:…\"`",
            ));
        }
        let Some(command) = self.command else {
            return Err(invalid(
                key,
                "a tool needs either `use = \"builtin:fs\"` or `name` and `command`",
            ));
        };
        let name = self
            .name
            .ok_or_else(|| invalid(format!("{key}.name"), "a command tool needs a name"))?;
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(invalid(
                format!("{key}.name"),
                format!("`{name}` must be 1 to 64 letters, digits, `_` or `-`"),
            ));
        }
        if command.is_empty() || command[0].is_empty() {
            return Err(invalid(
                format!("{key}.command"),
                "must list the program and its arguments, e.g. [\"python3\", \"tool.py\"]",
            ));
        }
        let risk = match &self.risk {
            None => RiskClass::Irreversible,
            Some(toml::Value::String(text)) => risk_of(text, &format!("{key}.risk"))?,
            Some(other) => {
                return Err(invalid(
                    format!("{key}.risk"),
                    format!(
                        "must be a string (read_only, reversible or irreversible), got {}",
                        other.type_str()
                    ),
                ));
            }
        };
        let timeout = duration_or(
            &self.timeout,
            DEFAULT_TOOL_TIMEOUT,
            &format!("{key}.timeout"),
        )?;
        let max_attempts = positive(
            self.max_attempts,
            crate::tool::DEFAULT_TOOL_ATTEMPTS,
            &format!("{key}.max_attempts"),
        )?;
        let args_schema = match self.args_schema {
            None => serde_json::json!({"type": "object"}),
            Some(toml::Value::Table(table)) => serde_json::to_value(table).map_err(|e| {
                invalid(
                    format!("{key}.args_schema"),
                    format!("is not valid JSON data: {e}"),
                )
            })?,
            Some(other) => {
                return Err(invalid(
                    format!("{key}.args_schema"),
                    format!(
                        "must be a table (a JSON Schema object), got {}",
                        other.type_str()
                    ),
                ));
            }
        };
        let env = ToolEnv::parse(self.env, &format!("{key}.env"))?;
        Ok(ToolSpec::Command(CommandToolSpec {
            name,
            description: self.description.unwrap_or_default(),
            command,
            args_schema,
            risk,
            timeout,
            idempotent: self.idempotent.unwrap_or(false),
            max_attempts,
            env,
            persistent: self.persistent.unwrap_or(false),
        }))
    }

    fn validate_use(
        self,
        use_: &str,
        key: &str,
        mcp: &BTreeMap<String, McpServerSpec>,
    ) -> Result<ToolSpec, Error> {
        let command_only = [
            ("name", self.name.is_some()),
            ("description", self.description.is_some()),
            ("command", self.command.is_some()),
            ("args_schema", self.args_schema.is_some()),
            ("idempotent", self.idempotent.is_some()),
            ("max_attempts", self.max_attempts.is_some()),
            ("env", self.env.is_some()),
            ("persistent", self.persistent.is_some()),
        ];
        if let Some((field, _)) = command_only.iter().find(|(_, set)| *set) {
            return Err(invalid(
                format!("{key}.{field}"),
                format!("not allowed with `use = \"{use_}\"`"),
            ));
        }
        let not_here = |fields: &[(&str, bool)]| -> Result<(), Error> {
            match fields.iter().find(|(_, set)| *set) {
                Some((field, _)) => Err(invalid(
                    format!("{key}.{field}"),
                    format!("not allowed with `use = \"{use_}\"`"),
                )),
                None => Ok(()),
            }
        };
        if let Some(server) = use_.strip_prefix("mcp:") {
            not_here(&[
                ("root", self.root.is_some()),
                ("timeout", self.timeout.is_some()),
                ("allow_hosts", self.allow_hosts.is_some()),
                ("allow_private", self.allow_private.is_some()),
                ("max_bytes", self.max_bytes.is_some()),
                ("post_risk", self.post_risk.is_some()),
            ])?;
            if !mcp.contains_key(server) {
                let known: Vec<&str> = mcp.keys().map(String::as_str).collect();
                return Err(invalid(
                    format!("{key}.use"),
                    format!(
                        "no MCP server `{server}` is declared (declared: {}); add an [mcp.{server}] table",
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                ));
            }
            let mut risk = BTreeMap::new();
            match self.risk {
                None => {}
                Some(toml::Value::Table(table)) => {
                    for (tool, value) in table {
                        let text = value.as_str().ok_or_else(|| {
                            invalid(format!("{key}.risk.{tool}"), "must be a string")
                        })?;
                        risk.insert(tool.clone(), risk_of(text, &format!("{key}.risk.{tool}"))?);
                    }
                }
                Some(_) => {
                    return Err(invalid(
                        format!("{key}.risk"),
                        "for an MCP server, a table of tool = \"risk class\"",
                    ));
                }
            }
            return Ok(ToolSpec::Mcp {
                server: server.to_string(),
                only: self.only,
                risk,
            });
        }
        match use_ {
            "builtin:fs" => {
                not_here(&[
                    ("risk", self.risk.is_some()),
                    ("allow_hosts", self.allow_hosts.is_some()),
                    ("allow_private", self.allow_private.is_some()),
                    ("max_bytes", self.max_bytes.is_some()),
                    ("post_risk", self.post_risk.is_some()),
                ])?;
                let root = self.root.ok_or_else(|| {
                    invalid(
                        format!("{key}.root"),
                        "builtin:fs needs `root`, the directory its tools are confined to",
                    )
                })?;
                check_only(&self.only, &BUILTIN_FS_TOOLS, "builtin:fs", key)?;
                Ok(ToolSpec::Fs {
                    root,
                    only: self.only,
                    timeout: duration_or(
                        &self.timeout,
                        DEFAULT_TOOL_TIMEOUT,
                        &format!("{key}.timeout"),
                    )?,
                })
            }
            "builtin:http" => {
                not_here(&[("root", self.root.is_some()), ("risk", self.risk.is_some())])?;
                check_only(&self.only, &BUILTIN_HTTP_TOOLS, "builtin:http", key)?;
                let allow_hosts = self.allow_hosts.ok_or_else(|| {
                    invalid(
                        format!("{key}.allow_hosts"),
                        "builtin:http needs `allow_hosts`, the hosts it may call",
                    )
                })?;
                if allow_hosts.is_empty() {
                    return Err(invalid(
                        format!("{key}.allow_hosts"),
                        "must list at least one host",
                    ));
                }
                if let Some(bad) = allow_hosts.iter().find(|h| {
                    let bare = h.strip_prefix("*.").unwrap_or(h);
                    bare.is_empty() || bare.contains(['/', ':', '*', ' '])
                }) {
                    return Err(invalid(
                        format!("{key}.allow_hosts"),
                        format!(
                            "`{bad}` is not a host name (e.g. \"api.example.com\" or \"*.example.com\")"
                        ),
                    ));
                }
                let max_bytes = positive_u64(
                    self.max_bytes,
                    DEFAULT_HTTP_MAX_BYTES,
                    &format!("{key}.max_bytes"),
                )?;
                let post_risk = match &self.post_risk {
                    None => RiskClass::Irreversible,
                    Some(text) => risk_of(text, &format!("{key}.post_risk"))?,
                };
                Ok(ToolSpec::Http(HttpToolSpec {
                    allow_hosts,
                    allow_private: self.allow_private.unwrap_or(false),
                    only: self.only,
                    timeout: duration_or(
                        &self.timeout,
                        DEFAULT_TOOL_TIMEOUT,
                        &format!("{key}.timeout"),
                    )?,
                    max_bytes,
                    post_risk,
                }))
            }
            other => Err(invalid(
                format!("{key}.use"),
                format!(
                    "unknown tool source `{other}` (supported: builtin:fs, builtin:http, mcp:NAME)"
                ),
            )),
        }
    }
}

fn positive_u64(value: Option<i64>, default: u64, key: &str) -> Result<u64, Error> {
    match value {
        None => Ok(default),
        Some(n) if n > 0 => Ok(n as u64),
        Some(n) => Err(invalid(key, format!("must be a positive number, got {n}"))),
    }
}
