//! The SQLite journal against the conformance suite, on a real file.

use std::sync::Arc;

use chassis_store::{Journal, SqliteJournal, Sync};

async fn sqlite() -> (Arc<dyn Journal>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let journal = SqliteJournal::open(&dir.path().join("nested/chassis.db"), Sync::Full).unwrap();
    (Arc::new(journal), dir)
}

chassis_store::journal_conformance!(sqlite());

#[tokio::test]
async fn two_handles_on_one_file_share_the_sequence_rule() {
    // Two processes are two handles on one file; the second writer sees the first's appends.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chassis.db");
    let a = SqliteJournal::open(&path, Sync::Normal).unwrap();
    let b = SqliteJournal::open(&path, Sync::Normal).unwrap();
    let run = chassis_store::NewRun {
        run_id: "r".into(),
        agent: "x".into(),
    };
    let start = chassis_core::Event::RunStarted {
        agent: "x".into(),
        spec_path: "s".into(),
        input: "i".into(),
        system: "s".into(),
        model: "openai:m".into(),
        fallbacks: vec![],
        max_repairs: 2,
        tools: vec![],
        limits: Default::default(),
        max_tokens: 100,
        prices: Default::default(),
        at_ms: 0,
    };
    a.create(&run, &[start]).await.unwrap();
    let resumed = chassis_core::Event::RunResumed { at_ms: 0 };
    b.append("r", 1, std::slice::from_ref(&resumed))
        .await
        .unwrap();
    assert!(a.append("r", 1, &[resumed]).await.is_err());
    assert_eq!(a.load("r").await.unwrap().len(), 2);
}
