//! Checking a model's raw tool call against the tool's JSON Schema before anything runs.

use serde_json::Value;

/// Longest rendering of one schema violation; the offending value is echoed back to the model,
/// and a long string it sent need not be sent back whole.
const MAX_VIOLATION_CHARS: usize = 300;

/// Why a call was not executed, phrased for the model so it can correct itself.
///
/// `Display` is the message sent back to the model as the tool result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The model called a tool the agent was not granted.
    #[error("unknown tool `{name}`; {}", available_list(.available))]
    UnknownTool {
        /// The name the model used.
        name: String,
        /// Names of the granted tools, in declaration order.
        available: Vec<String>,
    },
    /// The arguments are not JSON at all.
    #[error("arguments for `{tool}` are not valid JSON: {reason}")]
    UnparsableArguments {
        /// The tool called.
        tool: String,
        /// The parser's complaint, with line and column.
        reason: String,
    },
    /// The arguments are larger than the agent accepts; they were not parsed.
    #[error(
        "arguments for `{tool}` are {bytes} bytes, more than the {limit} this agent accepts \
         (limits.max_tool_args_bytes); send less, e.g. split the work into several calls"
    )]
    ArgumentsTooLarge {
        /// The tool called.
        tool: String,
        /// Size of the raw arguments.
        bytes: u64,
        /// The bound.
        limit: u64,
    },
    /// The arguments are JSON but not what the tool's schema asks for.
    #[error("arguments for `{tool}` do not match its schema: {}", .violations.join("; "))]
    InvalidArguments {
        /// The tool called.
        tool: String,
        /// Every violation, each prefixed by the JSON pointer of the offending value when it is
        /// not the arguments object itself, e.g. `/amount: -5 is less than the minimum of 0`.
        violations: Vec<String>,
    },
}

fn available_list(available: &[String]) -> String {
    if available.is_empty() {
        "this agent has no tools".to_string()
    } else {
        format!("available tools: {}", available.join(", "))
    }
}

/// The validator's formats other than `uri`, `date-time` and `email`, each compiled as
/// accepting anything: they stay annotations, left to the tool, since the validator's checks
/// of them (hostnames, regexes, IRIs, …) differ too often from what tools accept.
pub(crate) const UNCHECKED_FORMATS: [&str; 16] = [
    "date",
    "duration",
    "hostname",
    "idn-email",
    "idn-hostname",
    "ipv4",
    "ipv6",
    "iri",
    "iri-reference",
    "json-pointer",
    "regex",
    "relative-json-pointer",
    "time",
    "uri-reference",
    "uri-template",
    "uuid",
];

/// A tool's compiled parameter schema.
///
/// A schema of the common subset (`simple_schema.rs`) is checked by that fast path, and
/// `jsonschema` compiles it only when an argument the fast path cannot vouch for arrives
/// (which also words the violations); any other schema is compiled by `jsonschema` at once.
/// So an agent whose tools all have plain schemas never builds the meta-schema's validator.
pub(crate) struct Validator {
    schema: Value,
    fast: Option<crate::simple_schema::Node>,
    full: std::sync::OnceLock<Result<jsonschema::Validator, String>>,
}

impl std::fmt::Debug for Validator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Validator")
            .field("schema", &self.schema)
            .field("fast", &self.fast.is_some())
            .finish_non_exhaustive()
    }
}

impl Validator {
    /// The full validator, compiled now if it was not yet.
    fn full(&self) -> Result<&jsonschema::Validator, &str> {
        self.full
            .get_or_init(|| compile_full(&self.schema))
            .as_ref()
            .map_err(String::as_str)
    }
}

/// Compiles a tool's parameter schema; the error says what is wrong and where in the schema.
///
/// Of the `format` keywords, `uri`, `date-time` and `email` are checked.
pub(crate) fn compile(schema: &Value) -> Result<Validator, String> {
    let full = std::sync::OnceLock::new();
    let fast = crate::simple_schema::Node::parse(schema);
    if fast.is_none() {
        // Outside the subset: checked against the meta-schema now, so a bad schema fails the
        // agent's load rather than a call.
        let _ = full.set(Ok(compile_full(schema)?));
    }
    Ok(Validator {
        schema: schema.clone(),
        fast,
        full,
    })
}

/// Compiles `schema` with `jsonschema` (checking it against the meta-schema first).
pub(crate) fn compile_full(schema: &Value) -> Result<jsonschema::Validator, String> {
    let mut options = jsonschema::options().should_validate_formats(true);
    for format in UNCHECKED_FORMATS {
        options = options.with_format(format, |_: &str| true);
    }
    options.build(schema).map_err(|e| {
        let at = e.instance_path().to_string();
        if at.is_empty() {
            format!("is not a valid JSON Schema: {e}")
        } else {
            format!("is not a valid JSON Schema: at {at}: {e}")
        }
    })
}

