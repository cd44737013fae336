//! Scripts: which replies the mock gives, loaded from TOML or JSON and validated up front.
//!
//! Parsing happens in two stages: serde reads the raw file shape (unknown keys are errors, so
//! typos surface at load time), then validation turns it into a [`Script`] that the server can
//! answer from without further checks.

use std::path::Path;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::Error;

/// A validated set of scenarios, each a sequence of scripted assistant turns.
///
/// A request is answered by the first scenario whose `when_input_contains` occurs in the
/// request's first user message (a scenario without it matches anything); the turn is the
/// number of assistant messages already in the request.
#[derive(Clone, Debug)]
pub struct Script {
    pub(crate) scenarios: Vec<Scenario>,
}

/// One conversation shape: an optional input filter and its turns.
#[derive(Clone, Debug)]
pub(crate) struct Scenario {
    pub(crate) when_input_contains: Option<String>,
    pub(crate) turns: Vec<Turn>,
}

/// One scripted assistant message: text, tool calls, or both.
#[derive(Clone, Debug)]
pub(crate) struct Turn {
    pub(crate) text: Option<String>,
    pub(crate) tool_calls: Vec<ToolCall>,
}

/// A scripted tool call; `arguments` string values may hold placeholders.
#[derive(Clone, Debug)]
pub(crate) struct ToolCall {
    pub(crate) name: String,
    pub(crate) arguments: Map<String, Value>,
}

