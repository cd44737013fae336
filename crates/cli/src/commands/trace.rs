//! `chassis trace RUN [--json]`: a run as a tree in time, from its journal alone.

use std::fmt::Write as _;
use std::path::Path;

use chassis_store::Record;
use chassis_telemetry::timeline::{Node, NodeKind, Timeline};

use crate::commands::open_reading_journal;
use crate::progress::{clip, cost, describe, usd};
use crate::style::{Mark, Style};

// Arguments of `chassis trace`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// The run: its id, a unique prefix of it, or `last` (see `chassis runs`)
    run: String,
    /// Print the timeline as JSON: {"run_id", "trace_id", "status", ..., "nodes": [{"kind",
    /// "start_ms", "duration_ms", "title", "attrs", "children"}]}
    #[arg(long)]
    json: bool,
}

/// Prints the run's steps, model calls, tool calls, retries and waits with their durations.
pub(crate) async fn run(db: &Path, mut args: Args) -> anyhow::Result<u8> {
    let journal = open_reading_journal(db).await?;
    args.run = crate::commands::resolve_run(journal.as_ref(), &args.run).await?;
    let records = journal.load(&args.run).await?;
    let Some(timeline) = chassis_telemetry::timeline::build(&args.run, &records) else {
        anyhow::bail!(
            "run {}: the journal cannot be replayed; `chassis show {}` lists its events",
            args.run,
            args.run
        );
    };
    if args.json {
        outln!("{}", serde_json::to_string(&timeline)?);
    } else {
        out!("{}", render(&timeline, &records, Style::stdout()));
    }
    Ok(crate::exit::COMPLETED)
}

/// The timeline as text: a header of totals, then one line per node.
fn render(t: &Timeline, records: &[Record], style: Style) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}  {}  {}", t.run_id, t.agent, t.status);
    let dot = style.dot();
    let mut totals = format!(
        "{} step(s){dot}{} tool call(s){dot}{} in + {} out tokens{dot}{}{dot}{}",
        t.steps,
        t.tool_calls,
        t.input_tokens,
        t.output_tokens,
        cost(t.cost_usd, t.unpriced_calls),
        duration(t.duration_ms)
    );
    if t.waiting_ms > 0 {
        let _ = write!(totals, " (waited {})", duration(t.waiting_ms));
    }
    let _ = writeln!(out, "{totals}");
    let _ = writeln!(out, "trace {}  (OpenTelemetry trace id)", t.trace_id);
    if let Some(reason) = &t.reason {
        let _ = writeln!(out, "reason {}", clip(reason, 160, style));
    }
    let _ = writeln!(out);
    for node in &t.nodes {
        line(&mut out, t, records, style, node, "", "");
    }
    out
}

/// One node and its children; `lead` goes before its mark, `indent` before its children's.
fn line(
    out: &mut String,
    t: &Timeline,
    records: &[Record],
    style: Style,
    node: &Node,
    lead: &str,
    indent: &str,
) {
    let took = node.duration_ms.map(duration).unwrap_or_default();
    let _ = writeln!(
        out,
        "{:>9}  {:>7}  {lead}{} {}",
        format!("+{:.3}s", node.start_ms as f64 / 1000.0),
        took,
        style.mark(mark(node)),
        text(t, records, style, node)
    );
    let last = node.children.len().saturating_sub(1);
    for (i, child) in node.children.iter().enumerate() {
        let (branch, next) = match (i == last, style.unicode) {
            (true, true) => ("└─ ", "   "),
            (false, true) => ("├─ ", "│  "),
            (true, false) => ("`- ", "   "),
            (false, false) => ("|- ", "|  "),
        };
        line(
            out,
            t,
            records,
            style,
            child,
            &format!("{indent}{branch}"),
            &format!("{indent}{next}"),
        );
    }
}