/// Parses `raw_arguments` and checks them against `validator`.
///
/// Whitespace-only arguments count as `{}`: models commonly send an empty string when calling
/// a tool without parameters.
pub(crate) fn check(
    tool: &str,
    validator: &Validator,
    raw_arguments: &str,
) -> Result<Value, Refusal> {
    let args: Value = if raw_arguments.trim().is_empty() {
        Value::Object(serde_json::Map::new())
    } else {
        serde_json::from_str(raw_arguments).map_err(|e| Refusal::UnparsableArguments {
            tool: tool.to_string(),
            reason: e.to_string(),
        })?
    };
    if !args.is_object() {
        return Err(Refusal::InvalidArguments {
            tool: tool.to_string(),
            violations: vec![format!(
                "the arguments must be a JSON object, not {}",
                json_kind(&args)
            )],
        });
    }
    if validator
        .fast
        .as_ref()
        .is_some_and(|fast| fast.surely_valid(&args))
    {
        return Ok(args);
    }
    let full = validator.full().map_err(|e| Refusal::InvalidArguments {
        tool: tool.to_string(),
        violations: vec![format!("the tool's schema {e}")],
    })?;
    let violations: Vec<String> = full
        .iter_errors(&args)
        .map(|e| {
            let path = e.instance_path().to_string();
            let text = if path.is_empty() {
                e.to_string()
            } else {
                format!("{path}: {e}")
            };
            truncate(text, MAX_VIOLATION_CHARS)
        })
        .collect();
    if violations.is_empty() {
        Ok(args)
    } else {
        Err(Refusal::InvalidArguments {
            tool: tool.to_string(),
            violations,
        })
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn truncate(mut text: String, max_chars: usize) -> String {
    if let Some((cut, _)) = text.char_indices().nth(max_chars) {
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// Checks raw arguments against a tool definition's schema, outside any toolbox (e.g. edited
/// arguments a human approves); the same refusals as [`crate::Toolbox::prepare`].
pub fn check_arguments(def: &chassis_core::ToolDef, raw_arguments: &str) -> Result<Value, Refusal> {
    let validator = compile(&def.parameters).map_err(|e| Refusal::InvalidArguments {
        tool: def.name.clone(),
        violations: vec![format!("the tool's schema {e}")],
    })?;
    check(&def.name, &validator, raw_arguments)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn validator() -> Validator {
        compile(&json!({
            "type": "object",
            "properties": {
                "path": {"type": "integer"},
                "amount": {"type": "number", "minimum": 0}
            },
            "required": ["path"],
            "additionalProperties": false
        }))
        .unwrap()
    }

    fn refusal(raw: &str) -> String {
        check("write_file", &validator(), raw)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn valid_arguments_are_parsed() {
        let args = check("t", &validator(), r#"{"path": 3}"#).unwrap();
        assert_eq!(args, json!({"path": 3}));
    }

    #[test]
    fn wrong_type_names_the_pointer() {
        assert_eq!(
            refusal(r#"{"path": "x"}"#),
            r#"arguments for `write_file` do not match its schema: /path: "x" is not of type "integer""#
        );
    }

    #[test]
    fn every_violation_is_listed() {
        let message = refusal(r#"{"amount": -5, "extra": true}"#);
        assert!(
            message.contains("\"path\" is a required property"),
            "{message}"
        );
        assert!(
            message.contains("/amount: -5 is less than the minimum of 0"),
            "{message}"
        );
        assert!(
            message.contains("Additional properties are not allowed"),
            "{message}"
        );
    }

    #[test]
    fn unparsable_json_quotes_the_parser() {
        assert_eq!(
            refusal("{x"),
            "arguments for `write_file` are not valid JSON: key must be a string at line 1 column 2"
        );
    }

    #[test]
    fn non_object_is_refused() {
        assert_eq!(
            refusal("[1]"),
            "arguments for `write_file` do not match its schema: the arguments must be a JSON object, not an array"
        );
    }

    #[test]
    fn empty_arguments_count_as_an_empty_object() {
        let v = compile(&json!({"type": "object"})).unwrap();
        assert_eq!(check("t", &v, "  ").unwrap(), json!({}));
    }

    #[test]
    fn long_violations_are_truncated() {
        let long = "x".repeat(5000);
        let message = refusal(&format!(r#"{{"path": "{long}"}}"#));
        assert!(message.len() < 600, "{message}");
        assert!(message.ends_with('…'), "{message}");
    }

    #[test]
    fn invalid_schema_is_reported() {
        let e = compile(&json!({"type": "object", "properties": {"x": {"type": "strng"}}}))
            .unwrap_err();
        assert!(e.starts_with("is not a valid JSON Schema"), "{e}");
    }

    #[test]
    fn unknown_tool_lists_the_available_ones() {
        let r = Refusal::UnknownTool {
            name: "foo".into(),
            available: vec!["read_file".into(), "list_dir".into()],
        };
        assert_eq!(
            r.to_string(),
            "unknown tool `foo`; available tools: read_file, list_dir"
        );
    }
}
