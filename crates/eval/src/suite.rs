//! Suites in two stages: the raw TOML shape ([`RawSuite`], also what `--from-runs` writes), then
//! a validated [`Suite`] whose regexes and schemas are compiled and whose paths are resolved.
//!
//! ```toml
//! [suite]
//! name = "incident-desk"
//! agent = "agent.toml"          # every case's agent unless the case names another
//! cassettes = "cassettes"       # one cassette per case: cassettes/CASE.json
//! concurrency = 4
//!
//! [gate]                        # what --baseline tolerates
//! max_pass_rate_drop = 0.0
//!
//! [[case]]
//! name = "summary"
//! input = "Summarize incident 2041"
//! status = "completed"          # the default
//! output_contains = ["replica"]
//! output_matches = "02:3\\d"
//! trajectory = ["list_dir", { tool = "read_file", args = { path = "incident-2041.md" } }]
//! max_steps = 4
//! judge = { rubric = "Names the cause and the fix." }
//!
//! [[case]]                      # a thread: several user turns, each checked on its own
//! name = "follow-up"
//! [[case.turn]]
//! input = "Summarize incident 2041"
//! output_contains = ["replica"]
//! [[case.turn]]                 # sent once the turn before has answered
//! input = "Who was paged?"
//! output_contains = ["on-call"]
//! trajectory = []               # this turn's own tool calls
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use chassis_core::RunStatus;
use chassis_providers::cassette::Cassette;
use serde::{Deserialize, Serialize};

use crate::expect::{Expectations, ExpectedCall, Judge, Order};

/// Cases run at once unless the suite or the command line says otherwise.
pub const DEFAULT_CONCURRENCY: usize = 4;

/// A suite that cannot be used; the message names the file and the key.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file cannot be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The suite file.
        file: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file does not parse, or a key holds a value that is not allowed.
    #[error("{file}: {message}")]
    Invalid {
        /// The suite file.
        file: String,
        /// What is wrong, starting with the key (or the line, for TOML errors).
        message: String,
    },
}

/// A suite file as written.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSuite {
    /// `[suite]`.
    #[serde(default)]
    pub suite: RawHeader,
    /// `[gate]`.
    #[serde(default, skip_serializing_if = "RawGate::is_empty")]
    pub gate: RawGate,
    /// `[[case]]`.
    #[serde(default, rename = "case")]
    pub cases: Vec<RawCase>,
}

/// `[suite]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeader {
    /// Name in reports; the file's stem when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Default agent spec of the cases, relative to the suite file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Directory of the cases' cassettes, relative to the suite file (default `cassettes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cassettes: Option<String>,
    /// Cases run at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
}

/// `[gate]`: how much worse than the baseline a report may be before it is a regression.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGate {
    /// Allowed drop of the pass rate, as a fraction (0.05 = five points).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pass_rate_drop: Option<f64>,
    /// Allowed drop of the completion rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_rate_drop: Option<f64>,
    /// Allowed rise of the error rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_error_rate_rise: Option<f64>,
    /// Allowed rise of the escalation rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_escalation_rate_rise: Option<f64>,
    /// Allowed relative rise of the average cost (0.1 = 10 %).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_avg_cost_rise: Option<f64>,
    /// Allowed relative rise of the average time; not gated when absent (time is noisy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_avg_time_rise: Option<f64>,
    /// Cases that passed in the baseline and may fail now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_newly_failing: Option<usize>,
}

/// `[[case]]`: one turn (its `input` and expectations here), or several (`[[case.turn]]`).
/// The expectation keys are written out here and in [`RawTurn`] rather than shared through
/// `#[serde(flatten)]`, which serde cannot combine with `deny_unknown_fields`: a misspelt key
/// must stay an error that names it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCase {
    /// Unique within the suite; letters, digits, `-`, `_` and `.` (it names the cassette file).
    pub name: String,
    /// The run's input, in a case of one turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    /// Agent spec of this case, relative to the suite file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The turns of a thread, in order: the first starts the run, each later one is a new user
    /// message sent once the run has answered the one before. The case then has no `input` or
    /// expectations of its own: each turn has its own.
    #[serde(default, rename = "turn", skip_serializing_if = "Vec::is_empty")]
    pub turns: Vec<RawTurn>,
    /// Expected final status (default `completed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Strings the output must contain.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output_contains: Vec<String>,
    /// A regular expression the output must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_matches: Option<String>,
    /// A JSON Schema the output, parsed as JSON, must satisfy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<serde_json::Value>,
    /// Tool calls the run must execute, in order: a name, or `{ tool, args }` where `args`
    /// holds the arguments that must have these values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trajectory: Option<Vec<RawCall>>,
    /// `exact` (the default: these calls and no others) or `in_order` (these, in this order,
    /// others allowed between).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trajectory_order: Option<String>,
    /// Most model steps allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_steps: Option<u32>,
    /// Most dollars allowed; a run whose cost is not fully known fails it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cost_usd: Option<f64>,
    /// An LLM judge of the output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<RawJudge>,
}

