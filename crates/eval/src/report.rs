//! The report of a suite run: each case with its reasons, the suite's metrics, and three
//! renderings (a terminal table, JSON, JUnit XML). A saved JSON report is also a baseline.

use serde::{Deserialize, Serialize};

use crate::expect::Failure;

/// Version of the report's JSON shape, stored as `"report"`.
pub const FORMAT: u32 = 1;

/// How the models were reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Real calls to the providers.
    Live,
    /// Real calls, every exchange written to the case's cassette.
    Record,
    /// No network: every call answered from the case's cassette.
    Replay,
}

impl Mode {
    /// The spelling in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Live => "live",
            Mode::Record => "record",
            Mode::Replay => "replay",
        }
    }
}

/// A suite run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Format of this document.
    pub report: u32,
    /// The suite's name.
    pub suite: String,
    /// How the models were reached.
    pub mode: Mode,
    /// When the suite started, ms since the epoch.
    pub started_at_ms: u64,
    /// Agent versions the runs started with (fingerprints), sorted.
    pub versions: Vec<String>,
    /// The cases, in suite order.
    pub cases: Vec<CaseReport>,
    /// The suite's numbers.
    pub metrics: Metrics,
}

/// One case's result.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CaseReport {
    /// The case.
    pub name: String,
    /// Whether the run met every expectation.
    pub passed: bool,
    /// The run, when one was started: the link between the report and the journal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// The run's final status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Agent version the run started with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Expectations not met.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<Failure>,
    /// Why the case could not be run or judged (the agent did not load, a cassette is missing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Model steps.
    pub steps: u32,
    /// Dollars spent on calls of known price.
    pub cost_usd: f64,
    /// Calls of unknown price.
    #[serde(default)]
    pub unpriced_calls: u32,
    /// Wall time of the run, ms.
    pub time_ms: u64,
    /// Tools executed, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<String>,
    /// Whether the run waited for a human.
    #[serde(default)]
    pub escalated: bool,
    /// The run's answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
}

/// A suite's numbers; rates are fractions of all cases.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Cases run.
    pub cases: usize,
    /// Cases that met every expectation.
    pub passed: usize,
    /// Cases whose run missed an expectation.
    pub failed: usize,
    /// Cases that could not be run.
    pub errors: usize,
    /// `passed / cases`.
    pub pass_rate: f64,
    /// Runs that completed, over cases.
    pub completion_rate: f64,
    /// Runs that failed, and cases that could not run, over cases.
    pub error_rate: f64,
    /// Runs that waited for a human, over cases.
    pub escalation_rate: f64,
    /// Mean dollars per run (runs with calls of unknown price count what is known).
    pub avg_cost_usd: f64,
    /// Calls of unknown price over all runs.
    pub unpriced_calls: u32,
    /// Mean wall time per run, ms.
    pub avg_time_ms: f64,
    /// Mean model steps per run.
    pub avg_steps: f64,
}

impl Metrics {
    /// The numbers of `cases`.
    pub fn of(cases: &[CaseReport]) -> Metrics {
        let n = cases.len();
        let rate = |count: usize| if n == 0 { 0.0 } else { count as f64 / n as f64 };
        let ran: Vec<&CaseReport> = cases.iter().filter(|c| c.run_id.is_some()).collect();
        let mean = |f: &dyn Fn(&CaseReport) -> f64| {
            if ran.is_empty() {
                0.0
            } else {
                ran.iter().map(|c| f(c)).sum::<f64>() / ran.len() as f64
            }
        };
        let errors = cases.iter().filter(|c| c.error.is_some()).count();
        let passed = cases.iter().filter(|c| c.passed).count();
        let status = |s: &str| {
            cases
                .iter()
                .filter(|c| c.status.as_deref() == Some(s))
                .count()
        };
        Metrics {
            cases: n,
            passed,
            failed: n - passed - errors,
            errors,
            pass_rate: rate(passed),
            completion_rate: rate(status("completed")),
            error_rate: rate(
                status("failed") + cases.iter().filter(|c| c.run_id.is_none()).count(),
            ),
            escalation_rate: rate(cases.iter().filter(|c| c.escalated).count()),
            avg_cost_usd: mean(&|c| c.cost_usd),
            unpriced_calls: cases.iter().map(|c| c.unpriced_calls).sum(),
            avg_time_ms: mean(&|c| c.time_ms as f64),
            avg_steps: mean(&|c| f64::from(c.steps)),
        }
    }
}

impl Report {
    /// A report of `cases`, with its metrics and versions.
    pub fn new(suite: &str, mode: Mode, started_at_ms: u64, cases: Vec<CaseReport>) -> Report {
        let mut versions: Vec<String> = cases.iter().filter_map(|c| c.version.clone()).collect();
        versions.sort();
        versions.dedup();
        Report {
            report: FORMAT,
            suite: suite.to_string(),
            mode,
            started_at_ms,
            versions,
            metrics: Metrics::of(&cases),
            cases,
        }
    }

