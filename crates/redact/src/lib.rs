//! Removing secrets from everything a run records.
//!
//! Every event passes through the redactor before it is applied, journaled or observed, so a
//! secret that reaches chassis (an API key echoed by a tool, a token in an error) never reaches
//! the journal, the model's context, traces or metrics. A secret is a literal value (an API
//! key, the value of a variable named in `[redact] env` or read by an MCP server's
//! credentials, an OAuth access token this process was given) or a match of a
//! `[redact] patterns` regular expression.
//!
//! A crate of its own so that every part of chassis that writes something down (the engine's
//! journal, telemetry's logs and spans, the tools' OAuth clients) shares one redactor without
//! depending on the engine.

use std::ops::Range;

use chassis_core::Event;
use chassis_core::spec::AgentSpec;
use serde_json::Value;

mod escapes;
mod issued;
mod stream;

pub use issued::{issued_tokens, remember};
pub use stream::{PATTERN_WINDOW, Stream};

/// What replaces a secret.
pub const REDACTED: &str = "[REDACTED]";

/// Shortest secret value redacted, in bytes: a shorter value would match ordinary text, and
/// hiding it there would only advertise it. A `[redact] env` value shorter than this is refused
/// when the agent loads; an API key shorter than this is a placeholder (local servers take
/// any), not a secret, and is left alone.
pub const MIN_SECRET_LEN: usize = 8;

/// The API key variables every agent's redactor covers, whatever its providers.
const WELL_KNOWN_KEYS: [&str; 2] = ["OPENAI_API_KEY", "ANTHROPIC_API_KEY"];

/// The access tokens this process's MCP clients were given ([`issued_tokens`]): secrets of
/// every redactor, though no spec names them.
fn issued() -> Option<std::sync::Arc<[String]>> {
    issued_tokens().filter(|tokens| !tokens.is_empty())
}

/// A `[redact]` setting that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct SettingError {
    /// The key at fault, e.g. `redact.patterns[1]` or `redact.env[0]`.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