/// `[[case.turn]]`: a user message and what the run must show once it has answered it.
/// The keys mean what they mean in a case of one turn, of this turn alone: `status` and the
/// output are the run's when the turn ends, `trajectory`, `max_steps` and `max_cost_usd`
/// count this turn's calls, steps and cost.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTurn {
    /// The user message.
    pub input: String,
    /// Expected status once the turn ends (default `completed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Strings the turn's answer must contain.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output_contains: Vec<String>,
    /// A regular expression the turn's answer must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_matches: Option<String>,
    /// A JSON Schema the turn's answer, parsed as JSON, must satisfy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<serde_json::Value>,
    /// Tool calls the turn must execute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trajectory: Option<Vec<RawCall>>,
    /// `exact` (the default) or `in_order`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trajectory_order: Option<String>,
    /// Most model steps the turn may take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_steps: Option<u32>,
    /// Most dollars the turn may cost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cost_usd: Option<f64>,
    /// An LLM judge of the turn's answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<RawJudge>,
}

impl RawCase {
    /// The case's own input and expectations, as a turn.
    fn own_turn(&self) -> RawTurn {
        RawTurn {
            input: self.input.clone().unwrap_or_default(),
            status: self.status.clone(),
            output_contains: self.output_contains.clone(),
            output_matches: self.output_matches.clone(),
            output_schema: self.output_schema.clone(),
            trajectory: self.trajectory.clone(),
            trajectory_order: self.trajectory_order.clone(),
            max_steps: self.max_steps,
            max_cost_usd: self.max_cost_usd,
            judge: self.judge.clone(),
        }
    }

    /// The first of the case's own keys that is set, other than its name and agent (a case
    /// with turns may set none of them).
    fn own_key(&self) -> Option<&'static str> {
        [
            ("input", self.input.is_some()),
            ("status", self.status.is_some()),
            ("output_contains", !self.output_contains.is_empty()),
            ("output_matches", self.output_matches.is_some()),
            ("output_schema", self.output_schema.is_some()),
            ("trajectory", self.trajectory.is_some()),
            ("trajectory_order", self.trajectory_order.is_some()),
            ("max_steps", self.max_steps.is_some()),
            ("max_cost_usd", self.max_cost_usd.is_some()),
            ("judge", self.judge.is_some()),
        ]
        .into_iter()
        .find_map(|(key, set)| set.then_some(key))
    }
}

/// One expected tool call as written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RawCall {
    /// Just the tool's name.
    Name(String),
    /// The tool and the arguments that must have these values.
    Call {
        /// Tool name.
        tool: String,
        /// Arguments (a subset of the call's).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        args: Option<serde_json::Value>,
    },
}

/// `judge = { rubric, model }`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJudge {
    /// What a good answer does.
    pub rubric: String,
    /// `provider:model` of the judge, one of the agent spec's providers; the agent's primary
    /// model when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// Where the cases' cassettes come from and go to.
#[derive(Clone, Debug)]
pub enum Cassettes {
    /// One file per case: `DIR/CASE.json`.
    Dir(PathBuf),
    /// Cassettes held in memory by case name (built from journaled runs).
    Memory(BTreeMap<String, Cassette>),
}

impl Cassettes {
    /// Where a case's cassette file is, when cassettes are files.
    pub fn path_of(&self, case: &str) -> Option<PathBuf> {
        match self {
            Cassettes::Dir(dir) => Some(dir.join(format!("{case}.json"))),
            Cassettes::Memory(_) => None,
        }
    }
}

