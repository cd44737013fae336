//! The stats endpoint, the handle's view of it, and reset.

use std::collections::BTreeMap;

use chassis_mock::{FaultKind, MockConfig, Stats};
use serde_json::json;

use crate::{SCRIPT, chat, client, serve, user};

#[tokio::test]
async fn counts_requests_by_turn_and_conversation_then_resets() {
    let mock = serve(MockConfig::default(), SCRIPT).await;
    let client = client();
    let assistant = json!({ "role": "assistant", "content": "x" });
    chat(&client, &mock, json!([user("alpha")])).await;
    chat(
        &client,
        &mock,
        json!([user("alpha"), assistant, user("more")]),
    )
    .await;
    chat(&client, &mock, json!([user("beta")])).await;
    let response = client
        .post(format!("{}/chat/completions", mock.base_url()))
        .body("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);

    let stats_url = format!("http://{}/_mock/stats", mock.addr());
    let served: Stats = client
        .get(&stats_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(served, mock.stats());
    assert_eq!(served.requests, 4);
    assert_eq!(served.by_turn, BTreeMap::from([(0, 2), (1, 1)]));
    assert_eq!(
        served.by_conversation,
        BTreeMap::from([
            ("alpha".to_owned(), BTreeMap::from([(0, 1), (1, 1)])),
            ("beta".to_owned(), BTreeMap::from([(0, 1)])),
        ])
    );
    assert!(served.faults.is_empty());

    let reset = client
        .post(format!("http://{}/_mock/reset", mock.addr()))
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), 204);
    assert_eq!(mock.stats(), Stats::default());
    mock.shutdown().await;
}

#[tokio::test]
async fn faulted_requests_are_counted_too() {
    let config = MockConfig {
        fault_rate: 1.0,
        faults: vec![FaultKind::ServerError],
        ..MockConfig::default()
    };
    let mock = serve(config, SCRIPT).await;
    let client = client();
    for _ in 0..3 {
        let (status, _) = chat(&client, &mock, json!([user("gamma")])).await;
        assert_eq!(status, 500);
    }
    let stats = mock.stats();
    assert_eq!(stats.requests, 3);
    assert_eq!(stats.by_turn, BTreeMap::from([(0, 3)]));
    assert_eq!(stats.faults, BTreeMap::from([("500".to_owned(), 3)]));
    mock.shutdown().await;
}
