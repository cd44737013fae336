//! Loading an agent: spec file, prompt template, tools and model client, all checked up front
//! so a bad spec fails before anything is journaled.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chassis_core::spec::{AgentSpec, ModelRef, ProviderKind};
use chassis_providers::{
    AnthropicClient, BreakerConfig, CallOptions, CircuitBreaker, Fallback, HttpOptions, Link,
    ModelClient, OpenAiClient, Retry, RetryPolicy, Timeouts, breaker_for,
};
use chassis_tools::Toolbox;

/// The public OpenAI API, used when neither the spec nor `OPENAI_BASE_URL` names another.
const OPENAI_DEFAULT_URL: &str = "https://api.openai.com/v1";

/// The public Anthropic API, used when neither the spec nor `ANTHROPIC_BASE_URL` names another.
const ANTHROPIC_DEFAULT_URL: &str = "https://api.anthropic.com";

/// An agent that cannot be loaded; the message names the file and the key or line.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct LoadError {
    /// The file at fault (spec or prompt template).
    pub file: String,
    /// What is wrong, starting with the key or line.
    pub message: String,
}

/// What [`Agent::check`] found: the agent as it would run.
#[derive(Clone, Debug, PartialEq)]
pub struct Checked {
    /// The agent's name.
    pub name: String,
    /// The version fingerprint its runs would record; `None` when MCP servers were not started
    /// (their tools are part of it).
    pub version: Option<String>,
    /// The spec's `[agent] version` label.
    pub version_label: Option<String>,
    /// The primary model, `provider:model`.
    pub model: String,
    /// The fallback models, in order.
    pub fallbacks: Vec<String>,
    /// The names of the tools granted (without those of MCP servers not started).
    pub tools: Vec<String>,
    /// MCP servers whose configuration was checked but which were not started.
    pub mcp_not_started: Vec<String>,
}

/// A loaded agent: validated spec, compiled prompt template, tools, model client.
pub struct Agent {
    /// The validated spec.
    pub spec: AgentSpec,
    /// Absolute path of the spec file.
    pub spec_path: PathBuf,
    template: Prompt,
    /// The tools the agent is granted.
    pub toolbox: Toolbox,
    /// The model chain: primary, then fallbacks, each with retries and a circuit breaker.
    pub models: Fallback,
    /// Prices of the chain's models that have one (`provider:model` → price).
    pub prices: std::collections::BTreeMap<String, chassis_core::Price>,
    /// Where this agent's alerts go.
    pub alerts: crate::Alerts,
    /// Fingerprint of this agent version: the whole spec in canonical form, the prompt
    /// template, the tools offered and the resolved prices.
    pub version: String,
    /// The fingerprint before it covered the whole spec, for runs journaled then: computed the
    /// first time a run's version is not [`Agent::version`], which a new run never needs.
    version_v1: std::sync::OnceLock<String>,
    /// The toolbox's definitions, built once: every run of this agent shares them.
    pub tool_defs: std::sync::Arc<[chassis_core::ToolDef]>,
    redactor: crate::Redactor,
    /// Prompt variables given for the runs this agent starts (`--var`), over `[vars]`.
    vars: serde_json::Map<String, serde_json::Value>,
    sources: Sources,
}

/// The texts an agent version is made of: what chassis keeps with the version so a run always
/// continues under the version it started with, whatever the files say later.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Sources {
    /// Absolute path of the spec file: tool programs, fs roots and the prompt are found
    /// relative to its directory.
    pub spec_path: PathBuf,
    /// The spec's text.
    pub spec: String,
    /// The prompt template's text.
    pub prompt: String,
    /// The pricing file's text, when the spec names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing: Option<String>,
}

impl Sources {
    /// Reads the spec at `path`, its prompt template and its pricing file.
    pub fn read(path: &Path) -> Result<Sources, LoadError> {
        Sources::read_parsed(path).map(|(sources, _)| sources)
    }