/// A validated suite.
#[derive(Debug)]
pub struct Suite {
    /// Name in reports.
    pub name: String,
    /// The cases' cassettes.
    pub cassettes: Cassettes,
    /// Cases run at once.
    pub concurrency: usize,
    /// What `--baseline` tolerates.
    pub gate: Gate,
    /// The cases, in file order.
    pub cases: Vec<Case>,
}

/// One case: an agent and its turns, each an input and what the run must show after it.
#[derive(Debug)]
pub struct Case {
    /// Unique name.
    pub name: String,
    /// The agent spec.
    pub agent: PathBuf,
    /// At least one: the run's input, then the user messages of a thread.
    pub turns: Vec<Turn>,
}

/// One user turn of a case.
#[derive(Debug)]
pub struct Turn {
    /// The run's input (first turn) or the user message (later turns).
    pub input: String,
    /// What is checked once the run has answered it.
    pub expect: Expectations,
}

impl Case {
    /// Whether the case is a thread of several turns, whose failures name their turn.
    pub fn is_thread(&self) -> bool {
        self.turns.len() > 1
    }
}

/// How much worse than a baseline a report may be (see [`crate::baseline`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Gate {
    /// Allowed drop of the pass rate (a fraction).
    pub max_pass_rate_drop: f64,
    /// Allowed drop of the completion rate.
    pub max_completion_rate_drop: f64,
    /// Allowed rise of the error rate.
    pub max_error_rate_rise: f64,
    /// Allowed rise of the escalation rate.
    pub max_escalation_rate_rise: f64,
    /// Allowed relative rise of the average cost.
    pub max_avg_cost_rise: f64,
    /// Allowed relative rise of the average time, if time is gated.
    pub max_avg_time_rise: Option<f64>,
    /// Cases passing in the baseline that may fail now.
    pub max_newly_failing: usize,
}

impl Default for Gate {
    fn default() -> Gate {
        Gate {
            max_pass_rate_drop: 0.0,
            max_completion_rate_drop: 0.0,
            max_error_rate_rise: 0.0,
            max_escalation_rate_rise: 0.0,
            max_avg_cost_rise: 0.10,
            max_avg_time_rise: None,
            max_newly_failing: 0,
        }
    }
}

impl Suite {
    /// Reads and validates a suite file; relative paths in it are relative to its directory.
    pub fn load(path: &Path) -> Result<Suite, Error> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            file: file.clone(),
            source,
        })?;
        let raw: RawSuite = toml::from_str(&text).map_err(|e| Error::Invalid {
            file: file.clone(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "suite".into());
        raw.validate(dir, &stem).map_err(|message| Error::Invalid {
            file: file.clone(),
            message,
        })
    }
}

impl RawSuite {
    /// Validates the suite: `dir` resolves relative paths, `default_name` names an unnamed suite.
    /// The error starts with the key at fault.
    pub fn validate(self, dir: &Path, default_name: &str) -> Result<Suite, String> {
        let name = self
            .suite
            .name
            .clone()
            .unwrap_or_else(|| default_name.to_string());
        let concurrency = self.suite.concurrency.unwrap_or(DEFAULT_CONCURRENCY);
        if concurrency == 0 {
            return Err("suite.concurrency: must be at least 1".into());
        }
        let cassettes =
            Cassettes::Dir(dir.join(self.suite.cassettes.as_deref().unwrap_or("cassettes")));
        let gate = self.gate.validate()?;
        if self.cases.is_empty() {
            return Err("the suite has no [[case]]".into());
        }
        let mut seen = BTreeSet::new();
        let mut cases = Vec::with_capacity(self.cases.len());
        for (i, raw) in self.cases.into_iter().enumerate() {
            let at = |key: &str| format!("case[{i}].{key}");
            if raw.name.is_empty()
                || !raw
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                || raw.name.starts_with('.')
            {
                return Err(format!(
                    "{}: `{}` must be letters, digits, `-`, `_` or `.` (it names the cassette file)",
                    at("name"),
                    raw.name
                ));
            }
            if !seen.insert(raw.name.clone()) {
                return Err(format!("{}: `{}` is used twice", at("name"), raw.name));
            }
            if raw.input.is_none() && raw.turns.is_empty() {
                return Err(format!(
                    "{}: missing (or give the case [[case.turn]]s, each with its input)",
                    at("input")
                ));
            }
            let agent = raw
                .agent
                .as_deref()
                .or(self.suite.agent.as_deref())
                .ok_or_else(|| {
                    format!(
                        "{}: no agent (set [suite] agent or the case's agent)",
                        at("agent")
                    )
                })?;
            let agent = dir.join(agent);
            let turns = if raw.turns.is_empty() {
                let own = raw.own_turn();
                vec![Turn {
                    expect: raw_expectations(&own, &at)?,
                    input: own.input,
                }]
            } else {
                if let Some(key) = raw.own_key() {
                    return Err(format!(
                        "{}: a case with [[case.turn]] sets its input and expectations in each turn",
                        at(key)
                    ));
                }
                raw.turns
                    .iter()
                    .enumerate()
                    .map(|(t, turn)| {
                        let at = |key: &str| format!("case[{i}].turn[{t}].{key}");
                        Ok(Turn {
                            expect: raw_expectations(turn, &at)?,
                            input: turn.input.clone(),
                        })
                    })
                    .collect::<Result<Vec<_>, String>>()?
            };
            cases.push(Case {
                name: raw.name,
                agent,
                turns,
            });
        }
        Ok(Suite {
            name,
            cassettes,
            concurrency,
            gate,
            cases,
        })
    }
}

