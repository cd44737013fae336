//! Threads: a completed run continued with new user messages, driven by `resume` or by a
//! worker, each model call seeing the whole conversation.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chassis_core::{Event, Message, RunStatus};
use chassis_engine::{Agent, Engine, Error, Worker, WorkerConfig};
use chassis_mock::{MockConfig, MockHandle, Script};
use chassis_store::{Journal, SqliteJournal, Sync};

use crate::write;

/// Each turn's reply names the turn (the assistant messages the request held), the latest user
/// message and the first: a reply proves what its request carried.
const SCRIPT: &str = r#"
[[scenario]]
[[scenario.turn]]
text = "first answer to {input}"
[[scenario.turn]]
text = "turn {turn}: you said {last_user}, first was {input}"
[[scenario.turn]]
text = "turn {turn}: you said {last_user}, first was {input}"
"#;

struct Setup {
    _dir: tempfile::TempDir,
    mock: MockHandle,
    journal: Arc<dyn Journal>,
    engine: Engine,
    agent: Agent,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mock = chassis_mock::start(
        MockConfig::default(),
        Script::from_toml_str(SCRIPT).unwrap(),
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .unwrap();
    write(&root.join("prompt.j2"), "Answer briefly.");
    write(
        &root.join("agent.toml"),
        &format!(
            r#"
[agent]
name = "chat"
prompt = "prompt.j2"
[model]
primary = "m:model"
[providers.m]
kind = "openai"
base_url = "{}"
"#,
            mock.base_url()
        ),
    );
    let agent = Agent::load(&root.join("agent.toml")).await.unwrap();
    let journal: Arc<dyn Journal> =
        Arc::new(SqliteJournal::open(&root.join("j.db"), Sync::Normal).unwrap());
    Setup {
        _dir: dir,
        mock,
        engine: Engine::new(Arc::clone(&journal)),
        journal,
        agent,
    }
}

async fn events(s: &Setup, run_id: &str) -> Vec<Event> {
    s.journal
        .load(run_id)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.event)
        .collect()
}

#[tokio::test]
async fn a_completed_run_continues_with_a_new_message_and_sees_the_whole_conversation() {
    let s = setup().await;
    let first = s.engine.start(&s.agent, "hello").await.unwrap();
    assert_eq!(first.status, RunStatus::Completed, "{first:?}");
    assert_eq!(first.output.as_deref(), Some("first answer to hello"));

    s.engine
        .send_message(&first.run_id, "and the invoice?", "alice")
        .await
        .unwrap();
    let state = s.engine.load(&first.run_id).await.unwrap();
    assert_eq!(state.status(), RunStatus::Running);
    assert_eq!(state.output, None);
    let second = s.engine.resume(&first.run_id).await.unwrap();
    assert_eq!(second.status, RunStatus::Completed, "{second:?}");
    assert_eq!(
        second.output.as_deref(),
        Some("turn 1: you said and the invoice?, first was hello")
    );

    s.engine
        .send_message(&first.run_id, "thanks", "bob")
        .await
        .unwrap();
    let third = s.engine.resume(&first.run_id).await.unwrap();
    assert_eq!(
        third.output.as_deref(),
        Some("turn 2: you said thanks, first was hello")
    );

    // The folded conversation is the whole thread, in order.
    let state = s.engine.load(&first.run_id).await.unwrap();
    let roles: Vec<String> = state
        .messages()
        .iter()
        .map(|m| match m {
            Message::System { .. } => "system".to_string(),
            Message::User { content } => format!("user:{content}"),
            Message::Assistant(reply) => format!("assistant:{}", reply.content.clone().unwrap()),
            Message::Tool { .. } => "tool".to_string(),
        })
        .collect();
    assert_eq!(
        roles,
        [
            "system",
            "user:hello",
            "assistant:first answer to hello",
            "user:and the invoice?",
            "assistant:turn 1: you said and the invoice?, first was hello",
            "user:thanks",
            "assistant:turn 2: you said thanks, first was hello",
        ]
    );
    assert_eq!(state.turns, 3);
    // What each call sent: 2, then 4, then 6 messages.
    let sent: Vec<usize> = events(&s, &first.run_id)
        .await
        .iter()
        .filter_map(|e| match e {
            Event::ModelRequested { messages, .. } => Some(*messages),
            _ => None,
        })
        .collect();
    assert_eq!(sent, [2, 4, 6]);
    // The mock saw one conversation (keyed by its first user message) at turns 0, 1 and 2.
    let stats = s.mock.stats();
    let turns = &stats.by_conversation["hello"];
    assert_eq!(
        turns.iter().map(|(t, n)| (*t, *n)).collect::<Vec<_>>(),
        [(0, 1), (1, 1), (2, 1)]
    );
    // Each message is journaled with who sent it.
    let messages: Vec<(String, String)> = events(&s, &first.run_id)
        .await
        .into_iter()
        .filter_map(|e| match e {
            Event::UserMessage { text, by, .. } => Some((text, by)),
            _ => None,
        })
        .collect();
    assert_eq!(
        messages,
        [
            ("and the invoice?".to_string(), "alice".to_string()),
            ("thanks".to_string(), "bob".to_string())
        ]
    );
}

#[tokio::test]
async fn a_message_to_a_run_without_an_answer_is_refused_and_nothing_is_recorded() {
    let s = setup().await;
    // Submitted, not driven: running.
    let run_id = s.engine.submit(&s.agent, "hello").await.unwrap();
    let err = s
        .engine
        .send_message(&run_id, "hi", "alice")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Refused(_)), "{err}");
    assert!(err.to_string().contains("is running"), "{err}");

    // Cancelled: ended without an answer.
    s.engine
        .cancel(&run_id, "alice", "not needed")
        .await
        .unwrap();
    let seq = s.engine.load(&run_id).await.unwrap().seq();
    let err = s
        .engine
        .send_message(&run_id, "hi", "alice")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cancelled"), "{err}");
    assert_eq!(s.engine.load(&run_id).await.unwrap().seq(), seq);

    // An empty message.
    let done = s.engine.start(&s.agent, "hello").await.unwrap();
    let err = s
        .engine
        .send_message(&done.run_id, "  ", "alice")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err}");
    let err = s
        .engine
        .send_message("run_nosuchrun", "hi", "alice")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("run_nosuchrun"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_picks_up_a_run_continued_with_a_message() {
    let s = setup().await;
    let mut config = WorkerConfig::new("w1");
    config.poll_interval = Duration::from_millis(50);
    let worker = Worker::new(Engine::new(Arc::clone(&s.journal)), config);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        worker
            .run(async move {
                let _ = stopped.await;
            })
            .await
    });
    let run_id = s.engine.submit(&s.agent, "hello").await.unwrap();
    wait_for(&s, &run_id, 1).await;
    s.engine
        .send_message(&run_id, "more please", "alice")
        .await
        .unwrap();
    let state = wait_for(&s, &run_id, 2).await;
    assert_eq!(
        state.output.as_deref(),
        Some("turn 1: you said more please, first was hello")
    );
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .unwrap()
        .unwrap();
}

/// Waits until the run has completed `answers` turns (polling; no timing is asserted).
async fn wait_for(s: &Setup, run_id: &str, answers: usize) -> chassis_core::RunState {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let state = s.engine.load(run_id).await.unwrap();
        let replies = state
            .messages()
            .iter()
            .filter(|m| matches!(m, Message::Assistant(_)))
            .count();
        if state.status() == RunStatus::Completed && replies == answers {
            return state;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting for answer {answers}: {:?}",
            state.status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
