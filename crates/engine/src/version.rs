//! The agent version: a fingerprint over everything that changes what an agent does.
//!
//! The whole validated spec in canonical form (so not its formatting, comments or key order):
//! the model chain and its settings (max_tokens, temperature, timeouts, repairs), every
//! provider (kind, base URL, key variable, retries, breaker, HTTP settings), every tool entry
//! (command and arguments, schema, risk, timeout, env, fs root, http hosts), every MCP server
//! (command, URL, env, trust, timeout), limits, pricing, alerts, approvals, redaction and
//! `[vars]`; then the prompt template's text, the tools as the model is offered them (MCP tools
//! as their servers list them), and the resolved prices of the chain. Every run records it; a
//! run resumed after any of these changed is refused rather than continued by another version.
//!
//! Left out, as they change nothing a run does: the `[agent] version` label (recorded beside
//! the fingerprint), `[agent] description`, and the paths of the prompt template and of the
//! pricing file (their contents count, through the template text and the resolved prices).
//! What chassis cannot see is not covered either: the environment (`OPENAI_BASE_URL`, the
//! values of passed-through variables) and the programs a command or an MCP server runs.

use std::collections::BTreeMap;

use chassis_core::spec::AgentSpec;
use chassis_core::{Price, ToolDef};
use serde_json::Value;

/// Top-level spec keys that are only names of things whose content is hashed, or labels.
const COSMETIC: [&str; 3] = ["version", "prompt", "pricing_file"];

/// A short, stable hash of the agent version (12 hex digits).
pub(crate) fn fingerprint(
    spec: &AgentSpec,
    prompt: &str,
    tools: &[ToolDef],
    prices: &BTreeMap<String, Price>,
) -> String {
    let mut spec = serde_json::to_value(spec).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut spec {
        for key in COSMETIC {
            map.remove(key);
        }
    }
    let parts = [
        format!("spec={}", canonical(&spec)),
        format!("prompt={prompt}"),
        format!(
            "tools={}",
            canonical(&serde_json::to_value(tools).unwrap_or(Value::Null))
        ),
        format!(
            "prices={}",
            canonical(&serde_json::to_value(prices).unwrap_or(Value::Null))
        ),
    ];
    hash(&parts)
}

/// The fingerprint of chassis before it covered the whole spec (spec fields chosen by hand):
/// runs journaled then carry it, and resuming them compares against it. Frozen: it must give
/// what it gave then (the space before each canonical value is that version's).
pub(crate) fn fingerprint_v1(spec: &AgentSpec, prompt: &str, tools: &[ToolDef]) -> String {
    let mut parts: Vec<String> = vec![
        format!("name={}", spec.name),
        format!("prompt={prompt}"),
        format!("model={}", spec.model),
        format!(
            "fallbacks={}",
            spec.fallbacks
                .iter()
                .map(|m| m.to_string())
                .collect::<Vec<_>>()
                .join(",")
        ),
        format!("max_tokens={}", spec.max_tokens),
        format!("temperature={:?}", spec.temperature),
        format!("max_repairs={}", spec.max_repairs),
        format!("vars= {}", canonical(&spec.vars)),
        format!("limits={}", limits_v1(&spec.limits)),
    ];
    for tool in tools {
        parts.push(format!(
            "tool={}|{}| {}|{}|{}",
            tool.name,
            tool.description,
            canonical(&tool.parameters),
            tool.risk,
            tool.idempotent
        ));
    }
    hash(&parts)
}

/// The limits as the first fingerprint saw them: `max_park` (added later, with a default) left
/// out while it is the default, so agents that do not set it keep their first fingerprint.
fn limits_v1(limits: &chassis_core::Limits) -> String {
    let mut limits = limits.clone();
    let default_park = chassis_core::Limits::default().get(chassis_core::LimitName::MaxPark);
    if limits.get(chassis_core::LimitName::MaxPark) == default_park {
        limits.values.remove(&chassis_core::LimitName::MaxPark);
    }
    serde_json::to_value(&limits)
        .map(|v| format!(" {}", canonical(&v)))
        .unwrap_or_default()
}

