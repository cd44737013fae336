//! Suites end to end: every expectation kind with its reason, the judge, fixtures from runs.

use chassis_eval::suite::RawCall;
use chassis_eval::{Mode, Suite, fixtures};

use crate::util::{Desk, mock, read, run};

/// One case per expectation kind, each set to fail, and one that passes.
const SUITE: &str = r#"
[suite]
agent = "agent.toml"
concurrency = 3

[[case]]
name = "passes"
input = "what do the notes say?"
output_contains = ["replica", "40 s"]
output_matches = 'lagged \d+ s$'
trajectory = [{ tool = "read_file", args = { path = "note.txt" } }]
max_steps = 2
max_cost_usd = 1.0

[[case]]
name = "contains"
input = "case contains"
output_contains = ["primary"]

[[case]]
name = "matches"
input = "case matches"
output_matches = '^\d+$'

[[case]]
name = "schema"
input = "answer in json"
output_schema = { type = "object", properties = { severity = { type = "integer" } } }

[[case]]
name = "trajectory"
input = "case trajectory"
trajectory = ["list_dir", "read_file"]

[[case]]
name = "status"
input = "case status"
status = "failed"

[[case]]
name = "steps"
input = "case steps"
max_steps = 1

[[case]]
name = "cost"
input = "case cost"
max_cost_usd = 0.0000001

[[case]]
name = "judge"
input = "case judge"
judge = { rubric = "Says who was paged." }
"#;

#[tokio::test]
async fn every_expectation_kind_fails_with_its_reason() {
    let mock = mock().await;
    let desk = Desk::new(&mock.base_url());
    let report = run(desk.suite(SUITE), desk.engine(), Mode::Live).await;
    let reasons = |name: &str| -> Vec<String> {
        let case = report.cases.iter().find(|c| c.name == name).unwrap();
        assert_eq!(case.error, None, "{name} ran: {}", report.table());
        case.failures.iter().map(|f| f.to_string()).collect()
    };
    assert_eq!(reasons("passes"), Vec::<String>::new());
    let expect = [
        (
            "contains",
            "output_contains: output does not contain \"primary\"",
        ),
        ("matches", "output_matches: output does not match /^\\d+$/"),
        (
            "schema",
            "output_schema: output does not satisfy the schema: at /severity",
        ),
        (
            "trajectory",
            "trajectory: call 1 is read_file, expected list_dir",
        ),
        ("status", "status: expected failed, got completed"),
        ("steps", "max_steps: took 2 steps, at most 1 allowed"),
        ("cost", "max_cost_usd: cost $"),
        (
            "judge",
            "judge: mock:desk-model says FAIL: the answer does not say who was paged.",
        ),
    ];
    for (case, start) in expect {
        let got = reasons(case);
        assert_eq!(got.len(), 1, "{case}: one failure: {got:?}");
        assert!(
            got[0].starts_with(start),
            "{case}: {:?} should start with {start:?}",
            got[0]
        );
    }
    let m = &report.metrics;
    assert_eq!((m.cases, m.passed, m.failed, m.errors), (9, 1, 8, 0));
    assert_eq!(m.completion_rate, 1.0);
    assert!(m.avg_cost_usd > 0.0, "priced model: {m:?}");
    assert_eq!(report.versions.len(), 1);
    // The judge's call went through the same provider.
    assert_eq!(
        mock.stats()
            .by_conversation
            .keys()
            .filter(|k| k.starts_with("Grade the answer"))
            .count(),
        1
    );
    mock.shutdown().await;
}

#[tokio::test]
async fn a_judged_suite_replays_its_judge_from_the_cassette() {
    let suite = r#"
[suite]
agent = "agent.toml"
[[case]]
name = "judged"
input = "case judge"
judge = { rubric = "Says who was paged." }
"#;
    let mock = mock().await;
    let desk = Desk::new(&mock.base_url());
    let recorded = run(desk.suite(suite), desk.engine(), Mode::Record).await;
    mock.shutdown().await;
    let replayed = run(desk.suite(suite), desk.engine(), Mode::Replay).await;
    assert_eq!(recorded.cases[0].failures, replayed.cases[0].failures);
    assert_eq!(replayed.cases[0].failures[0].expectation, "judge");
    let cassette = read(&desk.dir.path().join("cassettes/judged.json"));
    assert!(
        cassette.contains("Grade the answer of an AI agent"),
        "{cassette}"
    );
}

#[tokio::test]
async fn journaled_runs_become_cases_that_replay() {
    let mock = mock().await;
    let desk = Desk::new(&mock.base_url());
    let engine = desk.engine();
    let agent = chassis_engine::Agent::load(&desk.spec()).await.unwrap();
    for input in ["first question", "second question", "third question"] {
        engine.start(&agent, input).await.unwrap();
    }
    drop(agent);
    mock.shutdown().await;

    let built = fixtures::from_runs(engine.journal().as_ref(), "notes-desk", 2)
        .await
        .unwrap();
    let cases = &built.suite.cases;
    assert_eq!(cases.len(), 2);
    assert_eq!(
        (cases[0].input.as_deref(), cases[1].input.as_deref()),
        (Some("second question"), Some("third question")),
        "the last two, oldest first"
    );
    assert_eq!(cases[0].status.as_deref(), Some("completed"));
    assert_eq!(cases[0].max_steps, Some(2));
    assert_eq!(
        cases[0].trajectory,
        Some(vec![RawCall::Call {
            tool: "read_file".into(),
            args: Some(serde_json::json!({ "path": "note.txt" })),
        }])
    );

    let dir = desk.dir.path().join("fixtures");
    let path = built.write(&dir).unwrap();
    let suite = Suite::load(&path).unwrap();
    let report = run(suite, engine.clone(), Mode::Replay).await;
    assert!(report.all_passed(), "{}", report.table());

    let missing = fixtures::from_runs(engine.journal().as_ref(), "nobody", 2)
        .await
        .unwrap_err();
    assert_eq!(
        missing.to_string(),
        "no completed or failed runs of agent `nobody` in the journal"
    );
}
