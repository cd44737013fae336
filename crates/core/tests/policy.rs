//! A run's policy (limits, prices, approvals, model chain, park retry) is journaled in its
//! `run_started`: a run folded back from its journal, as a resume does, decides by the policy
//! it began with. Each check folds two journals that differ only in that policy and shows the
//! decision follows the journaled one.

use std::collections::BTreeMap;

use chassis_core::approvals::Verdict;
use chassis_core::limits::UnknownPrice;
use chassis_core::{
    AssistantMessage, Decision, Event, Inputs, LimitAction, LimitName, Limits, Price, RiskClass,
    RunStart, RunState, ToolCall, ToolDef, Usage, Wake, decide,
};

const MODEL: &str = "openai:primary";
const FALLBACK: &str = "anthropic:fallback";
const STARTED_AT_MS: u64 = 1_000_000;

/// A run start with the defaults a spec without those sections would give.
fn start() -> RunStart {
    RunStart {
        agent: "a".into(),
        spec_path: "/a.toml".into(),
        input: "go".into(),
        system: "s".into(),
        model: MODEL.into(),
        fallbacks: vec![],
        tools: vec![ToolDef {
            name: "lookup".into(),
            description: String::new(),
            parameters: serde_json::json!({"type": "object"}),
            risk: RiskClass::ReadOnly,
            idempotent: false,
            max_attempts: 1,
        }]
        .into(),
        limits: Limits::default(),
        max_tokens: 500,
        prices: BTreeMap::new(),
        at_ms: STARTED_AT_MS,
        max_repairs: 2,
        park_retry_ms: chassis_core::event::DEFAULT_PARK_RETRY_MS,
        context: Default::default(),
        version: String::new(),
        version_label: None,
        approvals: Default::default(),
        tags: Default::default(),
    }
}

/// The run as a resume finds it: every event written as the journal stores it (JSON) and read
/// back, then folded.
fn resumed(start: RunStart, rest: &[Event]) -> RunState {
    let journal: Vec<String> = std::iter::once(Event::RunStarted(Box::new(start)))
        .chain(rest.iter().cloned())
        .map(|e| serde_json::to_string(&e).unwrap())
        .collect();
    let events: Vec<Event> = journal
        .iter()
        .map(|json| serde_json::from_str(json).unwrap())
        .collect();
    RunState::fold(events.iter()).unwrap()
}

fn now(state: &RunState) -> Decision {
    decide(
        state,
        &Inputs {
            now_ms: STARTED_AT_MS + 10,
            next_input_tokens: 1_000,
        },
    )
}

/// Step 1: the model asked, and answered by calling `name`.
fn called(name: &str) -> Vec<Event> {
    vec![
        Event::ModelRequested {
            step: 1,
            model: MODEL.into(),
            messages: 2,
        },
        Event::ModelResponded {
            step: 1,
            model: MODEL.into(),
            message: AssistantMessage {
                content: None,
                tool_calls: vec![ToolCall {
                    id: "c1".into(),
                    name: name.into(),
                    arguments: "{}".into(),
                }],
            },
            usage: Usage {
                input_tokens: 10,
                output_tokens: 5,
                cached_input_tokens: 0,
            },
            finish_reason: None,
            latency_ms: 1,
            cost_usd: None,
        },
    ]
}

#[test]
fn a_resumed_run_decides_by_the_policy_it_began_with() {
    // Approvals: the journaled policy makes a read-only tool wait for a human.
    let mut requires = start();
    requires
        .approvals
        .tools
        .insert("lookup".into(), Verdict::Require);
    let decision = now(&resumed(requires, &called("lookup")));
    assert!(
        matches!(&decision, Decision::RequestApproval(a) if a.name == "lookup"),
        "{decision:?}"
    );
    let decision = now(&resumed(start(), &called("lookup")));
    assert!(matches!(decision, Decision::CallTool(_)), "{decision:?}");

    // Limits: one model call allowed, then the journaled `on_limit` action.
    let mut journal = called("lookup");
    let mut state = resumed(start(), &journal);
    let Decision::CallTool(action) = now(&state) else {
        panic!("the call runs");
    };
    journal.push(action.started("run", serde_json::json!({})));
    journal.push(action.finished(true, "found".to_string(), 1));
    state = resumed(start(), &journal);
    assert!(matches!(now(&state), Decision::CallModel));
    let mut limited = start();
    limited.limits.values.insert(LimitName::MaxModelCalls, 1.0);
    limited.limits.on_limit = LimitAction::Pause;
    let decision = now(&resumed(limited, &journal));
    assert!(
        matches!(&decision, Decision::Limit(hit)
            if hit.limit == LimitName::MaxModelCalls && hit.action == LimitAction::Pause),
        "{decision:?}"
    );

    // Prices: the journaled price makes the next call's worst case cross `max_cost_usd`.
    let mut unpriced = start();
    unpriced.limits.values.insert(LimitName::MaxCostUsd, 1.0);
    unpriced.limits.unknown_price = UnknownPrice::Warn;
    let mut priced = unpriced.clone();
    priced.prices.insert(
        MODEL.into(),
        Price {
            input: 1_000.0,
            cached_input: 1_000.0,
            output: 1_000.0,
        },
    );
    let decision = now(&resumed(priced, &[]));
    assert!(
        matches!(&decision, Decision::Limit(hit) if hit.limit == LimitName::MaxCostUsd),
        "{decision:?}"
    );
    assert!(matches!(now(&resumed(unpriced, &[])), Decision::CallModel));

    // The model chain: a model that keeps calling what does not exist gives way to the
    // journaled fallback; without one, the run fails.
    let mut refused = called("nope");
    refused.push(Event::ToolRefused {
        call_id: "1.0".into(),
        name: "nope".into(),
        error: "unknown tool `nope`".into(),
    });
    let mut chain = start();
    chain.fallbacks = vec![FALLBACK.into()];
    chain.max_repairs = 0;
    let state = resumed(chain, &refused);
    assert_eq!(state.models, [MODEL, FALLBACK]);
    let decision = now(&state);
    assert!(
        matches!(decision, Decision::SwitchModel { index: 1, .. }),
        "{decision:?}"
    );
    let mut alone = start();
    alone.max_repairs = 0;
    let decision = now(&resumed(alone, &refused));
    assert!(matches!(decision, Decision::Fail { .. }), "{decision:?}");

    // Park retry: a run parked because every model was unavailable wakes after the journaled
    // delay.
    let parked_at = STARTED_AT_MS + 5;
    let parked = [
        Event::ModelRequested {
            step: 1,
            model: MODEL.into(),
            messages: 2,
        },
        Event::ModelFailed {
            step: 1,
            model: MODEL.into(),
            error: "503".into(),
            unavailable: true,
        },
        Event::RunPaused {
            reason: "every model is unavailable: 503".into(),
            at_ms: parked_at,
        },
    ];
    let mut quick = start();
    quick.park_retry_ms = 5_000;
    assert_eq!(resumed(quick, &parked).wake(), Wake::At(parked_at + 5_000));
    assert_eq!(
        resumed(start(), &parked).wake(),
        Wake::At(parked_at + chassis_core::event::DEFAULT_PARK_RETRY_MS)
    );
}
