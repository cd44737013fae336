//! Human in the loop through the real engine: approvals (with edited arguments), rejections,
//! denials, rules on arguments, timeouts, and settling an unknown outcome.

use std::net::SocketAddr;
use std::sync::Arc;

use chassis_core::{Event, RiskClass, RunStatus};
use chassis_engine::{Agent, Engine, Error, Resolution};
use chassis_mock::{MockConfig, Script};
use chassis_store::{Journal, ManualClock, SqliteJournal, Sync, Wake};

use crate::{python, python_tool, write};

const SCRIPT: &str = r#"
[[scenario]]
[[scenario.turn]]
text = "The invoice is due today, so I will pay it."
tool_calls = [{ name = "pay", arguments = { amount = 150, to = "acme" } }]
[[scenario.turn]]
text = "result: {last_tool_result}"
"#;

const PAY: &str = r#"
import json, os, sys
args = json.load(sys.stdin)
with open(sys.argv[1], "a") as ledger:
    ledger.write("%s %s %s\n" % (args["to"], args["amount"], os.environ["CHASSIS_IDEMPOTENCY_KEY"]))
print("paid %s to %s" % (args["amount"], args["to"]))
"#;

struct Setup {
    _dir: tempfile::TempDir,
    _mock: chassis_mock::MockHandle,
    engine: Engine,
    agent: Agent,
    ledger: std::path::PathBuf,
    journal: Arc<dyn Journal>,
    clock: Arc<ManualClock>,
}

