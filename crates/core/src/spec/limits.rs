//! `[limits]`, `[pricing]` and `[alerts]`: budgets, prices, and where alerts go.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Error, invalid};
use crate::duration;
use crate::limits::{LimitAction, LimitName, Limits, Price, UnknownPrice};
use crate::notify::NotifyKind;

/// Largest tool arguments accepted unless `[limits] max_tool_args_bytes` says otherwise.
pub const DEFAULT_MAX_TOOL_ARGS_BYTES: u64 = 1024 * 1024;

/// Largest tool result kept unless `[limits] max_tool_result_bytes` says otherwise.
pub const DEFAULT_MAX_TOOL_RESULT_BYTES: u64 = 1024 * 1024;

/// Largest model reply read unless `[limits] max_reply_bytes` says otherwise: a whole answer's
/// body, or a streamed answer's text and tool arguments together. Far above what a model's
/// `max_tokens` lets it write, far below what would hurt the process.
pub const DEFAULT_MAX_REPLY_BYTES: u64 = 4 * 1024 * 1024;

/// Size bounds on what goes into and comes out of one tool call, `[limits]
/// max_tool_args_bytes` and `max_tool_result_bytes`.
///
/// Not budgets of a run like [`Limits`] (they are not journaled nor raised): arguments past
/// their bound are refused before they are parsed, results past theirs are clipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ToolBounds {
    /// Largest raw arguments (JSON text) of one call, in bytes.
    pub max_args_bytes: u64,
    /// Largest result (or error) of one call, in bytes.
    pub max_result_bytes: u64,
}

impl Default for ToolBounds {
    fn default() -> Self {
        ToolBounds {
            max_args_bytes: DEFAULT_MAX_TOOL_ARGS_BYTES,
            max_result_bytes: DEFAULT_MAX_TOOL_RESULT_BYTES,
        }
    }
}

/// Where alerts (runs ended, humans needed, limits reached, escalations) are sent besides the
/// log: a signed JSON POST per notification, queued in the journal's outbox in the same write
/// as the event that raised it.
///
/// Settings left at their defaults are not serialized, so an agent that does not use them
/// keeps the version fingerprint it had before they existed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AlertsSpec {
    /// URL that receives a JSON POST per notification.
    pub webhook: Option<String>,
    /// The variable holding the secret that signs each request (HMAC-SHA256).
    #[serde(skip_serializing_if = "is_default_secret_env")]
    pub secret_env: String,
    /// The kinds of notification sent; every kind by default.
    #[serde(skip_serializing_if = "is_every_kind")]
    pub events: Vec<NotifyKind>,
    /// How long a notification is retried before it is given up as failed (ms).
    #[serde(skip_serializing_if = "is_default_expiry")]
    pub expire_after_ms: u64,
}

/// The variable a webhook's signing secret is read from unless `[alerts] secret_env` names
/// another.
pub const DEFAULT_SECRET_ENV: &str = "CHASSIS_WEBHOOK_SECRET";

/// How long a notification is retried unless `[alerts] expire_after` says otherwise: a day.
pub const DEFAULT_EXPIRE_AFTER_MS: u64 = 24 * 3600 * 1000;

fn is_default_secret_env(name: &str) -> bool {
    name == DEFAULT_SECRET_ENV
}

fn is_every_kind(kinds: &[NotifyKind]) -> bool {
    kinds == NotifyKind::ALL
}

fn is_default_expiry(ms: &u64) -> bool {
    *ms == DEFAULT_EXPIRE_AFTER_MS
}

impl Default for AlertsSpec {
    fn default() -> Self {
        AlertsSpec {
            webhook: None,
            secret_env: DEFAULT_SECRET_ENV.to_string(),
            events: NotifyKind::ALL.to_vec(),
            expire_after_ms: DEFAULT_EXPIRE_AFTER_MS,
        }
    }
}

