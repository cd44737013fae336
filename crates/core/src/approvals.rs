//! Approval policy: which tool calls run on their own, which wait for a human, which never run.
//!
//! By default read-only and reversible tools run and irreversible ones require approval.
//! Per-tool overrides and simple rules on arguments ("require approval above an amount")
//! refine it. The policy is journaled with the run, so a resumed run decides as it began.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::tool::{RiskClass, ToolDef};

/// What the policy says about a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Run it.
    Auto,
    /// Wait for a human's approval.
    Require,
    /// Never run it; the model is told it was denied.
    Deny,
}

impl Verdict {
    /// Parses the spec spelling.
    pub fn parse(text: &str) -> Option<Verdict> {
        match text {
            "auto" => Some(Verdict::Auto),
            "require" => Some(Verdict::Require),
            "deny" => Some(Verdict::Deny),
            _ => None,
        }
    }
}

/// What happens to an approval nobody decided in time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnTimeout {
    /// The call is rejected; the model is told so.
    #[default]
    Reject,
    /// The approval is flagged as escalated (and alerted); the run keeps waiting.
    Escalate,
    /// The run fails.
    Fail,
}

/// A comparison in a rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Greater than.
    #[serde(rename = ">")]
    Gt,
    /// Greater than or equal.
    #[serde(rename = ">=")]
    Ge,
    /// Less than.
    #[serde(rename = "<")]
    Lt,
    /// Less than or equal.
    #[serde(rename = "<=")]
    Le,
    /// Equal (numbers or strings).
    #[serde(rename = "==")]
    Eq,
    /// Not equal.
    #[serde(rename = "!=")]
    Ne,
}

impl Op {
    /// Parses `>`, `>=`, `<`, `<=`, `==`, `!=`.
    pub fn parse(text: &str) -> Option<Op> {
        Some(match text {
            ">" => Op::Gt,
            ">=" => Op::Ge,
            "<" => Op::Lt,
            "<=" => Op::Le,
            "==" => Op::Eq,
            "!=" => Op::Ne,
            _ => return None,
        })
    }
}

/// "For `tool`, when argument `arg` `op` `value`, the verdict is `verdict`."
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    /// Tool name.
    pub tool: String,
    /// Argument name (a top-level key of the arguments object).
    pub arg: String,
    /// Comparison.
    pub op: Op,
    /// Value compared with.
    pub value: serde_json::Value,
    /// Verdict when the rule matches.
    pub verdict: Verdict,
}

impl Rule {
    fn matches(&self, tool: &str, args: &serde_json::Value) -> bool {
        if self.tool != tool {
            return false;
        }
        let Some(actual) = args.get(&self.arg) else {
            return false;
        };
        match (actual.as_f64(), self.value.as_f64()) {
            (Some(a), Some(b)) => match self.op {
                Op::Gt => a > b,
                Op::Ge => a >= b,
                Op::Lt => a < b,
                Op::Le => a <= b,
                Op::Eq => a == b,
                Op::Ne => a != b,
            },
            _ => match self.op {
                Op::Eq => actual == &self.value,
                Op::Ne => actual != &self.value,
                _ => false,
            },
        }
    }
}

/// The approval policy of an agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApprovalPolicy {
    /// Verdict per risk class.
    pub by_risk: BTreeMap<RiskClass, Verdict>,
    /// Verdict per tool name, over the risk class.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tools: BTreeMap<String, Verdict>,
    /// Rules on arguments, first match wins, over everything else.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
    /// How long an approval may wait, in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// What happens then.
    #[serde(default)]
    pub on_timeout: OnTimeout,
}

impl Default for ApprovalPolicy {
    fn default() -> Self {
        ApprovalPolicy {
            by_risk: [
                (RiskClass::ReadOnly, Verdict::Auto),
                (RiskClass::Reversible, Verdict::Auto),
                (RiskClass::Irreversible, Verdict::Require),
            ]
            .into_iter()
            .collect(),
            tools: BTreeMap::new(),
            rules: Vec::new(),
            timeout_ms: None,
            on_timeout: OnTimeout::Reject,
        }
    }
}

impl ApprovalPolicy {
    /// The verdict for calling `tool` with `args`.
    pub fn verdict(&self, tool: &ToolDef, args: &serde_json::Value) -> Verdict {
        if let Some(rule) = self.rules.iter().find(|r| r.matches(&tool.name, args)) {
            return rule.verdict;
        }
        if let Some(verdict) = self.tools.get(&tool.name) {
            return *verdict;
        }
        self.by_risk
            .get(&tool.risk)
            .copied()
            .unwrap_or(Verdict::Require)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tool(name: &str, risk: RiskClass) -> ToolDef {
        ToolDef {
            name: name.into(),
            description: String::new(),
            parameters: json!({"type": "object"}),
            risk,
            idempotent: false,
            max_attempts: 1,
        }
    }

    #[test]
    fn defaults_by_risk_then_tool_then_rules() {
        let mut policy = ApprovalPolicy::default();
        let args = json!({"amount": 50});
        assert_eq!(
            policy.verdict(&tool("read", RiskClass::ReadOnly), &args),
            Verdict::Auto
        );
        assert_eq!(
            policy.verdict(&tool("edit", RiskClass::Reversible), &args),
            Verdict::Auto
        );
        assert_eq!(
            policy.verdict(&tool("pay", RiskClass::Irreversible), &args),
            Verdict::Require
        );
        policy.tools.insert("pay".into(), Verdict::Auto);
        policy.tools.insert("edit".into(), Verdict::Deny);
        assert_eq!(
            policy.verdict(&tool("pay", RiskClass::Irreversible), &args),
            Verdict::Auto
        );
        assert_eq!(
            policy.verdict(&tool("edit", RiskClass::Reversible), &args),
            Verdict::Deny
        );
        policy.rules.push(Rule {
            tool: "pay".into(),
            arg: "amount".into(),
            op: Op::Gt,
            value: json!(100),
            verdict: Verdict::Require,
        });
        let pay = tool("pay", RiskClass::Irreversible);
        assert_eq!(policy.verdict(&pay, &json!({"amount": 50})), Verdict::Auto);
        assert_eq!(
            policy.verdict(&pay, &json!({"amount": 150})),
            Verdict::Require
        );
        assert_eq!(
            policy.verdict(&pay, &json!({"amount": "lots"})),
            Verdict::Auto
        );
    }
}