async fn setup(approvals: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(&root.join("prompt.j2"), "Pay what is due.");
    python_tool(root, "pay", PAY);
    let ledger = root.join("ledger.txt");
    let mock = chassis_mock::start(
        MockConfig::default(),
        Script::from_toml_str(SCRIPT).unwrap(),
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .unwrap();
    write(
        &root.join("agent.toml"),
        &format!(
            r#"
[agent]
name = "payer"
prompt = "prompt.j2"
[model]
primary = "m:model"
[providers.m]
kind = "openai"
base_url = "{}"
[[tools]]
name = "pay"
description = "Pay an invoice"
command = ["{}", "tools/pay.py", "{}"]
args_schema = {{ type = "object", properties = {{ amount = {{ type = "number", minimum = 0 }}, to = {{ type = "string" }} }}, required = ["amount", "to"], additionalProperties = false }}
risk = "irreversible"
{approvals}
"#,
            mock.base_url(),
            python(),
            ledger.display()
        ),
    );
    let agent = Agent::load(&root.join("agent.toml")).await.unwrap();
    // Simulated time, shared by the journal and the engine: timers fire when the test says.
    let clock = ManualClock::new(1_700_000_000_000);
    let journal: Arc<dyn Journal> = Arc::new(
        SqliteJournal::open_with_clock(&root.join("j.db"), Sync::Normal, clock.clone()).unwrap(),
    );
    Setup {
        _dir: dir,
        _mock: mock,
        engine: Engine::new(Arc::clone(&journal)),
        agent,
        ledger,
        journal,
        clock,
    }
}

fn ledger(s: &Setup) -> String {
    std::fs::read_to_string(&s.ledger).unwrap_or_default()
}

#[tokio::test]
async fn irreversible_call_waits_then_runs_with_edited_arguments_once() {
    let s = setup("").await;
    let outcome = s.engine.start(&s.agent, "go").await.unwrap();
    assert_eq!(outcome.status, RunStatus::Waiting, "{outcome:?}");
    assert_eq!(ledger(&s), "", "nothing is paid before approval");

    // The inbox shows the call, its risk, the model's reason and the context.
    let inbox = s.engine.inbox().await.unwrap();
    assert_eq!(inbox.len(), 1);
    let item = &inbox[0];
    assert_eq!(
        (item.kind.as_str(), item.tool.as_str()),
        ("approval", "pay")
    );
    assert_eq!(item.risk.as_deref(), Some("irreversible"));
    assert_eq!(item.args["amount"], 150);
    assert!(item.reason.as_deref().unwrap().contains("due today"));
    assert!(item.context.iter().any(|line| line.starts_with("user: go")));

    // Resuming changes nothing while the approval is pending.
    let again = s.engine.resume(&outcome.run_id).await.unwrap();
    assert_eq!(again.status, RunStatus::Waiting);

    // Edited arguments that break the schema are refused and nothing is recorded.
    let seq = s.engine.load(&outcome.run_id).await.unwrap().seq();
    let err = s
        .engine
        .decide_approval(
            &outcome.run_id,
            &item.call_id,
            true,
            Some(r#"{"amount": -5, "to": "acme"}"#),
            "alice",
            None,
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err}");
    assert!(err.to_string().contains("/amount"), "{err}");
    assert_eq!(s.engine.load(&outcome.run_id).await.unwrap().seq(), seq);

    // A secret typed into refused arguments is not echoed by the refusal.
    let secret = "sk-live-typed-by-a-human";
    let guarded = Engine::new(Arc::clone(&s.journal)).with_redactor(Arc::new(
        chassis_engine::Redactor::new([secret.to_string()]),
    ));
    let err = guarded
        .decide_approval(
            &outcome.run_id,
            &item.call_id,
            true,
            Some(&format!(r#"{{"amount": "{secret}", "to": "acme"}}"#)),
            "alice",
            None,
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err}");
    assert!(err.to_string().contains("/amount"), "{err}");
    assert!(!err.to_string().contains(secret), "{err}");
    assert_eq!(s.engine.load(&outcome.run_id).await.unwrap().seq(), seq);

    s.engine
        .decide_approval(
            &outcome.run_id,
            &item.call_id,
            true,
            Some(r#"{"amount": 120, "to": "acme"}"#),
            "alice",
            Some("capped at 120".into()),
            None,
        )
        .await
        .unwrap();
    let done = s.engine.resume(&outcome.run_id).await.unwrap();
    assert_eq!(done.status, RunStatus::Completed, "{done:?}");
    assert_eq!(done.output.as_deref(), Some("result: paid 120 to acme"));
    let lines: Vec<String> = ledger(&s).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 1, "paid exactly once");
    assert!(
        lines[0].starts_with(&format!("acme 120 {}/", outcome.run_id)),
        "{lines:?}"
    );

    // The audit trail: who decided, when, the note.
    let events: Vec<Event> = s
        .engine
        .journal()
        .load(&outcome.run_id)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.event)
        .collect();
    assert!(events.iter().any(|e| matches!(
        e,
        Event::ApprovalDecided { approved: true, by, note: Some(note), at_ms, .. }
            if by == "alice" && note == "capped at 120" && *at_ms > 0
    )));
    assert!(events.iter().any(|e| matches!(
        e,
        Event::ApprovalRequested {
            risk: RiskClass::Irreversible,
            ..
        }
    )));
    assert!(s.engine.inbox().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_rejection_reaches_the_model_and_nothing_runs() {
    let s = setup("").await;
    let outcome = s.engine.start(&s.agent, "go").await.unwrap();
    let call = s.engine.inbox().await.unwrap()[0].call_id.clone();
    s.engine
        .decide_approval(
            &outcome.run_id,
            &call,
            false,
            None,
            "bob",
            None,
            Some("over budget".into()),
        )
        .await
        .unwrap();
    let done = s.engine.resume(&outcome.run_id).await.unwrap();
    assert_eq!(done.status, RunStatus::Completed);
    let output = done.output.unwrap();
    assert!(
        output.contains("bob rejected this call: over budget"),
        "{output}"
    );
    assert_eq!(ledger(&s), "");
}

#[tokio::test]
async fn deny_and_rules_on_arguments() {
    let s = setup("[approvals.tools]\npay = \"deny\"\n").await;
    let outcome = s.engine.start(&s.agent, "go").await.unwrap();
    // Denied calls are refused like invalid ones; the model keeps trying, then gives up.
    let state = s.engine.load(&outcome.run_id).await.unwrap();
    assert!(state.messages().iter().any(|m| matches!(m, chassis_core::Message::Tool { content, .. } if content.contains("denies `pay`"))));
    assert_eq!(ledger(&s), "");

    // Above 100 needs a human; the scripted call pays 150.
    let s = setup(
        "[approvals]\nirreversible = \"auto\"\n[[approvals.rules]]\ntool = \"pay\"\narg = \"amount\"\nop = \">\"\nvalue = 100\naction = \"require\"\n",
    )
    .await;
    let outcome = s.engine.start(&s.agent, "go").await.unwrap();
    assert_eq!(outcome.status, RunStatus::Waiting);
    // At or below 100 it runs on its own.
    let s = setup(
        "[approvals]\nirreversible = \"auto\"\n[[approvals.rules]]\ntool = \"pay\"\narg = \"amount\"\nop = \">\"\nvalue = 200\naction = \"require\"\n",
    )
    .await;
    let outcome = s.engine.start(&s.agent, "go").await.unwrap();
    assert_eq!(outcome.status, RunStatus::Completed);
    assert_eq!(ledger(&s).lines().count(), 1);
}

/// An approval's timeout fires at its expiry under a worker, with nobody listing the inbox;
/// listing the inbox never writes (it shows the approval as expired). Simulated time: nothing
/// sleeps.
#[tokio::test]
async fn an_approval_nobody_decides_times_out_under_a_worker_and_the_inbox_never_writes() {
    let s = setup("[approvals]\ntimeout = \"10m\"\non_timeout = \"reject\"\n").await;
    let outcome = s.engine.start(&s.agent, "go").await.unwrap();
    assert_eq!(outcome.status, RunStatus::Waiting);
    let seq = s.engine.load(&outcome.run_id).await.unwrap().seq();
    let inbox = s.engine.inbox().await.unwrap();
    assert_eq!((inbox.len(), inbox[0].expired), (1, false));

    // Before the expiry, a worker finds nothing to do.
    let report = run_worker_once(&s).await;
    assert_eq!(report.claimed, 0, "{report:?}");

    s.clock.advance(10 * 60 * 1000);
    let inbox = s.engine.inbox().await.unwrap();
    assert_eq!((inbox.len(), inbox[0].expired), (1, true));
    assert_eq!(
        s.engine.load(&outcome.run_id).await.unwrap().seq(),
        seq,
        "listing the inbox wrote nothing"
    );

    // At the expiry a worker claims the run and the timeout rejects the call.
    let report = run_worker_once(&s).await;
    assert_eq!((report.claimed, report.completed), (1, 1), "{report:?}");
    let done = s.engine.load(&outcome.run_id).await.unwrap();
    assert_eq!(done.status(), RunStatus::Completed);
    assert!(
        done.output.unwrap().contains("timeout rejected this call"),
        "the model saw the rejection"
    );
    assert_eq!(ledger(&s), "");
    assert!(s.engine.inbox().await.unwrap().is_empty());
}

/// Runs a worker on the setup's journal until it has nothing left to claim.
async fn run_worker_once(s: &Setup) -> chassis_engine::WorkerReport {
    let mut config = chassis_engine::WorkerConfig::new("w");
    config.poll_interval = std::time::Duration::from_millis(20);
    let worker = chassis_engine::Worker::new(Engine::new(Arc::clone(&s.journal)), config);
    let journal = Arc::clone(&s.journal);
    worker
        .run(async move {
            // Stop once no run is runnable or held any more.
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                let runs = journal
                    .list(&chassis_store::ListFilter::default())
                    .await
                    .unwrap();
                let now = i64::try_from(journal.clock().now_ms()).unwrap();
                if runs
                    .iter()
                    .all(|r| r.lease.is_none() && r.wake_at_ms.is_none_or(|at| at > now))
                {
                    return;
                }
            }
        })
        .await
}

/// Only one process drives a run: a resume of a run another driver holds is refused, naming
/// the holder, and journals nothing.
#[tokio::test]
async fn a_resume_of_a_run_driven_elsewhere_is_refused_and_journals_nothing() {
    let s = setup("[approvals]\nirreversible = \"auto\"\n").await;
    let outcome = s.engine.start(&s.agent, "go").await.unwrap();
    let records = s.journal.load(&outcome.run_id).await.unwrap();
    let cut = records
        .iter()
        .position(|r| matches!(r.event, Event::ToolStarted { .. }))
        .unwrap();
    // A run whose driver is alive and inside the irreversible call.
    let prefix: Vec<Event> = records[..=cut].iter().map(|r| r.event.clone()).collect();
    let held = s
        .journal
        .create(
            &chassis_store::NewRun {
                run_id: "run_held".into(),
                agent: "payer".into(),
                idempotency_key: None,
            },
            &prefix,
            Wake::Now,
            Some(&chassis_store::Driver {
                owner: "worker-7".into(),
                ttl: std::time::Duration::from_secs(60),
            }),
        )
        .await
        .unwrap();
    let err = s.engine.resume("run_held").await.unwrap_err();
    assert!(
        matches!(&err, Error::Store(chassis_store::Error::Held { owner, .. }) if owner == "worker-7"),
        "{err}"
    );
    assert!(err.to_string().contains("worker-7"), "{err}");
    assert_eq!(
        s.journal.load("run_held").await.unwrap().len(),
        prefix.len(),
        "no false `outcome unknown` for a call still in flight"
    );
    // Once the lease runs out (the driver died), the run is taken over and the call is
    // reported unknown, never repeated.
    s.clock.advance(61_000);
    let waiting = s.engine.resume("run_held").await.unwrap();
    assert_eq!(waiting.status, RunStatus::Waiting);
    drop(held);
    assert_eq!(ledger(&s).lines().count(), 1, "only the first run paid");
}

#[tokio::test]
async fn an_interrupted_irreversible_call_is_settled_by_a_human_and_retried_with_its_key() {
    let s = setup("[approvals]\nirreversible = \"auto\"\n").await;
    // A run whose pay call was started (intent journaled) but never finished: the process died.
    let outcome = s.engine.start(&s.agent, "go").await.unwrap();
    assert_eq!(outcome.status, RunStatus::Completed);
    let records = s.engine.journal().load(&outcome.run_id).await.unwrap();
    let cut = records
        .iter()
        .position(|r| matches!(r.event, Event::ToolStarted { .. }))
        .unwrap();
    // Replay that prefix into a fresh run id, as the crashed process left it.
    let crashed = "run_crashed";
    let prefix: Vec<Event> = records[..=cut].iter().map(|r| r.event.clone()).collect();
    s.engine
        .journal()
        .create(
            &chassis_store::NewRun {
                run_id: crashed.into(),
                agent: "payer".into(),
                idempotency_key: None,
            },
            &prefix,
            Wake::Now,
            None,
        )
        .await
        .unwrap();
    let waiting = s.engine.resume(crashed).await.unwrap();
    assert_eq!(waiting.status, RunStatus::Waiting);
    let inbox = s.engine.inbox().await.unwrap();
    assert_eq!(inbox[0].kind, "outcome_unknown");
    let call = inbox[0].call_id.clone();
    // Not an approval: approving it is refused.
    assert!(
        s.engine
            .decide_approval(crashed, &call, true, None, "x", None, None)
            .await
            .is_err()
    );

    s.engine
        .resolve_outcome(crashed, &call, Resolution::Retry, "carol", None)
        .await
        .unwrap();
    let done = s.engine.resume(crashed).await.unwrap();
    assert_eq!(done.status, RunStatus::Completed, "{done:?}");
    // The retry ran once, with the key the interrupted call had in this run: run/call.
    let lines: Vec<String> = ledger(&s).lines().map(str::to_string).collect();
    assert_eq!(
        lines.len(),
        2,
        "the original run's payment and the retry: {lines:?}"
    );
    assert!(
        lines[1].ends_with(&format!(" {crashed}/{call}")),
        "{lines:?}"
    );
    let events: Vec<Event> = s
        .engine
        .journal()
        .load(crashed)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.event)
        .collect();
    assert!(events.iter().any(|e| matches!(e, Event::OutcomeResolved { resolution, by, .. } if resolution == "retry" && by == "carol")));
}
