//! Request counters, served at `GET /_mock/stats` and by [`MockHandle::stats`](crate::MockHandle::stats).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};

/// Longest conversation key kept in [`Stats::by_conversation`], in characters.
const CONVERSATION_KEY_CHARS: usize = 200;

/// Longest `User-Agent` kept in [`Stats::by_user_agent`], in characters.
const USER_AGENT_CHARS: usize = 200;

/// What the mock has been asked since it started or was last reset.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Stats {
    /// Every model request (chat completions and messages), including invalid and faulted ones.
    pub requests: u64,
    /// Valid requests by turn (the number of assistant messages in the request).
    pub by_turn: BTreeMap<u32, u64>,
    /// Valid requests by first user message (truncated to 200 characters), then by turn.
    pub by_conversation: BTreeMap<String, BTreeMap<u32, u64>>,
    /// Injected faults by [`FaultKind::name`](crate::FaultKind::name).
    pub faults: BTreeMap<String, u64>,
    /// Model requests by HTTP protocol (`HTTP/1.1`, `HTTP/2.0`).
    #[serde(default)]
    pub by_protocol: BTreeMap<String, u64>,
    /// Model requests by `User-Agent` header (truncated to 200 characters); `""` counts
    /// requests without one.
    #[serde(default)]
    pub by_user_agent: BTreeMap<String, u64>,
    /// TCP connections accepted.
    #[serde(default)]
    pub connections: u64,
    /// The largest prompt of a valid request, in characters of its messages' text (what a
    /// client keeping its context inside a window is checked against).
    #[serde(default)]
    pub largest_prompt_chars: u64,
}

/// Shared, lock-briefly counters behind the server.
#[derive(Debug, Default)]
pub(crate) struct StatsRecorder {
    inner: Mutex<Stats>,
}

impl StatsRecorder {
    /// Counts a request that could not be read.
    pub(crate) fn record_invalid(&self) {
        self.lock().requests += 1;
    }

    /// Counts an accepted connection.
    pub(crate) fn record_connection(&self) {
        self.lock().connections += 1;
    }

    /// Counts a model request by the protocol it came over.
    pub(crate) fn record_protocol(&self, version: axum::http::Version) {
        use axum::http::Version;
        let name = match version {
            Version::HTTP_2 => "HTTP/2.0",
            Version::HTTP_11 => "HTTP/1.1",
            Version::HTTP_10 => "HTTP/1.0",
            _ => "other",
        };
        let mut stats = self.lock();
        match stats.by_protocol.get_mut(name) {
            Some(count) => *count += 1,
            None => {
                stats.by_protocol.insert(name.to_owned(), 1);
            }
        }
    }

    /// Counts a model request by its `User-Agent`, if it has one.
    pub(crate) fn record_user_agent(&self, value: Option<&axum::http::HeaderValue>) {
        let text = value.map_or(Cow::Borrowed(""), |v| String::from_utf8_lossy(v.as_bytes()));
        let key = truncate_chars(&text, USER_AGENT_CHARS);
        let mut stats = self.lock();
        match stats.by_user_agent.get_mut(key) {
            Some(count) => *count += 1,
            None => {
                stats.by_user_agent.insert(key.to_owned(), 1);
            }
        }
    }

    /// Counts a request for `turn` of the conversation opened by `input`.
    pub(crate) fn record(&self, turn: u32, input: &str, prompt_chars: usize) {
        let key = truncate_chars(input, CONVERSATION_KEY_CHARS);
        let mut stats = self.lock();
        stats.requests += 1;
        stats.largest_prompt_chars = stats.largest_prompt_chars.max(prompt_chars as u64);
        *stats.by_turn.entry(turn).or_default() += 1;
        // Look up before inserting so the common case does not allocate a key.
        let turns = match stats.by_conversation.get_mut(key) {
            Some(turns) => turns,
            None => stats.by_conversation.entry(key.to_owned()).or_default(),
        };
        *turns.entry(turn).or_default() += 1;
    }

    /// Counts an injected fault by name.
    pub(crate) fn record_fault(&self, name: &'static str) {
        let mut stats = self.lock();
        match stats.faults.get_mut(name) {
            Some(count) => *count += 1,
            None => {
                stats.faults.insert(name.to_owned(), 1);
            }
        }
    }

    pub(crate) fn snapshot(&self) -> Stats {
        self.lock().clone()
    }

    pub(crate) fn reset(&self) {
        *self.lock() = Stats::default();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Stats> {
        // Counters stay meaningful even if a holder panicked; there is no invariant to protect.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn truncate_chars(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_resets() {
        let recorder = StatsRecorder::default();
        recorder.record(0, "hello", 0);
        recorder.record(1, "hello", 0);
        recorder.record(0, "other", 0);
        recorder.record_invalid();
        recorder.record_fault("429");
        recorder.record_fault("429");
        let stats = recorder.snapshot();
        assert_eq!(stats.requests, 4);
        assert_eq!(stats.by_turn, BTreeMap::from([(0, 2), (1, 1)]));
        assert_eq!(
            stats.by_conversation["hello"],
            BTreeMap::from([(0, 1), (1, 1)])
        );
        assert_eq!(stats.faults["429"], 2);
        recorder.reset();
        assert_eq!(recorder.snapshot(), Stats::default());
    }

    #[test]
    fn long_conversation_keys_are_truncated_on_char_boundaries() {
        let recorder = StatsRecorder::default();
        let input = "é".repeat(300);
        recorder.record(0, &input, 0);
        let stats = recorder.snapshot();
        let key = stats.by_conversation.keys().next().unwrap();
        assert_eq!(key.chars().count(), 200);
    }
}
