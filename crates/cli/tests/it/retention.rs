//! `chassis purge` and `chassis import`: ended runs archived, deleted, restored exactly; runs
//! that have not ended are never touched.

use crate::util::{Echo, chassis, run, runs_json, show_json};

#[test]
fn purge_archives_and_deletes_ended_runs_and_import_restores_them_exactly() {
    let echo = Echo::new("");
    let ended: Vec<String> = ["one", "two", "three"]
        .iter()
        .map(|i| echo.run(i))
        .collect();
    let out = run(echo
        .chassis()
        .arg("submit")
        .arg(&echo.spec)
        .args(["--input", "queued"]));
    out.expect_code(0);
    let queued = out.stdout.trim().to_string();
    let before: Vec<_> = ended.iter().map(|id| show_json(&echo.db, id)).collect();

    // Nothing is that old yet.
    let out = run(echo
        .chassis()
        .args(["purge", "--older-than", "1d", "--json"]));
    out.expect_code(0);
    assert_eq!(out.json()["runs"], 0, "{out:#?}");
    // A status that has not ended is refused.
    let out = run(echo
        .chassis()
        .args(["purge", "--older-than", "1ms", "--status", "running"]));
    out.expect_code(2);
    assert!(out.stderr.contains("only ended runs"), "{out:#?}");

    std::thread::sleep(std::time::Duration::from_millis(5));
    let archive = echo.dir.path().join("runs.jsonl.gz");
    let out = run(echo.chassis().args([
        "purge",
        "--older-than",
        "1ms",
        "--archive",
        archive.to_str().unwrap(),
        "--json",
    ]));
    out.expect_code(0);
    let report = out.json();
    assert_eq!(report["runs"], 3, "{report}");
    assert!(report["bytes"].as_u64().unwrap() > 0, "{report}");
    let left: Vec<String> = runs_json(&echo.db, &[])
        .iter()
        .map(|r| r["run_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(left, [queued], "only the run that has not ended stays");

    let out = run(echo
        .chassis()
        .args(["import", archive.to_str().unwrap(), "--json"]));
    out.expect_code(0);
    assert_eq!(out.json()["runs"], 3, "{out:#?}");
    for (id, shown) in ended.iter().zip(&before) {
        assert_eq!(&show_json(&echo.db, id), shown, "{id} is restored exactly");
    }
    // Importing again changes nothing.
    let out = run(echo
        .chassis()
        .args(["import", archive.to_str().unwrap(), "--json"]));
    out.expect_code(0);
    assert_eq!(out.json()["skipped"], 3, "{out:#?}");

    // A file that is not an archive is named, with its line.
    let bad = echo.dir.path().join("bad.gz");
    {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&bad).unwrap(),
            flate2::Compression::default(),
        );
        writeln!(gz, "{{\"run_id\": 5}}").unwrap();
        gz.finish().unwrap();
    }
    let out = run(chassis(&echo.db).args(["import", bad.to_str().unwrap()]));
    out.expect_code(2);
    assert!(out.stderr.contains("bad.gz line 1"), "{out:#?}");
}