impl RawGate {
    /// Whether nothing is set (the defaults apply).
    pub fn is_empty(&self) -> bool {
        *self == RawGate::default()
    }

    fn validate(&self) -> Result<Gate, String> {
        let defaults = Gate::default();
        let fraction = |value: Option<f64>, default: f64, key: &str| match value {
            None => Ok(default),
            Some(v) if v.is_finite() && v >= 0.0 => Ok(v),
            Some(v) => Err(format!("gate.{key}: must be a number ≥ 0, got {v}")),
        };
        Ok(Gate {
            max_pass_rate_drop: fraction(
                self.max_pass_rate_drop,
                defaults.max_pass_rate_drop,
                "max_pass_rate_drop",
            )?,
            max_completion_rate_drop: fraction(
                self.max_completion_rate_drop,
                defaults.max_completion_rate_drop,
                "max_completion_rate_drop",
            )?,
            max_error_rate_rise: fraction(
                self.max_error_rate_rise,
                defaults.max_error_rate_rise,
                "max_error_rate_rise",
            )?,
            max_escalation_rate_rise: fraction(
                self.max_escalation_rate_rise,
                defaults.max_escalation_rate_rise,
                "max_escalation_rate_rise",
            )?,
            max_avg_cost_rise: fraction(
                self.max_avg_cost_rise,
                defaults.max_avg_cost_rise,
                "max_avg_cost_rise",
            )?,
            max_avg_time_rise: match self.max_avg_time_rise {
                None => None,
                Some(v) => Some(fraction(Some(v), 0.0, "max_avg_time_rise")?),
            },
            max_newly_failing: self.max_newly_failing.unwrap_or(defaults.max_newly_failing),
        })
    }
}

