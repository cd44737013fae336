//! Figures, their targets, and the table `chassis bench` prints.

use std::fmt::Write as _;

use crate::Group;

/// What a figure is measured in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Milliseconds.
    Millis,
    /// Microseconds.
    Micros,
    /// Events (steps) per second.
    PerSecond,
    /// Megabytes (10⁶ bytes), the unit the memory target is set in.
    MB,
    /// Kilobytes (10³ bytes).
    KB,
    /// Bytes.
    Bytes,
    /// A plain ratio.
    Ratio,
    /// A count.
    Count,
}

impl Unit {
    fn format(self, value: f64) -> String {
        if !value.is_finite() {
            return "n/a".into();
        }
        match self {
            Unit::Millis => format!("{value:.3} ms"),
            Unit::Micros => format!("{value:.1} µs"),
            Unit::PerSecond => format!("{}/s", thousands(value)),
            Unit::MB => format!("{value:.1} MB"),
            Unit::KB => format!("{value:.1} kB"),
            Unit::Bytes => format!("{} B", thousands(value)),
            Unit::Ratio => format!("{value:.3}"),
            Unit::Count => thousands(value),
        }
    }
}

/// A bound a figure should stay within.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Target {
    /// The figure should be at most this.
    AtMost(f64),
    /// The figure should be at least this.
    AtLeast(f64),
}

/// One measured number.
#[derive(Clone, Debug, PartialEq)]
pub struct Figure {
    /// The group that measured it (and reproduces it with `--only`).
    pub group: Group,
    /// What it is, in words; stable across runs.
    pub name: String,
    /// The number, in `unit`.
    pub value: f64,
    /// Its unit.
    pub unit: Unit,
    /// The target, if the issue sets one for it.
    pub target: Option<Target>,
}

impl Figure {
    /// Whether the figure meets its target; `None` without a target or a number.
    pub fn met(&self) -> Option<bool> {
        if !self.value.is_finite() {
            return None;
        }
        match self.target? {
            Target::AtMost(bound) => Some(self.value <= bound),
            Target::AtLeast(bound) => Some(self.value >= bound),
        }
    }

    /// The figure's value as printed, with its unit.
    pub fn value_text(&self) -> String {
        self.unit.format(self.value)
    }

    fn target_text(&self) -> String {
        match self.target {
            Some(Target::AtMost(bound)) => format!("≤ {}", self.unit.format(bound)),
            Some(Target::AtLeast(bound)) => format!("≥ {}", self.unit.format(bound)),
            None => String::new(),
        }
    }
}

/// Where and how the figures were taken.
#[derive(Clone, Debug)]
pub(crate) struct Context {
    pub(crate) machine: String,
    pub(crate) build: &'static str,
    pub(crate) pinning: String,
    /// The HTTP protocol spoken to the mock model.
    pub(crate) http: &'static str,
    /// The tool every step calls.
    pub(crate) tool: &'static str,
    pub(crate) dir: String,
    pub(crate) quick: bool,
    /// Load averages before and after the benchmarks.
    pub(crate) load: (String, String),
}

/// Every figure of a benchmark run, with where it was taken.
#[derive(Clone, Debug)]
pub struct Report {
    context: Context,
    /// The figures, group by group.
    pub figures: Vec<Figure>,
}

impl Report {
    pub(crate) fn new(context: Context) -> Report {
        Report {
            context,
            figures: Vec::new(),
        }
    }

    pub(crate) fn extend(&mut self, figures: Vec<Figure>) {
        self.figures.extend(figures);
    }

    pub(crate) fn finish(&mut self) {
        self.context.load.1 = crate::measure::load_average();
    }

    /// Figures that have a target and miss it.
    pub fn missed(&self) -> impl Iterator<Item = &Figure> {
        self.figures.iter().filter(|f| f.met() == Some(false))
    }

