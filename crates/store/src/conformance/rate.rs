//! Conformance check of shared rate limits: capacity taken by one caller is not given to
//! another until it refills, and a caller that may not go is told how long to wait.

use std::sync::Arc;
use std::time::Duration;

use crate::{Capacity, Journal};

/// Takes capacity, asking again while told to wait at most a few ms (a new key's first ask).
async fn take(journal: &dyn Journal, key: &str, capacity: Capacity) -> Option<Duration> {
    for _ in 0..3 {
        match journal.acquire(key, capacity).await.unwrap() {
            Some(wait) if wait <= Duration::from_millis(5) => {
                tokio::time::sleep(wait).await;
            }
            other => return other,
        }
    }
    panic!("capacity for {key} never came");
}

/// One request per minute: the first caller goes; ten at once after it all wait, about a
/// minute; another key is not affected; tokens count against `tpm` the same way.
pub async fn rate_limits_are_shared_by_every_caller(journal: Arc<dyn Journal>) {
    let one_a_minute = Capacity {
        rpm: Some(1),
        tpm: None,
        tokens: 0,
    };
    assert_eq!(take(journal.as_ref(), "p", one_a_minute).await, None);
    let asks = (0..10).map(|_| journal.acquire("p", one_a_minute));
    for answer in futures_join(asks).await {
        let wait = answer.unwrap().expect("no capacity is left this minute");
        assert!(
            wait > Duration::from_secs(50) && wait <= Duration::from_secs(60),
            "{wait:?}"
        );
    }
    assert_eq!(take(journal.as_ref(), "q", one_a_minute).await, None);
    let tokens = Capacity {
        rpm: None,
        tpm: Some(1000),
        tokens: 500,
    };
    assert_eq!(take(journal.as_ref(), "t", tokens).await, None);
    let wait = journal
        .acquire("t", tokens)
        .await
        .unwrap()
        .expect("500 of 1000 tokens went");
    assert!(
        wait > Duration::from_secs(25) && wait <= Duration::from_secs(30),
        "{wait:?}"
    );
}

async fn futures_join<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futures {
        set.push(f);
    }
    let mut out = Vec::new();
    // Started together: each polls its statement concurrently with the others.
    let joined = async {
        let mut pinned: Vec<_> = set.into_iter().map(Box::pin).collect();
        let mut results: Vec<Option<F::Output>> = (0..pinned.len()).map(|_| None).collect();
        std::future::poll_fn(|cx| {
            let mut pending = false;
            for (i, f) in pinned.iter_mut().enumerate() {
                if results[i].is_none() {
                    match f.as_mut().poll(cx) {
                        std::task::Poll::Ready(v) => results[i] = Some(v),
                        std::task::Poll::Pending => pending = true,
                    }
                }
            }
            if pending {
                std::task::Poll::Pending
            } else {
                std::task::Poll::Ready(())
            }
        })
        .await;
        results
    };
    for r in joined.await {
        out.extend(r);
    }
    out
}
