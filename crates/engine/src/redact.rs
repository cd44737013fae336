//! Removing secrets from everything a run records.
//!
//! Every event passes through the redactor before it is applied, journaled or observed, so a
//! secret that reaches chassis (an API key echoed by a tool, a token in an error) never reaches
//! the journal, the model's context, traces or metrics. A secret is a literal value (an API
//! key, the value of a variable named in `[redact] env`) or a match of a `[redact] patterns`
//! regular expression.

use chassis_core::Event;
use chassis_core::spec::AgentSpec;
use serde_json::Value;

/// What replaces a secret.
pub const REDACTED: &str = "[REDACTED]";

/// Shortest secret value redacted: shorter values would match ordinary text.
const MIN_SECRET_LEN: usize = 6;

/// The API key variables every agent's redactor covers, whatever its providers.
const WELL_KNOWN_KEYS: [&str; 2] = ["OPENAI_API_KEY", "ANTHROPIC_API_KEY"];

/// A `[redact] patterns` entry that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("redact.patterns[{index}]: {message}")]
pub struct PatternError {
    /// Position in the list.
    pub index: usize,
    /// What is wrong.
    pub message: String,
}

/// Literal secret values and patterns to remove.
///
/// `Debug` shows how many secrets there are, never their values.
#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
    patterns: Vec<regex::Regex>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("secrets", &self.secrets.len())
            .field("patterns", &self.patterns.len())
            .finish()
    }
}

