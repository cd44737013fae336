//! One append (one fsync) per step: work that is safe to repeat (a model call, a read-only
//! tool) runs before the events leading to it are flushed, and each step's events go out in
//! one append, overlapped with the next model call.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chassis_core::{Event, RiskClass, RunStatus, ToolDef};
use chassis_engine::{Agent, Engine};
use chassis_mock::{MockConfig, Script};
use chassis_store::{
    Attempt, Capacity, Clock, Created, Delivery, Driver, Error, Fired, Journal, Lease, ListFilter,
    NewRun, Notification, OutboxFilter, Record, RunSummary, Schedule, SqliteJournal, Sync,
    TokenRecord, Wake,
};
use chassis_tools::{CallContext, Tool, ToolError};
use serde_json::{Value, json};

use crate::write;

/// Three steps calling a read-only tool, then the answer.
const SCRIPT: &str = r#"
[[scenario]]
[[scenario.turn]]
tool_calls = [{ name = "lookup", arguments = { id = "1" } }]
[[scenario.turn]]
tool_calls = [{ name = "lookup", arguments = { id = "2" } }]
[[scenario.turn]]
tool_calls = [{ name = "lookup", arguments = { id = "3" } }]
[[scenario.turn]]
text = "found {last_tool_result}"
"#;

/// A journal that keeps the kinds of the events of each append it passes on.
struct Counting {
    inner: Arc<dyn Journal>,
    appends: Mutex<Vec<Vec<&'static str>>>,
}

impl Counting {
    fn appends(&self) -> Vec<Vec<&'static str>> {
        self.appends.lock().unwrap().clone()
    }
}

/// A read-only tool that, when called, notes whether the journal already holds the call's
/// `tool_started` (it must not: nothing is flushed before a safe call).
struct Lookup {
    def: ToolDef,
    journal: Arc<dyn Journal>,
    durable_when_called: Mutex<Vec<bool>>,
}

#[chassis_tools::async_trait]
impl Tool for Lookup {
    fn def(&self) -> &ToolDef {
        &self.def
    }

    async fn call(&self, args: Value, ctx: &CallContext) -> Result<String, ToolError> {
        let records = self.journal.load(&ctx.run_id).await.unwrap_or_default();
        let durable = records.iter().any(
            |r| matches!(&r.event, Event::ToolStarted { call_id, .. } if *call_id == ctx.call_id),
        );
        self.durable_when_called.lock().unwrap().push(durable);
        Ok(format!("#{}", args["id"].as_str().unwrap_or("?")))
    }
}

#[tokio::test]
async fn each_step_is_one_append_made_while_the_next_safe_work_runs() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mock = chassis_mock::start(
        MockConfig::default(),
        Script::from_toml_str(SCRIPT).unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    write(&root.join("prompt.j2"), "Look things up.");
    let spec = root.join("agent.toml");
    write(
        &spec,
        &format!(
            "[agent]\nname = \"desk\"\nprompt = \"prompt.j2\"\n[model]\nprimary = \"m:x\"\n\
             [providers.m]\nkind = \"openai\"\nbase_url = \"{}\"\n",
            mock.base_url()
        ),
    );
    let sqlite: Arc<dyn Journal> =
        Arc::new(SqliteJournal::open(&root.join("j.db"), Sync::Normal).unwrap());
    let journal = Arc::new(Counting {
        inner: Arc::clone(&sqlite),
        appends: Mutex::new(Vec::new()),
    });
    let tool = Arc::new(Lookup {
        def: ToolDef {
            name: "lookup".into(),
            description: "Looks a record up".into(),
            parameters: json!({"type": "object"}),
            risk: RiskClass::ReadOnly,
            idempotent: false,
            max_attempts: 1,
        },
        journal: Arc::clone(&sqlite),
        durable_when_called: Mutex::new(Vec::new()),
    });
    let agent = Agent::load_with_tools(&spec, vec![tool.clone()])
        .await
        .unwrap();
    let outcome = Engine::new(journal.clone())
        .start(&agent, "find")
        .await
        .unwrap();
    assert_eq!(outcome.status, RunStatus::Completed, "{outcome:?}");
    assert_eq!(outcome.output.as_deref(), Some("found #3"));

    // Each read-only call ran before even its intent was durable.
    assert_eq!(*tool.durable_when_called.lock().unwrap(), [false; 3]);
    // Four steps (three tool steps and the answer), four appends: each holds one step whole.
    let appends = journal.appends();
    let step = [
        "model_requested",
        "model_responded",
        "tool_started",
        "tool_finished",
    ];
    let last = ["model_requested", "model_responded", "run_completed"];
    assert_eq!(appends, [&step[..], &step, &step, &last]);
    let records = sqlite.load(&outcome.run_id).await.unwrap();
    assert_eq!(
        records.len(),
        1 + appends.iter().map(Vec::len).sum::<usize>()
    );
}

#[async_trait]
impl Journal for Counting {
    async fn create(
        &self,
        run: &NewRun,
        events: &[Event],
        wake: Wake,
        driver: Option<&Driver>,
    ) -> Result<Created, Error> {
        self.inner.create(run, events, wake, driver).await
    }

    async fn append_with(
        &self,
        lease: &Lease,
        expected: u64,
        events: &[Event],
        wake: Wake,
        notifications: &[Notification],
    ) -> Result<u64, Error> {
        let seq = self
            .inner
            .append_with(lease, expected, events, wake, notifications)
            .await?;
        self.appends
            .lock()
            .unwrap()
            .push(events.iter().map(Event::kind).collect());
        Ok(seq)
    }

