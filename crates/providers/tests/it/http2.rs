//! HTTP protocol choice: HTTP/2 spreads calls over connections of at most `max_streams`
//! calls each; the default speaks HTTP/1.1 to a plain-HTTP endpoint.

use std::sync::Arc;
use std::time::Duration;

use chassis_mock::MockConfig;
use chassis_providers::{
    AnthropicClient, HttpOptions, HttpVersion, ModelClient, OpenAiClient, Timeouts,
};

use crate::{Api, request, serve, user};

fn client(api: Api, mock: &chassis_mock::MockHandle, options: HttpOptions) -> Arc<dyn ModelClient> {
    let timeouts = Timeouts::total(Duration::from_secs(10));
    match api {
        Api::OpenAi => Arc::new(
            OpenAiClient::with_options("mock", &mock.base_url(), None, timeouts, options).unwrap(),
        ),
        Api::Anthropic => Arc::new(
            AnthropicClient::with_options(
                "mock",
                &mock.anthropic_base_url(),
                None,
                timeouts,
                options,
            )
            .unwrap(),
        ),
    }
}

#[tokio::test]
async fn http2_calls_share_connections_up_to_max_streams_openai() {
    http2_calls_share_connections_up_to_max_streams(Api::OpenAi).await;
}

#[tokio::test]
async fn http2_calls_share_connections_up_to_max_streams_anthropic() {
    http2_calls_share_connections_up_to_max_streams(Api::Anthropic).await;
}

/// Five calls at once, each held 300 ms by the mock: all answered over HTTP/2, on three
/// connections of at most two calls each.
async fn http2_calls_share_connections_up_to_max_streams(api: Api) {
    let mock = serve(MockConfig {
        latency: Duration::from_millis(300),
        ..MockConfig::default()
    })
    .await;
    let client = client(
        api,
        &mock,
        HttpOptions {
            version: HttpVersion::Http2,
            max_streams: 2,
        },
    );
    let calls: Vec<_> = (0..5)
        .map(|i| {
            let client = Arc::clone(&client);
            tokio::spawn(async move {
                client
                    .complete(&request(vec![user(&format!("call {i}"))]))
                    .await
            })
        })
        .collect();
    for (i, call) in calls.into_iter().enumerate() {
        let answer = call
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("call {i} failed: {e}"));
        assert_eq!(
            answer.message.content.as_deref(),
            Some(format!("hello, you said call {i}").as_str())
        );
    }
    let stats = mock.stats();
    assert_eq!(stats.by_protocol.get("HTTP/2.0"), Some(&5), "{stats:?}");
    assert_eq!(stats.connections, 3, "{stats:?}");
}

#[tokio::test]
async fn plain_http_defaults_to_http1_and_http1_can_be_forced() {
    let mock = serve(MockConfig::default()).await;
    for version in [HttpVersion::Auto, HttpVersion::Http1] {
        let client = client(
            Api::OpenAi,
            &mock,
            HttpOptions {
                version,
                ..HttpOptions::default()
            },
        );
        client.complete(&request(vec![user("hi")])).await.unwrap();
    }
    assert_eq!(mock.stats().by_protocol.get("HTTP/1.1"), Some(&2));
}
