//! Diagnostics on stderr through `tracing`: readable lines by default, one JSON object per line
//! with `--log-format json`. Every line logged while a run is driven carries its run id and
//! step (from the engine's `run` span), and every value passes through the redactor first.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::sync::{Arc, RwLock};

use chassis_redact::Redactor;
use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// `2025-03-01T12:00:00.000Z  WARN run_… step=2 message key=value`.
    #[default]
    Text,
    /// `{"timestamp", "level", "target", "run_id", "step", "message", …fields}`.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<LogFormat, String> {
        match text {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("unknown log format `{other}` (use text or json)")),
        }
    }
}

/// The secrets log lines are cleaned of; shared, so they can be added once an agent is loaded.
#[derive(Clone, Default)]
pub struct LogRedaction(Arc<Learned>);

#[derive(Default)]
struct Learned {
    redactor: RwLock<Redactor>,
    /// The spec paths (as runs journal them) whose agents' secrets were added.
    specs: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl LogRedaction {
    /// Adds `redactor`'s secrets and patterns.
    pub fn add(&self, redactor: &Redactor) {
        if let Ok(mut current) = self.0.redactor.write() {
            *current = current.merged(redactor);
        }
    }

    /// Adds the secrets of the agent loaded from `spec_path` (as its runs journal it), so that
    /// [`SpecSecrets`] need not read and parse that spec again when its runs start.
    pub fn add_agent(&self, spec_path: &str, redactor: &Redactor) {
        self.add(redactor);
        self.first_sight(spec_path);
    }

    /// Whether `spec_path` is new here (and from now on known).
    fn first_sight(&self, spec_path: &str) -> bool {
        self.0
            .specs
            .lock()
            .is_ok_and(|mut specs| specs.insert(spec_path.to_string()))
    }

    /// `text` without any known secret.
    pub fn redact(&self, text: &str) -> String {
        match self.0.redactor.read() {
            Ok(redactor) => redactor.redact(text),
            Err(_) => text.to_string(),
        }
    }
}

/// Where the spec file of a run that journaled `spec_path` is now (an engine's
/// `AgentPaths::locate`).
pub type Locate = Arc<dyn Fn(&str) -> std::path::PathBuf + Send + Sync>;

/// An observer that, when a run starts or resumes, adds the secrets of its agent spec (API key
/// variables, `[redact] env` and `patterns`) to the log redaction, once per spec file: so a
/// process driving runs of any agent (a worker) keeps each agent's secrets out of its log.
/// A spec whose agent was added with [`LogRedaction::add_agent`] is not read again.
pub struct SpecSecrets {
    redaction: LogRedaction,
    locate: Locate,
}

impl SpecSecrets {
    /// Adds to `redaction`, reading each spec at the path its run journaled.
    pub fn new(redaction: LogRedaction) -> SpecSecrets {
        SpecSecrets::finding_agents(redaction, Arc::new(|path: &str| path.into()))
    }

    /// Adds to `redaction`, finding a run's spec where `locate` says (an engine's agent paths).
    pub fn finding_agents(redaction: LogRedaction, locate: Locate) -> SpecSecrets {
        SpecSecrets { redaction, locate }
    }
}

impl chassis_core::Observer for SpecSecrets {
    fn on_event(&self, _run_id: &str, state: &chassis_core::RunState, event: &chassis_core::Event) {
        use chassis_core::Event as E;
        if !matches!(event, E::RunStarted(_) | E::RunResumed { .. }) {
            return;
        }
        if !self.redaction.first_sight(&state.spec_path) {
            return;
        }
        // The engine loaded this spec a moment ago; one that no longer parses is its concern.
        let spec = std::fs::read_to_string((self.locate)(&state.spec_path))
            .ok()
            .and_then(|text| chassis_core::spec::AgentSpec::parse(&text).ok());
        if let Some(redactor) = spec.and_then(|spec| Redactor::for_spec(&spec).ok()) {
            self.redaction.add(&redactor);
        }
    }
}

/// `filter` with rmcp's own events off unless it names `rmcp`: chassis maps the MCP SDK's
/// errors to one line naming the server, and the SDK's internal debug formatting of them
/// would only repeat them in its own words (`--log warn,rmcp=debug` shows them).
fn directives(filter: &str) -> String {
    if filter.contains("rmcp") {
        filter.to_string()
    } else {
        format!("{filter},rmcp=off")
    }
}

/// Installs the process's subscriber: `filter` (an `EnvFilter` directive such as `warn` or
/// `chassis_engine=debug`) and lines in `format` on stderr. Starts with the well-known API
/// key variables as secrets; the returned handle adds more.
pub fn install(filter: &str, format: LogFormat) -> LogRedaction {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let redaction = LogRedaction::default();
    redaction.add(&Redactor::from_env(["OPENAI_API_KEY", "ANTHROPIC_API_KEY"]));
    let filter = tracing_subscriber::EnvFilter::try_new(directives(filter))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(directives("warn")));
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let layer = LogLayer {
        format,
        redaction: redaction.clone(),
        ansi,
        writer: Box::new(|line: &str| {
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }),
    };
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(layer)
        .try_init();
    redaction
}

