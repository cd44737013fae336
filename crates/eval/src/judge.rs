//! The LLM judge: one model call asking whether a run's output meets a rubric.
//!
//! The call goes through the same providers as the agent's runs, and through the same cassette,
//! so a judged suite replays offline too.

use std::sync::Arc;

use chassis_core::Message;
use chassis_core::spec::{AgentSpec, ProviderKind};
use chassis_engine::Agent;
use chassis_providers::{
    AnthropicClient, CallOptions, ChatRequest, ModelClient, OpenAiClient, Reporter, Timeouts,
};

use crate::expect::Judge;

/// The judge's instructions.
pub const SYSTEM: &str = "You grade the answers of an AI agent against a rubric. \
Be strict: the answer passes only if it meets every point of the rubric. \
Reply with PASS or FAIL on the first line, then one sentence saying why.";

/// Output tokens the judge may use.
const MAX_TOKENS: u32 = 256;

/// What the judge said.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// Whether the output meets the rubric.
    pub pass: bool,
    /// The judge's reason.
    pub reason: String,
}

/// `provider:model` of the judge of `judge` for `agent`: its own, or the agent's primary.
pub fn label(judge: &Judge, agent: &Agent) -> String {
    judge
        .model
        .clone()
        .unwrap_or_else(|| agent.spec.model.to_string())
}

/// The request that asks the judge about `output`, the answer to `input`.
pub fn request(judge: &Judge, label: &str, input: &str, output: &str) -> ChatRequest<'static> {
    let model = label.split_once(':').map_or(label, |(_, m)| m);
    let prompt = format!(
        "Grade the answer of an AI agent against the rubric.\n\n\
         Rubric:\n{}\n\nRequest given to the agent:\n{input}\n\n\
         The agent's answer:\n{output}\n\n\
         Reply with PASS or FAIL on the first line, then one sentence saying why.",
        judge.rubric.trim()
    );
    ChatRequest {
        model: model.to_string().into(),
        messages: vec![
            Message::System {
                content: SYSTEM.to_string(),
            },
            Message::User { content: prompt },
        ]
        .into(),
        tools: Vec::new().into(),
        max_tokens: Some(MAX_TOKENS),
        temperature: Some(0.0),
        report: Reporter::default(),
        deltas: Default::default(),
    }
}

/// Asks `client` and reads its verdict.
pub async fn grade(
    client: &dyn ModelClient,
    judge: &Judge,
    label: &str,
    input: &str,
    output: &str,
) -> Result<Verdict, String> {
    let response = client
        .complete(&request(judge, label, input, output))
        .await
        .map_err(|e| format!("the judge {label} could not be asked: {e}"))?;
    parse_verdict(response.message.content.as_deref().unwrap_or(""))
}

/// Reads `PASS …` / `FAIL …` (first word of the first line), or `{"pass": bool, "reason": …}`.
pub fn parse_verdict(text: &str) -> Result<Verdict, String> {
    let text = text.trim();
    if let (Some(start), Some(end)) = (text.find('{'), text.rfind('}'))
        && start < end
        && let Ok(value) = serde_json::from_str::<serde_json::Value>(&text[start..=end])
        && let Some(pass) = value.get("pass").and_then(serde_json::Value::as_bool)
    {
        let reason = value
            .get("reason")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("")
            .to_string();
        return Ok(Verdict { pass, reason });
    }
    let body = text.trim_start_matches(|c: char| !c.is_alphanumeric());
    let word_end = body
        .find(|c: char| !c.is_alphanumeric())
        .unwrap_or(body.len());
    let pass = match body[..word_end].to_ascii_uppercase().as_str() {
        "PASS" | "PASSED" => true,
        "FAIL" | "FAILED" => false,
        _ => {
            return Err(format!(
                "the judge answered neither PASS nor FAIL: {:?}",
                crate::expect::clip(text, 160)
            ));
        }
    };
    let reason = body[word_end..]
        .trim_start_matches(|c: char| !c.is_alphanumeric())
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    Ok(Verdict { pass, reason })
}