    /// Whether every case passed.
    pub fn all_passed(&self) -> bool {
        self.cases.iter().all(|c| c.passed)
    }

    /// Parses a report saved as JSON (a baseline).
    pub fn from_json(text: &str) -> Result<Report, String> {
        let report: Report =
            serde_json::from_str(text).map_err(|e| format!("not a chassis eval report: {e}"))?;
        if report.report != FORMAT {
            return Err(format!(
                "report format {} is not supported (this chassis writes format {FORMAT})",
                report.report
            ));
        }
        Ok(report)
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }

    /// The terminal table: one row per case, its reasons under it, then the metrics.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let width = self
            .cases
            .iter()
            .map(|c| c.name.chars().count())
            .max()
            .unwrap_or(4)
            .clamp(4, 40);
        out.push_str(&format!(
            "{:<width$}  {:<6}  {:<10}  {:>5}  {:>10}  {:>8}  RUN\n",
            "CASE", "RESULT", "STATUS", "STEPS", "COST", "TIME"
        ));
        for case in &self.cases {
            let result = match (&case.error, case.passed) {
                (Some(_), _) => "ERROR",
                (None, true) => "pass",
                (None, false) => "FAIL",
            };
            out.push_str(&format!(
                "{:<width$}  {:<6}  {:<10}  {:>5}  {:>10}  {:>8}  {}\n",
                case.name,
                result,
                case.status.as_deref().unwrap_or("-"),
                case.steps,
                cost(case.cost_usd, case.unpriced_calls),
                format!("{:.2}s", case.time_ms as f64 / 1000.0),
                case.run_id.as_deref().unwrap_or("-"),
            ));
            if let Some(error) = &case.error {
                out.push_str(&indent(&format!("error: {error}")));
            }
            for failure in &case.failures {
                out.push_str(&indent(&failure.to_string()));
            }
        }
        let m = &self.metrics;
        out.push_str(&format!(
            "\nsuite {} ({}): {}/{} passed, {} failed, {} error(s)\n",
            self.suite,
            self.mode.as_str(),
            m.passed,
            m.cases,
            m.failed,
            m.errors
        ));
        out.push_str(&format!(
            "completion {},  errors {},  escalations {},  avg cost {},  avg time {:.2}s,  avg steps {:.1}\n",
            percent(m.completion_rate),
            percent(m.error_rate),
            percent(m.escalation_rate),
            cost(m.avg_cost_usd, m.unpriced_calls),
            m.avg_time_ms / 1000.0,
            m.avg_steps
        ));
        if !self.versions.is_empty() {
            out.push_str(&format!("agent version {}\n", self.versions.join(", ")));
        }
        out
    }

    /// The report as JUnit XML: one `testsuite`, a `testcase` per case, a `failure` per case
    /// that missed an expectation and an `error` per case that could not run.
    pub fn junit(&self) -> String {
        let m = &self.metrics;
        let seconds = |ms: f64| format!("{:.3}", ms / 1000.0);
        let total_ms: u64 = self.cases.iter().map(|c| c.time_ms).sum();
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        out.push_str(&format!(
            "<testsuites name=\"chassis eval\" tests=\"{}\" failures=\"{}\" errors=\"{}\" time=\"{}\">\n",
            m.cases,
            m.failed,
            m.errors,
            seconds(total_ms as f64)
        ));
        out.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"0\" time=\"{}\">\n",
            xml(&self.suite),
            m.cases,
            m.failed,
            m.errors,
            seconds(total_ms as f64)
        ));
        out.push_str("    <properties>\n");
        let properties = [
            ("mode", self.mode.as_str().to_string()),
            ("versions", self.versions.join(",")),
            ("pass_rate", format!("{:.4}", m.pass_rate)),
            ("completion_rate", format!("{:.4}", m.completion_rate)),
            ("error_rate", format!("{:.4}", m.error_rate)),
            ("escalation_rate", format!("{:.4}", m.escalation_rate)),
            ("avg_cost_usd", format!("{:.6}", m.avg_cost_usd)),
            ("avg_time_ms", format!("{:.1}", m.avg_time_ms)),
        ];
        for (name, value) in properties {
            out.push_str(&format!(
                "      <property name=\"{name}\" value=\"{}\"/>\n",
                xml(&value)
            ));
        }
        out.push_str("    </properties>\n");
        for case in &self.cases {
            out.push_str(&format!(
                "    <testcase name=\"{}\" classname=\"{}\" time=\"{}\">\n",
                xml(&case.name),
                xml(&self.suite),
                seconds(case.time_ms as f64)
            ));
            if let Some(error) = &case.error {
                out.push_str(&format!(
                    "      <error message=\"{}\" type=\"error\">{}</error>\n",
                    xml(first_line(error)),
                    xml_text(error)
                ));
            } else if !case.passed {
                let reasons: Vec<String> = case.failures.iter().map(|f| f.to_string()).collect();
                out.push_str(&format!(
                    "      <failure message=\"{}\" type=\"{}\">{}</failure>\n",
                    xml(first_line(reasons.first().map_or("failed", String::as_str))),
                    xml(case
                        .failures
                        .first()
                        .map_or("expectation", |f| f.expectation.as_str())),
                    xml_text(&reasons.join("\n"))
                ));
            }
            let mut out_lines = Vec::new();
            if let Some(run_id) = &case.run_id {
                out_lines.push(format!("run: {run_id}"));
            }
            if let Some(status) = &case.status {
                out_lines.push(format!("status: {status}"));
            }
            if let Some(output) = &case.output {
                out_lines.push(format!("output: {output}"));
            }
            if !out_lines.is_empty() {
                out.push_str(&format!(
                    "      <system-out>{}</system-out>\n",
                    xml_text(&out_lines.join("\n"))
                ));
            }
            out.push_str("    </testcase>\n");
        }
        out.push_str("  </testsuite>\n</testsuites>\n");
        out
    }
}

