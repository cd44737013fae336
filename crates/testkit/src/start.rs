//! A `run_started` event with sensible defaults: the start of a scripted journal.

use std::collections::BTreeMap;

use chassis_core::{Event, Limits, RiskClass, RunStart, ToolDef};

/// When the scripted run starts: 2023-11-14T22:13:20Z, in ms since the epoch.
pub const STARTED_AT_MS: u64 = 1_700_000_000_000;

/// Builds a `run_started` event: agent `desk` on `openai:gpt-4o-mini` with a fallback, one
/// read-only `lookup` tool, default limits, 512 tokens per call, started at [`STARTED_AT_MS`].
#[derive(Clone, Debug)]
pub struct RunStartBuilder {
    start: RunStart,
}

impl Default for RunStartBuilder {
    fn default() -> RunStartBuilder {
        RunStartBuilder::new()
    }
}

impl RunStartBuilder {
    /// The defaults.
    pub fn new() -> RunStartBuilder {
        RunStartBuilder {
            start: RunStart {
                agent: "desk".into(),
                spec_path: "/agent.toml".into(),
                input: "hello".into(),
                system: "be brief".into(),
                model: "openai:gpt-4o-mini".into(),
                fallbacks: vec!["anthropic:claude-haiku-4-5".into()],
                tools: vec![tool("lookup", RiskClass::ReadOnly)].into(),
                limits: Limits::default(),
                max_tokens: 512,
                prices: BTreeMap::new(),
                at_ms: STARTED_AT_MS,
                version: String::new(),
                version_label: None,
                approvals: Default::default(),
                tags: BTreeMap::new(),
                max_repairs: chassis_core::event::DEFAULT_MAX_REPAIRS,
                park_retry_ms: chassis_core::event::DEFAULT_PARK_RETRY_MS,
                forked_from: None,
                context: Default::default(),
            },
        }
    }

    /// The agent's name.
    pub fn agent(mut self, agent: &str) -> RunStartBuilder {
        self.start.agent = agent.into();
        self
    }

    /// The run's input.
    pub fn input(mut self, input: &str) -> RunStartBuilder {
        self.start.input = input.into();
        self
    }

    /// The primary model, `provider:model`, and its fallbacks.
    pub fn models(mut self, primary: &str, fallbacks: &[&str]) -> RunStartBuilder {
        self.start.model = primary.into();
        self.start.fallbacks = fallbacks.iter().map(|m| m.to_string()).collect();
        self
    }

    /// The tools offered, replacing the default one.
    pub fn tools(mut self, tools: impl IntoIterator<Item = ToolDef>) -> RunStartBuilder {
        self.start.tools = tools.into_iter().collect::<Vec<_>>().into();
        self
    }

    /// The run's limits.
    pub fn limits(mut self, limits: Limits) -> RunStartBuilder {
        self.start.limits = limits;
        self
    }

    /// The approval policy, as the spec's `[approvals]` section would give it.
    pub fn approvals(
        mut self,
        approvals: chassis_core::approvals::ApprovalPolicy,
    ) -> RunStartBuilder {
        self.start.approvals = approvals;
        self
    }

    /// When the run starts, ms since the epoch.
    pub fn at_ms(mut self, at_ms: u64) -> RunStartBuilder {
        self.start.at_ms = at_ms;
        self
    }

    /// The agent version's fingerprint.
    pub fn version(mut self, version: &str) -> RunStartBuilder {
        self.start.version = version.into();
        self
    }

    /// The payload.
    pub fn build(self) -> RunStart {
        self.start
    }

    /// The event.
    pub fn event(self) -> Event {
        Event::RunStarted(Box::new(self.start))
    }
}

/// A tool definition taking any object, described as "Looks things up", tried as many times
/// as a spec's default.
pub fn tool(name: &str, risk: RiskClass) -> ToolDef {
    ToolDef {
        name: name.into(),
        description: "Looks things up".into(),
        parameters: serde_json::json!({ "type": "object" }),
        risk,
        idempotent: false,
        max_attempts: chassis_core::tool::DEFAULT_TOOL_ATTEMPTS,
    }
}