    /// [`Sources::read`], with the spec as it parsed (which finding the other files takes).
    fn read_parsed(path: &Path) -> Result<(Sources, AgentSpec), LoadError> {
        let file = path.display().to_string();
        let error = |message: String| LoadError {
            file: file.clone(),
            message,
        };
        let spec = std::fs::read_to_string(path).map_err(|e| error(format!("cannot read: {e}")))?;
        let parsed = AgentSpec::parse(&spec).map_err(|e| error(e.to_string()))?;
        let spec_path = std::path::absolute(path).map_err(|e| error(e.to_string()))?;
        let base_dir = spec_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let prompt_path = base_dir.join(&parsed.prompt);
        let prompt = std::fs::read_to_string(&prompt_path).map_err(|e| {
            error(format!(
                "agent.prompt: cannot read prompt template {}: {e}",
                prompt_path.display()
            ))
        })?;
        let pricing = match &parsed.pricing_file {
            Some(name) => {
                let path = base_dir.join(name);
                Some(std::fs::read_to_string(&path).map_err(|e| {
                    error(format!(
                        "limits.pricing_file: cannot read {}: {e}",
                        path.display()
                    ))
                })?)
            }
            None => None,
        };
        let sources = Sources {
            spec_path,
            spec,
            prompt,
            pricing,
        };
        Ok((sources, parsed))
    }
}

impl Agent {
    /// Reads and checks `path` and everything it refers to.
    /// MCP servers named by the spec are started and asked for their tools.
    pub async fn load(path: &Path) -> Result<Agent, LoadError> {
        Agent::load_with_tools(path, Vec::new()).await
    }

    /// Like [`Agent::load`], granting the agent `tools` as well: tools written in Rust by the
    /// program that embeds chassis. They count in the agent version like any other tool, so a
    /// run started with them is resumed with [`crate::Engine::resume_with`] and an agent
    /// loaded the same way; `chassis resume` knows only the spec's tools and refuses it.
    pub async fn load_with_tools(
        path: &Path,
        tools: Vec<std::sync::Arc<dyn chassis_tools::Tool>>,
    ) -> Result<Agent, LoadError> {
        Agent::load_inner(path, tools, true).await
    }

    /// Checks `path` and everything it refers to as [`Agent::load`] does, with the same errors,
    /// and says what would run; nothing is journaled. With `connect` false no MCP server is
    /// started: their configuration is checked (a stdio server's program exists), but their
    /// tools are not listed, so neither approvals that name them nor the version can be known.
    pub async fn check(path: &Path, connect: bool) -> Result<Checked, LoadError> {
        let agent = Agent::load_inner(path, Vec::new(), connect).await?;
        let complete = connect || agent.spec.mcp.is_empty();
        Ok(Checked {
            name: agent.spec.name.clone(),
            version: complete.then(|| agent.version.clone()),
            version_label: agent.spec.version.clone(),
            model: agent.spec.model.to_string(),
            fallbacks: agent.spec.fallbacks.iter().map(|m| m.to_string()).collect(),
            tools: agent.tool_defs.iter().map(|t| t.name.clone()).collect(),
            mcp_not_started: if complete {
                Vec::new()
            } else {
                agent.spec.mcp.keys().cloned().collect()
            },
        })
    }

    async fn load_inner(
        path: &Path,
        tools: Vec<std::sync::Arc<dyn chassis_tools::Tool>>,
        connect: bool,
    ) -> Result<Agent, LoadError> {
        let (sources, spec) = Sources::read_parsed(path)?;
        Agent::build(sources, Some(spec), tools, connect).await
    }

    /// Builds the agent a stored version definition describes: its spec, prompt and pricing
    /// texts as they were when the version first ran, whatever the files say now (tool programs
    /// and MCP servers are still the ones on this machine).
    pub async fn from_sources(sources: Sources) -> Result<Agent, LoadError> {
        Agent::build(sources, None, Vec::new(), true).await
    }

    /// The texts this agent was built from: what a version definition keeps.
    pub fn sources(&self) -> &Sources {
        &self.sources
    }

