//! The baseline gate: a report compared with a stored one, within the suite's `[gate]`.

use std::path::Path;

use crate::report::Report;
use crate::suite::Gate;

/// A baseline that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file cannot be read or written.
    #[error("baseline {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file is not a report.
    #[error("baseline {path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// Reads a baseline (a saved report).
pub fn load(path: &Path) -> Result<Report, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    Report::from_json(&text).map_err(|message| Error::Invalid {
        path: path.display().to_string(),
        message,
    })
}

/// Writes `report` as a baseline.
pub fn save(report: &Report, path: &Path) -> Result<(), Error> {
    let error = |source| Error::Io {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(error)?;
    }
    std::fs::write(path, report.to_json()).map_err(error)
}

/// One way the report is worse than the baseline by more than the gate allows.
#[derive(Clone, Debug, PartialEq)]
pub struct Regression {
    /// The metric (`pass_rate`, `avg_cost_usd`, `newly_failing`, …).
    pub metric: &'static str,
    /// What changed, from what to what, and what was allowed.
    pub message: String,
}

impl std::fmt::Display for Regression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.metric, self.message)
    }
}

/// Every regression of `current` against `baseline` beyond `gate`.
pub fn compare(baseline: &Report, current: &Report, gate: &Gate) -> Vec<Regression> {
    let (b, c) = (&baseline.metrics, &current.metrics);
    let pct = |x: f64| format!("{:.1}%", x * 100.0);
    let mut out = Vec::new();
    // A tiny epsilon so that equal rates computed over different case counts never trip.
    const EPS: f64 = 1e-9;
    // Rates that should stay high may fall by the allowance; rates that should stay low may
    // rise by it.
    let rates = [
        (
            "pass_rate",
            "pass rate",
            b.pass_rate,
            c.pass_rate,
            gate.max_pass_rate_drop,
            true,
        ),
        (
            "completion_rate",
            "completion rate",
            b.completion_rate,
            c.completion_rate,
            gate.max_completion_rate_drop,
            true,
        ),
        (
            "error_rate",
            "error rate",
            b.error_rate,
            c.error_rate,
            gate.max_error_rate_rise,
            false,
        ),
        (
            "escalation_rate",
            "escalation rate",
            b.escalation_rate,
            c.escalation_rate,
            gate.max_escalation_rate_rise,
            false,
        ),
    ];
    for (metric, name, before, now, allowed, higher_is_better) in rates {
        let worse = if higher_is_better {
            before - now
        } else {
            now - before
        };
        if worse > allowed + EPS {
            let (verb, what) = if higher_is_better {
                ("fell", "drop")
            } else {
                ("rose", "rise")
            };
            out.push(Regression {
                metric,
                message: format!(
                    "{name} {verb} from {} to {} (allowed {what} {})",
                    pct(before),
                    pct(now),
                    pct(allowed)
                ),
            });
        }
    }
    if let Some(rise) = relative_rise(b.avg_cost_usd, c.avg_cost_usd)
        && rise > gate.max_avg_cost_rise + EPS
    {
        out.push(Regression {
            metric: "avg_cost_usd",
            message: format!(
                "average cost rose from ${:.4} to ${:.4} (+{:.0}%, allowed +{:.0}%)",
                b.avg_cost_usd,
                c.avg_cost_usd,
                rise * 100.0,
                gate.max_avg_cost_rise * 100.0
            ),
        });
    }
    if let Some(allowed) = gate.max_avg_time_rise
        && let Some(rise) = relative_rise(b.avg_time_ms, c.avg_time_ms)
        && rise > allowed + EPS
    {
        out.push(Regression {
            metric: "avg_time_ms",
            message: format!(
                "average time rose from {:.2}s to {:.2}s (+{:.0}%, allowed +{:.0}%)",
                b.avg_time_ms / 1000.0,
                c.avg_time_ms / 1000.0,
                rise * 100.0,
                allowed * 100.0
            ),
        });
    }
    let newly_failing: Vec<&str> = current
        .cases
        .iter()
        .filter(|case| !case.passed)
        .filter(|case| {
            baseline
                .cases
                .iter()
                .any(|old| old.name == case.name && old.passed)
        })
        .map(|case| case.name.as_str())
        .collect();
    if newly_failing.len() > gate.max_newly_failing {
        out.push(Regression {
            metric: "newly_failing",
            message: format!(
                "{} case(s) passing in the baseline fail now: {} (allowed {})",
                newly_failing.len(),
                newly_failing.join(", "),
                gate.max_newly_failing
            ),
        });
    }
    out
}

/// `(now - before) / before`, when `before` is positive; a rise from nothing counts as
/// infinite (any cost where there was none is a regression).
fn relative_rise(before: f64, now: f64) -> Option<f64> {
    if before > 0.0 {
        Some((now - before) / before)
    } else if now > 0.0 {
        Some(f64::INFINITY)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{CaseReport, Mode};

    fn report(cases: &[(&str, bool, &str, f64)]) -> Report {
        let cases = cases
            .iter()
            .map(|&(name, passed, status, cost)| CaseReport {
                name: name.into(),
                passed,
                run_id: Some(format!("run_{name}")),
                status: Some(status.into()),
                cost_usd: cost,
                time_ms: 100,
                ..CaseReport::default()
            })
            .collect();
        Report::new("s", Mode::Replay, 0, cases)
    }

    #[test]
    fn the_same_report_is_no_regression() {
        let r = report(&[("a", true, "completed", 0.01), ("b", false, "failed", 0.01)]);
        assert_eq!(compare(&r, &r, &Gate::default()), vec![]);
    }

    #[test]
    fn worse_rates_cost_and_cases_are_regressions() {
        let before = report(&[
            ("a", true, "completed", 0.01),
            ("b", true, "completed", 0.01),
        ]);
        let after = report(&[("a", true, "completed", 0.02), ("b", false, "failed", 0.02)]);
        let found: Vec<String> = compare(&before, &after, &Gate::default())
            .iter()
            .map(|r| r.to_string())
            .collect();
        assert_eq!(
            found,
            vec![
                "pass_rate: pass rate fell from 100.0% to 50.0% (allowed drop 0.0%)",
                "completion_rate: completion rate fell from 100.0% to 50.0% (allowed drop 0.0%)",
                "error_rate: error rate rose from 0.0% to 50.0% (allowed rise 0.0%)",
                "avg_cost_usd: average cost rose from $0.0100 to $0.0200 (+100%, allowed +10%)",
                "newly_failing: 1 case(s) passing in the baseline fail now: b (allowed 0)",
            ]
        );
    }

    #[test]
    fn the_gate_tolerates_what_it_allows() {
        let before = report(&[
            ("a", true, "completed", 0.01),
            ("b", true, "completed", 0.01),
        ]);
        let after = report(&[
            ("a", true, "completed", 0.011),
            ("b", false, "failed", 0.011),
        ]);
        let gate = Gate {
            max_pass_rate_drop: 0.5,
            max_completion_rate_drop: 0.5,
            max_error_rate_rise: 0.5,
            max_avg_cost_rise: 0.2,
            max_newly_failing: 1,
            ..Gate::default()
        };
        assert_eq!(compare(&before, &after, &gate), vec![]);
    }
}
