//! Expectations and how a run is checked against them: pure, from the run's journal alone.

use chassis_core::state::FoldError;
use chassis_core::{Event, RunState, RunStatus};
use serde::{Deserialize, Serialize};

/// What a case's run must show. Every expectation set is checked; each failure has a reason.
#[derive(Debug)]
pub struct Expectations {
    /// The final status.
    pub status: RunStatus,
    /// Strings the output contains.
    pub output_contains: Vec<String>,
    /// A regular expression the output matches.
    pub output_matches: Option<regex::Regex>,
    /// A JSON Schema the output, parsed as JSON, satisfies (the schema and its validator).
    pub output_schema: Option<(serde_json::Value, jsonschema::Validator)>,
    /// The tool calls executed.
    pub trajectory: Option<Vec<ExpectedCall>>,
    /// How [`Expectations::trajectory`] is compared.
    pub order: Order,
    /// Most model steps.
    pub max_steps: Option<u32>,
    /// Most dollars.
    pub max_cost_usd: Option<f64>,
    /// An LLM judge of the output (checked by the runner: it calls a model).
    pub judge: Option<Judge>,
}

/// One expected tool call.
#[derive(Clone, Debug, PartialEq)]
pub struct ExpectedCall {
    /// Tool name.
    pub tool: String,
    /// Arguments that must have these values (others may be present).
    pub args: Option<serde_json::Value>,
}

/// How a trajectory is compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// The run executed exactly these calls, in this order.
    Exact,
    /// The run executed these calls in this order; others may come between.
    InOrder,
}

/// An LLM judge: a model asked whether the output meets a rubric.
#[derive(Clone, Debug, PartialEq)]
pub struct Judge {
    /// What a good answer does.
    pub rubric: String,
    /// `provider:model`; the agent's primary model when `None`.
    pub model: Option<String>,
}

/// One expectation a run did not meet.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// The expectation's key (`status`, `output_contains`, `trajectory`, …).
    pub expectation: String,
    /// What the run did instead.
    pub reason: String,
    /// In a case of several turns, the turn that missed it (from 1); `None` in a single-turn
    /// case, whose reports read as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn: Option<usize>,
}

impl Failure {
    /// The expectation `expectation` (its key), missed for `reason`.
    pub fn new(expectation: &str, reason: String) -> Failure {
        Failure {
            expectation: expectation.to_string(),
            reason,
            turn: None,
        }
    }

    /// This failure, as missed by turn `turn` (from 1) of a case of several turns.
    pub fn in_turn(self, turn: usize) -> Failure {
        Failure {
            turn: Some(turn),
            ..self
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(turn) = self.turn {
            write!(f, "turn {turn}: ")?;
        }
        write!(f, "{}: {}", self.expectation, self.reason)
    }
}

/// What a run showed, read from its journal.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunFacts {
    /// Final status.
    pub status: RunStatus,
    /// The answer, if it completed.
    pub output: Option<String>,
    /// Why it failed or waits.
    pub reason: Option<String>,
    /// Model steps answered.
    pub steps: u32,
    /// Dollars spent on calls of known price.
    pub cost_usd: f64,
    /// Calls of unknown price (the cost is then a lower bound).
    pub unpriced_calls: u32,
    /// Tool calls executed (`tool_started`), in order: name and arguments.
    pub calls: Vec<(String, serde_json::Value)>,
    /// Whether the run ever waited for a human (a limit escalation or an approval).
    pub escalated: bool,
    /// The agent version the run started with.
    pub version: String,
}

