//! Hard limits through the real engine: fail, pause then raise, escalate; priced costs.

use std::net::SocketAddr;
use std::sync::Arc;

use chassis_core::{Event, LimitName, RunStatus};
use chassis_engine::{Agent, Engine};
use chassis_mock::{MockConfig, Script};
use chassis_store::{Journal, SqliteJournal, Sync};

use crate::write;

/// A model that lists the directory forever (a loop), with different arguments each time.
const LOOPING: &str = r#"
[[scenario]]
[[scenario.turn]]
tool_calls = [{ name = "list_dir", arguments = { path = "." } }]
[[scenario.turn]]
tool_calls = [{ name = "list_dir", arguments = { path = "sub" } }]
[[scenario.turn]]
tool_calls = [{ name = "read_file", arguments = { path = "a.txt" } }]
[[scenario.turn]]
text = "done"
"#;

async fn setup(limits: &str) -> (tempfile::TempDir, chassis_mock::MockHandle, Engine, Agent) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(&root.join("prompt.j2"), "Go.");
    write(&root.join("data/a.txt"), "a");
    write(&root.join("data/sub/b.txt"), "b");
    let mock = chassis_mock::start(
        MockConfig::default(),
        Script::from_toml_str(LOOPING).unwrap(),
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .unwrap();
    write(
        &root.join("agent.toml"),
        &format!(
            r#"
[agent]
name = "limited"
prompt = "prompt.j2"
[model]
primary = "m:gpt-4o-mini"
max_tokens = 100
[providers.m]
kind = "openai"
base_url = "{}"
[[tools]]
use = "builtin:fs"
root = "data"
only = ["list_dir", "read_file"]
[limits]
{limits}
"#,
            mock.base_url()
        ),
    );
    let agent = Agent::load(&root.join("agent.toml")).await.unwrap();
    let journal: Arc<dyn Journal> =
        Arc::new(SqliteJournal::open(&root.join("j.db"), Sync::Normal).unwrap());
    (dir, mock, Engine::new(journal), agent)
}

fn events(records: Vec<chassis_store::Record>) -> Vec<Event> {
    records.into_iter().map(|r| r.event).collect()
}

#[tokio::test]
async fn fail_at_max_steps_names_the_limit_and_makes_no_further_call() {
    let (_dir, mock, engine, agent) = setup("max_steps = 2").await;
    let outcome = engine.start(&agent, "go").await.unwrap();
    assert_eq!(outcome.status, RunStatus::Failed);
    let reason = outcome.reason.unwrap();
    assert!(
        reason.starts_with("limit max_steps reached: used 2"),
        "{reason}"
    );
    assert_eq!(mock.stats().requests, 2, "the third call was never made");
    let journal = events(engine.journal().load(&outcome.run_id).await.unwrap());
    assert!(journal.iter().any(|e| matches!(
        e,
        Event::LimitReached { limit: LimitName::MaxSteps, used, projected, .. } if *used == 2.0 && *projected == 3.0
    )));
}

#[tokio::test]
async fn pause_at_the_cost_limit_then_raise_and_finish() {
    // Output at $100 per million: one call's worst case (100 output tokens) costs $0.01, more
    // than the whole budget, so the run parks before its first call.
    let (_dir, mock, engine, agent) = setup(
        "max_cost_usd = 0.005\non_limit = \"pause\"\n\
         [pricing.\"m:gpt-4o-mini\"]\ninput = 0.0\noutput = 100.0",
    )
    .await;
    let outcome = engine.start(&agent, "go").await.unwrap();
    assert_eq!(outcome.status, RunStatus::Paused, "{outcome:?}");
    let reason = outcome.reason.clone().unwrap();
    assert!(
        reason.contains(
            "limit max_cost_usd reached: used $0.0000, the next call could bring it to $0.0100"
        ),
        "{reason}"
    );
    assert!(reason.contains("--raise max_cost_usd="), "{reason}");
    assert_eq!(
        mock.stats().requests,
        0,
        "the call that could cross the limit is not made"
    );

    // Resuming without raising stops again at once, without calling the model.
    let again = engine.resume(&outcome.run_id).await.unwrap();
    assert_eq!(again.status, RunStatus::Paused);
    assert_eq!(mock.stats().requests, 0);

    let done = engine
        .raise_and_resume(&outcome.run_id, &[(LimitName::MaxCostUsd, 1.0)], "alice")
        .await
        .unwrap();
    assert_eq!(done.status, RunStatus::Completed, "{done:?}");
    let journal = events(engine.journal().load(&outcome.run_id).await.unwrap());
    assert!(journal.iter().any(|e| matches!(
        e,
        Event::LimitRaised { limit: LimitName::MaxCostUsd, value, by } if *value == 1.0 && by == "alice"
    )));
    let state = engine.load(&outcome.run_id).await.unwrap();
    assert!(
        state.cost_usd() > 0.0 && state.cost_usd() <= 1.0,
        "{}",
        state.cost_usd()
    );
    assert_eq!(state.unpriced_calls, 0);
}