impl AlertsSpec {
    /// Whether notifications of `kind` go to the webhook.
    pub fn sends(&self, kind: NotifyKind) -> bool {
        self.webhook.is_some() && self.events.contains(&kind)
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    max_steps: Option<toml::Value>,
    max_model_calls: Option<toml::Value>,
    max_tool_calls: Option<toml::Value>,
    max_input_tokens: Option<toml::Value>,
    max_output_tokens: Option<toml::Value>,
    max_total_tokens: Option<toml::Value>,
    max_cost_usd: Option<toml::Value>,
    max_wall_time: Option<toml::Value>,
    max_repeats: Option<toml::Value>,
    max_park: Option<toml::Value>,
    on_limit: Option<toml::Value>,
    count_waiting: Option<bool>,
    unknown_price: Option<String>,
    pricing_file: Option<String>,
    max_tool_args_bytes: Option<i64>,
    max_tool_result_bytes: Option<i64>,
    max_reply_bytes: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPrice {
    input: f64,
    output: f64,
    cached_input: Option<f64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAlerts {
    webhook: Option<String>,
    secret_env: Option<String>,
    events: Option<Vec<String>>,
    expire_after: Option<String>,
}

impl RawLimits {
    /// Validated limits, the pricing file named, if any, and the tool size bounds.
    pub(super) fn validate(self) -> Result<(Limits, Option<String>, ToolBounds, u64), Error> {
        let mut limits = Limits::default();
        let raw = [
            (LimitName::MaxSteps, self.max_steps),
            (LimitName::MaxModelCalls, self.max_model_calls),
            (LimitName::MaxToolCalls, self.max_tool_calls),
            (LimitName::MaxInputTokens, self.max_input_tokens),
            (LimitName::MaxOutputTokens, self.max_output_tokens),
            (LimitName::MaxTotalTokens, self.max_total_tokens),
            (LimitName::MaxCostUsd, self.max_cost_usd),
            (LimitName::MaxWallTime, self.max_wall_time),
            (LimitName::MaxRepeats, self.max_repeats),
            (LimitName::MaxPark, self.max_park),
        ];
        for (limit, value) in raw {
            let Some(value) = value else { continue };
            let key = format!("limits.{limit}");
            let number = match (&value, limit) {
                (toml::Value::String(text), _) if limit.is_duration() => duration::parse(text)
                    .map(|d| d.as_millis() as f64)
                    .map_err(|m| invalid(&key, m))?,
                (_, _) if limit.is_duration() => {
                    return Err(invalid(&key, "must be a duration such as \"10m\""));
                }
                (toml::Value::Integer(n), _) => *n as f64,
                (toml::Value::Float(x), LimitName::MaxCostUsd) => *x,
                (other, _) => {
                    return Err(invalid(
                        &key,
                        format!("must be a number, got {}", other.type_str()),
                    ));
                }
            };
            if !number.is_finite() || number <= 0.0 {
                return Err(invalid(
                    &key,
                    format!("must be greater than zero, got {value}"),
                ));
            }
            limits.values.insert(limit, number);
        }
        match self.on_limit {
            None => {}
            Some(toml::Value::String(text)) => limits.on_limit = action(&text, "limits.on_limit")?,
            Some(toml::Value::Table(table)) => {
                for (name, value) in table {
                    let key = format!("limits.on_limit.{name}");
                    let text = value.as_str().ok_or_else(|| {
                        invalid(&key, "must be \"fail\", \"pause\" or \"escalate\"")
                    })?;
                    let act = action(text, &key)?;
                    if name == "default" {
                        limits.on_limit = act;
                    } else {
                        let limit = LimitName::parse(&name).ok_or_else(|| {
                            invalid(&key, format!("unknown limit `{name}` (known: {})", known()))
                        })?;
                        limits.actions.insert(limit, act);
                    }
                }
            }
            Some(other) => {
                return Err(invalid(
                    "limits.on_limit",
                    format!("must be a string or a table, got {}", other.type_str()),
                ));
            }
        }
        limits.count_waiting = self.count_waiting.unwrap_or(false);
        limits.unknown_price = match self.unknown_price.as_deref() {
            None if limits.get(LimitName::MaxCostUsd).is_some() => UnknownPrice::Fail,
            None => UnknownPrice::Warn,
            Some("fail") => UnknownPrice::Fail,
            Some("warn") => UnknownPrice::Warn,
            Some(other) => {
                return Err(invalid(
                    "limits.unknown_price",
                    format!("must be \"fail\" or \"warn\", got `{other}`"),
                ));
            }
        };
        let bytes = |value: Option<i64>, default: u64, key: &str| match value {
            None => Ok(default),
            Some(n) if n > 0 => Ok(n as u64),
            Some(n) => Err(invalid(
                key,
                format!("must be a positive number of bytes, got {n}"),
            )),
        };
        let bounds = ToolBounds {
            max_args_bytes: bytes(
                self.max_tool_args_bytes,
                DEFAULT_MAX_TOOL_ARGS_BYTES,
                "limits.max_tool_args_bytes",
            )?,
            max_result_bytes: bytes(
                self.max_tool_result_bytes,
                DEFAULT_MAX_TOOL_RESULT_BYTES,
                "limits.max_tool_result_bytes",
            )?,
        };
        let max_reply_bytes = bytes(
            self.max_reply_bytes,
            DEFAULT_MAX_REPLY_BYTES,
            "limits.max_reply_bytes",
        )?;
        Ok((limits, self.pricing_file, bounds, max_reply_bytes))
    }
}

/// Whether `bytes` is [`DEFAULT_MAX_REPLY_BYTES`] (left out of the serialized spec).
pub(super) fn is_default_reply_bytes(bytes: &u64) -> bool {
    *bytes == DEFAULT_MAX_REPLY_BYTES
}

fn action(text: &str, key: &str) -> Result<LimitAction, Error> {
    LimitAction::parse(text).ok_or_else(|| {
        invalid(
            key,
            format!("unknown action `{text}` (use fail, pause or escalate)"),
        )
    })
}

fn known() -> String {
    LimitName::ALL
        .iter()
        .map(|l| l.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Validates `[pricing]` entries (model → price per million tokens).
pub(super) fn validate_pricing(
    raw: BTreeMap<String, RawPrice>,
    section: &str,
) -> Result<BTreeMap<String, Price>, Error> {
    let mut prices = BTreeMap::new();
    for (model, price) in raw {
        let key = format!("{section}.\"{model}\"");
        let cached_input = price.cached_input.unwrap_or(price.input);
        for (field, value) in [
            ("input", price.input),
            ("output", price.output),
            ("cached_input", cached_input),
        ] {
            if !value.is_finite() || value < 0.0 {
                return Err(invalid(
                    format!("{key}.{field}"),
                    format!("must be a price per million tokens, zero or more, got {value}"),
                ));
            }
        }
        prices.insert(
            model,
            Price {
                input: price.input,
                cached_input,
                output: price.output,
            },
        );
    }
    Ok(prices)
}

/// Parses a pricing file: a TOML table of `"model" = { input, output, cached_input }`.
pub fn parse_pricing_file(text: &str) -> Result<BTreeMap<String, Price>, Error> {
    let raw: BTreeMap<String, RawPrice> =
        toml::from_str(text).map_err(|e| Error::Toml(e.to_string()))?;
    validate_pricing(raw, "pricing")
}

impl RawAlerts {
    pub(super) fn validate(self) -> Result<AlertsSpec, Error> {
        if let Some(url) = &self.webhook
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(invalid(
                "alerts.webhook",
                format!("`{url}` is not an http:// or https:// URL"),
            ));
        }
        let secret_env = match self.secret_env {
            None => DEFAULT_SECRET_ENV.to_string(),
            Some(name) => {
                let valid = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !valid {
                    return Err(invalid(
                        "alerts.secret_env",
                        format!(
                            "`{name}` is not the name of an environment variable (the secret \
                             itself never goes in the file)"
                        ),
                    ));
                }
                name
            }
        };
        let events = match self.events {
            None => NotifyKind::ALL.to_vec(),
            Some(names) => {
                let mut kinds = Vec::new();
                for (i, name) in names.iter().enumerate() {
                    let kind = NotifyKind::parse(name).ok_or_else(|| {
                        invalid(
                            format!("alerts.events[{i}]"),
                            format!(
                                "unknown notification `{name}` (one of {})",
                                NotifyKind::ALL.map(NotifyKind::as_str).join(", ")
                            ),
                        )
                    })?;
                    if !kinds.contains(&kind) {
                        kinds.push(kind);
                    }
                }
                kinds.sort();
                kinds
            }
        };
        let expire_after = crate::spec::duration_or(
            &self.expire_after,
            std::time::Duration::from_millis(DEFAULT_EXPIRE_AFTER_MS),
            "alerts.expire_after",
        )?;
        Ok(AlertsSpec {
            webhook: self.webhook,
            secret_env,
            events,
            expire_after_ms: u64::try_from(expire_after.as_millis()).unwrap_or(u64::MAX),
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::spec::{AgentSpec, DEFAULT_MAX_TOOL_ARGS_BYTES, ToolBounds};

    const BASE: &str = "[agent]\nname = \"a\"\nprompt = \"p\"\n[model]\nprimary = \"openai:m\"\n";

    #[test]
    fn tool_bounds_default_to_a_mebibyte_and_bad_ones_name_the_key() {
        let spec = AgentSpec::parse(BASE).unwrap();
        assert_eq!(spec.tool_bounds, ToolBounds::default());
        assert_eq!(spec.tool_bounds.max_args_bytes, DEFAULT_MAX_TOOL_ARGS_BYTES);
        let spec = AgentSpec::parse(&format!(
            "{BASE}[limits]\nmax_tool_args_bytes = 4096\nmax_tool_result_bytes = 8192\n"
        ))
        .unwrap();
        assert_eq!(
            spec.tool_bounds,
            ToolBounds {
                max_args_bytes: 4096,
                max_result_bytes: 8192
            }
        );
        let e =
            AgentSpec::parse(&format!("{BASE}[limits]\nmax_tool_result_bytes = 0\n")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "limits.max_tool_result_bytes: must be a positive number of bytes, got 0"
        );
    }
}
