//! What the runtime knows about a tool, independent of how it runs.

use serde::{Deserialize, Serialize};

/// How much harm a tool call can do, which decides how carefully the runtime treats it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskClass {
    /// Reads only; safe to repeat.
    ReadOnly,
    /// Changes something that can be undone.
    Reversible,
    /// Changes something that cannot be undone; never executed twice.
    Irreversible,
}

impl RiskClass {
    /// Parses the spelling used in agent specs.
    pub fn parse(text: &str) -> Option<RiskClass> {
        match text {
            "read_only" => Some(RiskClass::ReadOnly),
            "reversible" => Some(RiskClass::Reversible),
            "irreversible" => Some(RiskClass::Irreversible),
            _ => None,
        }
    }

    /// The spelling used in agent specs and the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            RiskClass::ReadOnly => "read_only",
            RiskClass::Reversible => "reversible",
            RiskClass::Irreversible => "irreversible",
        }
    }
}

impl std::fmt::Display for RiskClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A tool as the model sees it, plus its risk class.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolDef {
    /// The name the model calls it by; unique within an agent.
    pub name: String,
    /// What the tool does, shown to the model.
    pub description: String,
    /// JSON Schema of the arguments object.
    pub parameters: serde_json::Value,
    /// How dangerous a call is.
    pub risk: RiskClass,
    /// Declared safe to repeat with the same arguments, so failures may be retried.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub idempotent: bool,
    /// Attempts in all when a retryable tool fails (1 = no retry).
    #[serde(default = "default_tool_attempts")]
    pub max_attempts: u32,
}

/// Attempts a retryable tool gets unless its spec says otherwise.
pub const DEFAULT_TOOL_ATTEMPTS: u32 = 3;

fn default_tool_attempts() -> u32 {
    DEFAULT_TOOL_ATTEMPTS
}

impl ToolDef {
    /// Whether a failed call may be tried again automatically: read-only or declared idempotent.
    pub fn retryable(&self) -> bool {
        self.risk == RiskClass::ReadOnly || self.idempotent
    }
}