/// Literal secret values and patterns to remove.
///
/// Every text is searched as written and, when it holds JSON escapes (`\u002d`, `\/`, …), as
/// decoded too, so a secret inside a JSON document is found however its encoder escaped it.
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
    /// A redactor for these values (values shorter than [`MIN_SECRET_LEN`] are ignored).
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
    ///
    /// A `[redact] env` variable that is set to fewer than [`MIN_SECRET_LEN`] bytes is refused
    /// (the error names its key, never its value): it cannot be redacted without mangling
    /// ordinary text, and skipping it silently would leave it in the journal. One that is
    /// unset or empty holds nothing to leak.
    ///
    /// The variables an MCP server's credentials read (`${env:NAME}` in `headers`, the OAuth
    /// client id and secret) are covered too, and a secret one set to fewer than
    /// [`MIN_SECRET_LEN`] bytes is refused the same way.
    pub fn for_spec(spec: &AgentSpec) -> Result<Redactor, SettingError> {
        let credentials: Vec<_> = spec
            .mcp
            .iter()
            .flat_map(|(name, server)| server.credential_vars(name))
            .collect();
        let secrets = spec
            .redact
            .env
            .iter()
            .enumerate()
            .map(|(index, name)| (format!("redact.env[{index}]"), name.as_str()))
            .chain(
                credentials
                    .iter()
                    .filter(|var| var.secret)
                    .map(|var| (var.key.clone(), var.name.as_str())),
            )
            .chain(spec.alerts.webhook.as_ref().map(|_| {
                (
                    "alerts.secret_env".to_string(),
                    spec.alerts.secret_env.as_str(),
                )
            }));
        for (key, name) in secrets {
            let Some(value) = std::env::var_os(name) else {
                continue;
            };
            let len = value.len();
            if len > 0 && len < MIN_SECRET_LEN {
                return Err(SettingError {
                    key,
                    message: format!(
                        "the value of {name} is {len} bytes long; a secret must be at least \
                         {MIN_SECRET_LEN} to be redacted without mangling ordinary text"
                    ),
                });
            }
        }
        let names = WELL_KNOWN_KEYS
            .into_iter()
            .chain(
                spec.providers
                    .values()
                    .filter_map(|p| p.api_key_env.as_deref()),
            )
            .chain(spec.redact.env.iter().map(String::as_str))
            .chain(credentials.iter().map(|var| var.name.as_str()))
            .chain(
                spec.alerts
                    .webhook
                    .as_ref()
                    .map(|_| spec.alerts.secret_env.as_str()),
            );
        Redactor::from_env(names).with_patterns(&spec.redact.patterns)
    }

    /// This redactor, also removing every match of `patterns` (regular expressions).
    /// A pattern that does not compile, or that matches the empty string, is refused.
    pub fn with_patterns(
        mut self,
        patterns: impl IntoIterator<Item = impl AsRef<str>>,
    ) -> Result<Redactor, SettingError> {
        for (index, pattern) in patterns.into_iter().enumerate() {
            let pattern = pattern.as_ref();
            let key = || format!("redact.patterns[{index}]");
            let regex = regex::Regex::new(pattern).map_err(|e| SettingError {
                key: key(),
                message: format!("not a valid regular expression: {e}"),
            })?;
            if regex.is_match("") {
                return Err(SettingError {
                    key: key(),
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

    /// A [`Stream`] for text that arrives in pieces, redacted by this redactor.
    pub fn stream(&self) -> Stream {
        Stream::new(self.clone())
    }

    /// Every literal secret: this redactor's, then `issued` (this process's issued tokens, as
    /// [`issued`] gave them, long enough to redact). Borrowed, so a caller on a hot path (a
    /// stream's every piece) copies nothing.
    fn literals<'a>(
        &'a self,
        issued: &'a Option<std::sync::Arc<[String]>>,
    ) -> impl Iterator<Item = &'a str> + 'a {
        self.secrets.iter().map(String::as_str).chain(
            issued
                .iter()
                .flat_map(|t| t.iter())
                .map(String::as_str)
                .filter(|t| t.len() >= MIN_SECRET_LEN),
        )
    }

    /// Whether there are patterns.
    fn has_patterns(&self) -> bool {
        !self.patterns.is_empty()
    }

    /// Bytes of `text` that redacting it would replace: matches as written and as decoded
    /// from JSON escapes, in `text`'s own offsets.
    fn source_matches(&self, text: &str) -> Vec<Range<usize>> {
        let mut found = self.matches(text);
        let layers = escapes::layers(text);
        for (depth, layer) in layers.iter().enumerate() {
            for range in self.matches(&layer.text) {
                found.push(escapes::to_source(&layers, depth, range));
            }
        }
        found
    }

    /// Whether there is nothing to redact.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty() && self.patterns.is_empty() && issued().is_none()
    }

    /// `text` with every secret and every match of a pattern replaced, as written and as
    /// decoded from JSON escapes.
    pub fn redact(&self, text: &str) -> String {
        self.redacted(text).unwrap_or_else(|| text.to_string())
    }

    /// `text` redacted, or `None` when it holds nothing to redact.
    fn redacted(&self, text: &str) -> Option<String> {
        if self.is_empty() {
            return None;
        }
        let plain = self.redacted_plain(text);
        let current = plain.as_deref().unwrap_or(text);
        self.redacted_escaped(current).or(plain)
    }

    /// `text` with what is visible as written replaced.
    fn redacted_plain(&self, text: &str) -> Option<String> {
        let mut out: Option<String> = None;
        let issued = issued();
        for secret in self.literals(&issued) {
            let current = out.as_deref().unwrap_or(text);
            if current.contains(secret) {
                out = Some(current.replace(secret, REDACTED));
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

    /// `text` with what is visible only once its JSON escapes are decoded replaced: the bytes
    /// the secret was decoded from, escapes included, give way to [`REDACTED`].
    fn redacted_escaped(&self, text: &str) -> Option<String> {
        let layers = escapes::layers(text);
        let mut found: Vec<Range<usize>> = Vec::new();
        for (depth, layer) in layers.iter().enumerate() {
            for range in self.matches(&layer.text) {
                found.push(escapes::to_source(&layers, depth, range));
            }
        }
        if found.is_empty() {
            return None;
        }
        found.sort_by_key(|r| (r.start, r.end));
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for range in found {
            if range.start >= at {
                out.push_str(&text[at..range.start]);
                out.push_str(REDACTED);
                at = range.end;
            } else {
                // Overlaps the one before: the mark already stands for both.
                at = at.max(range.end);
            }
        }
        out.push_str(&text[at..]);
        Some(out)
    }

    /// Byte ranges of every secret and pattern match in `text`.
    fn matches(&self, text: &str) -> Vec<Range<usize>> {
        let mut found = Vec::new();
        let issued = issued();
        for secret in self.literals(&issued) {
            found.extend(text.match_indices(secret).map(|(i, s)| i..i + s.len()));
        }
        for pattern in &self.patterns {
            found.extend(pattern.find_iter(text).map(|m| m.range()));
        }
        found
    }

    /// `event` with every secret replaced in every string it holds, however deep: free text,
    /// arguments (JSON values and JSON text), tool results, and the keys of JSON objects.
    ///
    /// This is the entry point for everything journaled, a human's decision included (edited
    /// arguments, notes, reasons, results given for an unknown outcome, who raised a limit):
    /// call it on the event before it is appended.
    pub fn redact_event(&self, event: Event) -> Event {
        if self.is_empty() {
            return event;
        }
        let Ok(original) = serde_json::to_value(&event) else {
            return event;
        };
        // Strings are redacted one by one (never the JSON text of the event, where a pattern
        // could match across quotes); the `kind` tag is not data.
        let mut value = original.clone();
        if !self.redact_fields(&mut value, true) {
            return event;
        }
        if let Ok(redacted) = serde_json::from_value(value) {
            return redacted;
        }
        // A pattern matched a word of the format (a field name, a risk class, a limit name).
        // Keep the field names, then, failing that, every change the format allows.
        let mut value = original.clone();
        self.redact_fields(&mut value, false);
        if let Ok(redacted) = serde_json::from_value(value) {
            return redacted;
        }
        self.redact_leaf_by_leaf(original).unwrap_or(event)
    }

    /// [`Redactor::redact_event`] on each event.
    pub fn redact_events(&self, events: Vec<Event>) -> Vec<Event> {
        events.into_iter().map(|e| self.redact_event(e)).collect()
    }

    /// Redacts every string inside a JSON value (and the keys of its objects); true when
    /// something changed. For arguments a human typed, before they are validated and
    /// journaled.
    pub fn redact_json(&self, value: &mut Value) -> bool {
        !self.is_empty() && self.redact_value(value, true)
    }

    /// Redacts the fields of an event's JSON object, never its `kind` nor its field names.
    fn redact_fields(&self, value: &mut Value, keys: bool) -> bool {
        let Value::Object(map) = value else {
            return self.redact_value(value, keys);
        };
        let mut changed = false;
        for (key, field) in map.iter_mut() {
            if key != "kind" {
                changed |= self.redact_value(field, keys);
            }
        }
        changed
    }

    /// Redacts every string inside `value`, and the keys of nested objects when `keys`; true
    /// when something changed.
    fn redact_value(&self, value: &mut Value, keys: bool) -> bool {
        match value {
            Value::String(text) => match self.redacted(text) {
                Some(redacted) => {
                    *text = redacted;
                    true
                }
                None => false,
            },
            Value::Array(items) => items.iter_mut().fold(false, |changed, item| {
                self.redact_value(item, keys) | changed
            }),
            Value::Object(map) => {
                let mut changed = map.values_mut().fold(false, |changed, item| {
                    self.redact_value(item, keys) | changed
                });
                if keys && map.keys().any(|k| self.redacted(k).is_some()) {
                    let old = std::mem::take(map);
                    for (key, item) in old {
                        map.insert(self.redact(&key), item);
                    }
                    changed = true;
                }
                changed
            }
            _ => false,
        }
    }

    /// The last resort of [`Redactor::redact_event`]: each string that needs redacting is
    /// changed on its own, and the change kept when the event still reads back.
    fn redact_leaf_by_leaf(&self, original: Value) -> Option<Event> {
        let mut pointers = Vec::new();
        collect_strings(&original, String::new(), &mut pointers);
        let mut value = original;
        for pointer in pointers {
            if pointer == "/kind" {
                continue;
            }
            let Some(Value::String(text)) = value.pointer(&pointer) else {
                continue;
            };
            let Some(redacted) = self.redacted(text) else {
                continue;
            };
            let mut attempt = value.clone();
            if let Some(slot) = attempt.pointer_mut(&pointer) {
                *slot = Value::String(redacted);
            }
            if serde_json::from_value::<Event>(attempt.clone()).is_ok() {
                value = attempt;
            }
        }
        serde_json::from_value(value).ok()
    }
}

/// The JSON pointers of every string inside `value`.
fn collect_strings(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::String(_) => out.push(at),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                collect_strings(item, format!("{at}/{i}"), out);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                let key = key.replace('~', "~0").replace('/', "~1");
                collect_strings(item, format!("{at}/{key}"), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_removed_from_every_field() {
        let r = Redactor::new(["sk-live-123456".to_string(), "abcdefg".to_string()]);
        let event = Event::ToolFinished {
            call_id: "c1".into(),
            ok: true,
            content: "key is sk-live-123456, abcdefg stays".into(),
            latency_ms: 1,
        };
        let Event::ToolFinished { content, .. } = r.redact_event(event) else {
            panic!()
        };
        assert_eq!(content, "key is [REDACTED], abcdefg stays");
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
        assert_eq!(e.key, "redact.patterns[1]");
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
