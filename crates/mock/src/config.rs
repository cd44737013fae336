//! Server settings: seed, latency, fault injection, streaming, and the rules of real servers
//! the mock can enforce.

use std::time::Duration;

use crate::FaultKind;

/// What the mock does with the tools of a request that does not say `tool_choice` (or says
/// `none`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ToolsWithoutChoice {
    /// Calls them as the script says, as OpenAI and Anthropic do (their default is `auto`).
    #[default]
    Use,
    /// Refuses the request with HTTP 400, as some servers do.
    Refuse,
    /// Answers as if no tools were offered, as llama-cpp-python does: a scripted tool-call turn
    /// comes back as text (its text, or the calls written out as JSON), and no tool is called.
    Ignore,
}

/// How the mock behaves apart from its script.
#[derive(Clone, Debug)]
pub struct MockConfig {
    /// Seed of the fault draw; the same seed and request order give the same faults.
    pub seed: u64,
    /// Added before answering every model request.
    pub latency: Duration,
    /// Probability in `0.0..=1.0` that a model request (either endpoint) gets a fault.
    pub fault_rate: f64,
    /// Which kinds may be injected; empty means all of [`FaultKind::ALL`].
    pub faults: Vec<FaultKind>,
    /// Value of the `Retry-After` header on injected 429 responses, in seconds.
    pub retry_after_secs: u64,
    /// How long a [`FaultKind::Hang`] waits before answering, and a
    /// [`FaultKind::StreamStall`] stalls mid-stream.
    pub hang: Duration,
    /// Longest piece of text or tool arguments in one chunk of a streamed answer, in characters.
    pub stream_chunk_chars: usize,
    /// Events of a streamed answer sent before a mid-stream fault strikes (at most all but the
    /// last, so the fault always comes before the stream is complete).
    pub stream_fault_after: usize,
    /// What a request that offers tools without `tool_choice` gets.
    pub tools_without_choice: ToolsWithoutChoice,
    /// Answer HTTP 500 with a validation error to an OpenAI request whose assistant message
    /// calls tools with `content: null`, as some OpenAI-compatible servers do.
    pub reject_null_tool_call_content: bool,
    /// Refuse (HTTP 403) a request without a `User-Agent` header, as some hosts' firewalls do.
    pub require_user_agent: bool,
    /// Answer a streamed OpenAI request with `tool_choice` auto by an event stream without a
    /// single event (status 200), as llama-cpp-python does: it cannot stream an automatic tool
    /// choice.
    pub unstreamable_auto_tools: bool,
    /// Answer HTTP 429 (with `Retry-After`) to a model request when this many were accepted in
    /// the 60 seconds before it, as a provider's requests-per-minute limit does; the refusals
    /// count in the stats as the `rpm_limit` fault.
    pub rpm_limit: Option<u32>,
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig {
            seed: 0,
            latency: Duration::ZERO,
            fault_rate: 0.0,
            faults: Vec::new(),
            retry_after_secs: 1,
            hang: Duration::from_secs(600),
            stream_chunk_chars: 8,
            stream_fault_after: 2,
            tools_without_choice: ToolsWithoutChoice::Use,
            reject_null_tool_call_content: false,
            require_user_agent: false,
            unstreamable_auto_tools: false,
            rpm_limit: None,
        }
    }
}

impl MockConfig {
    /// The rules of llama-cpp-python's OpenAI-compatible server (0.3, `chatml-function-calling`):
    /// tools are ignored without `tool_choice`, a streamed answer with `tool_choice` auto is an
    /// empty stream, and an assistant message that calls tools with `content: null` gets HTTP
    /// 500 with a validation error. Faults and the rest as [`MockConfig::default`].
    #[must_use]
    pub fn llama_cpp() -> MockConfig {
        MockConfig {
            tools_without_choice: ToolsWithoutChoice::Ignore,
            unstreamable_auto_tools: true,
            reject_null_tool_call_content: true,
            ..MockConfig::default()
        }
    }
}