impl RunFacts {
    /// Folds a run's journal.
    pub fn from_events<'a>(
        events: impl IntoIterator<Item = &'a Event>,
    ) -> Result<RunFacts, FoldError> {
        RunFacts::since(events, 0)
    }

    /// Folds a run's journal, counting only what happened from its `from`-th event (from 0)
    /// on: a thread's turn, whose steps, cost, tool calls and escalations are its own while its
    /// status and output are the run's at the end of the journal given.
    pub fn since<'a>(
        events: impl IntoIterator<Item = &'a Event>,
        from: usize,
    ) -> Result<RunFacts, FoldError> {
        let mut state = RunState::default();
        let mut calls = Vec::new();
        let mut escalated = false;
        // The run's totals just before `from`, subtracted at the end.
        let mut before = (0, 0.0, 0);
        for (index, event) in events.into_iter().enumerate() {
            if index == from {
                before = (state.steps(), state.cost_usd(), state.unpriced_calls);
            }
            state.apply(event)?;
            if index < from {
                continue;
            }
            if let Event::ToolStarted { name, args, .. } = event {
                calls.push((name.clone(), args.clone()));
            }
            // By kind, so approval events added to the journal count without a change here.
            escalated |= matches!(
                event.kind(),
                "run_waiting" | "approval_requested" | "approval_escalated"
            );
        }
        let reason = match state.status() {
            RunStatus::Failed => state.error.clone(),
            RunStatus::Waiting | RunStatus::Paused => state.waiting_reason.clone(),
            _ => None,
        };
        Ok(RunFacts {
            status: state.status(),
            output: state.output.clone(),
            reason,
            steps: state.steps().saturating_sub(before.0),
            cost_usd: (state.cost_usd() - before.1).max(0.0),
            unpriced_calls: state.unpriced_calls.saturating_sub(before.2),
            calls,
            escalated,
            version: state.version,
        })
    }
}

impl Expectations {
    /// Every expectation (but the judge) the run did not meet, in a fixed order.
    pub fn check(&self, run: &RunFacts) -> Vec<Failure> {
        let mut failures = Vec::new();
        if run.status != self.status {
            let why = run
                .reason
                .as_deref()
                .map(|r| format!(" ({})", clip(r, 200)))
                .unwrap_or_default();
            failures.push(Failure::new(
                "status",
                format!("expected {}, got {}{why}", self.status, run.status),
            ));
        }
        let output = run.output.as_deref().unwrap_or("");
        let wants_output = !self.output_contains.is_empty()
            || self.output_matches.is_some()
            || self.output_schema.is_some();
        if wants_output && run.output.is_none() {
            failures.push(Failure::new(
                "output",
                format!("the run has no output (it is {})", run.status),
            ));
        } else {
            for needle in &self.output_contains {
                if !output.contains(needle.as_str()) {
                    failures.push(Failure::new(
                        "output_contains",
                        format!(
                            "output does not contain {needle:?}: {:?}",
                            clip(output, 160)
                        ),
                    ));
                }
            }
            if let Some(re) = &self.output_matches
                && !re.is_match(output)
            {
                failures.push(Failure::new(
                    "output_matches",
                    format!("output does not match /{re}/: {:?}", clip(output, 160)),
                ));
            }
            if let Some((_, validator)) = &self.output_schema {
                match serde_json::from_str::<serde_json::Value>(output.trim()) {
                    Err(e) => failures.push(Failure::new(
                        "output_schema",
                        format!("output is not JSON ({e}): {:?}", clip(output, 160)),
                    )),
                    Ok(value) => {
                        let errors: Vec<String> = validator
                            .iter_errors(&value)
                            .take(3)
                            .map(|e| {
                                let at = e.instance_path().to_string();
                                if at.is_empty() {
                                    e.to_string()
                                } else {
                                    format!("at {at}: {e}")
                                }
                            })
                            .collect();
                        if !errors.is_empty() {
                            failures.push(Failure::new(
                                "output_schema",
                                format!(
                                    "output does not satisfy the schema: {}",
                                    errors.join("; ")
                                ),
                            ));
                        }
                    }
                }
            }
        }
        if let Some(expected) = &self.trajectory
            && let Some(reason) = trajectory_mismatch(expected, self.order, &run.calls)
        {
            failures.push(Failure::new("trajectory", reason));
        }
        if let Some(max) = self.max_steps
            && run.steps > max
        {
            failures.push(Failure::new(
                "max_steps",
                format!("took {} steps, at most {max} allowed", run.steps),
            ));
        }
        if let Some(max) = self.max_cost_usd {
            if run.cost_usd > max {
                failures.push(Failure::new(
                    "max_cost_usd",
                    format!("cost ${:.4}, at most ${max:.4} allowed", run.cost_usd),
                ));
            } else if run.unpriced_calls > 0 {
                failures.push(Failure::new(
                    "max_cost_usd",
                    format!(
                        "cost unknown: {} call(s) to a model without a price (add it under [pricing])",
                        run.unpriced_calls
                    ),
                ));
            }
        }
        failures
    }
}

