//! The agent spec in two stages: raw TOML structs, then a validated [`AgentSpec`].
//!
//! Parsing is pure: reading the file and the prompt template is the loader's job.
//! Every error names the key (or, for TOML errors, the line) and what is wrong.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration;

mod approvals;
pub mod context;
mod credentials;
mod limits;
pub mod redact;
mod tools;

pub use credentials::{CredentialVar, HeaderValue, OAuthSpec, carries_credentials};
pub use limits::{
    AlertsSpec, DEFAULT_EXPIRE_AFTER_MS, DEFAULT_MAX_REPLY_BYTES, DEFAULT_MAX_TOOL_ARGS_BYTES,
    DEFAULT_MAX_TOOL_RESULT_BYTES, DEFAULT_SECRET_ENV, ToolBounds, parse_pricing_file,
};
use limits::{RawAlerts, RawLimits, RawPrice};

pub use tools::{
    BUILTIN_FS_TOOLS, BUILTIN_HTTP_TOOLS, CommandToolSpec, DEFAULT_HTTP_MAX_BYTES,
    DEFAULT_TOOL_TIMEOUT, HttpToolSpec, McpServerSpec, McpTransport, ToolEnv, ToolSpec,
};
use tools::{RawMcp, RawTool};

/// Default `[model] max_tokens`: every call's output is bounded, so limits can be checked.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

/// Default timeout of one model call.
pub const DEFAULT_MODEL_TIMEOUT: Duration = Duration::from_secs(120);

/// Default timeout for connecting to a provider.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Default longest silence between two chunks of a model's answer.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// A spec that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The TOML did not parse or did not fit the schema; the message carries line and column.
    #[error("{0}")]
    Toml(String),
    /// A key holds a value that is not allowed.
    #[error("{key}: {message}")]
    Invalid {
        /// Dotted path of the key, e.g. `tools[1].risk`.
        key: String,
        /// What is wrong.
        message: String,
    },
}

pub(crate) fn invalid(key: impl Into<String>, message: impl Into<String>) -> Error {
    Error::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// A validated agent definition.
///
/// `Serialize` gives its canonical form: what the agent version fingerprints (every field, so
/// a setting added here is covered without anyone remembering to add it there).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AgentSpec {
    /// Agent name.
    pub name: String,
    /// Human label of this version of the agent, `[agent] version`.
    pub version: Option<String>,
    /// Prompt template path, as written (relative to the spec's directory).
    pub prompt: String,
    /// The model every step tries first.
    pub model: ModelRef,
    /// Models tried in order when the primary is unavailable or keeps producing invalid output.
    pub fallbacks: Vec<ModelRef>,
    /// Invalid tool calls sent back to the model (to repair) before it is given up on.
    pub max_repairs: u32,
    /// When every model is unavailable, the wait before a parked run's first retry, in ms
    /// (`[model] park_retry`); doubled for each further retry, up to ten minutes.
    pub park_retry_ms: u64,
    /// Timeout for establishing a connection to a provider.
    pub connect_timeout: Duration,
    /// Longest silence allowed between two chunks of a model's answer.
    pub idle_timeout: Duration,
    /// `max_tokens` sent with each model call: the worst-case output a limit check assumes.
    pub max_tokens: u32,
    /// Sampling temperature, if set.
    pub temperature: Option<f64>,
    /// Timeout of one model call.
    pub model_timeout: Duration,
    /// Whether model answers are streamed, `[model] stream` (default true).
    pub stream: bool,
    /// What the model may do with the tools offered, `[model] tool_choice` (default auto).
    pub tool_choice: ToolChoice,
    /// Declared providers, plus the implicit `openai` one.
    pub providers: BTreeMap<String, ProviderSpec>,
    /// Template variables from `[vars]` (a JSON object).
    pub vars: serde_json::Value,
    /// Tool entries, in order.
    pub tools: Vec<ToolSpec>,
    /// MCP servers by name, from `[mcp.NAME]`.
    pub mcp: BTreeMap<String, McpServerSpec>,
    /// Hard limits and the action at each.
    pub limits: crate::limits::Limits,
    /// Size bounds of one tool call's arguments and result.
    pub tool_bounds: ToolBounds,
    /// Largest model reply read, `[limits] max_reply_bytes`: a bigger one fails the attempt,
    /// its size named, without being held. Left out of the version when it is the default, so
    /// adding the setting changed no agent's version.
    #[serde(skip_serializing_if = "limits::is_default_reply_bytes")]
    pub max_reply_bytes: u64,
    /// Price overrides from `[pricing]` (model or `provider:model` → price).
    pub pricing: BTreeMap<String, crate::limits::Price>,
    /// A pricing file to merge over the defaults, relative to the spec's directory.
    pub pricing_file: Option<String>,
    /// Where alerts go.
    pub alerts: AlertsSpec,
    /// Which calls wait for a human.
    pub approvals: crate::approvals::ApprovalPolicy,
    /// Secrets to remove from everything a run records, `[redact]`.
    pub redact: redact::RedactSpec,
    /// `[context]` and `[model] context_window`. Left out of the version when it is the
    /// default, so adding the section changed no agent's version.
    #[serde(skip_serializing_if = "context::ContextSpec::is_default")]
    pub context: context::ContextSpec,
}