/// The layer that formats, redacts and writes each event.
pub struct LogLayer {
    format: LogFormat,
    redaction: LogRedaction,
    ansi: bool,
    writer: Box<dyn Fn(&str) + Send + Sync>,
}

impl LogLayer {
    /// A layer writing finished lines (newline included) to `writer`, without colors.
    pub fn new(
        format: LogFormat,
        redaction: LogRedaction,
        writer: impl Fn(&str) + Send + Sync + 'static,
    ) -> LogLayer {
        LogLayer {
            format,
            redaction,
            ansi: false,
            writer: Box::new(writer),
        }
    }
}

/// A recorded field value.
#[derive(Clone, Debug)]
enum FieldValue {
    Str(String),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
}

impl FieldValue {
    fn text(&self) -> String {
        match self {
            FieldValue::Str(s) => s.clone(),
            FieldValue::I64(n) => n.to_string(),
            FieldValue::U64(n) => n.to_string(),
            FieldValue::F64(x) => x.to_string(),
            FieldValue::Bool(b) => b.to_string(),
        }
    }

    fn json(&self) -> Value {
        match self {
            FieldValue::Str(s) => Value::String(s.clone()),
            FieldValue::I64(n) => (*n).into(),
            FieldValue::U64(n) => (*n).into(),
            FieldValue::F64(x) => (*x).into(),
            FieldValue::Bool(b) => (*b).into(),
        }
    }
}