/// Why the executed calls do not fit the expected trajectory, if they do not.
fn trajectory_mismatch(
    expected: &[ExpectedCall],
    order: Order,
    actual: &[(String, serde_json::Value)],
) -> Option<String> {
    let fits = |want: &ExpectedCall, (name, args): &(String, serde_json::Value)| {
        want.tool == *name && want.args.as_ref().is_none_or(|w| subset(w, args))
    };
    let shown = || {
        let names: Vec<&str> = actual.iter().map(|(n, _)| n.as_str()).collect();
        format!("[{}]", names.join(", "))
    };
    let wanted = || {
        let names: Vec<&str> = expected.iter().map(|c| c.tool.as_str()).collect();
        format!("[{}]", names.join(", "))
    };
    match order {
        Order::Exact => {
            for (i, want) in expected.iter().enumerate() {
                match actual.get(i) {
                    None => {
                        return Some(format!(
                            "expected {} call(s) {}, the run made {} {}",
                            expected.len(),
                            wanted(),
                            actual.len(),
                            shown()
                        ));
                    }
                    Some(call) if !fits(want, call) => {
                        return Some(if want.tool != call.0 {
                            format!(
                                "call {} is {}, expected {} (expected {}, got {})",
                                i + 1,
                                call.0,
                                want.tool,
                                wanted(),
                                shown()
                            )
                        } else {
                            format!(
                                "call {} ({}) has arguments {}, expected {}",
                                i + 1,
                                call.0,
                                call.1,
                                want.args.clone().unwrap_or_default()
                            )
                        });
                    }
                    Some(_) => {}
                }
            }
            (actual.len() > expected.len()).then(|| {
                format!(
                    "expected {} call(s) {}, the run made {} {}",
                    expected.len(),
                    wanted(),
                    actual.len(),
                    shown()
                )
            })
        }
        Order::InOrder => {
            let mut rest = actual.iter();
            for (i, want) in expected.iter().enumerate() {
                if !rest.any(|call| fits(want, call)) {
                    let args = want
                        .args
                        .as_ref()
                        .map(|a| format!(" with arguments {a}"))
                        .unwrap_or_default();
                    return Some(format!(
                        "expected call {} ({}{args}) in order, not found after the earlier ones; the run made {}",
                        i + 1,
                        want.tool,
                        shown()
                    ));
                }
            }
            None
        }
    }
}

/// Whether every key of `want` is in `have` with the same value (objects compared this way
/// recursively; everything else must be equal).
fn subset(want: &serde_json::Value, have: &serde_json::Value) -> bool {
    match (want, have) {
        (serde_json::Value::Object(want), serde_json::Value::Object(have)) => want
            .iter()
            .all(|(key, value)| have.get(key).is_some_and(|h| subset(value, h))),
        _ => want == have,
    }
}

