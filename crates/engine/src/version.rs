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
///
/// The hash of four texts: `spec=` and the spec's canonical JSON, `prompt=` and the template,
/// `tools=` and `prices=` with theirs. The texts are fed to the hash as they are written, never
/// built whole (a `chassis run` spent half a million instructions building them).
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
    let mut hash = Hash::new();
    hash.bytes(b"spec=");
    write_canonical(&spec, &mut hash);
    hash.end_part();
    hash.bytes(b"prompt=");
    hash.bytes(prompt.as_bytes());
    hash.end_part();
    hash.bytes(b"tools=");
    write_canonical(
        &serde_json::to_value(tools).unwrap_or(Value::Null),
        &mut hash,
    );
    hash.end_part();
    hash.bytes(b"prices=");
    write_canonical(
        &serde_json::to_value(prices).unwrap_or(Value::Null),
        &mut hash,
    );
    hash.end_part();
    hash.finish()
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
    let mut out = Vec::new();
    write_canonical(value, &mut out);
    // serde_json writes UTF-8 only.
    String::from_utf8(out).unwrap_or_default()
}

/// Writes `value` as [`canonical`] text to `out`: keys and scalars exactly as serde_json writes
/// them (its compact form, as `Value`'s `Display` gives), objects with their keys sorted.
fn write_canonical(value: &Value, out: &mut impl Sink) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by_key(|(key, _)| *key);
            out.put(b"{");
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.put(b",");
                }
                out.json(key);
                out.put(b":");
                write_canonical(item, out);
            }
            out.put(b"}");
        }
        Value::Array(items) => {
            out.put(b"[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.put(b",");
                }
                write_canonical(item, out);
            }
            out.put(b"]");
        }
        other => out.json(other),
    }
}

/// Where canonical text goes: a buffer, or straight into the hash.
trait Sink: std::io::Write + Sized {
    fn put(&mut self, bytes: &[u8]);

    /// `value` as serde_json's compact text (which cannot fail for a string or a `Value`
    /// scalar, and writing to a sink does not fail).
    fn json(&mut self, value: &(impl serde::Serialize + ?Sized)) {
        let _ = serde_json::to_writer(self, value);
    }
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

impl Sink for Hash {
    fn put(&mut self, bytes: &[u8]) {
        self.bytes(bytes);
    }
}

fn hash(parts: &[String]) -> String {
    let mut hash = Hash::new();
    for part in parts {
        hash.bytes(part.as_bytes());
        hash.end_part();
    }
    hash.finish()
}

/// Two FNV-1a hashes (salted 0 and 1) of parts, each part ended by a zero byte, folded into
/// 48 bits: `(a ^ b.rotate_left(29)) & 0xffff_ffff_ffff`.
struct Hash {
    a: u64,
    b: u64,
}

impl Hash {
    const BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0100_0000_01b3;

    fn new() -> Hash {
        Hash {
            a: Hash::BASIS,
            b: Hash::BASIS ^ 1,
        }
    }

    fn bytes(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.a = (self.a ^ u64::from(byte)).wrapping_mul(Hash::PRIME);
            self.b = (self.b ^ u64::from(byte)).wrapping_mul(Hash::PRIME);
        }
    }

    fn end_part(&mut self) {
        self.bytes(&[0]);
    }

    fn finish(&self) -> String {
        format!(
            "{:012x}",
            (self.a ^ self.b.rotate_left(29)) & 0xffff_ffff_ffff
        )
    }
}

impl std::io::Write for Hash {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
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

    /// The fingerprint of a spec that exercises every kind of JSON value (escapes, non-ASCII,
    /// integers, floats, nesting, empty containers), pinned: the version of every journaled
    /// run depends on these bytes, so how they are computed may change, never what they are.
    #[test]
    fn the_fingerprint_is_unchanged() {
        let spec = AgentSpec::parse(&format!(
            "{SPEC}n = 3\nratio = 0.25\nquote = \"say \\\"hi\\\"\\n\\t\\u0001 caf\u{e9} \u{1f680}\"\n\
             list = [1, -2.5, true, \"x\", [], {{}}]\n\
             [limits]\nmax_steps = 7\n[approvals]\nirreversible = \"auto\"\n\
             [[tools]]\nname = \"c\"\ncommand = [\"echo\", \"a b\"]\nenv = [\"TOKEN\"]\n"
        ))
        .unwrap();
        let mut weird = tool();
        weird.description = "reads \"notes\"\n\\ </script> \u{2028}".into();
        weird.parameters = serde_json::json!({
            "type": "object",
            "properties": {"z": {"type": "number", "maximum": 1e21}, "a": {"enum": [null, 0.1]}},
            "required": ["z"],
        });
        let prices = BTreeMap::from([(
            "openai:m".to_string(),
            Price {
                input: 1.5,
                cached_input: 0.0,
                output: 1e-7,
            },
        )]);
        assert_eq!(
            fingerprint(&spec, "hi {{ input }} \u{e9}\n", &[tool(), weird], &prices),
            "9771314bebb6"
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
