//! A small metrics registry rendered in the Prometheus text format (version 0.0.4).
//!
//! Counters, gauges and histograms with labels; families are declared up front so `/metrics`
//! lists every metric (with its help) even before anything happened.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Latency buckets in seconds: from a fast tool to a slow model.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// What a family measures.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Observations counted into buckets (upper bounds, in order).
    Histogram(&'static [f64]),
}

/// Label values in the family's label order.
pub type Labels = Vec<(&'static str, String)>;

#[derive(Clone, Debug)]
enum Series {
    Value(f64),
    Histogram {
        buckets: Vec<u64>,
        sum: f64,
        count: u64,
    },
}

struct Family {
    help: &'static str,
    kind: Kind,
    series: BTreeMap<Labels, Series>,
}

/// Every metric of the process.
#[derive(Default)]
pub struct Registry {
    families: Mutex<BTreeMap<&'static str, Family>>,
}

impl Registry {
    /// Declares a family (again is a no-op).
    pub fn describe(&self, name: &'static str, help: &'static str, kind: Kind) {
        if let Ok(mut families) = self.families.lock() {
            families.entry(name).or_insert(Family {
                help,
                kind,
                series: BTreeMap::new(),
            });
        }
    }

    fn with_series(&self, name: &'static str, labels: Labels, f: impl FnOnce(&mut Series, Kind)) {
        let Ok(mut families) = self.families.lock() else {
            return;
        };
        let Some(family) = families.get_mut(name) else {
            debug_assert!(false, "metric {name} was not described");
            return;
        };
        let kind = family.kind;
        let series = family.series.entry(labels).or_insert_with(|| match kind {
            Kind::Histogram(bounds) => Series::Histogram {
                buckets: vec![0; bounds.len()],
                sum: 0.0,
                count: 0,
            },
            _ => Series::Value(0.0),
        });
        f(series, kind);
    }

    /// Removes every series of a family (before a gauge is recomputed from scratch).
    pub fn clear(&self, name: &'static str) {
        if let Ok(mut families) = self.families.lock()
            && let Some(family) = families.get_mut(name)
        {
            family.series.clear();
        }
    }

    /// Adds `by` to a counter or gauge.
    pub fn add(&self, name: &'static str, labels: Labels, by: f64) {
        self.with_series(name, labels, |series, _| {
            if let Series::Value(v) = series {
                *v += by;
            }
        });
    }

    /// Adds one to a counter.
    pub fn inc(&self, name: &'static str, labels: Labels) {
        self.add(name, labels, 1.0);
    }

    /// Sets a gauge.
    pub fn set(&self, name: &'static str, labels: Labels, value: f64) {
        self.with_series(name, labels, |series, _| {
            if let Series::Value(v) = series {
                *v = value;
            }
        });
    }

    /// Records one observation in a histogram.
    pub fn observe(&self, name: &'static str, labels: Labels, value: f64) {
        self.with_series(name, labels, |series, kind| {
            if let (
                Series::Histogram {
                    buckets,
                    sum,
                    count,
                },
                Kind::Histogram(bounds),
            ) = (series, kind)
            {
                for (bucket, bound) in buckets.iter_mut().zip(bounds) {
                    if value <= *bound {
                        *bucket += 1;
                    }
                }
                *sum += value;
                *count += 1;
            }
        });
    }

    /// The current value of a counter or gauge series, if it exists.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let families = self.families.lock().ok()?;
        let family = families.get(name)?;
        family.series.iter().find_map(|(l, series)| {
            let same = l.len() == labels.len()
                && l.iter()
                    .zip(labels)
                    .all(|((k, v), (k2, v2))| k == k2 && v == v2);
            match (same, series) {
                (true, Series::Value(v)) => Some(*v),
                (true, Series::Histogram { count, .. }) => Some(*count as f64),
                _ => None,
            }
        })
    }

    /// Everything in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let Ok(families) = self.families.lock() else {
            return out;
        };
        for (name, family) in families.iter() {
            let kind = match family.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
                Kind::Histogram(_) => "histogram",
            };
            let _ = writeln!(out, "# HELP {name} {}", family.help);
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, series) in &family.series {
                match (series, family.kind) {
                    (Series::Value(v), _) => {
                        let _ = writeln!(out, "{name}{} {}", label_text(labels, None), number(*v));
                    }
                    (
                        Series::Histogram {
                            buckets,
                            sum,
                            count,
                        },
                        Kind::Histogram(bounds),
                    ) => {
                        for (bucket, bound) in buckets.iter().zip(bounds.iter()) {
                            let le = number(*bound);
                            let _ = writeln!(
                                out,
                                "{name}_bucket{} {bucket}",
                                label_text(labels, Some(&le))
                            );
                        }
                        let _ = writeln!(
                            out,
                            "{name}_bucket{} {count}",
                            label_text(labels, Some("+Inf"))
                        );
                        let _ = writeln!(
                            out,
                            "{name}_sum{} {}",
                            label_text(labels, None),
                            number(*sum)
                        );
                        let _ = writeln!(out, "{name}_count{} {count}", label_text(labels, None));
                    }
                    _ => {}
                }
            }
        }
        out
    }
}

fn number(value: f64) -> String {
    if value.is_infinite() {
        return if value > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    format!("{value}")
}

fn label_text(labels: &[(&'static str, String)], le: Option<&str>) -> String {
    if labels.is_empty() && le.is_none() {
        return String::new();
    }
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    format!("{{{}}}", parts.join(","))
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_text_format() {
        let r = Registry::default();
        r.describe("x_total", "Things.", Kind::Counter);
        r.describe("lat_seconds", "Latency.", Kind::Histogram(&[0.1, 1.0]));
        r.describe("empty", "Nothing yet.", Kind::Gauge);
        r.inc("x_total", vec![("agent", "a\"b".into())]);
        r.add("x_total", vec![("agent", "a\"b".into())], 2.0);
        r.observe("lat_seconds", vec![("tool", "t".into())], 0.5);
        let text = r.render();
        assert!(
            text.contains("# TYPE x_total counter\nx_total{agent=\"a\\\"b\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("lat_seconds_bucket{tool=\"t\",le=\"0.1\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("lat_seconds_bucket{tool=\"t\",le=\"1\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("lat_seconds_bucket{tool=\"t\",le=\"+Inf\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("lat_seconds_sum{tool=\"t\"} 0.5\nlat_seconds_count{tool=\"t\"} 1\n")
        );
        assert!(text.contains("# HELP empty Nothing yet.\n# TYPE empty gauge\n"));
        assert_eq!(r.value("x_total", &[("agent", "a\"b")]), Some(3.0));
    }
}
