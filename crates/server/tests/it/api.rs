//! Every endpoint over real HTTP, the approval flow end to end, and the errors: problem+json
//! naming the field or the state, nothing journaled for a refused request.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::util::TestServer;

fn events_of(page: &Value) -> Vec<Value> {
    page["events"].as_array().cloned().unwrap_or_default()
}

/// Start → wait for approval → the inbox shows it → edited arguments failing the schema are
/// refused with 422 and nothing is journaled → approve → the run completes once; the audit
/// trail carries the token's name; events, trace, stats, agents, metrics and the document
/// all answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_approval_flow_through_the_api() {
    let s = TestServer::start(4, Duration::ZERO).await;
    let run = s.start_run("invoice 7").await;
    let waiting = s.until_status(&run, &["waiting"]).await;
    assert_eq!(waiting["waiting"]["kind"], "approval");
    assert_eq!(waiting["waiting"]["call_id"], "1.0");

    let inbox = s.get("/v1/approvals").await;
    let item = &inbox.as_array().unwrap()[0];
    assert_eq!(item["run_id"], run.as_str());
    assert_eq!(item["tool"], "pay");
    assert_eq!(item["risk"], "irreversible");
    assert_eq!(item["args"]["amount"], 150);
    assert_eq!(item["input"], "invoice 7");
    assert_eq!(item["args_schema"]["required"], json!(["amount", "to"]));
    assert!(item["expires_at_ms"].as_u64().is_some());

    let before = s.get(&format!("/v1/runs/{run}")).await["events"].clone();
    let (status, problem) = s
        .call(
            Method::POST,
            &format!("/v1/runs/{run}/calls/1.0/approve"),
            Some(&s.tokens.approver),
            Some(json!({ "args": { "amount": -5, "to": "acme" } })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["type"], "/problems/invalid");
    assert_eq!(problem["field"], "/args");
    assert!(
        problem["detail"].as_str().unwrap().contains("/amount"),
        "{problem}"
    );
    assert_eq!(
        s.get(&format!("/v1/runs/{run}")).await["events"],
        before,
        "nothing was journaled"
    );

    let (status, decided) = s
        .call(
            Method::POST,
            &format!("/v1/runs/{run}/calls/1.0/approve"),
            Some(&s.tokens.approver),
            Some(json!({ "args": { "amount": 120, "to": "acme" }, "note": "capped" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{decided}");
    assert_eq!(decided["woken"], true);
    let done = s.until_status(&run, &["completed"]).await;
    assert_eq!(done["output"], "result: paid 120 to acme");
    assert_eq!(s.ledger().len(), 1);

    // The audit trail names the token, not anything the request said.
    let page = s.get(&format!("/v1/runs/{run}/events")).await;
    let events = events_of(&page);
    let decision = events
        .iter()
        .find(|e| e["kind"] == "approval_decided")
        .unwrap();
    assert_eq!(decision["by"], "approver-1");
    assert_eq!(decision["note"], "capped");
    assert_eq!(page["ended"], true);
    let after = s
        .get(&format!("/v1/runs/{run}/events?after=3&limit=2"))
        .await;
    let seqs: Vec<u64> = events_of(&after)
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, vec![4, 5]);
    assert_eq!(after["last_seq"], 5);

    let trace = s.get(&format!("/v1/runs/{run}/trace")).await;
    assert_eq!(trace["run_id"], run.as_str());
    let stats = s.get("/v1/stats").await;
    assert_eq!(stats["total"]["runs"], 1);
    assert_eq!(stats["total"]["completed"], 1);
    assert_eq!(stats["tools"][0]["tool"], "pay");
    assert_eq!(stats["tools"][0]["edited"], 1);
    let agents = s.get("/v1/agents").await;
    assert_eq!(agents[0]["name"], "payer");
    assert_eq!(agents[0]["version"], done["version"]);
    let list = s.get("/v1/runs?status=completed&agent=payer").await;
    assert_eq!(list["runs"].as_array().unwrap().len(), 1);
    let me = s.get("/v1/me").await;
    assert_eq!(
        (me["name"].as_str(), me["role"].as_str()),
        (Some("admin"), Some("admin"))
    );
    let (status, _) = s
        .call(Method::GET, "/readyz", Some(&s.tokens.viewer), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, metrics) = s
        .call(Method::GET, "/metrics", Some(&s.tokens.viewer), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        metrics.as_str().unwrap().contains("chassis_runs"),
        "{metrics}"
    );
    let doc = s.get("/openapi.json").await;
    assert!(doc["paths"]["/v1/runs/{id}/calls/{call}/approve"]["post"].is_object());
    let (status, health) = s.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(
        (status, health["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
}

/// A rejection reaches the model; a resolve, limit decisions, cancel and resume answer with
/// the run after them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejections_cancels_and_resumes() {
    let s = TestServer::start(4, Duration::ZERO).await;
    let run = s.start_run("invoice 8").await;
    s.until_status(&run, &["waiting"]).await;
    let (status, _) = s
        .call(
            Method::POST,
            &format!("/v1/runs/{run}/calls/1.0/reject"),
            Some(&s.tokens.approver),
            Some(json!({ "reason": "over budget" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let done = s.until_status(&run, &["completed"]).await;
    assert!(
        done["output"]
            .as_str()
            .unwrap()
            .contains("approver-1 rejected this call: over budget"),
        "{done}"
    );
    // Deciding it again is a state conflict.
    let (status, problem) = s
        .call(
            Method::POST,
            &format!("/v1/runs/{run}/calls/1.0/approve"),
            Some(&s.tokens.approver),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");

    // Cancel a waiting run: it ends here, with who and why.
    let other = s.start_run("invoice 9").await;
    s.until_status(&other, &["waiting"]).await;
    let (status, cancelled) = s
        .call(
            Method::POST,
            &format!("/v1/runs/{other}/cancel"),
            Some(&s.tokens.operator),
            Some(json!({ "reason": "duplicate" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    // Ended here, unless the worker had not yet let go of the run it had just parked as
    // waiting (a loaded machine): then it is `cancelling` and the worker ends it.
    match cancelled["status"].as_str() {
        Some("cancelled") => {}
        Some("cancelling") => {
            s.until_status(&other, &["cancelled"]).await;
        }
        other => panic!("a cancelled waiting run is {other:?}"),
    }
    let events = events_of(&s.get(&format!("/v1/runs/{other}/events")).await);
    let last = events.last().unwrap();
    assert_eq!(
        (
            last["kind"].as_str(),
            last["by"].as_str(),
            last["reason"].as_str()
        ),
        (Some("run_cancelled"), Some("operator-1"), Some("duplicate"))
    );
    let (status, _) = s
        .call(
            Method::POST,
            &format!("/v1/runs/{other}/cancel"),
            Some(&s.tokens.operator),
            Some(json!({ "reason": "again" })),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a finished run cannot be cancelled"
    );
    // Resume of a finished run, and limit decisions on a run without a limit request.
    let (status, _) = s
        .call(
            Method::POST,
            &format!("/v1/runs/{other}/resume"),
            Some(&s.tokens.operator),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let third = s.start_run("invoice 10").await;
    s.until_status(&third, &["waiting"]).await;
    let (status, problem) = s
        .call(
            Method::POST,
            &format!("/v1/runs/{third}/limit/reject"),
            Some(&s.tokens.approver),
            Some(json!({ "reason": "no" })),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    let (status, problem) = s
        .call(
            Method::POST,
            &format!("/v1/runs/{third}/limit/approve"),
            Some(&s.tokens.approver),
            Some(json!({ "raise": { "max_bananas": 3 } })),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    assert_eq!(problem["field"], "/raise/max_bananas");
    // A raise is the answer to a limit request: a run waiting on none is refused, as
    // `chassis approve RUN limit` refuses it, and nothing is journaled.
    let before = s.get(&format!("/v1/runs/{third}")).await["events"].clone();
    let (status, problem) = s
        .call(
            Method::POST,
            &format!("/v1/runs/{third}/limit/approve"),
            Some(&s.tokens.approver),
            Some(json!({ "raise": { "max_steps": 9, "max_wall_time": "2h" } })),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("no pending limit request"),
        "{problem}"
    );
    let after = s.get(&format!("/v1/runs/{third}")).await;
    assert_eq!(after["events"], before);
    assert_eq!(after["limits"]["max_steps"], 5.0);
    let (status, problem) = s
        .call(
            Method::POST,
            &format!("/v1/runs/{third}/calls/1.0/resolve"),
            Some(&s.tokens.approver),
            Some(json!({ "outcome": "succeeded" })),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "not an unknown outcome: {problem}"
    );
    assert!(s.ledger().is_empty());
}

/// Malformed bodies (400, naming what), oversized ones (413), unknown runs and agents (404),
/// unknown endpoints (404): all problem+json, nothing journaled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_problems_and_journal_nothing() {
    let s = TestServer::start(0, Duration::ZERO).await;
    let token = Some(s.tokens.admin.as_str());
    let (status, problem) = s
        .call(
            Method::POST,
            "/v1/runs",
            token,
            Some(json!({ "input": "x" })),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("agent"),
        "{problem}"
    );
    let (status, problem) = s
        .call(
            Method::POST,
            "/v1/runs",
            token,
            Some(json!({ "agent": "payer", "input": "x", "extra": 1 })),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    let (status, problem) = s
        .call(
            Method::POST,
            "/v1/runs",
            token,
            Some(json!({ "agent": "nobody", "input": "x" })),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");
    assert_eq!(problem["field"], "/agent");
    let huge = "x".repeat(chassis_server::MAX_BODY + 10);
    let (status, problem) = s
        .call(
            Method::POST,
            "/v1/runs",
            token,
            Some(json!({ "agent": "payer", "input": huge })),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{problem}");
    let response = s
        .http
        .post(format!("{}/v1/runs", s.base))
        .bearer_auth(&s.tokens.admin)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let (status, _) = s.call(Method::GET, "/v1/runs/run_nope", token, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = s
        .call(Method::GET, "/v1/runs/run_nope/stream", token, None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = s.call(Method::GET, "/v1/nowhere", token, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, problem) = s
        .call(Method::GET, "/v1/runs?status=sleeping", token, None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(problem["field"], "status");
    let (status, _) = s
        .call(Method::GET, "/v1/runs?cursor=garbage", token, None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        s.get("/v1/runs").await["runs"],
        json!([]),
        "nothing journaled"
    );
}

/// The same `Idempotency-Key` returns the same run; pages follow their cursor; a run started
/// by an API-only server stays queued until a worker takes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_pages_and_queued_runs() {
    let s = TestServer::start(0, Duration::ZERO).await;
    let start = |key: &'static str| {
        s.http
            .post(format!("{}/v1/runs", s.base))
            .bearer_auth(&s.tokens.operator)
            .header("Idempotency-Key", key)
            .json(&json!({ "agent": "payer", "input": "keyed", "tags": { "batch": "b1" } }))
            .send()
    };
    let first = start("k-1").await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();
    let again = start("k-1").await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["run_id"], first["run_id"]);
    assert_eq!(again["existing"], true);
    for i in 0..4 {
        s.start_run(&format!("page {i}")).await;
    }
    let queued = s.get("/v1/runs?status=queued").await;
    assert_eq!(queued["runs"].as_array().unwrap().len(), 5);
    assert!(queued["runs"][0]["queued"].as_bool().unwrap());
    let tagged = s.get("/v1/runs?tag=batch=b1").await;
    assert_eq!(tagged["runs"].as_array().unwrap().len(), 1);
    let mut seen = Vec::new();
    let mut path = "/v1/runs?limit=2".to_string();
    loop {
        let page = s.get(&path).await;
        for run in page["runs"].as_array().unwrap() {
            seen.push(run["run_id"].as_str().unwrap().to_string());
        }
        match page["next"].as_str() {
            Some(next) => path = format!("/v1/runs?limit=2&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5, "{seen:?}");
    let unique: std::collections::BTreeSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), 5);
}

/// Two approvers approve the same call at once: exactly one wins, the other gets 409, and the
/// payment happens once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_approvals_of_one_call_have_one_winner() {
    let s = TestServer::start(4, Duration::ZERO).await;
    for round in 0..5 {
        let run = s.start_run(&format!("race {round}")).await;
        s.until_status(&run, &["waiting"]).await;
        let path = format!("/v1/runs/{run}/calls/1.0/approve");
        let (a, b) = tokio::join!(
            s.call(
                Method::POST,
                &path,
                Some(&s.tokens.approver),
                Some(json!({}))
            ),
            s.call(Method::POST, &path, Some(&s.tokens.admin), Some(json!({}))),
        );
        let mut statuses = [a.0, b.0];
        statuses.sort();
        assert_eq!(
            statuses,
            [StatusCode::OK, StatusCode::CONFLICT],
            "{a:?} {b:?}"
        );
        s.until_status(&run, &["completed"]).await;
        let decisions = events_of(&s.get(&format!("/v1/runs/{run}/events")).await)
            .into_iter()
            .filter(|e| e["kind"] == "approval_decided")
            .count();
        assert_eq!(decisions, 1);
    }
    assert_eq!(s.ledger().len(), 5, "each run paid once");
}

/// Tokens: made once (shown in the response only), listed without the secret, revoked (then
/// refused).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_made_listed_and_revoked() {
    let s = TestServer::start(0, Duration::ZERO).await;
    let (status, made) = s
        .call(
            Method::POST,
            "/v1/tokens",
            Some(&s.tokens.admin),
            Some(json!({ "name": "carol", "role": "approver" })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let token = made["token"].as_str().unwrap().to_string();
    let (status, me) = s.call(Method::GET, "/v1/me", Some(&token), None).await;
    assert_eq!(
        (status, me["name"].as_str()),
        (StatusCode::OK, Some("carol"))
    );
    let listed = s.get("/v1/tokens").await;
    assert!(
        !listed.to_string().contains(&token),
        "the secret is never listed"
    );
    let (status, _) = s
        .call(
            Method::POST,
            "/v1/tokens",
            Some(&s.tokens.admin),
            Some(json!({ "name": "carol", "role": "viewer" })),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = s
        .call(
            Method::DELETE,
            "/v1/tokens/carol",
            Some(&s.tokens.admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, problem) = s.call(Method::GET, "/v1/me", Some(&token), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{problem}");
    let (status, _) = s
        .call(
            Method::DELETE,
            "/v1/tokens/carol",
            Some(&s.tokens.admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Schedules through the API: added for an agent the server offers (a bad cron refused naming
/// the field, an unknown agent 404), listed, removed; webhook deliveries listed for admins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_are_added_listed_and_removed() {
    let s = TestServer::start(0, Duration::ZERO).await;
    let agent = s.get("/v1/agents").await[0]["name"]
        .as_str()
        .expect("an agent")
        .to_string();
    let (status, problem) = s
        .call(
            Method::POST,
            "/v1/schedules",
            Some(&s.tokens.operator),
            Some(json!({ "agent": agent, "cron": "61 * * * *", "input": "x" })),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    assert_eq!(problem["field"], "/cron");
    let (status, created) = s
        .call(
            Method::POST,
            "/v1/schedules",
            Some(&s.tokens.operator),
            Some(json!({
                "agent": agent,
                "cron": "0 6 * * MON-FRI",
                "input": "morning report",
                "timezone": "Europe/Berlin",
                "overlap": "queue",
                "catch_up": "none",
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["schedule_id"].as_str().expect("an id").to_string();
    assert_eq!(created["timezone"], "Europe/Berlin");
    assert_eq!(created["overlap"], "queue");
    assert!(created["next_slot_ms"].as_i64().is_some_and(|ms| ms > 0));
    let listed = s.get("/v1/schedules").await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["schedule_id"], id.as_str());
    let (status, _) = s
        .call(
            Method::DELETE,
            &format!("/v1/schedules/{id}"),
            Some(&s.tokens.operator),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(s.get("/v1/schedules").await, json!([]));
    let (status, outbox) = s
        .call(
            Method::GET,
            "/v1/outbox?status=pending",
            Some(&s.tokens.admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{outbox}");
    assert_eq!(outbox, json!([]));
    let (status, problem) = s
        .call(
            Method::GET,
            "/v1/outbox?status=lost",
            Some(&s.tokens.admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_continues_a_completed_run_and_a_worker_answers_it() {
    let s = TestServer::start(4, Duration::ZERO).await;
    let run = s.start_run("chat with me").await;
    let first = s.until_status(&run, &["completed"]).await;
    assert_eq!(first["output"], "hi, chat with me");

    let path = format!("/v1/runs/{run}/messages");
    let (status, body) = s
        .call(
            Method::POST,
            &path,
            Some(&s.tokens.operator),
            Some(json!({ "text": "and then?" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Woken, unless a worker was quicker still and has answered already.
    assert!(
        body["woken"] == true || body["run"]["status"] == "completed",
        "{body}"
    );
    let done = s.until_status(&run, &["completed"]).await;
    assert_eq!(done["output"], "turn 1: you said and then?", "{done}");
    let events = events_of(&s.get(&format!("/v1/runs/{run}/events")).await);
    let message = events
        .iter()
        .find(|e| e["kind"] == "user_message")
        .expect("the message is journaled");
    assert_eq!(
        (message["text"].as_str(), message["by"].as_str()),
        (Some("and then?"), Some("operator-1"))
    );

    // An empty message is invalid; a run waiting for an approval has no answer to continue.
    let (status, problem) = s
        .call(
            Method::POST,
            &path,
            Some(&s.tokens.operator),
            Some(json!({ "text": " " })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    let waiting = s.start_run("invoice 10").await;
    s.until_status(&waiting, &["waiting"]).await;
    let seq = events_of(&s.get(&format!("/v1/runs/{waiting}/events")).await).len();
    let (status, problem) = s
        .call(
            Method::POST,
            &format!("/v1/runs/{waiting}/messages"),
            Some(&s.tokens.operator),
            Some(json!({ "text": "hurry" })),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("waiting"),
        "{problem}"
    );
    assert_eq!(
        events_of(&s.get(&format!("/v1/runs/{waiting}/events")).await).len(),
        seq
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_is_driven_by_the_workers_and_listed_by_its_original() {
    let s = TestServer::start(4, Duration::ZERO).await;
    let run = s.start_run("chat with me").await;
    s.until_status(&run, &["completed"]).await;
    let len = events_of(&s.get(&format!("/v1/runs/{run}/events")).await).len();

    let (status, forked) = s
        .call(
            Method::POST,
            &format!("/v1/runs/{run}/fork"),
            Some(&s.tokens.operator),
            Some(json!({ "at": len, "input": "again?" })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{forked}");
    assert_eq!(forked["forked_from"], run.as_str());
    let fork = forked["run_id"].as_str().unwrap().to_string();
    let done = s.until_status(&fork, &["completed"]).await;
    assert_eq!(done["output"], "turn 1: you said again?", "{done}");
    // The run object says where a fork came from and which turn it is at.
    assert_eq!(done["forked_from"], run.as_str(), "{done}");
    assert_eq!(done["forked_at"], len, "{done}");
    assert_eq!(done["turns"], 2, "{done}");
    let original = s.get(&format!("/v1/runs/{run}")).await;
    assert_eq!(original["turns"], 1, "{original}");
    assert!(original["forked_from"].is_null(), "{original}");
    let listed = s.get(&format!("/v1/runs?forked_from={run}")).await;
    let ids: Vec<&str> = listed["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["run_id"].as_str())
        .collect();
    assert_eq!(ids, [fork.as_str()]);

    // A completed copy without a message has nothing to do; `at` past the end is invalid.
    let (status, problem) = s
        .call(
            Method::POST,
            &format!("/v1/runs/{run}/fork"),
            Some(&s.tokens.operator),
            Some(json!({ "at": len })),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    let (status, problem) = s
        .call(
            Method::POST,
            &format!("/v1/runs/{run}/fork"),
            Some(&s.tokens.operator),
            Some(json!({ "at": len + 1 })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
}