/// Fields in the order they were recorded; a later value of the same name replaces it.
#[derive(Clone, Debug, Default)]
struct Fields(Vec<(&'static str, FieldValue)>);

impl Fields {
    fn put(&mut self, name: &'static str, value: FieldValue) {
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name, value)),
        }
    }

    fn get(&self, name: &str) -> Option<&FieldValue> {
        self.0.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field.name(), FieldValue::Str(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field.name(), FieldValue::Str(value.to_string()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field.name(), FieldValue::I64(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field.name(), FieldValue::U64(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field.name(), FieldValue::F64(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field.name(), FieldValue::Bool(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field.name(), FieldValue::Str(value.to_string()));
    }
}

impl<S> Layer<S> for LogLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: Context<'_, S>,
    ) {
        if let Some(span) = ctx.span(id)
            && let Some(fields) = span.extensions_mut().get_mut::<Fields>()
        {
            values.record(fields);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        // The run's context first (outermost span first), then the event's own fields.
        let mut fields = Fields::default();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(span_fields) = span.extensions().get::<Fields>() {
                    for (name, value) in &span_fields.0 {
                        fields.put(name, value.clone());
                    }
                }
            }
        }
        let mut own = Fields::default();
        event.record(&mut own);
        for (name, value) in own.0 {
            fields.put(name, value);
        }
        let redact = |value: &FieldValue| match value {
            FieldValue::Str(s) => FieldValue::Str(self.redaction.redact(s)),
            other => other.clone(),
        };
        let fields = Fields(fields.0.iter().map(|(n, v)| (*n, redact(v))).collect());
        let meta = event.metadata();
        let timestamp = crate::time::rfc3339_millis(crate::time::now_ms());
        let line = match self.format {
            LogFormat::Text => self.text_line(&timestamp, *meta.level(), &fields),
            LogFormat::Json => json_line(&timestamp, *meta.level(), meta.target(), &fields),
        };
        (self.writer)(&line);
    }
}

impl LogLayer {
    fn text_line(&self, timestamp: &str, level: Level, fields: &Fields) -> String {
        let mut line = String::with_capacity(128);
        let _ = write!(line, "{timestamp} ");
        let level_text = format!("{:>5}", level.as_str());
        if self.ansi {
            let color = match level {
                Level::ERROR => "31",
                Level::WARN => "33",
                Level::INFO => "32",
                Level::DEBUG => "34",
                Level::TRACE => "35",
            };
            let _ = write!(line, "\x1b[{color}m{level_text}\x1b[0m");
        } else {
            line.push_str(&level_text);
        }
        if let Some(run_id) = fields.get("run_id") {
            let _ = write!(line, " {}", run_id.text());
        }
        if let Some(step) = fields.get("step") {
            let _ = write!(line, " step={}", step.text());
        }
        if let Some(message) = fields.get("message") {
            let _ = write!(line, " {}", message.text());
        }
        for (name, value) in &fields.0 {
            if matches!(*name, "run_id" | "step" | "message") {
                continue;
            }
            let text = value.text();
            if text.is_empty() || text.contains(|c: char| c.is_whitespace() || c == '"' || c == '=')
            {
                let _ = write!(line, " {name}={text:?}");
            } else {
                let _ = write!(line, " {name}={text}");
            }
        }
        line.push('\n');
        line
    }
}

fn json_line(timestamp: &str, level: Level, target: &str, fields: &Fields) -> String {
    // Written by hand to keep a fixed order: time, level, target, run and step, message, fields.
    let mut entries: Vec<(String, Value)> = vec![
        ("timestamp".into(), timestamp.into()),
        ("level".into(), level.as_str().into()),
        ("target".into(), target.into()),
    ];
    for key in ["run_id", "step", "message"] {
        if let Some(value) = fields.get(key) {
            entries.push((key.into(), value.json()));
        }
    }
    for (name, value) in &fields.0 {
        if matches!(*name, "run_id" | "step" | "message") {
            continue;
        }
        let key = if matches!(*name, "timestamp" | "level" | "target") {
            format!("field.{name}")
        } else {
            name.to_string()
        };
        entries.push((key, value.json()));
    }
    let mut line = String::from("{");
    for (i, (key, value)) in entries.iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        line.push_str(&Value::String(key.clone()).to_string());
        line.push(':');
        line.push_str(&value.to_string());
    }
    line.push_str("}\n");
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use tracing_subscriber::layer::SubscriberExt;

    fn capture(format: LogFormat, redaction: LogRedaction, f: impl FnOnce()) -> Vec<String> {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        let layer = LogLayer::new(format, redaction, move |line: &str| {
            sink.lock().unwrap().push(line.to_string())
        });
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, f);
        lines.lock().unwrap().clone()
    }

    #[test]
    fn rmcps_own_events_are_off_unless_the_filter_names_it() {
        let filter = tracing_subscriber::EnvFilter::new(directives("warn"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        let layer = LogLayer::new(
            LogFormat::Text,
            LogRedaction::default(),
            move |line: &str| sink.lock().unwrap().push(line.to_string()),
        );
        let subscriber = tracing_subscriber::registry().with(filter).with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!(target: "rmcp::service", "Transport(Os {{ code: 111 }})");
            tracing::warn!(target: "chassis_tools", "MCP server `billing` could not be reached");
        });
        let lines = lines.lock().unwrap().clone();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains("MCP server `billing`"), "{lines:?}");
        assert_eq!(directives("warn,rmcp=debug"), "warn,rmcp=debug");
    }

    fn in_a_run() {
        let span = tracing::info_span!(
            "run",
            run_id = "run_1",
            agent = "desk",
            step = tracing::field::Empty
        );
        let _entered = span.enter();
        tracing::warn!("before the first step");
        span.record("step", 1u32);
        span.record("step", 2u32);
        tracing::info!(
            tool = "echo",
            error = "key sk-live-0123456789 leaked",
            "tool failed"
        );
    }

    #[test]
    fn text_lines_carry_run_id_and_step_and_are_redacted() {
        let redaction = LogRedaction::default();
        redaction.add(&Redactor::new(["sk-live-0123456789".to_string()]));
        let lines = capture(LogFormat::Text, redaction, in_a_run);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0].contains(" WARN run_1 before the first step agent=desk"),
            "{}",
            lines[0]
        );
        assert!(
            lines[1].contains(" INFO run_1 step=2 tool failed agent=desk tool=echo error=\"key [REDACTED] leaked\""),
            "{}",
            lines[1]
        );
    }

    #[test]
    fn json_lines_are_objects_with_run_id_and_step() {
        let redaction = LogRedaction::default();
        redaction.add(
            &Redactor::default()
                .with_patterns(["sk-live-[0-9]+"])
                .unwrap(),
        );
        let lines = capture(LogFormat::Json, redaction, in_a_run);
        let second: Value = serde_json::from_str(&lines[1]).unwrap();
        assert_eq!(second["run_id"], "run_1");
        assert_eq!(second["step"], 2);
        assert_eq!(second["level"], "INFO");
        assert_eq!(second["message"], "tool failed");
        assert_eq!(second["error"], "key [REDACTED] leaked");
        assert_eq!(second["agent"], "desk");
        let first: Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(first["run_id"], "run_1");
        assert!(first.get("step").is_none());
    }

    #[test]
    fn a_secret_escaped_in_logged_json_is_redacted() {
        let redaction = LogRedaction::default();
        redaction.add(&Redactor::new(["sk-live-0123456789".to_string()]));
        let lines = capture(LogFormat::Json, redaction, || {
            tracing::warn!(
                body = r#"{"token":"sk\u002dlive\u002d0123456789"}"#,
                "provider said"
            );
        });
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(!lines[0].contains("0123456789"), "{}", lines[0]);
        let line: Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(line["body"], r#"{"token":"[REDACTED]"}"#);
    }
}
