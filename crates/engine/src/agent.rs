//! Loading an agent: spec file, prompt template, tools and model client, all checked up front
//! so a bad spec fails before anything is journaled.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chassis_core::spec::{AgentSpec, ProviderKind};
use chassis_providers::{ModelClient, OpenAiClient};
use chassis_tools::Toolbox;

/// The public OpenAI API, used when neither the spec nor `OPENAI_BASE_URL` names another.
const OPENAI_DEFAULT_URL: &str = "https://api.openai.com/v1";

/// An agent that cannot be loaded; the message names the file and the key or line.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct LoadError {
    /// The file at fault (spec or prompt template).
    pub file: String,
    /// What is wrong, starting with the key or line.
    pub message: String,
}

/// A loaded agent: validated spec, compiled prompt template, tools, model client.
pub struct Agent {
    /// The validated spec.
    pub spec: AgentSpec,
    /// Absolute path of the spec file.
    pub spec_path: PathBuf,
    template: minijinja::Environment<'static>,
    /// The tools the agent is granted.
    pub toolbox: Toolbox,
    /// Client for the primary model.
    pub client: Arc<dyn ModelClient>,
}

impl Agent {
    /// Reads and checks `path` and everything it refers to.
    pub fn load(path: &Path) -> Result<Agent, LoadError> {
        let file = path.display().to_string();
        let error = |message: String| LoadError {
            file: file.clone(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| error(format!("cannot read: {e}")))?;
        let spec = AgentSpec::parse(&text).map_err(|e| error(e.to_string()))?;
        let spec_path = std::path::absolute(path).map_err(|e| error(e.to_string()))?;
        let base_dir = spec_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));

        let prompt_path = base_dir.join(&spec.prompt);
        let prompt = std::fs::read_to_string(&prompt_path).map_err(|e| {
            error(format!(
                "agent.prompt: cannot read prompt template {}: {e}",
                prompt_path.display()
            ))
        })?;
        let mut template = minijinja::Environment::new();
        template.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        template
            .add_template_owned(prompt_path.display().to_string(), prompt)
            .map_err(|e| LoadError {
                file: prompt_path.display().to_string(),
                message: template_error(&e),
            })?;

        let toolbox =
            Toolbox::from_specs(&spec.tools, &base_dir).map_err(|e| error(e.to_string()))?;
        let client = model_client(&spec).map_err(|m| error(m))?;
        Ok(Agent {
            spec,
            spec_path,
            template,
            toolbox,
            client,
        })
    }

    /// Renders the prompt template with the run's input and `[vars]`.
    pub fn render_system(&self, input: &str) -> Result<String, LoadError> {
        let name = self
            .spec_path
            .parent()
            .unwrap_or(Path::new("."))
            .join(&self.spec.prompt);
        let name = name.display().to_string();
        let mut context = self.spec.vars.clone();
        if let Some(map) = context.as_object_mut() {
            map.insert("input".into(), input.into());
        }
        self.template
            .get_template(&name)
            .and_then(|t| t.render(minijinja::Value::from(minijinja::value::Serde(&context))))
            .map_err(|e| LoadError {
                file: name.clone(),
                message: template_error(&e),
            })
    }
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

/// Builds the primary model's client, reading the API key from the named variable.
fn model_client(spec: &AgentSpec) -> Result<Arc<dyn ModelClient>, String> {
    let name = &spec.model.provider;
    let provider = spec
        .providers
        .get(name)
        .ok_or_else(|| format!("model.primary: unknown provider `{name}`"))?;
    match provider.kind {
        ProviderKind::OpenAi => {
            let implicit_openai = name == "openai";
            let base_url = match (&provider.base_url, implicit_openai) {
                (Some(url), _) => url.clone(),
                (None, true) => std::env::var("OPENAI_BASE_URL")
                    .ok()
                    .filter(|v| !v.is_empty())
                    .unwrap_or_else(|| OPENAI_DEFAULT_URL.to_string()),
                (None, false) => {
                    return Err(format!(
                        "providers.{name}.base_url: required for provider `{name}`"
                    ));
                }
            };
            let key_env = provider
                .api_key_env
                .clone()
                .or_else(|| implicit_openai.then(|| "OPENAI_API_KEY".to_string()));
            let api_key = key_env
                .as_deref()
                .and_then(|var| std::env::var(var).ok())
                .filter(|v| !v.is_empty());
            if let (None, Some(var)) = (&api_key, &provider.api_key_env) {
                return Err(format!(
                    "providers.{name}.api_key_env: environment variable {var} is not set"
                ));
            }
            if api_key.is_none() && base_url == OPENAI_DEFAULT_URL {
                let var = key_env.unwrap_or_else(|| "OPENAI_API_KEY".into());
                return Err(format!(
                    "providers.{name}: environment variable {var} is not set (needed for {base_url}); \
                     set it, or point OPENAI_BASE_URL at a compatible server"
                ));
            }
            let client = OpenAiClient::new(name, &base_url, api_key, spec.model_timeout)
                .map_err(|e| e.to_string())?;
            Ok(Arc::new(client))
        }
    }
}