impl Redactor {
    /// A redactor for these values (values shorter than 6 characters are ignored).
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Redactor {
        let mut secrets: Vec<String> = secrets
            .into_iter()
            .filter(|s| s.len() >= MIN_SECRET_LEN)
            .collect();
        // Longest first, so a secret containing another is removed whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Redactor {
            secrets,
            patterns: Vec::new(),
        }
    }

    /// A redactor for the values of these environment variables that are set.
    pub fn from_env<'a>(names: impl IntoIterator<Item = &'a str>) -> Redactor {
        Redactor::new(
            names
                .into_iter()
                .filter_map(|name| std::env::var(name).ok()),
        )
    }

    /// An agent's redactor: the values of every API key variable its providers name (and the
    /// well-known ones of the implicit providers), of the variables under `[redact] env`, and
    /// the `[redact] patterns`.
    pub fn for_spec(spec: &AgentSpec) -> Result<Redactor, PatternError> {
        let names = WELL_KNOWN_KEYS
            .into_iter()
            .chain(
                spec.providers
                    .values()
                    .filter_map(|p| p.api_key_env.as_deref()),
            )
            .chain(spec.redact.env.iter().map(String::as_str));
        Redactor::from_env(names).with_patterns(&spec.redact.patterns)
    }

    /// This redactor, also removing every match of `patterns` (regular expressions).
    /// A pattern that does not compile, or that matches the empty string, is refused.
    pub fn with_patterns(
        mut self,
        patterns: impl IntoIterator<Item = impl AsRef<str>>,
    ) -> Result<Redactor, PatternError> {
        for (index, pattern) in patterns.into_iter().enumerate() {
            let pattern = pattern.as_ref();
            let regex = regex::Regex::new(pattern).map_err(|e| PatternError {
                index,
                message: format!("not a valid regular expression: {e}"),
            })?;
            if regex.is_match("") {
                return Err(PatternError {
                    index,
                    message: format!("`{pattern}` matches the empty string"),
                });
            }
            if !self.patterns.iter().any(|p| p.as_str() == pattern) {
                self.patterns.push(regex);
            }
        }
        Ok(self)
    }

    /// Both redactors' secrets and patterns.
    pub fn merged(&self, other: &Redactor) -> Redactor {
        let mut merged = Redactor::new(self.secrets.iter().chain(&other.secrets).cloned());
        merged.patterns = self.patterns.clone();
        for pattern in &other.patterns {
            if !merged
                .patterns
                .iter()
                .any(|p| p.as_str() == pattern.as_str())
            {
                merged.patterns.push(pattern.clone());
            }
        }
        merged
    }

    /// Whether there is nothing to redact.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty() && self.patterns.is_empty()
    }

    /// `text` with every secret and every match of a pattern replaced.
    pub fn redact(&self, text: &str) -> String {
        self.redacted(text).unwrap_or_else(|| text.to_string())
    }

    /// `text` redacted, or `None` when it holds nothing to redact.
    fn redacted(&self, text: &str) -> Option<String> {
        let mut out: Option<String> = None;
        for secret in &self.secrets {
            let current = out.as_deref().unwrap_or(text);
            if current.contains(secret.as_str()) {
                out = Some(current.replace(secret.as_str(), REDACTED));
            }
        }
        for pattern in &self.patterns {
            let current = out.as_deref().unwrap_or(text);
            if let std::borrow::Cow::Owned(replaced) =
                pattern.replace_all(current, regex::NoExpand(REDACTED))
            {
                out = Some(replaced);
            }
        }
        out
    }

    /// `event` with every secret replaced in every string it holds.
    pub fn redact_event(&self, event: Event) -> Event {
        if self.is_empty() {
            return event;
        }
        let Ok(mut value) = serde_json::to_value(&event) else {
            return event;
        };
        // Strings are redacted one by one (never the JSON text, where a pattern could match
        // across quotes); the `kind` tag is not data.
        let mut changed = false;
        if let Value::Object(map) = &mut value {
            for (key, field) in map.iter_mut() {
                if key != "kind" {
                    changed |= self.redact_value(field);
                }
            }
        }
        if !changed {
            return event;
        }
        match serde_json::from_value(value) {
            Ok(redacted) => redacted,
            // Only a pattern matching a fixed word of the format (a risk class, a limit name)
            // gets here; literal secrets are still removed.
            Err(_) => Redactor::new(self.secrets.clone()).redact_event(event),
        }
    }

    /// Redacts every string inside `value`; true when something changed.
    fn redact_value(&self, value: &mut Value) -> bool {
        match value {
            Value::String(text) => match self.redacted(text) {
                Some(redacted) => {
                    *text = redacted;
                    true
                }
                None => false,
            },
            Value::Array(items) => items
                .iter_mut()
                .fold(false, |changed, item| self.redact_value(item) | changed),
            Value::Object(map) => map
                .values_mut()
                .fold(false, |changed, item| self.redact_value(item) | changed),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_removed_from_every_field() {
        let r = Redactor::new(["sk-live-123456".to_string(), "abc".to_string()]);
        let event = Event::ToolFinished {
            call_id: "c1".into(),
            ok: true,
            content: "key is sk-live-123456, abc stays".into(),
            latency_ms: 1,
        };
        let Event::ToolFinished { content, .. } = r.redact_event(event) else {
            panic!()
        };
        assert_eq!(content, "key is [REDACTED], abc stays");
    }

    #[test]
    fn patterns_are_removed_from_nested_strings() {
        let r = Redactor::default()
            .with_patterns(["sk-[A-Za-z0-9]{20,}"])
            .unwrap();
        let token = "sk-abcdefghijklmnopqrstuvwxyz";
        let event = Event::ToolStarted {
            call_id: "c1".into(),
            name: "t".into(),
            args: serde_json::json!({ "list": [format!("use {token}")], "n": 1 }),
            risk: chassis_core::RiskClass::ReadOnly,
            idempotency_key: "k".into(),
        };
        let Event::ToolStarted { args, risk, .. } = r.redact_event(event) else {
            panic!()
        };
        assert_eq!(
            args,
            serde_json::json!({ "list": ["use [REDACTED]"], "n": 1 })
        );
        assert_eq!(risk, chassis_core::RiskClass::ReadOnly);
        assert_eq!(r.redact(&format!("a {token} b")), "a [REDACTED] b");
    }

    #[test]
    fn bad_patterns_are_refused_with_their_index() {
        let e = Redactor::default()
            .with_patterns(["ok-[0-9]+", "(unclosed"])
            .unwrap_err();
        assert_eq!(e.index, 1);
        assert!(e.to_string().starts_with("redact.patterns[1]:"), "{e}");
        let e = Redactor::default().with_patterns([".*"]).unwrap_err();
        assert!(e.message.contains("empty string"), "{e}");
    }

    #[test]
    fn merged_keeps_both_kinds_and_debug_hides_values() {
        let a = Redactor::new(["secret-one".to_string()]);
        let b = Redactor::default().with_patterns(["tok-[0-9]{4}"]).unwrap();
        let m = a.merged(&b);
        assert_eq!(m.redact("secret-one tok-1234"), "[REDACTED] [REDACTED]");
        assert!(!format!("{m:?}").contains("secret-one"));
    }
}