    async fn decide(
        &self,
        run_id: &str,
        expected: u64,
        events: &[Event],
        wake: Wake,
    ) -> Result<u64, Error> {
        self.inner.decide(run_id, expected, events, wake).await
    }

    async fn load_after(&self, run_id: &str, after: u64) -> Result<Vec<Record>, Error> {
        self.inner.load_after(run_id, after).await
    }

    async fn list(&self, filter: &ListFilter) -> Result<Vec<RunSummary>, Error> {
        self.inner.list(filter).await
    }

    async fn claim(&self, worker: &str, ttl: Duration, limit: usize) -> Result<Vec<Lease>, Error> {
        self.inner.claim(worker, ttl, limit).await
    }

    async fn claim_run(&self, run_id: &str, owner: &str, ttl: Duration) -> Result<Lease, Error> {
        self.inner.claim_run(run_id, owner, ttl).await
    }

    async fn take_over(
        &self,
        run_id: &str,
        dead: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Lease, Error> {
        self.inner.take_over(run_id, dead, owner, ttl).await
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease, Error> {
        self.inner.renew(lease, ttl).await
    }

    async fn release(&self, lease: &Lease, seen: u64, wake: Wake) -> Result<(), Error> {
        self.inner.release(lease, seen, wake).await
    }

    async fn wait_for_work(&self, timeout: Duration) {
        self.inner.wait_for_work(timeout).await;
    }

    async fn put_version(&self, version: &str, agent: &str, definition: &str) -> Result<(), Error> {
        self.inner.put_version(version, agent, definition).await
    }

    async fn get_version(&self, version: &str) -> Result<Option<String>, Error> {
        self.inner.get_version(version).await
    }

    async fn put_token(&self, token: &TokenRecord) -> Result<(), Error> {
        self.inner.put_token(token).await
    }

    async fn tokens(&self) -> Result<Vec<TokenRecord>, Error> {
        self.inner.tokens().await
    }

    async fn revoke_token(&self, name: &str) -> Result<bool, Error> {
        self.inner.revoke_token(name).await
    }

    async fn find_token(&self, hash: &str) -> Result<Option<TokenRecord>, Error> {
        self.inner.find_token(hash).await
    }

    async fn purge(&self, run_ids: &[String]) -> Result<chassis_store::Purged, Error> {
        self.inner.purge(run_ids).await
    }

    async fn import(&self, run: &chassis_store::Restored) -> Result<(), Error> {
        self.inner.import(run).await
    }

    fn clock(&self) -> Arc<dyn Clock> {
        self.inner.clock()
    }
}

#[async_trait]
impl chassis_store::Outbox for Counting {
    async fn claim_deliveries(
        &self,
        owner: &str,
        ttl: Duration,
        limit: usize,
    ) -> Result<Vec<Delivery>, Error> {
        self.inner.claim_deliveries(owner, ttl, limit).await
    }

    async fn record_attempt(&self, delivery: &Delivery, attempt: Attempt) -> Result<bool, Error> {
        self.inner.record_attempt(delivery, attempt).await
    }

    async fn deliveries(&self, filter: &OutboxFilter) -> Result<Vec<Delivery>, Error> {
        self.inner.deliveries(filter).await
    }

    async fn next_delivery_ms(&self) -> Result<Option<i64>, Error> {
        self.inner.next_delivery_ms().await
    }
}

#[async_trait]
impl chassis_store::Schedules for Counting {
    async fn put_schedule(&self, schedule: &Schedule) -> Result<(), Error> {
        self.inner.put_schedule(schedule).await
    }

    async fn schedules(&self) -> Result<Vec<Schedule>, Error> {
        self.inner.schedules().await
    }

    async fn remove_schedule(&self, schedule_id: &str) -> Result<bool, Error> {
        self.inner.remove_schedule(schedule_id).await
    }

    async fn claim_schedules(
        &self,
        owner: &str,
        ttl: Duration,
        limit: usize,
    ) -> Result<Vec<Schedule>, Error> {
        self.inner.claim_schedules(owner, ttl, limit).await
    }

    async fn record_fired(
        &self,
        schedule: &Schedule,
        fired: &[Fired],
        next_slot_ms: i64,
    ) -> Result<bool, Error> {
        self.inner.record_fired(schedule, fired, next_slot_ms).await
    }

    async fn fired_slots(&self, schedule_id: &str) -> Result<Vec<Fired>, Error> {
        self.inner.fired_slots(schedule_id).await
    }

    async fn next_schedule_ms(&self) -> Result<Option<i64>, Error> {
        self.inner.next_schedule_ms().await
    }
}

#[async_trait]
impl chassis_store::RateLimits for Counting {
    async fn acquire(&self, key: &str, capacity: Capacity) -> Result<Option<Duration>, Error> {
        self.inner.acquire(key, capacity).await
    }
}

#[async_trait]
impl chassis_store::Snapshots for Counting {
    async fn put_snapshot(&self, run_id: &str, seq: u64, state: &str) -> Result<(), Error> {
        self.inner.put_snapshot(run_id, seq, state).await
    }

    async fn latest_snapshot(&self, run_id: &str) -> Result<Option<(u64, String)>, Error> {
        self.inner.latest_snapshot(run_id).await
    }
}