impl AgentSpec {
    /// The context policy a run of this agent journals.
    pub fn context_policy(&self) -> crate::context::ContextPolicy {
        let models: Vec<String> = std::iter::once(&self.model)
            .chain(&self.fallbacks)
            .map(|m| format!("{}:{}", m.provider, m.model))
            .collect();
        self.context
            .policy(models.iter().map(String::as_str), self.max_tokens)
    }
}

/// `provider:model`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ModelRef {
    /// Key into [`AgentSpec::providers`].
    pub provider: String,
    /// Model id sent to the provider.
    pub model: String,
}

impl std::fmt::Display for ModelRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.provider, self.model)
    }
}

/// What the model may do with the tools it is offered, `[model] tool_choice`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolChoice {
    /// Answer in text or call tools, as the model sees fit.
    #[default]
    Auto,
    /// Call at least one tool.
    Required,
    /// Call no tool.
    None,
    /// Call this tool.
    Tool(String),
}

/// What an OpenAI-dialect assistant message that only calls tools carries as `content`,
/// `[providers.X] tool_call_content`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolCallContent {
    /// `null`, as OpenAI documents it.
    Null,
    /// `""`, which servers that refuse `null` accept.
    Empty,
}

/// Wire protocol of a provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// OpenAI-compatible chat completions.
    OpenAi,
    /// Anthropic Messages.
    Anthropic,
}

/// How a provider's failed calls are retried.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RetrySpec {
    /// Attempts per model call, the first included.
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubles each time, with full jitter.
    pub base_delay: Duration,
    /// Ceiling of the backoff.
    pub max_delay: Duration,
    /// The longest `Retry-After` honoured; longer means moving on to the fallback.
    pub retry_after_cap: Duration,
}

impl Default for RetrySpec {
    fn default() -> Self {
        RetrySpec {
            max_attempts: 3,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(20),
            retry_after_cap: Duration::from_secs(60),
        }
    }
}

/// When a provider's circuit breaker opens.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BreakerSpec {
    /// Consecutive failures that open it.
    pub threshold: u32,
    /// Failure rate over `window` calls that opens it.
    pub failure_rate: f64,
    /// Calls the rate is computed over.
    pub window: u32,
    /// How long it stays open before a probe.
    pub cooldown: Duration,
}

impl Default for BreakerSpec {
    fn default() -> Self {
        BreakerSpec {
            threshold: 5,
            failure_rate: 0.5,
            window: 20,
            cooldown: Duration::from_secs(30),
        }
    }
}

/// How to reach a model provider.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProviderSpec {
    /// Wire protocol.
    pub kind: ProviderKind,
    /// Base URL; `None` means the provider's default (for `openai`, `OPENAI_BASE_URL` or
    /// the public API).
    pub base_url: Option<String>,
    /// Name of the environment variable holding the API key; never the key itself.
    pub api_key_env: Option<String>,
    /// Retries of failed calls.
    pub retry: RetrySpec,
    /// The endpoint's circuit breaker.
    pub breaker: BreakerSpec,
    /// The HTTP protocol spoken to the endpoint.
    pub http: HttpVersion,
    /// Calls in flight on one HTTP/2 connection before another is opened.
    pub http2_max_streams: u32,
    /// OpenAI dialect: `content` of an assistant message that only calls tools; `None` means
    /// by host (`null` for api.openai.com, `""` elsewhere).
    pub tool_call_content: Option<ToolCallContent>,
    /// Requests per minute allowed to this provider, shared by every worker and server on the
    /// journal's store: a call over it waits for capacity instead of meeting a 429.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u32>,
    /// Tokens per minute (each call counted at its worst case: its context's bound plus
    /// `max_tokens`), shared likewise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u32>,
}

/// Which HTTP protocol a provider is spoken to with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HttpVersion {
    /// HTTPS negotiates HTTP/2 or HTTP/1.1 with the server; plain HTTP uses HTTP/1.1.
    #[default]
    Auto,
    /// HTTP/1.1 only.
    Http1,
    /// HTTP/2 only; over plain HTTP from the first byte (h2c prior knowledge).
    Http2,
}

/// Calls in flight on one HTTP/2 connection unless `http2_max_streams` says otherwise.
pub const DEFAULT_HTTP2_MAX_STREAMS: u32 = 100;