fn indent(text: &str) -> String {
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        out.push_str(if i == 0 { "    - " } else { "      " });
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

fn percent(rate: f64) -> String {
    format!("{:.0}%", rate * 100.0)
}

/// Dollars, with `+` when some calls had no price (what is shown is a lower bound).
pub fn cost(usd: f64, unpriced: u32) -> String {
    if unpriced > 0 && usd == 0.0 {
        "unknown".to_string()
    } else {
        format!(
            "{}{}",
            chassis_core::limits::usd(usd),
            if unpriced > 0 { "+" } else { "" }
        )
    }
}

/// `text` escaped for an XML attribute; characters XML 1.0 cannot hold are dropped.
fn xml(text: &str) -> String {
    escape(text, true)
}

/// `text` escaped for XML character data (newlines kept as they are).
fn xml_text(text: &str) -> String {
    escape(text, false)
}

fn escape(text: &str, attribute: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' if attribute => out.push_str("&#10;"),
            '\n' => out.push('\n'),
            '\t' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(name: &str, passed: bool, status: &str) -> CaseReport {
        CaseReport {
            name: name.into(),
            passed,
            run_id: Some(format!("run_{name}")),
            status: Some(status.into()),
            version: Some("abc".into()),
            steps: 2,
            cost_usd: 0.01,
            time_ms: 100,
            ..CaseReport::default()
        }
    }

    #[test]
    fn metrics_count_cases_runs_and_errors() {
        let mut waiting = case("c", false, "waiting");
        waiting.escalated = true;
        let error = CaseReport {
            name: "d".into(),
            error: Some("agent: cannot read".into()),
            ..CaseReport::default()
        };
        let m = Metrics::of(&[
            case("a", true, "completed"),
            case("b", false, "failed"),
            waiting,
            error,
        ]);
        assert_eq!((m.cases, m.passed, m.failed, m.errors), (4, 1, 2, 1));
        assert_eq!(m.pass_rate, 0.25);
        assert_eq!(m.completion_rate, 0.25);
        assert_eq!(m.error_rate, 0.5);
        assert_eq!(m.escalation_rate, 0.25);
        assert!(
            (m.avg_cost_usd - 0.01).abs() < 1e-12,
            "averaged over runs only"
        );
        assert_eq!(m.avg_time_ms, 100.0);
    }

    #[test]
    fn junit_escapes_and_counts() {
        let mut failed = case("b<&>", false, "failed");
        failed.failures = vec![Failure {
            expectation: "status".into(),
            reason: "expected completed, got \"failed\"\u{1}".into(),
            turn: None,
        }];
        let report = Report::new(
            "s",
            Mode::Replay,
            0,
            vec![case("a", true, "completed"), failed],
        );
        let xml = report.junit();
        assert!(
            xml.contains("tests=\"2\" failures=\"1\" errors=\"0\""),
            "{xml}"
        );
        assert!(xml.contains("<testcase name=\"b&lt;&amp;&gt;\""), "{xml}");
        assert!(
            xml.contains("message=\"status: expected completed, got &quot;failed&quot;\""),
            "{xml}"
        );
        assert!(!xml.contains('\u{1}'));
    }

    #[test]
    fn the_json_report_round_trips() {
        let report = Report::new("s", Mode::Live, 5, vec![case("a", true, "completed")]);
        assert_eq!(Report::from_json(&report.to_json()), Ok(report));
        let err = Report::from_json("{}").unwrap_err();
        assert!(err.starts_with("not a chassis eval report"), "{err}");
    }
}
