//! Removing secrets from everything a run records.
//!
//! Every event passes through the redactor before it is applied, journaled or observed, so a
//! secret that reaches chassis (an API key echoed by a tool, a token in an error) never reaches
//! the journal, the model's context, traces or metrics.

use chassis_core::Event;

/// What replaces a secret.
pub const REDACTED: &str = "[REDACTED]";

/// Shortest secret value redacted: shorter values would match ordinary text.
const MIN_SECRET_LEN: usize = 6;

/// Literal secret values to remove.
#[derive(Clone, Debug, Default)]
pub struct Redactor {
    secrets: Vec<String>,
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
        Redactor { secrets }
    }

    /// A redactor for the values of these environment variables that are set.
    pub fn from_env<'a>(names: impl IntoIterator<Item = &'a str>) -> Redactor {
        Redactor::new(
            names
                .into_iter()
                .filter_map(|name| std::env::var(name).ok()),
        )
    }

    /// Both redactors' secrets.
    pub fn merged(&self, other: &Redactor) -> Redactor {
        Redactor::new(self.secrets.iter().chain(&other.secrets).cloned())
    }

    /// Whether there is nothing to redact.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// `text` with every secret replaced.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), REDACTED);
            }
        }
        out
    }

    /// `event` with every secret replaced in every string it holds.
    pub fn redact_event(&self, event: Event) -> Event {
        if self.secrets.is_empty() {
            return event;
        }
        let Ok(text) = serde_json::to_string(&event) else {
            return event;
        };
        // Secrets are matched in the JSON text; escaping only changes quotes, backslashes and
        // control characters, which API keys and tokens do not contain.
        if !self.secrets.iter().any(|s| text.contains(s.as_str())) {
            return event;
        }
        serde_json::from_str(&self.redact(&text)).unwrap_or(event)
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
}