impl ProviderSpec {
    fn implicit(kind: ProviderKind) -> ProviderSpec {
        ProviderSpec {
            kind,
            base_url: None,
            api_key_env: None,
            retry: RetrySpec::default(),
            breaker: BreakerSpec::default(),
            http: HttpVersion::Auto,
            http2_max_streams: DEFAULT_HTTP2_MAX_STREAMS,
            tool_call_content: None,
            rpm: None,
            tpm: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    agent: RawAgent,
    model: RawModel,
    #[serde(default)]
    providers: BTreeMap<String, RawProvider>,
    #[serde(default)]
    vars: BTreeMap<String, toml::Value>,
    #[serde(default)]
    tools: Vec<RawTool>,
    #[serde(default)]
    mcp: BTreeMap<String, RawMcp>,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    pricing: BTreeMap<String, RawPrice>,
    #[serde(default)]
    alerts: RawAlerts,
    #[serde(default)]
    approvals: approvals::RawApprovals,
    #[serde(default)]
    redact: redact::RawRedact,
    #[serde(default)]
    context: context::RawContext,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    name: String,
    prompt: String,
    version: Option<String>,
    #[serde(default)]
    #[allow(dead_code, reason = "accepted for humans reading the spec")]
    description: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    primary: String,
    #[serde(default)]
    fallbacks: Vec<String>,
    max_tokens: Option<u32>,
    temperature: Option<f64>,
    timeout: Option<String>,
    connect_timeout: Option<String>,
    idle_timeout: Option<String>,
    max_repairs: Option<i64>,
    park_retry: Option<String>,
    stream: Option<bool>,
    tool_choice: Option<toml::Value>,
    context_window: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    kind: String,
    base_url: Option<String>,
    api_key_env: Option<String>,
    max_attempts: Option<i64>,
    retry_base_delay: Option<String>,
    retry_max_delay: Option<String>,
    retry_after_cap: Option<String>,
    breaker_threshold: Option<i64>,
    breaker_failure_rate: Option<f64>,
    breaker_window: Option<i64>,
    breaker_cooldown: Option<String>,
    http: Option<String>,
    http2_max_streams: Option<i64>,
    tool_call_content: Option<String>,
    rpm: Option<i64>,
    tpm: Option<i64>,
}

impl AgentSpec {
    /// Parses and validates the text of an `agent.toml`.
    pub fn parse(text: &str) -> Result<AgentSpec, Error> {
        let raw: RawSpec = toml::from_str(text).map_err(|e| Error::Toml(e.to_string()))?;
        raw.validate()
    }
}

impl RawSpec {
    /// The whole spec, section by section: each section validates itself, naming its keys.
    fn validate(self) -> Result<AgentSpec, Error> {
        let name = self.agent.name.trim().to_string();
        if name.is_empty() {
            return Err(invalid("agent.name", "must not be empty"));
        }
        if self.agent.prompt.trim().is_empty() {
            return Err(invalid("agent.prompt", "must name a prompt template file"));
        }

        let mut providers: BTreeMap<String, ProviderSpec> = BTreeMap::new();
        for (key, raw) in self.providers {
            let spec = raw.validate(&key)?;
            providers.insert(key, spec);
        }
        providers
            .entry("openai".to_string())
            .or_insert(ProviderSpec::implicit(ProviderKind::OpenAi));
        providers
            .entry("anthropic".to_string())
            .or_insert(ProviderSpec::implicit(ProviderKind::Anthropic));

        let ModelSection {
            model,
            fallbacks,
            model_timeout,
            connect_timeout,
            idle_timeout,
            max_repairs,
            park_retry_ms,
            tool_choice,
        } = self.model.validate(&providers)?;

        let (limits, pricing_file, tool_bounds, max_reply_bytes) = self.limits.validate()?;
        let pricing = limits::validate_pricing(self.pricing, "pricing")?;
        let alerts = self.alerts.validate()?;
        let approvals = self.approvals.validate()?;

        let mut mcp = BTreeMap::new();
        for (name, raw) in self.mcp {
            let server = raw.validate(&format!("mcp.{name}"))?;
            mcp.insert(name, server);
        }
        let tools = validate_tools(self.tools, &mcp)?;

        let vars = serde_json::to_value(&self.vars)
            .map_err(|e| invalid("vars", format!("cannot be used as template data: {e}")))?;

        Ok(AgentSpec {
            name,
            version: self.agent.version.clone(),
            prompt: self.agent.prompt,
            model,
            fallbacks,
            max_repairs,
            park_retry_ms,
            connect_timeout,
            idle_timeout,
            max_tokens: self.model.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
            temperature: self.model.temperature,
            model_timeout,
            stream: self.model.stream.unwrap_or(true),
            tool_choice,
            providers,
            vars,
            tools,
            mcp,
            limits,
            tool_bounds,
            max_reply_bytes,
            pricing,
            pricing_file,
            alerts,
            approvals,
            redact: self.redact.validate()?,
            context: self.context.validate(self.model.context_window)?,
        })
    }
}

/// `[model] tool_choice`: `"auto"`, `"required"`, `"none"` or `{ name = "TOOL" }`.
impl RawProvider {
    /// `[providers.KEY]`: its kind, retries, breaker, HTTP version and dialect settings.
    fn validate(self, key: &str) -> Result<ProviderSpec, Error> {
        let raw = self;
        let kind = match raw.kind.as_str() {
            "openai" => ProviderKind::OpenAi,
            "anthropic" => ProviderKind::Anthropic,
            other => {
                return Err(invalid(
                    format!("providers.{key}.kind"),
                    format!("unknown provider kind `{other}` (supported: openai, anthropic)"),
                ));
            }
        };
        let at = |field: &str| format!("providers.{key}.{field}");
        let defaults = RetrySpec::default();
        let retry = RetrySpec {
            max_attempts: positive(raw.max_attempts, defaults.max_attempts, &at("max_attempts"))?,
            base_delay: duration_or(
                &raw.retry_base_delay,
                defaults.base_delay,
                &at("retry_base_delay"),
            )?,
            max_delay: duration_or(
                &raw.retry_max_delay,
                defaults.max_delay,
                &at("retry_max_delay"),
            )?,
            retry_after_cap: duration_or(
                &raw.retry_after_cap,
                defaults.retry_after_cap,
                &at("retry_after_cap"),
            )?,
        };
        let defaults = BreakerSpec::default();
        let failure_rate = raw.breaker_failure_rate.unwrap_or(defaults.failure_rate);
        if !(failure_rate > 0.0 && failure_rate <= 1.0) {
            return Err(invalid(
                at("breaker_failure_rate"),
                format!("must be above 0 and at most 1, got {failure_rate}"),
            ));
        }
        let breaker = BreakerSpec {
            threshold: positive(
                raw.breaker_threshold,
                defaults.threshold,
                &at("breaker_threshold"),
            )?,
            failure_rate,
            window: positive(raw.breaker_window, defaults.window, &at("breaker_window"))?,
            cooldown: duration_or(
                &raw.breaker_cooldown,
                defaults.cooldown,
                &at("breaker_cooldown"),
            )?,
        };
        if let Some(url) = &raw.base_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(invalid(
                format!("providers.{key}.base_url"),
                format!("`{url}` is not an http:// or https:// URL"),
            ));
        }
        if let Some(env) = &raw.api_key_env
            && (env.is_empty() || env.contains('='))
        {
            return Err(invalid(
                format!("providers.{key}.api_key_env"),
                "must be the name of an environment variable",
            ));
        }
        let http = match raw.http.as_deref() {
            None | Some("auto") => HttpVersion::Auto,
            Some("http1") => HttpVersion::Http1,
            Some("http2") => HttpVersion::Http2,
            Some(other) => {
                return Err(invalid(
                    at("http"),
                    format!("unknown HTTP version `{other}` (supported: auto, http1, http2)"),
                ));
            }
        };
        let http2_max_streams = positive(
            raw.http2_max_streams,
            DEFAULT_HTTP2_MAX_STREAMS,
            &at("http2_max_streams"),
        )?;
        let tool_call_content = match raw.tool_call_content.as_deref() {
            None => None,
            Some(_) if kind != ProviderKind::OpenAi => {
                return Err(invalid(
                    at("tool_call_content"),
                    "applies only to kind = \"openai\"",
                ));
            }
            Some("null") => Some(ToolCallContent::Null),
            Some("empty") => Some(ToolCallContent::Empty),
            Some(other) => {
                return Err(invalid(
                    at("tool_call_content"),
                    format!("unknown value `{other}` (supported: null, empty)"),
                ));
            }
        };
        Ok(ProviderSpec {
            kind,
            base_url: raw.base_url,
            api_key_env: raw.api_key_env,
            retry,
            breaker,
            http,
            http2_max_streams,
            tool_call_content,
            rpm: raw
                .rpm
                .map(|n| positive(Some(n), 1, &at("rpm")))
                .transpose()?,
            tpm: raw
                .tpm
                .map(|n| positive(Some(n), 1, &at("tpm")))
                .transpose()?,
        })
    }
}

/// The `[model]` section, validated against the providers it names.
struct ModelSection {
    model: ModelRef,
    fallbacks: Vec<ModelRef>,
    model_timeout: Duration,
    connect_timeout: Duration,
    idle_timeout: Duration,
    max_repairs: u32,
    park_retry_ms: u64,
    tool_choice: ToolChoice,
}

impl RawModel {
    /// `[model]`: the chain, its timeouts, repairs, parking and tool choice.
    fn validate(&self, providers: &BTreeMap<String, ProviderSpec>) -> Result<ModelSection, Error> {
        let raw = self;
        let model = parse_model_ref(&raw.primary, providers, "model.primary")?;
        let fallbacks = raw
            .fallbacks
            .iter()
            .enumerate()
            .map(|(i, text)| parse_model_ref(text, providers, &format!("model.fallbacks[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        let model_timeout = duration_or(&raw.timeout, DEFAULT_MODEL_TIMEOUT, "model.timeout")?;
        let connect_timeout = duration_or(
            &raw.connect_timeout,
            DEFAULT_CONNECT_TIMEOUT.min(model_timeout),
            "model.connect_timeout",
        )?;
        let idle_timeout = duration_or(
            &raw.idle_timeout,
            DEFAULT_IDLE_TIMEOUT.min(model_timeout),
            "model.idle_timeout",
        )?;
        let max_repairs = match raw.max_repairs {
            None => crate::event::DEFAULT_MAX_REPAIRS,
            Some(n) if (0..=100).contains(&n) => n as u32,
            Some(n) => {
                return Err(invalid(
                    "model.max_repairs",
                    format!("must be between 0 and 100, got {n}"),
                ));
            }
        };
        let park_retry = duration_or(
            &raw.park_retry,
            Duration::from_millis(crate::event::DEFAULT_PARK_RETRY_MS),
            "model.park_retry",
        )?;
        if park_retry.is_zero() {
            return Err(invalid("model.park_retry", "must be greater than zero"));
        }
        if raw.max_tokens == Some(0) {
            return Err(invalid("model.max_tokens", "must be greater than zero"));
        }
        let tool_choice = match &raw.tool_choice {
            None => ToolChoice::Auto,
            Some(value) => parse_tool_choice(value)?,
        };

        Ok(ModelSection {
            model,
            fallbacks,
            model_timeout,
            connect_timeout,
            idle_timeout,
            max_repairs,
            park_retry_ms: u64::try_from(park_retry.as_millis()).unwrap_or(u64::MAX),
            tool_choice,
        })
    }
}

/// `[[tools]]`: each entry validated, and no tool name defined twice (MCP tools are named
/// only once their server lists them; the toolbox checks those).
fn validate_tools(
    raw: Vec<RawTool>,
    mcp: &BTreeMap<String, McpServerSpec>,
) -> Result<Vec<ToolSpec>, Error> {
    let mut tools = Vec::new();
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    for (index, raw) in raw.into_iter().enumerate() {
        let key = format!("tools[{index}]");
        let tool = raw.validate(&key, mcp)?;
        let all = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // MCP tool names are known only once the server lists them; the toolbox checks those.
        let tool_names: Vec<String> = match &tool {
            ToolSpec::Fs { only, .. } => only.clone().unwrap_or_else(|| all(&BUILTIN_FS_TOOLS)),
            ToolSpec::Http(http) => http
                .only
                .clone()
                .unwrap_or_else(|| all(&BUILTIN_HTTP_TOOLS)),
            ToolSpec::Mcp { .. } => Vec::new(),
            ToolSpec::Command(c) => vec![c.name.clone()],
        };
        for name in tool_names {
            if let Some(first) = names.insert(name.clone(), key.clone()) {
                return Err(invalid(
                    key,
                    format!("tool name `{name}` is already defined by {first}"),
                ));
            }
        }
        tools.push(tool);
    }

    Ok(tools)
}

fn parse_tool_choice(value: &toml::Value) -> Result<ToolChoice, Error> {
    const KEY: &str = "model.tool_choice";
    const EXPECTED: &str = "expected \"auto\", \"required\", \"none\" or { name = \"TOOL\" }";
    match value {
        toml::Value::String(text) => match text.as_str() {
            "auto" => Ok(ToolChoice::Auto),
            "required" => Ok(ToolChoice::Required),
            "none" => Ok(ToolChoice::None),
            other => Err(invalid(KEY, format!("unknown value `{other}`: {EXPECTED}"))),
        },
        toml::Value::Table(table) => {
            if let Some(key) = table.keys().find(|k| k.as_str() != "name") {
                return Err(invalid(
                    format!("{KEY}.{key}"),
                    format!("unknown key: {EXPECTED}"),
                ));
            }
            match table.get("name") {
                Some(toml::Value::String(name)) if !name.trim().is_empty() => {
                    Ok(ToolChoice::Tool(name.trim().to_string()))
                }
                _ => Err(invalid(format!("{KEY}.name"), "must name the tool to call")),
            }
        }
        _ => Err(invalid(KEY, EXPECTED)),
    }
}

/// A positive count, or the default when absent; the error names `key`.
pub(crate) fn positive(value: Option<i64>, default: u32, key: &str) -> Result<u32, Error> {
    match value {
        None => Ok(default),
        Some(n) if n > 0 && n <= i64::from(u32::MAX) => Ok(n as u32),
        Some(n) => Err(invalid(key, format!("must be a positive number, got {n}"))),
    }
}

/// A duration, or the default when absent; the error names `key`.
pub(crate) fn duration_or(
    value: &Option<String>,
    default: Duration,
    key: &str,
) -> Result<Duration, Error> {
    match value {
        None => Ok(default),
        Some(text) => duration::parse(text).map_err(|m| invalid(key, m)),
    }
}

fn parse_model_ref(
    text: &str,
    providers: &BTreeMap<String, ProviderSpec>,
    key: &str,
) -> Result<ModelRef, Error> {
    let Some((provider, model)) = text.split_once(':') else {
        return Err(invalid(
            key,
            format!("`{text}` is not of the form PROVIDER:MODEL (e.g. \"openai:gpt-4o-mini\")"),
        ));
    };
    if model.is_empty() {
        return Err(invalid(
            key,
            format!("`{text}` names no model after the colon"),
        ));
    }
    if !providers.contains_key(provider) {
        let known: Vec<&str> = providers.keys().map(String::as_str).collect();
        return Err(invalid(
            key,
            format!(
                "unknown provider `{provider}` (declared: {}); add a [providers.{provider}] table",
                known.join(", ")
            ),
        ));
    }
    Ok(ModelRef {
        provider: provider.to_string(),
        model: model.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[agent]
name = "a"
prompt = "p.j2"
[model]
primary = "openai:gpt-4o-mini"
"#;

    fn err(text: &str) -> String {
        AgentSpec::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn minimal_spec_gets_defaults() {
        let spec = AgentSpec::parse(MINIMAL).unwrap();
        assert_eq!(spec.model.to_string(), "openai:gpt-4o-mini");
        assert_eq!(spec.limits.get(crate::LimitName::MaxSteps), Some(25.0));
        assert_eq!(spec.max_tokens, DEFAULT_MAX_TOKENS);
        assert!(spec.providers.contains_key("openai"));
        assert!(spec.tools.is_empty());
    }

    #[test]
    fn stream_and_tool_choice() {
        let spec = AgentSpec::parse(MINIMAL).unwrap();
        assert!(spec.stream);
        assert_eq!(spec.tool_choice, ToolChoice::Auto);
        assert_eq!(spec.providers["openai"].tool_call_content, None);
        let with = |extra: &str| MINIMAL.replace("[model]\n", &format!("[model]\n{extra}\n"));
        let spec = AgentSpec::parse(&with("stream = false\ntool_choice = \"required\"")).unwrap();
        assert!(!spec.stream);
        assert_eq!(spec.tool_choice, ToolChoice::Required);
        let spec = AgentSpec::parse(&with("tool_choice = \"none\"")).unwrap();
        assert_eq!(spec.tool_choice, ToolChoice::None);
        let spec = AgentSpec::parse(&with("tool_choice = { name = \"read_file\" }")).unwrap();
        assert_eq!(spec.tool_choice, ToolChoice::Tool("read_file".into()));

        let e = err(&with("tool_choice = \"any\""));
        assert!(
            e.starts_with("model.tool_choice: unknown value `any`"),
            "{e}"
        );
        let e = err(&with("tool_choice = { name = \"\" }"));
        assert!(e.starts_with("model.tool_choice.name: must name"), "{e}");
        let e = err(&with("tool_choice = { tool = \"x\" }"));
        assert!(e.starts_with("model.tool_choice.tool: unknown key"), "{e}");
        let e = err(&with("tool_choice = 3"));
        assert!(e.starts_with("model.tool_choice: expected"), "{e}");
    }

    #[test]
    fn tool_call_content_is_an_openai_key() {
        let provider = |kind: &str, value: &str| {
            format!(
                "{MINIMAL}[providers.local]\nkind = \"{kind}\"\nbase_url = \"http://h/v1\"\ntool_call_content = \"{value}\"\n"
            )
        };
        let spec = AgentSpec::parse(&provider("openai", "empty")).unwrap();
        assert_eq!(
            spec.providers["local"].tool_call_content,
            Some(ToolCallContent::Empty)
        );
        let spec = AgentSpec::parse(&provider("openai", "null")).unwrap();
        assert_eq!(
            spec.providers["local"].tool_call_content,
            Some(ToolCallContent::Null)
        );
        let e = err(&provider("openai", "blank"));
        assert!(
            e.starts_with("providers.local.tool_call_content: unknown value `blank`"),
            "{e}"
        );
        let e = err(&provider("anthropic", "empty"));
        assert_eq!(
            e,
            "providers.local.tool_call_content: applies only to kind = \"openai\""
        );
    }

    #[test]
    fn unknown_key_names_line() {
        let e = err(&format!("{MINIMAL}\n[agent2]\nx = 1\n"));
        assert!(e.contains("line 8"), "{e}");
        assert!(e.contains("unknown field `agent2`"), "{e}");
    }

    #[test]
    fn unknown_provider_names_key() {
        let e = err(&MINIMAL.replace("openai:gpt", "nope:gpt"));
        assert!(
            e.starts_with("model.primary: unknown provider `nope`"),
            "{e}"
        );
    }

    #[test]
    fn command_tool_defaults_to_irreversible() {
        let spec = AgentSpec::parse(&format!(
            "{MINIMAL}\n[[tools]]\nname = \"t\"\ncommand = [\"echo\"]\n"
        ))
        .unwrap();
        let ToolSpec::Command(tool) = &spec.tools[0] else {
            panic!("expected a command tool")
        };
        assert_eq!(tool.risk, crate::RiskClass::Irreversible);
        assert_eq!(tool.timeout, DEFAULT_TOOL_TIMEOUT);
    }

    #[test]
    fn bad_tool_entries_name_the_key() {
        let e = err(&format!("{MINIMAL}\n[[tools]]\nuse = \"builtin:fs\"\n"));
        assert!(e.starts_with("tools[0].root:"), "{e}");
        let e = err(&format!(
            "{MINIMAL}\n[[tools]]\nname = \"t\"\ncommand = [\"x\"]\nrisk = \"scary\"\n"
        ));
        assert!(
            e.starts_with("tools[0].risk: unknown risk class `scary`"),
            "{e}"
        );
        let e = err(&format!(
            "{MINIMAL}\n[[tools]]\nuse = \"builtin:fs\"\nroot = \".\"\n[[tools]]\nname = \"read_file\"\ncommand = [\"x\"]\n"
        ));
        assert!(e.contains("already defined by tools[0]"), "{e}");
    }

    #[test]
    fn bad_resilience_config_names_the_key() {
        let e = err(&MINIMAL.replace(
            "primary = \"openai:gpt-4o-mini\"",
            "primary = \"openai:gpt-4o-mini\"\nfallbacks = [\"nope:x\"]",
        ));
        assert!(
            e.starts_with("model.fallbacks[0]: unknown provider `nope`"),
            "{e}"
        );
        let e = err(&MINIMAL.replace(
            "primary = \"openai:gpt-4o-mini\"",
            "primary = \"openai:gpt-4o-mini\"\ntimeout = \"-5s\"",
        ));
        assert!(e.starts_with("model.timeout:"), "{e}");
        let e = err(&format!(
            "{MINIMAL}\n[providers.p]\nkind = \"openai\"\nbase_url = \"http://x\"\nmax_attempts = 0\n"
        ));
        assert!(
            e.starts_with("providers.p.max_attempts: must be a positive number, got 0"),
            "{e}"
        );
        let e = err(&format!(
            "{MINIMAL}\n[providers.p]\nkind = \"openai\"\nbreaker_failure_rate = 1.5\n"
        ));
        assert!(e.starts_with("providers.p.breaker_failure_rate"), "{e}");
    }

    #[test]
    fn http_version_defaults_to_auto_and_bad_values_name_the_key() {
        let provider = |extra: &str| {
            format!("{MINIMAL}\n[providers.p]\nkind = \"openai\"\nbase_url = \"http://x\"\n{extra}")
        };
        let spec = AgentSpec::parse(&provider("")).unwrap();
        assert_eq!(spec.providers["p"].http, HttpVersion::Auto);
        assert_eq!(
            spec.providers["p"].http2_max_streams,
            DEFAULT_HTTP2_MAX_STREAMS
        );
        let spec = AgentSpec::parse(&provider("http = \"http2\"\nhttp2_max_streams = 8")).unwrap();
        assert_eq!(spec.providers["p"].http, HttpVersion::Http2);
        assert_eq!(spec.providers["p"].http2_max_streams, 8);
        let e = err(&provider("http = \"http3\""));
        assert_eq!(
            e,
            "providers.p.http: unknown HTTP version `http3` (supported: auto, http1, http2)"
        );
        let e = err(&provider("http2_max_streams = 0"));
        assert!(
            e.starts_with("providers.p.http2_max_streams: must be a positive number, got 0"),
            "{e}"
        );
    }

    #[test]
    fn fallbacks_and_anthropic_resolve() {
        let spec = AgentSpec::parse(&MINIMAL.replace(
            "primary = \"openai:gpt-4o-mini\"",
            "primary = \"openai:gpt-4o-mini\"\nfallbacks = [\"anthropic:claude-haiku-4-5\"]",
        ))
        .unwrap();
        assert_eq!(spec.fallbacks[0].to_string(), "anthropic:claude-haiku-4-5");
        assert_eq!(spec.providers["anthropic"].kind, ProviderKind::Anthropic);
        assert_eq!(spec.max_repairs, crate::event::DEFAULT_MAX_REPAIRS);
    }

    #[test]
    fn wrong_type_names_line() {
        let e = err(&MINIMAL.replace("name = \"a\"", "name = 3"));
        assert!(e.contains("line 3"), "{e}");
        assert!(e.contains("invalid type"), "{e}");
    }
}

#[cfg(test)]
mod tool_source_tests {
    use super::*;

    const BASE: &str = "[agent]\nname = \"a\"\nprompt = \"p\"\n[model]\nprimary = \"openai:m\"\n";

    fn parse(extra: &str) -> Result<AgentSpec, Error> {
        AgentSpec::parse(&format!("{BASE}{extra}"))
    }

    #[test]
    fn http_and_mcp_entries_parse() {
        let spec = parse(
            "[[tools]]\nuse = \"builtin:http\"\nallow_hosts = [\"api.example.com\", \"*.example.org\"]\n\
             [[tools]]\nuse = \"mcp:billing\"\nonly = [\"lookup\"]\nrisk = { lookup = \"read_only\" }\n\
             [mcp.billing]\ncommand = [\"billing-server\"]\n",
        )
        .unwrap();
        let ToolSpec::Http(http) = &spec.tools[0] else {
            panic!()
        };
        assert_eq!(http.post_risk, crate::RiskClass::Irreversible);
        assert!(!http.allow_private);
        let ToolSpec::Mcp { server, risk, .. } = &spec.tools[1] else {
            panic!()
        };
        assert_eq!(server, "billing");
        assert_eq!(risk["lookup"], crate::RiskClass::ReadOnly);
        assert!(!spec.mcp["billing"].trusted);
    }

    #[test]
    fn tool_env_passes_names_or_sets_values() {
        let spec = parse(
            "[[tools]]\nname = \"a\"\ncommand = [\"x\"]\nenv = [\"HOME_DIR\", \"TOKEN\"]\n\
             [[tools]]\nname = \"b\"\ncommand = [\"x\"]\nenv = { MODE = \"fast\" }\n\
             [mcp.s]\ncommand = [\"srv\"]\nenv = [\"SRV_TOKEN\"]\n",
        )
        .unwrap();
        let ToolSpec::Command(a) = &spec.tools[0] else {
            panic!()
        };
        assert_eq!(a.env.pass, ["HOME_DIR", "TOKEN"]);
        let ToolSpec::Command(b) = &spec.tools[1] else {
            panic!()
        };
        assert_eq!(b.env.set["MODE"], "fast");
        let McpTransport::Stdio { env, .. } = &spec.mcp["s"].transport else {
            panic!()
        };
        assert_eq!(env.pass, ["SRV_TOKEN"]);
        let tool = "[[tools]]\nname = \"a\"\ncommand = [\"x\"]\n";
        for (env, key) in [
            ("env = \"HOME\"", "tools[0].env: must be a list"),
            ("env = [\"A=B\"]", "tools[0].env[0]: `A=B` is not the name"),
            ("env = [\"OK\", 3]", "tools[0].env[1]: must be the name"),
            (
                "env = { \"\" = \"x\" }",
                "tools[0].env.: `` is not the name",
            ),
            (
                "env = { N = 1 }",
                "tools[0].env.N: must be a string, got integer",
            ),
        ] {
            let e = parse(&format!("{tool}{env}\n")).unwrap_err().to_string();
            assert!(e.starts_with(key), "{env}: {e}");
        }
        let e = parse("[[tools]]\nuse = \"builtin:fs\"\nroot = \".\"\nenv = [\"A\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("tools[0].env: not allowed"), "{e}");
        let e = parse("[mcp.h]\nurl = \"http://h\"\nenv = [\"A\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("mcp.h.env: only allowed with `command`"),
            "{e}"
        );
    }

    #[test]
    fn bad_http_and_mcp_entries_name_the_key() {
        let e = parse("[[tools]]\nuse = \"builtin:http\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("tools[0].allow_hosts:"), "{e}");
        let e = parse("[[tools]]\nuse = \"builtin:http\"\nallow_hosts = [\"http://x\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not a host name"), "{e}");
        let e = parse("[[tools]]\nuse = \"mcp:nope\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("tools[0].use: no MCP server `nope`"), "{e}");
        let e = parse("[mcp.x]\ncommand = [\"a\"]\nurl = \"http://h\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("mcp.x: set either"), "{e}");
        let e = parse("[mcp.x]\ncommand = [\"a\"]\ntimeout = \"5s\"\nidle_timeout = \"10s\"\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "mcp.x.idle_timeout: must not be longer than `timeout`, which bounds every call"
        );
        let e = parse("[[tools]]\nuse = \"builtin:fs\"\nroot = \".\"\nallow_hosts = [\"a\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("tools[0].allow_hosts: not allowed"), "{e}");
    }
}