#[tokio::test]
async fn escalate_waits_for_a_human() {
    let (_dir, _mock, engine, agent) = setup(
        "max_tool_calls = 1\non_limit = { default = \"fail\", max_tool_calls = \"escalate\" }",
    )
    .await;
    let outcome = engine.start(&agent, "go").await.unwrap();
    assert_eq!(outcome.status, RunStatus::Waiting);
    assert!(
        outcome
            .reason
            .unwrap()
            .starts_with("limit request: limit max_tool_calls reached")
    );
    let state = engine.load(&outcome.run_id).await.unwrap();
    assert_eq!(state.tool_calls(), 1);
}

#[tokio::test]
async fn unknown_price_is_refused_when_a_cost_limit_is_set() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("p.j2"), "x");
    write(
        &dir.path().join("agent.toml"),
        "[agent]\nname = \"a\"\nprompt = \"p.j2\"\n[model]\nprimary = \"m:house-model\"\n\
         [providers.m]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\n\
         [limits]\nmax_cost_usd = 1.0\n",
    );
    let err = Agent::load(&dir.path().join("agent.toml"))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("model.primary: model `m:house-model` has no known price"),
        "{err}"
    );
    // With a price in the spec it loads.
    let text = std::fs::read_to_string(dir.path().join("agent.toml")).unwrap();
    write(
        &dir.path().join("agent.toml"),
        &format!("{text}[pricing.\"m:house-model\"]\ninput = 1.0\noutput = 2.0\n"),
    );
    let agent = Agent::load(&dir.path().join("agent.toml")).await.unwrap();
    assert_eq!(agent.prices["m:house-model"].output, 2.0);
}

/// A provider that bills far more input than the context's text suggests (images, system
/// tokens of its own, tool formatting): 5,000 tokens more on every call.
struct Overbilling(Arc<dyn chassis_providers::ModelClient>);

#[chassis_tools::async_trait]
impl chassis_providers::ModelClient for Overbilling {
    async fn complete(
        &self,
        request: &chassis_providers::ChatRequest<'_>,
    ) -> Result<chassis_providers::ChatResponse, chassis_providers::Error> {
        let mut response = self.0.complete(request).await?;
        response.usage.input_tokens += 5_000;
        Ok(response)
    }
}

/// Limits hold against the provider's own count: once a call reported more input than any
/// local estimate, the next call is projected from that report, so the run stops below the
/// limit instead of crossing it by a whole call.
#[tokio::test]
async fn limits_hold_against_what_the_provider_reports() {
    for (limits, limit) in [
        ("max_input_tokens = 8000", LimitName::MaxInputTokens),
        (
            "max_cost_usd = 0.0012\n[pricing.\"m:gpt-4o-mini\"]\ninput = 0.15\noutput = 0.6",
            LimitName::MaxCostUsd,
        ),
    ] {
        let (_dir, _mock, engine, mut agent) = setup(limits).await;
        agent
            .models
            .wrap_clients(|link| Arc::new(Overbilling(link.client.clone())));
        let outcome = engine.start(&agent, "go").await.unwrap();
        let state = engine.load(&outcome.run_id).await.unwrap();
        assert_eq!(outcome.status, RunStatus::Failed, "{limit}: {outcome:?}");
        let reason = outcome.reason.unwrap_or_default();
        assert!(
            reason.starts_with(&format!("limit {limit} reached")),
            "{reason}"
        );
        assert_eq!(
            state.steps(),
            1,
            "{limit}: the second call would cross it: {reason}"
        );
        let value = state.limits.get(limit).unwrap();
        let used = match limit {
            LimitName::MaxCostUsd => state.cost_usd(),
            _ => state.usage().input_tokens as f64,
        };
        assert!(used <= value, "{limit}: used {used}, the limit is {value}");
    }
}

/// `chassis run` delivers its run's notifications before it exits only when its engine queued
/// some: the count says whether there is anything to wait for.
#[tokio::test]
async fn an_engine_counts_the_appends_that_queued_notifications() {
    let (_dir, _mock, engine, agent) = setup("max_steps = 2").await;
    let quiet = engine.start(&agent, "go").await.unwrap();
    assert_eq!(quiet.status, RunStatus::Failed);
    assert_eq!(
        engine.notifications_queued(),
        0,
        "no [alerts], nothing queued"
    );

    // `secret_env` names a variable every process has; nothing is posted here.
    let (_dir, _mock, engine, agent) = setup(
        "max_steps = 2\n[alerts]\nwebhook = \"http://127.0.0.1:9/hook\"\nsecret_env = \"PATH\"",
    )
    .await;
    let alerted = engine.start(&agent, "go").await.unwrap();
    assert_eq!(alerted.status, RunStatus::Failed);
    assert!(engine.notifications_queued() > 0, "the limit was an alert");
    let pending = engine
        .journal()
        .deliveries(&chassis_store::OutboxFilter {
            status: None,
            run_id: Some(alerted.run_id.clone()),
            limit: None,
        })
        .await
        .unwrap();
    assert!(!pending.is_empty(), "what was counted is in the outbox");
}