    /// The table: a header about the machine, then one line per figure.
    pub fn render(&self) -> String {
        let ctx = &self.context;
        let mut out = String::new();
        let _ = writeln!(out, "chassis bench ({} build)", ctx.build);
        let _ = writeln!(out, "machine:  {}", ctx.machine);
        let _ = writeln!(out, "cpus:     {}", ctx.pinning);
        let _ = writeln!(out, "http:     {} to the mock model", ctx.http);
        let _ = writeln!(out, "tool:     {}", ctx.tool);
        let _ = writeln!(out, "journals: {}", ctx.dir);
        let _ = writeln!(
            out,
            "load:     {} before, {} after (1, 5, 15 min; other work skews every figure)",
            ctx.load.0, ctx.load.1
        );
        if ctx.quick {
            let _ = writeln!(
                out,
                "mode:     --quick (smoke sizes: the figures show that each benchmark runs, not what it measures)"
            );
        }
        let _ = writeln!(out);

        let quick = if ctx.quick { " --quick" } else { "" };
        let rows: Vec<[String; 5]> = self
            .figures
            .iter()
            .map(|f| {
                let result = match f.met() {
                    Some(true) => "met",
                    Some(false) => "MISSED",
                    None => "",
                };
                [
                    f.name.clone(),
                    f.value_text(),
                    f.target_text(),
                    result.to_string(),
                    format!("chassis bench --only {}{quick}{}", f.group, pg_of(f)),
                ]
            })
            .collect();
        let header = ["figure", "value", "target", "result", "reproduce"].map(String::from);
        let widths: Vec<usize> = (0..5)
            .map(|i| {
                rows.iter()
                    .chain(std::iter::once(&header))
                    .map(|r| r[i].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |out: &mut String, row: &[String; 5]| {
            let mut text = String::new();
            for (i, cell) in row.iter().enumerate() {
                let pad = widths[i] - cell.chars().count();
                // Numbers line up on the right, words on the left.
                if i == 1 || i == 2 {
                    let _ = write!(text, "{}{cell}  ", " ".repeat(pad));
                } else {
                    let _ = write!(text, "{cell}{}  ", " ".repeat(pad));
                }
            }
            let _ = writeln!(out, "{}", text.trim_end());
        };
        line(&mut out, &header);
        let mut group = None;
        for (figure, row) in self.figures.iter().zip(&rows) {
            if group.is_some() && group != Some(figure.group) {
                let _ = writeln!(out);
            }
            group = Some(figure.group);
            line(&mut out, row);
        }
        let missed = self.missed().count();
        let targets = self.figures.iter().filter(|f| f.target.is_some()).count();
        let _ = writeln!(
            out,
            "\n{} of {targets} targets met{}",
            targets - missed,
            if missed > 0 {
                "; BENCHMARKS.md says where the time or memory goes"
            } else {
                ""
            }
        );
        out
    }
}

/// `12345.6` as `12,346`.
fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if value < 0.0 && digits != "0" {
        out.insert(0, '-');
    }
    out
}

/// What the reproducing command needs besides the group for a figure taken on PostgreSQL
/// (the retention group's second half): the server.
fn pg_of(figure: &Figure) -> &'static str {
    if figure.name.contains("(PostgreSQL)") {
        " --pg URL"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1234.0), "1,234");
        assert_eq!(thousands(1234567.0), "1,234,567");
        assert_eq!(thousands(-1500.0), "-1,500");
    }

    #[test]
    fn targets_are_judged_both_ways() {
        let figure = |value, target| Figure {
            group: Group::Overhead,
            name: "x".into(),
            value,
            unit: Unit::Millis,
            target: Some(target),
        };
        assert_eq!(figure(0.4, Target::AtMost(0.5)).met(), Some(true));
        assert_eq!(figure(0.6, Target::AtMost(0.5)).met(), Some(false));
        assert_eq!(figure(6000.0, Target::AtLeast(5000.0)).met(), Some(true));
        assert_eq!(figure(f64::NAN, Target::AtLeast(5000.0)).met(), None);
    }
}
