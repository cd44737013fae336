//! Hard limits and prices: what a run may spend, and what happens at the limit.
//!
//! A limit is checked before every call at the call's worst case (the context about to be sent
//! plus the call's `max_tokens`, priced), so a run never ends above it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A budget a run is held to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitName {
    /// Model calls answered (a step is one model call and its tool calls).
    MaxSteps,
    /// Model calls made.
    MaxModelCalls,
    /// Tool calls executed.
    MaxToolCalls,
    /// Input tokens, summed over calls.
    MaxInputTokens,
    /// Output tokens, summed over calls.
    MaxOutputTokens,
    /// Input plus output tokens.
    MaxTotalTokens,
    /// Cost in US dollars.
    MaxCostUsd,
    /// Active wall time in milliseconds (waiting for a human excluded unless configured).
    MaxWallTime,
    /// The same tool call (name and arguments), or a step bringing nothing new, repeated.
    MaxRepeats,
    /// How long a run may stay parked (every model unavailable), in milliseconds, counted
    /// from the first park of the outage; it is retried with backoff meanwhile.
    MaxPark,
}

impl LimitName {
    /// Every limit, in the order they are checked and shown.
    pub const ALL: [LimitName; 10] = [
        LimitName::MaxSteps,
        LimitName::MaxModelCalls,
        LimitName::MaxToolCalls,
        LimitName::MaxInputTokens,
        LimitName::MaxOutputTokens,
        LimitName::MaxTotalTokens,
        LimitName::MaxCostUsd,
        LimitName::MaxWallTime,
        LimitName::MaxRepeats,
        LimitName::MaxPark,
    ];

    /// The spelling in specs, `--raise` and the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitName::MaxSteps => "max_steps",
            LimitName::MaxModelCalls => "max_model_calls",
            LimitName::MaxToolCalls => "max_tool_calls",
            LimitName::MaxInputTokens => "max_input_tokens",
            LimitName::MaxOutputTokens => "max_output_tokens",
            LimitName::MaxTotalTokens => "max_total_tokens",
            LimitName::MaxCostUsd => "max_cost_usd",
            LimitName::MaxWallTime => "max_wall_time",
            LimitName::MaxRepeats => "max_repeats",
            LimitName::MaxPark => "max_park",
        }
    }

    /// Parses [`LimitName::as_str`].
    pub fn parse(text: &str) -> Option<LimitName> {
        LimitName::ALL.into_iter().find(|l| l.as_str() == text)
    }

    /// Whether the limit is a duration (kept in milliseconds, written like `10m`).
    pub fn is_duration(self) -> bool {
        matches!(self, LimitName::MaxWallTime | LimitName::MaxPark)
    }

    /// Parses a `--raise` value for this limit: a number, or a duration for `max_wall_time`.
    /// The error names the limit.
    pub fn parse_value(self, text: &str) -> Result<f64, String> {
        let value = if self.is_duration() {
            crate::duration::parse(text)
                .map(|d| d.as_millis() as f64)
                .map_err(|e| format!("{}: {e}", self.as_str()))?
        } else {
            text.trim()
                .parse::<f64>()
                .map_err(|_| format!("{}: `{text}` is not a number", self.as_str()))?
        };
        if !value.is_finite() || value <= 0.0 {
            return Err(format!(
                "{}: must be greater than zero, got {text}",
                self.as_str()
            ));
        }
        Ok(value)
    }
}

impl std::fmt::Display for LimitName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happens when a call would cross a limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitAction {
    /// End the run as failed, naming the limit.
    #[default]
    Fail,
    /// Park the run; `chassis resume RUN --raise LIMIT=VALUE` continues it.
    Pause,
    /// Put a limit request in the approvals inbox for a human to raise or reject.
    Escalate,
}

impl LimitAction {
    /// Parses the spec spelling.
    pub fn parse(text: &str) -> Option<LimitAction> {
        match text {
            "fail" => Some(LimitAction::Fail),
            "pause" => Some(LimitAction::Pause),
            "escalate" => Some(LimitAction::Escalate),
            _ => None,
        }
    }

    /// The spec spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitAction::Fail => "fail",
            LimitAction::Pause => "pause",
            LimitAction::Escalate => "escalate",
        }
    }
}

