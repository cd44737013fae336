//! Snapshot settings: what varies from run to run is replaced by a stable placeholder, so a
//! snapshot shows only what the code decided.
//!
//! ```ignore
//! chassis_testkit::snapshot::settings().bind(|| {
//!     chassis_testkit::insta::assert_snapshot!("show", output);
//! });
//! ```

/// The placeholders, in the order they are applied (regular expression, replacement).
pub const FILTERS: &[(&str, &str)] = &[
    // Run ids and agent version fingerprints.
    (r"run_[0-9a-z]{26}", "run_[ID]"),
    (r"\b[0-9a-f]{12,64}\b", "[HEX]"),
    // RFC 3339 times, and `YYYY-MM-DD HH:MM:SS` as tables print them.
    (
        r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?",
        "[TIME]",
    ),
    // Durations and latencies as the CLI prints them.
    (r"\b\d+(\.\d+)? ?(ms|s|µs)\b", "[DURATION]"),
    // Temporary directories.
    (r"/tmp/[^\s/]+", "[TMP]"),
];

/// insta settings with [`FILTERS`], snapshots kept in the test file's `snapshots/` folder and
/// no source line in their header (so moving a test does not rewrite its snapshot).
pub fn settings() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    for (pattern, replacement) in FILTERS {
        settings.add_filter(pattern, *replacement);
    }
    settings.set_omit_expression(true);
    settings.set_prepend_module_to_snapshot(false);
    settings
}