/// The judge's client: the agent's own link when the judge is one of its models (so it shares
/// the link's retries, breaker and any cassette wrapping), otherwise `None`.
pub fn chain_client(agent: &Agent, label: &str) -> Option<Arc<dyn ModelClient>> {
    agent
        .models
        .links()
        .iter()
        .find(|link| link.label == label)
        .map(|link| link.client.clone())
}

/// A plain client (one attempt per call) for `label`'s provider, as the agent spec defines it.
pub fn provider_client(spec: &AgentSpec, label: &str) -> Result<Arc<dyn ModelClient>, String> {
    let provider = label.split_once(':').map_or(label, |(p, _)| p);
    let spec_of = spec.providers.get(provider).ok_or_else(|| {
        format!("judge.model: unknown provider `{provider}` (use one the agent spec declares)")
    })?;
    let (default_url, url_env, key_env) = match spec_of.kind {
        ProviderKind::OpenAi => (
            "https://api.openai.com/v1",
            "OPENAI_BASE_URL",
            "OPENAI_API_KEY",
        ),
        ProviderKind::Anthropic => (
            "https://api.anthropic.com",
            "ANTHROPIC_BASE_URL",
            "ANTHROPIC_API_KEY",
        ),
    };
    let implicit = (provider == "openai" && spec_of.kind == ProviderKind::OpenAi)
        || (provider == "anthropic" && spec_of.kind == ProviderKind::Anthropic);
    let env = |var: &str| std::env::var(var).ok().filter(|v| !v.is_empty());
    let base_url = spec_of
        .base_url
        .clone()
        .or_else(|| if implicit { env(url_env) } else { None })
        .unwrap_or_else(|| default_url.to_string());
    let api_key = spec_of
        .api_key_env
        .clone()
        .or_else(|| implicit.then(|| key_env.to_string()))
        .and_then(|var| env(&var));
    let timeouts = Timeouts {
        connect: spec.connect_timeout,
        total: spec.model_timeout,
        idle: spec.idle_timeout,
    };
    let options = CallOptions {
        stream: spec.stream,
        tool_call_content: spec_of.tool_call_content,
        ..CallOptions::default()
    };
    let client: Arc<dyn ModelClient> = match spec_of.kind {
        ProviderKind::OpenAi => Arc::new(
            OpenAiClient::with_timeouts(provider, &base_url, api_key, timeouts)
                .map_err(|e| e.to_string())?
                .with_call_options(options),
        ),
        ProviderKind::Anthropic => Arc::new(
            AnthropicClient::with_timeouts(provider, &base_url, api_key, timeouts)
                .map_err(|e| e.to_string())?
                .with_call_options(options),
        ),
    };
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_read_pass_fail_and_json() {
        assert_eq!(
            parse_verdict("PASS: names the cause.\n"),
            Ok(Verdict {
                pass: true,
                reason: "names the cause.".into()
            })
        );
        assert_eq!(
            parse_verdict("**Fail** — the fix is missing").map(|v| (v.pass, v.reason)),
            Ok((false, "the fix is missing".into()))
        );
        assert_eq!(
            parse_verdict("Here: {\"pass\": true, \"reason\": \"ok\"}").map(|v| v.pass),
            Ok(true)
        );
        let err = parse_verdict("Maybe.").unwrap_err();
        assert!(
            err.starts_with("the judge answered neither PASS nor FAIL"),
            "{err}"
        );
    }

    #[test]
    fn the_request_carries_rubric_input_and_output() {
        let judge = Judge {
            rubric: "Names the cause.".into(),
            model: None,
        };
        let request = request(&judge, "mock:judge-1", "why?", "because");
        assert_eq!(request.model, "judge-1");
        let Message::User { content } = &request.messages[1] else {
            panic!("second message is the user's: {:?}", request.messages);
        };
        assert!(content.starts_with("Grade the answer of an AI agent"));
        assert!(content.contains("Rubric:\nNames the cause."));
        assert!(content.contains("The agent's answer:\nbecause"));
    }
}