/// At most `max` characters of `text`, with `…` when cut.
pub(crate) fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((at, _)) => format!("{}…", &text[..at]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn expect() -> Expectations {
        Expectations {
            status: RunStatus::Completed,
            output_contains: Vec::new(),
            output_matches: None,
            output_schema: None,
            trajectory: None,
            order: Order::Exact,
            max_steps: None,
            max_cost_usd: None,
            judge: None,
        }
    }

    fn run(output: &str) -> RunFacts {
        RunFacts {
            status: RunStatus::Completed,
            output: Some(output.into()),
            steps: 3,
            calls: vec![
                ("list_dir".into(), json!({ "path": "." })),
                ("read_file".into(), json!({ "path": "a.md", "max": 10 })),
            ],
            ..RunFacts::default()
        }
    }

    fn call(tool: &str, args: Option<serde_json::Value>) -> ExpectedCall {
        ExpectedCall {
            tool: tool.into(),
            args,
        }
    }

    fn reasons(expect: &Expectations, run: &RunFacts) -> Vec<String> {
        expect.check(run).iter().map(|f| f.to_string()).collect()
    }

    #[test]
    fn a_run_meeting_everything_has_no_failures() {
        let expect = Expectations {
            output_contains: vec!["replica".into()],
            output_matches: Some(regex::Regex::new(r"\d{2}:\d{2}").unwrap()),
            trajectory: Some(vec![
                call("list_dir", None),
                call("read_file", Some(json!({ "path": "a.md" }))),
            ]),
            max_steps: Some(3),
            ..expect()
        };
        assert_eq!(
            reasons(&expect, &run("replica lag at 02:14")),
            Vec::<String>::new()
        );
    }

    #[test]
    fn status_failures_say_why_the_run_ended() {
        let failed = RunFacts {
            status: RunStatus::Failed,
            output: None,
            reason: Some("limit max_steps reached".into()),
            ..RunFacts::default()
        };
        let expect = Expectations {
            output_contains: vec!["x".into()],
            ..expect()
        };
        assert_eq!(
            reasons(&expect, &failed),
            vec![
                "status: expected completed, got failed (limit max_steps reached)",
                "output: the run has no output (it is failed)",
            ]
        );
    }

    #[test]
    fn output_expectations_name_what_is_missing() {
        let expect = Expectations {
            output_contains: vec!["replica".into(), "primary".into()],
            output_matches: Some(regex::Regex::new("^OK").unwrap()),
            ..expect()
        };
        let got = reasons(&expect, &run("the replica lagged"));
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].starts_with("output_contains: output does not contain \"primary\""));
        assert!(got[1].starts_with("output_matches: output does not match /^OK/"));
    }

    #[test]
    fn the_output_schema_is_checked_on_parsed_json() {
        let schema = json!({
            "type": "object",
            "properties": { "severity": { "type": "integer" } },
            "required": ["severity"]
        });
        let expect = Expectations {
            output_schema: Some((schema.clone(), jsonschema::validator_for(&schema).unwrap())),
            ..expect()
        };
        assert!(reasons(&expect, &run("{\"severity\": 2}")).is_empty());
        let not_json = reasons(&expect, &run("severity two"));
        assert!(
            not_json[0].starts_with("output_schema: output is not JSON"),
            "{not_json:?}"
        );
        let wrong = reasons(&expect, &run("{\"severity\": \"high\"}"));
        assert!(
            wrong[0].starts_with("output_schema: output does not satisfy the schema: at /severity"),
            "{wrong:?}"
        );
    }

    #[test]
    fn trajectories_compare_names_order_and_arguments() {
        let exact = |calls: Vec<ExpectedCall>| Expectations {
            trajectory: Some(calls),
            ..expect()
        };
        let got = reasons(&exact(vec![call("read_file", None)]), &run(""));
        assert_eq!(
            got,
            vec![
                "trajectory: call 1 is list_dir, expected read_file (expected [read_file], got [list_dir, read_file])"
            ]
        );
        let got = reasons(
            &exact(vec![
                call("list_dir", None),
                call("read_file", Some(json!({ "path": "b.md" }))),
            ]),
            &run(""),
        );
        assert_eq!(
            got,
            vec![
                "trajectory: call 2 (read_file) has arguments {\"max\":10,\"path\":\"a.md\"}, expected {\"path\":\"b.md\"}"
            ]
        );
        let got = reasons(&exact(vec![call("list_dir", None)]), &run(""));
        assert_eq!(
            got,
            vec!["trajectory: expected 1 call(s) [list_dir], the run made 2 [list_dir, read_file]"]
        );
        let in_order = Expectations {
            trajectory: Some(vec![call("read_file", None)]),
            order: Order::InOrder,
            ..expect()
        };
        assert!(reasons(&in_order, &run("")).is_empty());
        let wrong_order = Expectations {
            trajectory: Some(vec![call("read_file", None), call("list_dir", None)]),
            order: Order::InOrder,
            ..expect()
        };
        let got = reasons(&wrong_order, &run(""));
        assert!(
            got[0].starts_with("trajectory: expected call 2 (list_dir) in order"),
            "{got:?}"
        );
    }

    #[test]
    fn steps_and_cost_are_bounded() {
        let expect = Expectations {
            max_steps: Some(2),
            max_cost_usd: Some(0.01),
            ..expect()
        };
        let mut facts = run("");
        facts.cost_usd = 0.02;
        assert_eq!(
            reasons(&expect, &facts),
            vec![
                "max_steps: took 3 steps, at most 2 allowed",
                "max_cost_usd: cost $0.0200, at most $0.0100 allowed",
            ]
        );
        facts.cost_usd = 0.0;
        facts.unpriced_calls = 2;
        let got = reasons(&expect, &facts);
        assert!(
            got[1].starts_with("max_cost_usd: cost unknown: 2 call(s)"),
            "{got:?}"
        );
    }
}
