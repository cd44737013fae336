//! `[approvals]`: which calls wait for a human, and for how long.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{Error, invalid};
use crate::approvals::{ApprovalPolicy, OnTimeout, Op, Rule, Verdict};
use crate::duration;
use crate::tool::RiskClass;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApprovals {
    read_only: Option<String>,
    reversible: Option<String>,
    irreversible: Option<String>,
    #[serde(default)]
    tools: BTreeMap<String, String>,
    #[serde(default)]
    rules: Vec<RawRule>,
    timeout: Option<String>,
    on_timeout: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    tool: String,
    arg: String,
    op: String,
    value: toml::Value,
    action: String,
}

fn verdict(text: &str, key: &str) -> Result<Verdict, Error> {
    Verdict::parse(text).ok_or_else(|| {
        invalid(
            key,
            format!("unknown action `{text}` (use require, auto or deny)"),
        )
    })
}

impl RawApprovals {
    pub(super) fn validate(self) -> Result<ApprovalPolicy, Error> {
        let mut policy = ApprovalPolicy::default();
        for (risk, value, key) in [
            (RiskClass::ReadOnly, &self.read_only, "approvals.read_only"),
            (
                RiskClass::Reversible,
                &self.reversible,
                "approvals.reversible",
            ),
            (
                RiskClass::Irreversible,
                &self.irreversible,
                "approvals.irreversible",
            ),
        ] {
            if let Some(text) = value {
                policy.by_risk.insert(risk, verdict(text, key)?);
            }
        }
        for (tool, text) in self.tools {
            let key = format!("approvals.tools.{tool}");
            policy.tools.insert(tool, verdict(&text, &key)?);
        }
        for (i, rule) in self.rules.into_iter().enumerate() {
            let key = format!("approvals.rules[{i}]");
            let op = Op::parse(&rule.op).ok_or_else(|| {
                invalid(
                    format!("{key}.op"),
                    format!(
                        "unknown comparison `{}` (use >, >=, <, <=, == or !=)",
                        rule.op
                    ),
                )
            })?;
            let value = serde_json::to_value(&rule.value)
                .map_err(|e| invalid(format!("{key}.value"), e.to_string()))?;
            if !matches!(op, Op::Eq | Op::Ne) && !value.is_number() {
                return Err(invalid(
                    format!("{key}.value"),
                    format!("`{}` compares numbers; the value must be a number", rule.op),
                ));
            }
            if rule.tool.is_empty() || rule.arg.is_empty() {
                return Err(invalid(key, "needs a `tool` and an `arg`"));
            }
            policy.rules.push(Rule {
                tool: rule.tool,
                arg: rule.arg,
                op,
                value,
                verdict: verdict(&rule.action, &format!("{key}.action"))?,
            });
        }
        if let Some(text) = &self.timeout {
            let timeout = duration::parse(text).map_err(|m| invalid("approvals.timeout", m))?;
            policy.timeout_ms = Some(timeout.as_millis() as u64);
        }
        policy.on_timeout = match self.on_timeout.as_deref() {
            None | Some("reject") => OnTimeout::Reject,
            Some("escalate") => OnTimeout::Escalate,
            Some("fail") => OnTimeout::Fail,
            Some(other) => {
                return Err(invalid(
                    "approvals.on_timeout",
                    format!("unknown action `{other}` (use reject, escalate or fail)"),
                ));
            }
        };
        Ok(policy)
    }
}