/// Whether a model with no known price is refused or counted as unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownPrice {
    /// Refuse to call it (the default when `max_cost_usd` is set).
    Fail,
    /// Call it and warn; its cost is unknown, never zero.
    Warn,
}

/// Every limit of a run, its action at each, and how time is counted. Journaled with the run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// Limit values; wall time in milliseconds, cost in dollars.
    pub values: BTreeMap<LimitName, f64>,
    /// The action for a limit without its own.
    pub on_limit: LimitAction,
    /// Actions for particular limits.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub actions: BTreeMap<LimitName, LimitAction>,
    /// Whether time waiting for a human counts toward `max_wall_time`.
    #[serde(default)]
    pub count_waiting: bool,
    /// What to do with a model without a known price.
    pub unknown_price: UnknownPrice,
}

impl Default for Limits {
    /// Finite defaults: no run is unbounded unless its spec says so explicitly.
    fn default() -> Self {
        let values = [
            (LimitName::MaxSteps, 25.0),
            (LimitName::MaxModelCalls, 50.0),
            (LimitName::MaxToolCalls, 100.0),
            (LimitName::MaxInputTokens, 2_000_000.0),
            (LimitName::MaxOutputTokens, 200_000.0),
            (LimitName::MaxTotalTokens, 2_000_000.0),
            (LimitName::MaxWallTime, 30.0 * 60.0 * 1000.0),
            (LimitName::MaxRepeats, 3.0),
            (LimitName::MaxPark, 6.0 * 60.0 * 60.0 * 1000.0),
        ]
        .into_iter()
        .collect();
        Limits {
            values,
            on_limit: LimitAction::Fail,
            actions: BTreeMap::new(),
            count_waiting: false,
            unknown_price: UnknownPrice::Warn,
        }
    }
}

impl Limits {
    /// The value of a limit, if set.
    pub fn get(&self, limit: LimitName) -> Option<f64> {
        self.values.get(&limit).copied()
    }

    /// The action at a limit.
    pub fn action(&self, limit: LimitName) -> LimitAction {
        self.actions.get(&limit).copied().unwrap_or(self.on_limit)
    }
}

/// Price of a model per million tokens, in US dollars.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Price {
    /// Uncached input tokens.
    pub input: f64,
    /// Cached input tokens (prompt-cache reads).
    pub cached_input: f64,
    /// Output tokens.
    pub output: f64,
}

impl Price {
    /// Dollars for a call's usage.
    pub fn cost(&self, input_tokens: u64, cached_input_tokens: u64, output_tokens: u64) -> f64 {
        let uncached = input_tokens.saturating_sub(cached_input_tokens);
        (uncached as f64 * self.input
            + cached_input_tokens as f64 * self.cached_input
            + output_tokens as f64 * self.output)
            / 1_000_000.0
    }
}

/// Dollars as people read them: four decimals (`$0.0123`), or two significant digits when that
/// would show a cost above zero as zero (`$0.000012`).
pub fn usd(amount: f64) -> String {
    if amount == 0.0 || !amount.is_finite() {
        return format!("${amount:.4}");
    }
    let magnitude = amount.abs().log10().floor() as i32;
    let decimals = (1 - magnitude).clamp(4, 12) as usize;
    format!("${amount:.decimals$}")
}