fn mark(node: &Node) -> Mark {
    match (node.kind, node.ok) {
        (NodeKind::Started | NodeKind::Resumed, _) => Mark::Start,
        (NodeKind::Step, Some(false)) => Mark::Fail,
        (NodeKind::Step, _) => Mark::Step,
        (NodeKind::Tool, Some(true)) => Mark::Ok,
        (NodeKind::Tool, Some(false)) => Mark::Fail,
        (NodeKind::Tool, None) => Mark::Pending,
        (NodeKind::Retry, _) => Mark::Retry,
        (NodeKind::Wait, _) => Mark::Wait,
        (NodeKind::End, _) => Mark::End,
        (NodeKind::Note, Some(false)) => Mark::Fail,
        (NodeKind::Note, _) => Mark::Note,
    }
}

fn attr<'a>(node: &'a Node, key: &str) -> Option<&'a str> {
    node.attrs.get(key).and_then(|v| v.as_str())
}

fn number(node: &Node, key: &str) -> Option<f64> {
    node.attrs.get(key).and_then(|v| v.as_f64())
}

/// What follows the mark.
fn text(t: &Timeline, records: &[Record], style: Style, node: &Node) -> String {
    let clip = |text: &str, max: usize| crate::progress::clip(text, max, style);
    let error = || attr(node, "error").map(|e| format!(": {}", clip(e, 100)));
    match node.kind {
        NodeKind::Started => format!(
            "started  {}",
            attr(node, "model").unwrap_or(t.model.as_str())
        ),
        NodeKind::Resumed => "resumed".into(),
        NodeKind::Step => {
            let model = attr(node, "model").unwrap_or_default();
            let mut text = format!("{}  {model}", node.title);
            if let Some(served) = attr(node, "served_by").filter(|s| *s != model) {
                let _ = write!(text, " (served by {served})");
            }
            if let Some(e) = error() {
                let _ = write!(text, " failed{e}");
                return text;
            }
            if let Some(reply) = attr(node, "reply") {
                let _ = write!(text, " {} {reply}", style.arrow());
            }
            if let (Some(i), Some(o)) =
                (number(node, "input_tokens"), number(node, "output_tokens"))
            {
                let _ = write!(text, "  [{i} in / {o} out");
                match number(node, "cost_usd") {
                    Some(c) => {
                        let _ = write!(text, ", {}]", usd(c));
                    }
                    None => text.push(']'),
                }
            }
            text
        }
        NodeKind::Tool => {
            let mut text = node.title.clone();
            if let Some(risk) = attr(node, "risk").filter(|r| *r != "read_only") {
                let _ = write!(text, " ({risk})");
            }
            if node.ok.is_none() {
                text.push_str(" (no outcome journaled)");
            }
            text + &error().unwrap_or_default()
        }
        NodeKind::Retry => {
            let mut text = node.title.clone() + &error().unwrap_or_default();
            if let Some(ms) = number(node, "retry_in_ms") {
                let _ = write!(text, "; retried after {}", duration(ms as u64));
            }
            if let Some(reason) = attr(node, "reason") {
                let _ = write!(text, ": {}", clip(reason, 100));
            }
            text
        }
        NodeKind::Wait => format!(
            "{}: {}",
            node.title,
            clip(attr(node, "reason").unwrap_or_default(), 120)
        ),
        NodeKind::End => node.title.clone() + &error().unwrap_or_default(),
        NodeKind::Note => records
            .iter()
            .find(|r| r.seq == node.seq)
            .and_then(|r| describe(&t.run_id, &r.event, style))
            // The tree has a mark already; the line's own is left out.
            .map(|line| clip(&line.text, 140))
            .unwrap_or_else(|| node.title.clone() + &error().unwrap_or_default()),
    }
}

/// `850ms`, `2.41s`, `3m05s`, `2h10m`.
fn duration(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{:.2}s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m{:02}s", ms / 60_000, ms % 60_000 / 1000),
        _ => format!("{}h{:02}m", ms / 3_600_000, ms % 3_600_000 / 60_000),
    }
}
