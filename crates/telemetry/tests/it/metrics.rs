//! The metrics observer over real runs, scraped from `/metrics`.

use std::sync::Arc;

use chassis_core::Observer;
use chassis_core::{LimitName, RunStatus};
use chassis_telemetry::{Metrics, MetricsServer};

use crate::agent::Desk;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_calls_tokens_limits_and_latencies_are_served_at_metrics() {
    let desk = Desk::new("max_steps = 1\non_limit = \"pause\"").await;
    let metrics = Arc::new(Metrics::new());
    metrics.watch_journal(Arc::clone(&desk.journal));
    let engine = desk.engine(&[metrics.clone() as Arc<dyn Observer>]);
    let agent = desk.agent().await;

    // Run A pauses at the step limit, is raised and completes; run B stays paused.
    let a = engine.start(&agent, "first").await.unwrap();
    assert_eq!(a.status, RunStatus::Paused);
    let a = engine
        .raise_and_resume(&a.run_id, &[(LimitName::MaxSteps, 5.0)], "test")
        .await
        .unwrap();
    assert_eq!(a.status, RunStatus::Completed);
    let b = engine.start(&agent, "second").await.unwrap();
    assert_eq!(b.status, RunStatus::Paused);

    let server = MetricsServer::start(metrics, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let response = chassis_http::client()
        .unwrap()
        .get(format!("http://{}/metrics", server.addr()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = response.text().await.unwrap();
    server.stop();

    let version = &agent.version;
    let expect = |line: String| {
        assert!(
            text.lines().any(|l| l == line),
            "missing `{line}` in:\n{text}"
        )
    };
    let run = format!("agent=\"desk\",version=\"{version}\"");
    expect(format!("chassis_runs_started_total{{{run}}} 2"));
    expect(format!("chassis_runs_resumed_total{{{run}}} 1"));
    expect(format!("chassis_runs_completed_total{{{run}}} 1"));
    expect(format!("chassis_runs_paused_total{{{run}}} 2"));
    expect(format!("chassis_runs_active{{{run}}} 0"));
    let model = "agent=\"desk\",model=\"mock:desk-model\"";
    expect(format!(
        "chassis_model_calls_total{{{model},outcome=\"ok\"}} 3"
    ));
    expect(format!(
        "chassis_model_call_duration_seconds_count{{{model}}} 3"
    ));
    expect("chassis_tool_calls_total{agent=\"desk\",tool=\"read_file\",outcome=\"ok\"} 2".into());
    expect("chassis_tool_call_duration_seconds_count{agent=\"desk\",tool=\"read_file\"} 2".into());
    expect(
        "chassis_limits_reached_total{agent=\"desk\",limit=\"max_steps\",action=\"pause\"} 2"
            .into(),
    );
    expect("chassis_step_duration_seconds_count{agent=\"desk\"} 3".into());
    // Read from the journal at scrape time.
    expect("chassis_runs{agent=\"desk\",status=\"paused\"} 1".into());
    let input_tokens = text
        .lines()
        .find(|l| {
            l.starts_with(&format!(
                "chassis_model_tokens_total{{{model},type=\"input\"}}"
            ))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<f64>().ok())
        .expect("input tokens counted");
    assert!(input_tokens > 0.0);
    for family in [
        "chassis_breaker_state",
        "chassis_approvals_pending",
        "chassis_model_retries_total",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{family} is described"
        );
    }
}

/// A run cancelled while it is driven is no longer active, and is counted as cancelled.
#[test]
fn a_cancelled_run_leaves_the_active_gauge() {
    use chassis_core::{Event, RunState};

    let metrics = Metrics::new();
    let mut state = RunState::default();
    let events = [
        crate::spans::started(),
        Event::CancelRequested {
            by: "ops".into(),
            reason: "wrong input".into(),
            at_ms: 1_700_000_000_100,
        },
        Event::RunCancelled {
            by: "ops".into(),
            reason: "wrong input".into(),
            at_ms: 1_700_000_000_200,
        },
    ];
    for event in &events {
        state.apply(event).expect("the script folds");
        metrics.on_event("run_1", &state, event);
    }
    let run = [("agent", "desk"), ("version", "")];
    assert_eq!(
        metrics.registry().value("chassis_runs_started_total", &run),
        Some(1.0)
    );
    assert_eq!(
        metrics
            .registry()
            .value("chassis_runs_cancelled_total", &run),
        Some(1.0)
    );
    assert_eq!(
        metrics.registry().value("chassis_runs_active", &run),
        Some(0.0)
    );
}