/// Published list prices (USD per million tokens) as of 2025-11, by model id prefix.
/// Specs and pricing files override them; a dated model id uses its family's price.
pub const DEFAULT_PRICES: &[(&str, Price)] = &[
    (
        "gpt-5-nano",
        Price {
            input: 0.05,
            cached_input: 0.005,
            output: 0.40,
        },
    ),
    (
        "gpt-5-mini",
        Price {
            input: 0.25,
            cached_input: 0.025,
            output: 2.00,
        },
    ),
    (
        "gpt-5",
        Price {
            input: 1.25,
            cached_input: 0.125,
            output: 10.00,
        },
    ),
    (
        "gpt-4.1-nano",
        Price {
            input: 0.10,
            cached_input: 0.025,
            output: 0.40,
        },
    ),
    (
        "gpt-4.1-mini",
        Price {
            input: 0.40,
            cached_input: 0.10,
            output: 1.60,
        },
    ),
    (
        "gpt-4.1",
        Price {
            input: 2.00,
            cached_input: 0.50,
            output: 8.00,
        },
    ),
    (
        "gpt-4o-mini",
        Price {
            input: 0.15,
            cached_input: 0.075,
            output: 0.60,
        },
    ),
    (
        "gpt-4o",
        Price {
            input: 2.50,
            cached_input: 1.25,
            output: 10.00,
        },
    ),
    (
        "o4-mini",
        Price {
            input: 1.10,
            cached_input: 0.275,
            output: 4.40,
        },
    ),
    (
        "o3-mini",
        Price {
            input: 1.10,
            cached_input: 0.55,
            output: 4.40,
        },
    ),
    (
        "o3",
        Price {
            input: 2.00,
            cached_input: 0.50,
            output: 8.00,
        },
    ),
    (
        "claude-opus-4-5",
        Price {
            input: 5.00,
            cached_input: 0.50,
            output: 25.00,
        },
    ),
    (
        "claude-opus-4",
        Price {
            input: 15.00,
            cached_input: 1.50,
            output: 75.00,
        },
    ),
    (
        "claude-sonnet-4",
        Price {
            input: 3.00,
            cached_input: 0.30,
            output: 15.00,
        },
    ),
    (
        "claude-3-7-sonnet",
        Price {
            input: 3.00,
            cached_input: 0.30,
            output: 15.00,
        },
    ),
    (
        "claude-haiku-4-5",
        Price {
            input: 1.00,
            cached_input: 0.10,
            output: 5.00,
        },
    ),
    (
        "claude-3-5-haiku",
        Price {
            input: 0.80,
            cached_input: 0.08,
            output: 4.00,
        },
    ),
];

/// The price of `model` (`provider:model` or a bare model id): an exact override first, then
/// the longest default prefix of the bare id.
pub fn price_of(model: &str, overrides: &BTreeMap<String, Price>) -> Option<Price> {
    if let Some(price) = overrides.get(model) {
        return Some(*price);
    }
    let bare = model.split_once(':').map_or(model, |(_, m)| m);
    if let Some(price) = overrides.get(bare) {
        return Some(*price);
    }
    DEFAULT_PRICES
        .iter()
        .filter(|(prefix, _)| bare.starts_with(prefix))
        .max_by_key(|(prefix, _)| prefix.len())
        .map(|(_, price)| *price)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins_and_overrides_first() {
        let none = BTreeMap::new();
        assert_eq!(
            price_of("openai:gpt-4o-mini-2024-07-18", &none)
                .unwrap()
                .input,
            0.15
        );
        assert_eq!(price_of("gpt-4o-2024-08-06", &none).unwrap().input, 2.50);
        assert!(price_of("mock:demo-model", &none).is_none());
        let overrides: BTreeMap<String, Price> = [(
            "mock:demo-model".to_string(),
            Price {
                input: 1.0,
                cached_input: 0.5,
                output: 2.0,
            },
        )]
        .into_iter()
        .collect();
        assert_eq!(price_of("mock:demo-model", &overrides).unwrap().output, 2.0);
    }

    #[test]
    fn cost_counts_cached_input_at_its_price() {
        let p = Price {
            input: 2.0,
            cached_input: 1.0,
            output: 10.0,
        };
        let cost = p.cost(1_000_000, 500_000, 100_000);
        assert!((cost - (1.0 + 0.5 + 1.0)).abs() < 1e-9, "{cost}");
    }

    #[test]
    fn raise_values_are_checked() {
        assert_eq!(LimitName::MaxCostUsd.parse_value("1.5"), Ok(1.5));
        assert_eq!(LimitName::MaxWallTime.parse_value("2m"), Ok(120_000.0));
        assert!(
            LimitName::MaxSteps
                .parse_value("-1")
                .unwrap_err()
                .contains("greater than zero")
        );
        assert!(
            LimitName::MaxSteps
                .parse_value("ten")
                .unwrap_err()
                .contains("not a number")
        );
        assert!(LimitName::parse("max_bananas").is_none());
    }
}