    /// Builds the agent of `sources`; `parsed` is `sources.spec` already parsed, when it was.
    async fn build(
        sources: Sources,
        parsed: Option<AgentSpec>,
        tools: Vec<std::sync::Arc<dyn chassis_tools::Tool>>,
        connect: bool,
    ) -> Result<Agent, LoadError> {
        let spec_path = sources.spec_path.clone();
        let file = spec_path.display().to_string();
        let error = |message: String| LoadError {
            file: file.clone(),
            message,
        };
        let spec = match parsed {
            Some(spec) => spec,
            None => AgentSpec::parse(&sources.spec).map_err(|e| error(e.to_string()))?,
        };
        let redactor = crate::Redactor::for_spec(&spec).map_err(|e| error(e.to_string()))?;
        let base_dir = spec_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let prompt_path = base_dir.join(&spec.prompt);
        let template = Prompt::compile(&prompt_path, &sources.prompt)?;

        let offline = !connect && !spec.mcp.is_empty();
        let toolbox = if offline {
            // MCP servers are checked, not started: only the other tools are built.
            Toolbox::check_mcp(&spec.mcp, &base_dir).map_err(|e| error(e.to_string()))?;
            let local: Vec<_> = spec
                .tools
                .iter()
                .filter(|t| !matches!(t, chassis_core::spec::ToolSpec::Mcp { .. }))
                .cloned()
                .collect();
            Toolbox::from_specs(&local, &Default::default(), &base_dir).await
        } else {
            Toolbox::from_specs(&spec.tools, &spec.mcp, &base_dir).await
        }
        .and_then(|toolbox| toolbox.with_tools(tools))
        .map_err(|e| error(e.to_string()))?
        .with_bounds(spec.tool_bounds);
        let links = std::iter::once((&spec.model, "model.primary".to_string()))
            .chain(
                spec.fallbacks
                    .iter()
                    .enumerate()
                    .map(|(i, m)| (m, format!("model.fallbacks[{i}]"))),
            )
            .map(|(model, key)| link(&spec, model).map_err(|m| error(format!("{key}: {m}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let prices = chain_prices(&spec, &base_dir, sources.pricing.as_deref()).map_err(error)?;
        if !offline {
            check_approval_names(&spec, &toolbox).map_err(error)?;
        }
        check_webhook_secret(&spec).map_err(error)?;
        let alerts = crate::Alerts::new();
        let tool_defs: std::sync::Arc<[chassis_core::ToolDef]> = toolbox.defs().into();
        if let chassis_core::spec::ToolChoice::Tool(name) = &spec.tool_choice
            && !tool_defs.iter().any(|def| def.name == *name)
        {
            return Err(error(format!(
                "model.tool_choice.name: tool `{name}` is not among the agent's tools"
            )));
        }
        let version = crate::version::fingerprint(&spec, &sources.prompt, &tool_defs, &prices);
        Ok(Agent {
            tool_defs,
            spec,
            spec_path,
            template,
            toolbox,
            models: Fallback::new(links),
            prices,
            alerts,
            version,
            version_v1: std::sync::OnceLock::new(),
            redactor,
            vars: serde_json::Map::new(),
            sources,
        })
    }

    /// Sets prompt variables for the runs this agent starts, over the spec's `[vars]` (what
    /// `chassis run --var KEY=VALUE` gives). They are part of each run's input, not of the agent:
    /// the rendered prompt is journaled with the run, and the agent version does not change.
    pub fn with_vars(
        mut self,
        vars: impl IntoIterator<Item = (String, serde_json::Value)>,
    ) -> Agent {
        self.vars.extend(vars);
        self
    }

    /// Whether a run journaled with `version` may be resumed by this agent: the fingerprint is
    /// this agent's, or the one chassis computed before the fingerprint covered the whole spec
    /// (for runs started then; they were checked as weakly when they began).
    pub fn accepts_version(&self, version: &str) -> bool {
        version == self.version
            || version
                == self.version_v1.get_or_init(|| {
                    crate::version::fingerprint_v1(
                        &self.spec,
                        &self.sources.prompt,
                        &self.tool_defs,
                    )
                })
    }

    /// A redactor for this agent's secrets: the values of every API key variable its
    /// providers name (and the well-known ones of the implicit providers), of the variables
    /// under `[redact] env` (read when the agent was loaded), and the `[redact] patterns`.
    pub fn redactor(&self) -> crate::Redactor {
        self.redactor.clone()
    }

    /// Renders the prompt template with the run's input, `[vars]` and [`Agent::with_vars`].
    pub fn render_system(&self, input: &str) -> Result<String, LoadError> {
        self.render_system_with(input, &serde_json::Map::new())
    }

    /// Like [`Agent::render_system`], with `vars` of one run over everything else.
    pub fn render_system_with(
        &self,
        input: &str,
        vars: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<String, LoadError> {
        let template = match &self.template {
            Prompt::Text(text) => return Ok(text.clone()),
            Prompt::Template(template) => template,
        };
        let name = self
            .spec_path
            .parent()
            .unwrap_or(Path::new("."))
            .join(&self.spec.prompt);
        let name = name.display().to_string();
        let mut context = self.spec.vars.clone();
        if let Some(map) = context.as_object_mut() {
            map.extend(self.vars.clone());
            map.extend(vars.clone());
            map.insert("input".into(), input.into());
        }
        template
            .get_template(&name)
            .and_then(|t| t.render(minijinja::Value::from(minijinja::value::Serde(&context))))
            .map_err(|e| LoadError {
                file: name.clone(),
                message: template_error(&e),
            })
    }
}

/// The prompt, compiled: a template, or, when its text has no template markup at all, the text
/// it renders to, with no template engine built (an engine and its built-in filters and tests
/// were 80,000 instructions of every `chassis run`).
enum Prompt {
    Text(String),
    Template(Box<minijinja::Environment<'static>>),
}

impl Prompt {
    fn compile(path: &Path, text: &str) -> Result<Prompt, LoadError> {
        if !["{{", "{%", "{#"].iter().any(|open| text.contains(open)) {
            // What the engine renders text without markup to: the text, less one trailing
            // newline (`\n`, `\r\n` or `\r`), as `keep_trailing_newline` is off.
            let text = text.strip_suffix('\n').unwrap_or(text);
            let text = text.strip_suffix('\r').unwrap_or(text);
            return Ok(Prompt::Text(text.to_string()));
        }
        let mut template = minijinja::Environment::new();
        template.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        template
            .add_template_owned(path.display().to_string(), text.to_string())
            .map_err(|e| LoadError {
                file: path.display().to_string(),
                message: template_error(&e),
            })?;
        Ok(Prompt::Template(Box::new(template)))
    }
}

/// Approval overrides and rules must name tools the agent is granted.
fn check_approval_names(spec: &AgentSpec, toolbox: &Toolbox) -> Result<(), String> {
    let granted: Vec<String> = toolbox.defs().into_iter().map(|d| d.name).collect();
    let known = |name: &str| granted.iter().any(|g| g == name);
    let named = spec
        .approvals
        .tools
        .keys()
        .map(|t| (t.clone(), format!("approvals.tools.{t}")))
        .chain(
            spec.approvals
                .rules
                .iter()
                .enumerate()
                .map(|(i, r)| (r.tool.clone(), format!("approvals.rules[{i}].tool"))),
        );
    for (tool, key) in named {
        if !known(&tool) {
            return Err(format!(
                "{key}: no tool `{tool}` is granted to this agent (granted: {})",
                granted.join(", ")
            ));
        }
    }
    Ok(())
}

/// Prices of the chain's models: `[pricing]` over the pricing file over the defaults.
/// A model without one is refused when `unknown_price = "fail"`, and warned about otherwise.
fn chain_prices(
    spec: &AgentSpec,
    base_dir: &Path,
    pricing: Option<&str>,
) -> Result<std::collections::BTreeMap<String, chassis_core::Price>, String> {
    let mut overrides = std::collections::BTreeMap::new();
    if let Some(file) = &spec.pricing_file {
        let path = base_dir.join(file);
        let text = pricing.ok_or_else(|| {
            format!(
                "limits.pricing_file: {} was not read with the spec",
                path.display()
            )
        })?;
        overrides = chassis_core::spec::parse_pricing_file(text)
            .map_err(|e| format!("limits.pricing_file {}: {e}", path.display()))?;
    }
    overrides.extend(spec.pricing.clone());
    let mut prices = std::collections::BTreeMap::new();
    let chain = std::iter::once((&spec.model, "model.primary".to_string())).chain(
        spec.fallbacks
            .iter()
            .enumerate()
            .map(|(i, m)| (m, format!("model.fallbacks[{i}]"))),
    );
    for (model, key) in chain {
        let label = model.to_string();
        match chassis_core::limits::price_of(&label, &overrides) {
            Some(price) => {
                prices.insert(label, price);
            }
            None if spec.limits.unknown_price == chassis_core::limits::UnknownPrice::Fail => {
                return Err(format!(
                    "{key}: model `{label}` has no known price, so max_cost_usd cannot be enforced; \
                     add it under [pricing] (e.g. [pricing.\"{label}\"] input = 0.15, output = 0.6) \
                     or set limits.unknown_price = \"warn\""
                ));
            }
            None => {
                tracing::info!(model = %label, "model has no known price; its cost is counted as unknown, never as zero")
            }
        }
    }
    Ok(prices)
}

fn template_error(e: &minijinja::Error) -> String {
    match e.line() {
        Some(line) => format!(
            "line {line}: {}",
            e.detail().unwrap_or(&e.kind().to_string())
        ),
        None => e.to_string(),
    }
}

/// Builds one link of the chain: the provider's client inside a circuit breaker (shared by
/// every run in the process that uses the same endpoint) inside retries.
fn link(spec: &AgentSpec, model: &ModelRef) -> Result<Link, String> {
    let name = &model.provider;
    let provider = spec
        .providers
        .get(name)
        .ok_or_else(|| format!("unknown provider `{name}`"))?;
    let (default_url, url_env, key_env_default) = match provider.kind {
        ProviderKind::OpenAi => (OPENAI_DEFAULT_URL, "OPENAI_BASE_URL", "OPENAI_API_KEY"),
        ProviderKind::Anthropic => (
            ANTHROPIC_DEFAULT_URL,
            "ANTHROPIC_BASE_URL",
            "ANTHROPIC_API_KEY",
        ),
    };
    // Only the implicit provider of a kind reads the well-known variables.
    let implicit = (name == "openai" && provider.kind == ProviderKind::OpenAi)
        || (name == "anthropic" && provider.kind == ProviderKind::Anthropic);
    let base_url = match (&provider.base_url, implicit) {
        (Some(url), _) => url.clone(),
        (None, true) => std::env::var(url_env)
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| default_url.to_string()),
        (None, false) => return Err(format!("providers.{name}.base_url is required")),
    };
    let key_env = provider
        .api_key_env
        .clone()
        .or_else(|| implicit.then(|| key_env_default.to_string()));
    let api_key = key_env
        .as_deref()
        .and_then(|var| std::env::var(var).ok())
        .filter(|v| !v.is_empty());
    if let (None, Some(var)) = (&api_key, &provider.api_key_env) {
        return Err(format!(
            "providers.{name}.api_key_env: environment variable {var} is not set"
        ));
    }
    if api_key.is_none() && base_url == default_url {
        let var = key_env.unwrap_or_else(|| key_env_default.into());
        return Err(format!(
            "environment variable {var} is not set (needed for {base_url}); \
             set it, or point {url_env} at a compatible server"
        ));
    }
    let timeouts = Timeouts {
        connect: spec.connect_timeout,
        total: spec.model_timeout,
        idle: spec.idle_timeout,
    };
    let http = HttpOptions {
        version: provider.http,
        max_streams: provider.http2_max_streams,
    };
    let options = CallOptions {
        stream: spec.stream,
        tool_choice: spec.tool_choice.clone(),
        tool_call_content: provider.tool_call_content,
        max_reply_bytes: spec.max_reply_bytes,
    };
    let client: Arc<dyn ModelClient> = match provider.kind {
        ProviderKind::OpenAi => Arc::new(
            OpenAiClient::with_options(name, &base_url, api_key, timeouts, http)
                .map_err(|e| e.to_string())?
                .with_call_options(options),
        ),
        ProviderKind::Anthropic => Arc::new(
            AnthropicClient::with_options(name, &base_url, api_key, timeouts, http)
                .map_err(|e| e.to_string())?
                .with_call_options(options),
        ),
    };
    let label = model.to_string();
    let breaker = breaker_for(
        &format!("{name} {base_url}"),
        &BreakerConfig {
            threshold: provider.breaker.threshold,
            failure_rate: provider.breaker.failure_rate,
            window: provider.breaker.window,
            cooldown: provider.breaker.cooldown,
        },
    );
    let policy = RetryPolicy {
        max_attempts: provider.retry.max_attempts,
        base_delay: provider.retry.base_delay,
        max_delay: provider.retry.max_delay,
        retry_after_cap: provider.retry.retry_after_cap,
    };
    // Innermost, so every attempt (retries too) takes its share of the provider's limits.
    let client: Arc<dyn ModelClient> = if provider.rpm.is_some() || provider.tpm.is_some() {
        Arc::new(chassis_providers::RateLimited::new(
            client,
            name.clone(),
            provider.rpm,
            provider.tpm,
        ))
    } else {
        client
    };
    let guarded = CircuitBreaker::new(client, breaker, name, &label);
    Ok(Link {
        label: label.clone(),
        model: model.model.clone(),
        client: Arc::new(Retry::new(guarded, policy, label)),
    })
}

/// With a webhook, the signing secret must be in the environment, and long enough to sign with.
fn check_webhook_secret(spec: &AgentSpec) -> Result<(), String> {
    if spec.alerts.webhook.is_none() {
        return Ok(());
    }
    let name = &spec.alerts.secret_env;
    let len = std::env::var_os(name).map_or(0, |v| v.len());
    if len == 0 {
        return Err(format!(
            "alerts.secret_env: webhooks are signed with the secret in {name}, which is not set \
             (set it, or name another variable in [alerts] secret_env)"
        ));
    }
    if len < crate::outbox::MIN_WEBHOOK_SECRET_LEN {
        return Err(format!(
            "alerts.secret_env: the value of {name} is {len} bytes long; a signing secret must \
             be at least {} bytes",
            crate::outbox::MIN_WEBHOOK_SECRET_LEN
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Prompt;
    use std::path::Path;

    /// A prompt without markup is kept as the text the template engine renders it to.
    #[test]
    fn a_prompt_without_markup_renders_as_its_template_would() {
        for text in [
            "",
            "\n",
            "\r\n",
            "You are a support agent.",
            "You are a support agent.\n",
            "Two lines.\nAnd a blank one after.\n\n",
            "Windows line ends.\r\n",
            "A lone carriage return.\r",
            "Braces alone: { x } }} %} #} and 100% sure.\n",
            "Ünïcödé, emoji 🚀 and tabs\t.\n",
        ] {
            let Ok(Prompt::Text(kept)) = Prompt::compile(Path::new("p.md"), text) else {
                panic!("{text:?} has no markup but was compiled as a template");
            };
            let mut engine = minijinja::Environment::new();
            engine.add_template("p", text).unwrap();
            let rendered = engine.get_template("p").and_then(|t| t.render(())).unwrap();
            assert_eq!(kept, rendered, "{text:?}");
        }
    }

    /// Markup of any kind (expression, statement, comment) gets the template engine, and its
    /// errors are reported against the prompt's file.
    #[test]
    fn a_prompt_with_markup_is_a_template() {
        for text in [
            "Hi {{ input }}",
            "{% if true %}x{% endif %}",
            "a {# note #} b",
        ] {
            assert!(
                matches!(
                    Prompt::compile(Path::new("p.md"), text),
                    Ok(Prompt::Template(_))
                ),
                "{text:?}"
            );
        }
        let Err(error) = Prompt::compile(Path::new("p.md"), "Hi {{ input") else {
            panic!("an unclosed expression compiled");
        };
        assert_eq!(error.file, "p.md");
    }
}