/// JSON with object keys sorted, so equal values give equal text (whatever order a map keeps
/// its keys in).
fn canonical(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by_key(|(key, _)| *key);
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(item, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

fn hash(parts: &[String]) -> String {
    let (a, b) = (fnv1a(parts, 0), fnv1a(parts, 1));
    format!("{:012x}", (a ^ b.rotate_left(29)) & 0xffff_ffff_ffff)
}

fn fnv1a(parts: &[String], salt: u8) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325 ^ u64::from(salt);
    for part in parts {
        for byte in part.bytes().chain([0u8]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = "[agent]\nname = \"a\"\nprompt = \"p\"\n[model]\nprimary = \"openai:m\"\n\
        [vars]\nteam = \"x\"\n";

    fn tool() -> ToolDef {
        ToolDef {
            name: "t".into(),
            description: "d".into(),
            parameters: serde_json::json!({"type": "object", "properties": {"b": {}, "a": {}}}),
            risk: chassis_core::RiskClass::ReadOnly,
            idempotent: false,
            max_attempts: 3,
        }
    }

    /// The value the fingerprint gave before it covered the whole spec, for this agent.
    #[test]
    fn the_first_fingerprint_is_unchanged() {
        let spec = AgentSpec::parse(SPEC).unwrap();
        assert_eq!(
            fingerprint_v1(&spec, "hi {{ input }}", &[tool()]),
            "0680abbb0be6"
        );
    }

    fn version(extra: &str) -> String {
        let spec = AgentSpec::parse(&format!("{SPEC}{extra}")).unwrap();
        fingerprint(&spec, "hi {{ input }}", &[tool()], &BTreeMap::new())
    }

    /// Each setting below changes what a run does, and none of them counted before.
    #[test]
    fn every_setting_changes_the_version() {
        let base = version("");
        let changes = [
            "[approvals]\nirreversible = \"auto\"\n",
            "[approvals]\ntimeout = \"1h\"\n",
            "[pricing.\"openai:m\"]\ninput = 1.0\noutput = 2.0\n",
            "[redact]\npatterns = [\"sk-[a-z]{20}\"]\n",
            "[redact]\nenv = [\"MY_SECRET\"]\n",
            "[alerts]\nwebhook = \"https://hooks.example.com/x\"\n",
            "[providers.openai]\nkind = \"openai\"\nbase_url = \"https://proxy.example.com/v1\"\n",
            "[providers.openai]\nkind = \"openai\"\nmax_attempts = 7\n",
            "[providers.openai]\nkind = \"openai\"\nhttp = \"http1\"\n",
            "[providers.openai]\nkind = \"openai\"\nbreaker_threshold = 9\n",
            "[providers.openai]\nkind = \"openai\"\ntool_call_content = \"empty\"\n",
            "[providers.openai]\nkind = \"openai\"\ntool_call_content = \"null\"\n",
            "[[tools]]\nname = \"c\"\ncommand = [\"echo\", \"a\"]\n",
            "[[tools]]\nname = \"c\"\ncommand = [\"echo\", \"b\"]\n",
            "[[tools]]\nname = \"c\"\ncommand = [\"echo\", \"a\"]\nenv = [\"TOKEN\"]\n",
            "[[tools]]\nname = \"c\"\ncommand = [\"echo\", \"a\"]\ntimeout = \"5s\"\n",
            "[[tools]]\nuse = \"builtin:fs\"\nroot = \"notes\"\n",
            "[[tools]]\nuse = \"builtin:fs\"\nroot = \"other\"\n",
            "[mcp.s]\ncommand = [\"server\", \"--port\", \"1\"]\n",
            "[mcp.s]\ncommand = [\"server\", \"--port\", \"2\"]\n",
            "[mcp.s]\nurl = \"https://mcp.example.com\"\n",
            "[limits]\nmax_steps = 3\n",
        ];
        let mut seen = vec![base.clone()];
        for change in changes {
            let changed = version(change);
            assert!(
                !seen.contains(&changed),
                "{change} gave a version already seen"
            );
            seen.push(changed);
        }
        // The model section's settings too.
        let model = |line: &str| {
            let spec = AgentSpec::parse(&SPEC.replace(
                "primary = \"openai:m\"\n",
                &format!("primary = \"openai:m\"\n{line}\n"),
            ))
            .unwrap();
            fingerprint(&spec, "hi {{ input }}", &[tool()], &BTreeMap::new())
        };
        for line in [
            "max_tokens = 99",
            "temperature = 0.5",
            "timeout = \"7s\"",
            "idle_timeout = \"3s\"",
            "max_repairs = 0",
            "fallbacks = [\"anthropic:h\"]",
            "stream = false",
            "tool_choice = \"required\"",
            "tool_choice = \"none\"",
            "tool_choice = { name = \"t\" }",
        ] {
            let changed = model(line);
            assert!(
                !seen.contains(&changed),
                "{line} gave a version already seen"
            );
            seen.push(changed);
        }
        let prices = BTreeMap::from([(
            "openai:m".to_string(),
            Price {
                input: 1.0,
                cached_input: 1.0,
                output: 2.0,
            },
        )]);
        let spec = AgentSpec::parse(SPEC).unwrap();
        assert_ne!(
            fingerprint(&spec, "hi {{ input }}", &[tool()], &prices),
            base
        );
    }

    #[test]
    fn formatting_labels_and_file_names_keep_the_version() {
        let base = version("[approvals]\nirreversible = \"auto\"\n[limits]\nmax_steps = 3\n");
        let reformatted = AgentSpec::parse(
            "# a comment\n[limits]\nmax_steps=3\n[approvals]\nirreversible='auto'\n\
             [vars]\nteam = \"x\"\n[model]\nprimary = \"openai:m\"   # the model\n\
             [agent]\nprompt = \"elsewhere/p.j2\"\nname = \"a\"\nversion = \"v2\"\n\
             description = \"words\"\n",
        )
        .unwrap();
        assert_eq!(
            fingerprint(&reformatted, "hi {{ input }}", &[tool()], &BTreeMap::new()),
            base
        );
    }
}
