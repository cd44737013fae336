//! `[context]`: how every model call's context is kept inside the model's window.
//!
//! ```toml
//! [context]
//! strategy = "truncate"        # or "summarize"
//! max_context_tokens = 100000  # default: the window, less max_tokens, less a margin
//! keep_last_turns = 4          # turns that always stay whole
//! ```
//! The window is `[model] context_window`, else the table of well-known models
//! ([`known_window`]), else a conservative 32,768 tokens; with fallbacks, the smallest of
//! the chain, so the context fits whichever model answers.

use serde::{Deserialize, Serialize};

use super::{Error, invalid};
use crate::context::{
    ContextPolicy, DEFAULT_KEEP_LAST_TURNS, Strategy, UNKNOWN_WINDOW, default_budget, known_window,
};

/// `[context]` and `[model] context_window`, as written.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ContextSpec {
    /// What happens when the conversation does not fit.
    pub strategy: Strategy,
    /// The budget, when the spec sets it.
    pub max_context_tokens: Option<u64>,
    /// Turns that always stay whole.
    pub keep_last_turns: u32,
    /// `[model] context_window`: the window of every model of the chain, when set.
    pub context_window: Option<u64>,
}

impl Default for ContextSpec {
    fn default() -> Self {
        ContextSpec {
            strategy: Strategy::Truncate,
            max_context_tokens: None,
            keep_last_turns: DEFAULT_KEEP_LAST_TURNS,
            context_window: None,
        }
    }
}

impl ContextSpec {
    /// True when the spec leaves every setting out (so it changes no agent's version).
    pub fn is_default(&self) -> bool {
        *self == ContextSpec::default()
    }

    /// The policy a run journals: the budget is the spec's, else the smallest window of
    /// `models` (`provider:model` ids) less `max_tokens` and a margin.
    pub fn policy<'a>(
        &self,
        models: impl IntoIterator<Item = &'a str>,
        max_tokens: u32,
    ) -> ContextPolicy {
        let window = self.context_window.unwrap_or_else(|| {
            models
                .into_iter()
                .map(|m| known_window(m).unwrap_or(UNKNOWN_WINDOW))
                .min()
                .unwrap_or(UNKNOWN_WINDOW)
        });
        ContextPolicy {
            strategy: self.strategy,
            max_context_tokens: self
                .max_context_tokens
                .unwrap_or_else(|| default_budget(window, max_tokens)),
            keep_last_turns: self.keep_last_turns,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawContext {
    strategy: Option<String>,
    max_context_tokens: Option<i64>,
    keep_last_turns: Option<i64>,
}

impl RawContext {
    /// Checks the strategy's spelling and that the numbers are positive.
    pub(super) fn validate(self, context_window: Option<i64>) -> Result<ContextSpec, Error> {
        let strategy = match self.strategy.as_deref() {
            None | Some("truncate") => Strategy::Truncate,
            Some("summarize") => Strategy::Summarize,
            Some(other) => {
                return Err(invalid(
                    "context.strategy",
                    format!("must be \"truncate\" or \"summarize\", got {other:?}"),
                ));
            }
        };
        let positive = |key: &str, n: Option<i64>, max: i64| match n {
            None => Ok(None),
            Some(n) if (1..=max).contains(&n) => Ok(Some(n as u64)),
            Some(n) => Err(invalid(
                key,
                format!("must be between 1 and {max}, got {n}"),
            )),
        };
        let max_context_tokens = positive(
            "context.max_context_tokens",
            self.max_context_tokens,
            i64::MAX,
        )?;
        let keep_last_turns = positive("context.keep_last_turns", self.keep_last_turns, 10_000)?
            .map_or(DEFAULT_KEEP_LAST_TURNS, |n| n as u32);
        let context_window = positive("model.context_window", context_window, i64::MAX)?;
        Ok(ContextSpec {
            strategy,
            max_context_tokens,
            keep_last_turns,
            context_window,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_the_smallest_window_less_the_reply_and_a_margin() {
        let spec = ContextSpec::default();
        let policy = spec.policy(["openai:gpt-4o", "openai:gpt-4"], 1000);
        assert_eq!(policy.max_context_tokens, 8_192 - 1000 - 409);
        let unknown = spec.policy(["mock:m"], 4096);
        assert_eq!(unknown.max_context_tokens, 32_768 - 4096 - 1638);
        let set = ContextSpec {
            context_window: Some(8_000),
            ..ContextSpec::default()
        };
        assert_eq!(
            set.policy(["openai:gpt-4o"], 500).max_context_tokens,
            8_000 - 500 - 400
        );
    }

    #[test]
    fn bad_values_are_named_by_their_key() {
        let raw = |strategy: &str, keep: i64| RawContext {
            strategy: Some(strategy.into()),
            max_context_tokens: None,
            keep_last_turns: Some(keep),
        };
        let error = raw("shorten", 1).validate(None).unwrap_err().to_string();
        assert!(error.contains("context.strategy"), "{error}");
        let error = raw("truncate", 0).validate(None).unwrap_err().to_string();
        assert!(error.contains("context.keep_last_turns"), "{error}");
        let error = raw("truncate", 2)
            .validate(Some(-3))
            .unwrap_err()
            .to_string();
        assert!(error.contains("model.context_window"), "{error}");
    }
}
