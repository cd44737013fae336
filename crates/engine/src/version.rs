//! The agent version: a fingerprint over everything that changes what an agent does.
//!
//! Spec (normalized: the validated spec, not its formatting), prompt template text, tools
//! (names, descriptions, schemas, risk classes) and model ids. Every run records it; a run
//! resumed after any of these changed is refused rather than continued by another version.

use chassis_core::ToolDef;
use chassis_core::spec::AgentSpec;

/// A short, stable hash of the agent version (12 hex digits).
pub fn fingerprint(spec: &AgentSpec, prompt: &str, tools: &[ToolDef]) -> String {
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
        format!("vars={}", canonical(&spec.vars)),
        format!(
            "limits={}",
            serde_json::to_value(&spec.limits)
                .map(|v| canonical(&v))
                .unwrap_or_default()
        ),
    ];
    for tool in tools {
        parts.push(format!(
            "tool={}|{}|{}|{}|{}",
            tool.name,
            tool.description,
            canonical(&tool.parameters),
            tool.risk,
            tool.idempotent
        ));
    }
    let (a, b) = (fnv1a(&parts, 0), fnv1a(&parts, 1));
    format!("{:012x}", (a ^ b.rotate_left(29)) & 0xffff_ffff_ffff)
}

fn canonical(value: &serde_json::Value) -> String {
    chassis_core::state::call_key("", value)
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
