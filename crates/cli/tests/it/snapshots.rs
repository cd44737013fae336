//! What a person reads, as snapshots: a run's `show`, the `runs` table. Run ids, times,
//! durations and fingerprints are redacted (`chassis_testkit::snapshot`); everything else,
//! layout included, must stay as it is unless the snapshot is reviewed
//! (`INSTA_UPDATE=always cargo nextest run -p chassis-cli -E 'test(/snapshot/)'`, then read the
//! diff of `tests/it/snapshots/`).

use chassis_testkit::insta::assert_snapshot;
use chassis_testkit::snapshot::settings;

use crate::util::{Echo, run};

#[test]
fn show_snapshot_of_a_completed_run() {
    let echo = Echo::new("");
    let run_id = echo.run("what does this cost?");
    let show = run(echo.chassis().args(["show", &run_id]));
    show.expect_code(0);
    settings().bind(|| assert_snapshot!("show_completed", show.stdout));
}

#[test]
fn runs_table_snapshot_with_a_queued_and_a_completed_run() {
    let echo = Echo::new("");
    echo.run("done already");
    let out = run(echo
        .chassis()
        .arg("submit")
        .arg(&echo.spec)
        .args(["--input", "waits for a worker"]));
    out.expect_code(0);
    let table = run(echo.chassis().arg("runs"));
    table.expect_code(0);
    settings().bind(|| assert_snapshot!("runs_table", table.stdout));
}