fn raw_expectations(raw: &RawTurn, at: &dyn Fn(&str) -> String) -> Result<Expectations, String> {
    let status = match &raw.status {
        None => RunStatus::Completed,
        Some(text) => RunStatus::parse(text).ok_or_else(|| {
            format!(
                "{}: unknown status `{text}` (use completed, failed, waiting, paused or running)",
                at("status")
            )
        })?,
    };
    let output_matches = raw
        .output_matches
        .as_deref()
        .map(|pattern| {
            regex::Regex::new(pattern)
                .map_err(|e| format!("{}: not a regular expression: {e}", at("output_matches")))
        })
        .transpose()?;
    let output_schema = raw
        .output_schema
        .as_ref()
        .map(|schema| {
            jsonschema::validator_for(schema)
                .map(|validator| (schema.clone(), validator))
                .map_err(|e| format!("{}: not a valid JSON Schema: {e}", at("output_schema")))
        })
        .transpose()?;
    let trajectory = raw
        .trajectory
        .as_ref()
        .map(|calls| {
            calls
                .iter()
                .enumerate()
                .map(|(j, call)| match call {
                    RawCall::Name(tool) => Ok(ExpectedCall {
                        tool: tool.clone(),
                        args: None,
                    }),
                    RawCall::Call { tool, args } => match args {
                        None | Some(serde_json::Value::Object(_)) => Ok(ExpectedCall {
                            tool: tool.clone(),
                            args: args.clone(),
                        }),
                        Some(other) => Err(format!(
                            "{}: args must be a table, got {other}",
                            at(&format!("trajectory[{j}]"))
                        )),
                    },
                })
                .collect::<Result<Vec<_>, String>>()
        })
        .transpose()?;
    let order = match raw.trajectory_order.as_deref() {
        None | Some("exact") => Order::Exact,
        Some("in_order") => Order::InOrder,
        Some(other) => {
            return Err(format!(
                "{}: unknown order `{other}` (use exact or in_order)",
                at("trajectory_order")
            ));
        }
    };
    if let Some(cost) = raw.max_cost_usd
        && !(cost.is_finite() && cost >= 0.0)
    {
        return Err(format!(
            "{}: must be a number ≥ 0, got {cost}",
            at("max_cost_usd")
        ));
    }
    let judge = match &raw.judge {
        None => None,
        Some(judge) => {
            if judge.rubric.trim().is_empty() {
                return Err(format!("{}: must not be empty", at("judge.rubric")));
            }
            if let Some(model) = &judge.model
                && !model
                    .split_once(':')
                    .is_some_and(|(p, m)| !p.is_empty() && !m.is_empty())
            {
                return Err(format!(
                    "{}: `{model}` is not PROVIDER:MODEL",
                    at("judge.model")
                ));
            }
            Some(Judge {
                rubric: judge.rubric.clone(),
                model: judge.model.clone(),
            })
        }
    };
    Ok(Expectations {
        status,
        output_contains: raw.output_contains.clone(),
        output_matches,
        output_schema,
        trajectory,
        order,
        max_steps: raw.max_steps,
        max_cost_usd: raw.max_cost_usd,
        judge,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Suite, String> {
        let raw: RawSuite = toml::from_str(text).map_err(|e| e.to_string())?;
        raw.validate(Path::new("/suites"), "demo")
    }

    #[test]
    fn a_full_case_parses() {
        let suite = parse(
            r#"
            [suite]
            agent = "agent.toml"
            [gate]
            max_pass_rate_drop = 0.1
            [[case]]
            name = "summary"
            input = "hi"
            status = "failed"
            output_contains = ["a"]
            output_matches = "^a+$"
            output_schema = { type = "object" }
            trajectory = ["list_dir", { tool = "read_file", args = { path = "x" } }]
            trajectory_order = "in_order"
            max_steps = 3
            max_cost_usd = 0.5
            judge = { rubric = "good", model = "mock:judge" }
            "#,
        )
        .unwrap();
        assert_eq!(suite.name, "demo");
        assert_eq!(suite.gate.max_pass_rate_drop, 0.1);
        let case = &suite.cases[0];
        assert_eq!(case.agent, Path::new("/suites/agent.toml"));
        assert!(!case.is_thread());
        let expect = &case.turns[0].expect;
        assert_eq!(case.turns[0].input, "hi");
        assert_eq!(expect.status, RunStatus::Failed);
        assert_eq!(expect.order, Order::InOrder);
        let trajectory = expect.trajectory.as_ref().unwrap();
        assert_eq!(trajectory[0].tool, "list_dir");
        assert_eq!(trajectory[1].args, Some(serde_json::json!({ "path": "x" })));
        assert!(matches!(
            suite.cassettes.path_of("summary"),
            Some(p) if p == Path::new("/suites/cassettes/summary.json")
        ));
    }

    #[test]
    fn errors_name_the_key() {
        let case = |extra: &str| {
            parse(&format!(
                "[suite]\nagent = \"a.toml\"\n[[case]]\nname = \"c\"\ninput = \"i\"\n{extra}\n"
            ))
            .unwrap_err()
        };
        assert!(case("status = \"done\"").starts_with("case[0].status: unknown status `done`"));
        assert!(case("output_matches = \"(\"").starts_with("case[0].output_matches:"));
        assert!(case("output_schema = { type = 5 }").starts_with("case[0].output_schema:"));
        assert!(case("trajectory_order = \"any\"").starts_with("case[0].trajectory_order:"));
        assert!(
            case("judge = { rubric = \"r\", model = \"x\" }").starts_with("case[0].judge.model:")
        );
        assert!(case("max_cost_usd = -1.0").starts_with("case[0].max_cost_usd:"));
        assert!(case("colour = 1").contains("unknown field `colour`"));
        let twice = parse(
            "[suite]\nagent = \"a\"\n[[case]]\nname = \"c\"\ninput = \"\"\n[[case]]\nname = \"c\"\ninput = \"\"\n",
        )
        .unwrap_err();
        assert_eq!(twice, "case[1].name: `c` is used twice");
        let no_agent = parse("[[case]]\nname = \"c\"\ninput = \"\"\n").unwrap_err();
        assert!(
            no_agent.starts_with("case[0].agent: no agent"),
            "{no_agent}"
        );
        let bad_name =
            parse("[suite]\nagent = \"a\"\n[[case]]\nname = \"../x\"\ninput = \"\"\n").unwrap_err();
        assert!(
            bad_name.starts_with("case[0].name: `../x` must be"),
            "{bad_name}"
        );
    }

    #[test]
    fn a_case_of_several_turns_parses_each_with_its_expectations() {
        let suite = parse(
            r#"
            [suite]
            agent = "agent.toml"
            [[case]]
            name = "thread"
            [[case.turn]]
            input = "first"
            output_contains = ["a"]
            [[case.turn]]
            input = "second"
            trajectory = []
            max_steps = 1
            "#,
        )
        .unwrap();
        let case = &suite.cases[0];
        assert!(case.is_thread());
        let inputs: Vec<&str> = case.turns.iter().map(|t| t.input.as_str()).collect();
        assert_eq!(inputs, ["first", "second"]);
        assert_eq!(case.turns[0].expect.output_contains, ["a"]);
        assert_eq!(case.turns[1].expect.trajectory, Some(Vec::new()));
        assert_eq!(case.turns[1].expect.max_steps, Some(1));
    }

    #[test]
    fn errors_in_turns_name_the_turn_and_the_key() {
        let case = |body: &str| {
            parse(&format!(
                "[suite]\nagent = \"a.toml\"\n[[case]]\nname = \"c\"\n{body}\n"
            ))
            .unwrap_err()
        };
        let bad =
            case("[[case.turn]]\ninput = \"1\"\n[[case.turn]]\ninput = \"2\"\nstatus = \"done\"");
        assert!(
            bad.starts_with("case[0].turn[1].status: unknown status `done`"),
            "{bad}"
        );
        let mixed = case("output_contains = [\"x\"]\n[[case.turn]]\ninput = \"1\"");
        assert!(
            mixed.starts_with("case[0].output_contains: a case with [[case.turn]]"),
            "{mixed}"
        );
        let both = case("input = \"i\"\n[[case.turn]]\ninput = \"1\"");
        assert!(
            both.starts_with("case[0].input: a case with [[case.turn]]"),
            "{both}"
        );
        let none = case("");
        assert!(none.starts_with("case[0].input: missing"), "{none}");
        let no_input = case("[[case.turn]]\noutput_contains = [\"x\"]");
        assert!(no_input.contains("missing field `input`"), "{no_input}");
        let unknown = case("[[case.turn]]\ninput = \"1\"\ncolour = 1");
        assert!(unknown.contains("unknown field `colour`"), "{unknown}");
    }

    #[test]
    fn a_raw_suite_round_trips_through_toml() {
        let raw = RawSuite {
            suite: RawHeader {
                name: Some("runs".into()),
                ..RawHeader::default()
            },
            gate: RawGate::default(),
            cases: vec![RawCase {
                name: "run_1".into(),
                input: Some("hi".into()),
                agent: Some("/a/agent.toml".into()),
                trajectory: Some(vec![RawCall::Call {
                    tool: "read_file".into(),
                    args: Some(serde_json::json!({ "path": "x", "n": 2 })),
                }]),
                max_steps: Some(3),
                ..RawCase::default()
            }],
        };
        let text = toml::to_string(&raw).unwrap();
        let back: RawSuite = toml::from_str(&text).unwrap();
        assert_eq!(back, raw, "{text}");
    }
}