impl Script {
    /// Reads a script file: `.json` files are JSON, anything else is TOML.
    pub fn from_path(path: &Path) -> Result<Script, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let origin = path.display().to_string();
        let is_json = path
            .extension()
            .is_some_and(|ext| ext.eq_ignore_ascii_case("json"));
        if is_json {
            parse_json(&text, origin)
        } else {
            parse_toml(&text, origin)
        }
    }

    /// Parses a script from TOML text.
    pub fn from_toml_str(text: &str) -> Result<Script, Error> {
        parse_toml(text, "<toml string>".to_owned())
    }

    /// Parses a script from JSON text of the same shape as the TOML form.
    pub fn from_json_str(text: &str) -> Result<Script, Error> {
        parse_json(text, "<json string>".to_owned())
    }

    /// The first scenario whose filter matches `input`.
    pub(crate) fn scenario_for(&self, input: &str) -> Option<&Scenario> {
        self.scenarios.iter().find(|scenario| {
            scenario
                .when_input_contains
                .as_deref()
                .is_none_or(|needle| input.contains(needle))
        })
    }

    /// The first tool call anywhere in the script, preferring `scenario`'s own.
    pub(crate) fn first_tool_call<'a>(&'a self, scenario: &'a Scenario) -> Option<&'a ToolCall> {
        let first_in = |s: &'a Scenario| s.turns.iter().flat_map(|t| t.tool_calls.iter()).next();
        first_in(scenario).or_else(|| self.scenarios.iter().find_map(first_in))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScript {
    #[serde(default, alias = "scenarios")]
    scenario: Vec<RawScenario>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: Option<String>,
    when_input_contains: Option<String>,
    #[serde(default, alias = "turns")]
    turn: Vec<RawTurn>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTurn {
    text: Option<String>,
    #[serde(default)]
    tool_calls: Vec<RawToolCall>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToolCall {
    #[serde(default)]
    name: String,
    arguments: Option<Value>,
}

fn parse_toml(text: &str, origin: String) -> Result<Script, Error> {
    match toml::from_str::<RawScript>(text) {
        Ok(raw) => validate(raw, origin),
        Err(err) => {
            let (line, column) = err
                .span()
                .map_or((1, 1), |span| line_column(text, span.start));
            Err(Error::Syntax {
                origin,
                line,
                column,
                message: err.message().trim_end().to_owned(),
            })
        }
    }
}

fn parse_json(text: &str, origin: String) -> Result<Script, Error> {
    match serde_json::from_str::<RawScript>(text) {
        Ok(raw) => validate(raw, origin),
        Err(err) => {
            // serde_json appends " at line L column C" to its Display; we report those separately.
            let message = err.to_string();
            let message = message
                .rsplit_once(" at line ")
                .map_or(message.as_str(), |(head, _)| head)
                .to_owned();
            Err(Error::Syntax {
                origin,
                line: err.line().max(1),
                column: err.column().max(1),
                message,
            })
        }
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..text.floor_char_boundary(offset.min(text.len()))];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

fn validate(raw: RawScript, origin: String) -> Result<Script, Error> {
    let invalid = |problem: String| Error::Invalid {
        origin: origin.clone(),
        problem,
    };
    if raw.scenario.is_empty() {
        return Err(invalid(
            "no scenarios: add at least one [[scenario]] with a [[scenario.turn]]".to_owned(),
        ));
    }
    let mut scenarios = Vec::with_capacity(raw.scenario.len());
    for (s, raw_scenario) in raw.scenario.into_iter().enumerate() {
        let label = match &raw_scenario.name {
            Some(name) => format!("scenario[{s}] `{name}`"),
            None => format!("scenario[{s}]"),
        };
        if raw_scenario.turn.is_empty() {
            return Err(invalid(format!(
                "{label}: has no turns; add at least one [[scenario.turn]]"
            )));
        }
        let mut turns = Vec::with_capacity(raw_scenario.turn.len());
        for (t, raw_turn) in raw_scenario.turn.into_iter().enumerate() {
            if raw_turn.text.is_none() && raw_turn.tool_calls.is_empty() {
                return Err(invalid(format!(
                    "{label}, turn[{t}]: has neither `text` nor `tool_calls`"
                )));
            }
            let mut tool_calls = Vec::with_capacity(raw_turn.tool_calls.len());
            for (c, call) in raw_turn.tool_calls.into_iter().enumerate() {
                if call.name.trim().is_empty() {
                    return Err(invalid(format!(
                        "{label}, turn[{t}], tool call[{c}]: `name` is missing or empty"
                    )));
                }
                let arguments = match call.arguments {
                    None => Map::new(),
                    Some(Value::Object(map)) => map,
                    Some(other) => {
                        return Err(invalid(format!(
                            "{label}, turn[{t}], tool call[{c}] `{}`: `arguments` must be an object, found {}",
                            call.name,
                            json_kind(&other)
                        )));
                    }
                };
                tool_calls.push(ToolCall {
                    name: call.name,
                    arguments,
                });
            }
            turns.push(Turn {
                text: raw_turn.text,
                tool_calls,
            });
        }
        scenarios.push(Scenario {
            when_input_contains: raw_scenario.when_input_contains,
            turns,
        });
    }
    Ok(Script { scenarios })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn toml_err(text: &str) -> String {
        Script::from_toml_str(text).unwrap_err().to_string()
    }

    #[test]
    fn parses_the_documented_example() {
        let script = Script::from_toml_str(
            r#"
            [[scenario]]
            name = "refund"
            when_input_contains = "refund"
            [[scenario.turn]]
            tool_calls = [{ name = "read_file", arguments = { path = "notes.txt" } }]
            [[scenario.turn]]
            text = "The notes say: {last_tool_result}"
            "#,
        )
        .unwrap();
        assert_eq!(script.scenarios.len(), 1);
        let turns = &script.scenarios[0].turns;
        assert_eq!(turns[0].tool_calls[0].name, "read_file");
        assert_eq!(turns[0].tool_calls[0].arguments["path"], "notes.txt");
        assert_eq!(
            turns[1].text.as_deref(),
            Some("The notes say: {last_tool_result}")
        );
    }

    #[test]
    fn json_has_the_same_shape() {
        let script = Script::from_json_str(
            r#"{"scenario":[{"turn":[{"tool_calls":[{"name":"ls"}]},{"text":"done"}]}]}"#,
        )
        .unwrap();
        assert!(
            script.scenarios[0].turns[0].tool_calls[0]
                .arguments
                .is_empty()
        );
    }

    #[test]
    fn empty_script_is_rejected() {
        assert_eq!(
            toml_err(""),
            "script <toml string>: no scenarios: add at least one [[scenario]] with a [[scenario.turn]]"
        );
    }

    #[test]
    fn scenario_without_turns_is_named() {
        let err = toml_err("[[scenario]]\nname = \"a\"\n");
        assert_eq!(
            err,
            "script <toml string>: scenario[0] `a`: has no turns; add at least one [[scenario.turn]]"
        );
    }

    #[test]
    fn empty_turn_is_named() {
        let err = toml_err("[[scenario]]\n[[scenario.turn]]\ntext = \"x\"\n[[scenario.turn]]\n");
        assert_eq!(
            err,
            "script <toml string>: scenario[0], turn[1]: has neither `text` nor `tool_calls`"
        );
    }

    #[test]
    fn tool_call_rules() {
        let err = toml_err("[[scenario]]\n[[scenario.turn]]\ntool_calls = [{ name = \"\" }]\n");
        assert!(
            err.contains("turn[0], tool call[0]: `name` is missing or empty"),
            "{err}"
        );
        let err = toml_err(
            "[[scenario]]\n[[scenario.turn]]\ntool_calls = [{ name = \"ls\", arguments = \"x\" }]\n",
        );
        assert!(
            err.contains("tool call[0] `ls`: `arguments` must be an object, found a string"),
            "{err}"
        );
    }

    #[test]
    fn toml_errors_carry_line_and_column() {
        let err = toml_err("[[scenario]]\n[[scenario.turn]]\ntxt = \"typo\"\n");
        assert!(
            err.starts_with("script <toml string>: line 3, column 1: "),
            "{err}"
        );
        assert!(err.contains("txt"), "{err}");
    }

    #[test]
    fn json_errors_carry_line_and_column() {
        let err = Script::from_json_str("{\n  \"scenario\": [\n}")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("script <json string>: line 3, column 1: "),
            "{err}"
        );
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = Script::from_path(Path::new("/nonexistent/script.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("reading script /nonexistent/script.toml: "),
            "{err}"
        );
    }
}
