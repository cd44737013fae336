//! Property tests of the fold: a journal cut at any point and continued gives the run an
//! uninterrupted run would have had; no event sequence makes the fold panic.

use chassis_core::{
    AssistantMessage, Decision, Event, Inputs, LimitName, Limits, RiskClass, RunState, RunStatus,
    ToolCall, ToolDef, Usage, decide,
};
use proptest::prelude::*;

/// A scripted model step: a final answer, or tool calls (tool index, arguments valid?).
#[derive(Clone, Debug)]
enum Reply {
    Answer,
    Calls(Vec<(usize, bool)>),
}

const TOOLS: [(&str, RiskClass); 3] = [
    ("lookup", RiskClass::ReadOnly),
    ("write", RiskClass::Reversible),
    ("pay", RiskClass::Irreversible),
];

fn started(max_steps: u32) -> Event {
    started_with(max_steps, 100, 0)
}

fn started_with(max_steps: u32, max_repairs: u32, fallbacks: usize) -> Event {
    Event::RunStarted(Box::new(chassis_core::RunStart {
        agent: "sim".into(),
        spec_path: "/sim.toml".into(),
        input: "go".into(),
        system: "sys".into(),
        model: "openai:sim".into(),
        fallbacks: (0..fallbacks)
            .map(|i| format!("openai:fallback-{i}"))
            .collect(),
        max_repairs,
        version: String::new(),
        version_label: None,
        // The simulated human approves everything up front; approvals have their own tests.
        approvals: chassis_core::approvals::ApprovalPolicy {
            by_risk: [
                RiskClass::ReadOnly,
                RiskClass::Reversible,
                RiskClass::Irreversible,
            ]
            .into_iter()
            .map(|r| (r, chassis_core::approvals::Verdict::Auto))
            .collect(),
            ..Default::default()
        },
        tags: Default::default(),
        tools: TOOLS
            .iter()
            .map(|(name, risk)| ToolDef {
                name: name.to_string(),
                description: String::new(),
                parameters: serde_json::json!({"type": "object"}),
                risk: *risk,
                idempotent: false,
                max_attempts: 1,
            })
            .collect(),
        limits: {
            let mut limits = Limits::default();
            limits
                .values
                .insert(LimitName::MaxSteps, f64::from(max_steps));
            // Scripted tools repeat freely; loop detection has its own tests.
            limits.values.remove(&LimitName::MaxRepeats);
            limits
        },
        max_tokens: 100,
        prices: Default::default(),
        at_ms: 0,
    }))
}

/// The simulator's clock and context size: time never passes, contexts are small.
const INPUTS: Inputs = Inputs {
    now_ms: 0,
    next_input_tokens: 10,
};

/// Drives a run the way the engine does, with scripted model and deterministic tools, until
/// `decide` says idle. Models and tools are pure functions of their inputs, as a replay needs.
fn drive(journal: &mut Vec<Event>, script: &[Reply]) -> RunState {
    let mut state = RunState::fold(journal.iter()).expect("journal folds");
    let push = |state: &mut RunState, journal: &mut Vec<Event>, event: Event| {
        state.apply(&event).expect("live events fold");
        journal.push(event);
    };
    if state.seq > 1 && !state.status.is_terminal() {
        let mut probe = state.clone();
        probe.status = RunStatus::Running;
        if !matches!(decide(&probe, &INPUTS), Decision::AwaitHuman { .. }) {
            push(&mut state, journal, Event::RunResumed { at_ms: 0 });
        }
    }
    for _ in 0..200 {
        let event = match decide(&state, &INPUTS) {
            Decision::Idle => return state,
            Decision::CallModel => {
                let step = state.steps + 1;
                let reply = script
                    .get(state.steps as usize)
                    .cloned()
                    .unwrap_or(Reply::Answer);
                let message = match reply {
                    Reply::Answer => AssistantMessage {
                        content: Some(format!("answer after {} messages", state.messages.len())),
                        tool_calls: vec![],
                    },
                    Reply::Calls(calls) => AssistantMessage {
                        content: None,
                        tool_calls: calls
                            .iter()
                            .enumerate()
                            .map(|(i, (tool, valid))| ToolCall {
                                id: format!("call_{step}_{i}"),
                                name: TOOLS[*tool].0.to_string(),
                                arguments: if *valid { "{}".into() } else { "{oops".into() },
                            })
                            .collect(),
                    },
                };
                push(
                    &mut state,
                    journal,
                    Event::ModelRequested {
                        step,
                        model: "openai:sim".into(),
                        messages: 0,
                    },
                );
                Event::ModelResponded {
                    step,
                    model: "sim".into(),
                    message,
                    usage: Usage {
                        input_tokens: 10,
                        output_tokens: 5,
                        cached_input_tokens: 0,
                    },
                    finish_reason: None,
                    latency_ms: 0,
                    cost_usd: None,
                }
            }
            Decision::CallTool(call) => {
                if call.arguments != "{}" {
                    Event::ToolRefused {
                        call_id: call.id,
                        name: call.name,
                        error: "arguments are not valid JSON".into(),
                    }
                } else {
                    let risk = state.tool(&call.name).map(|t| t.risk).unwrap();
                    push(
                        &mut state,
                        journal,
                        Event::ToolStarted {
                            call_id: call.id.clone(),
                            name: call.name.clone(),
                            args: serde_json::json!({}),
                            risk,
                            idempotency_key: call.id.clone(),
                        },
                    );
                    Event::ToolFinished {
                        content: format!("result of {}", call.id),
                        call_id: call.id,
                        ok: true,
                        latency_ms: 0,
                    }
                }
            }
            Decision::OutcomeUnknown(call) => Event::ToolOutcomeUnknown {
                call_id: call.id,
                name: call.name,
            },
            Decision::AwaitHuman { reason } => Event::RunWaiting { reason, at_ms: 0 },
            Decision::Pause { reason } => Event::RunPaused { reason, at_ms: 0 },
            Decision::RequestApproval(_) | Decision::Deny(_) | Decision::ApprovalTimedOut(..) => {
                panic!("the simulated policy approves everything")
            }
            Decision::Limit(hit) => Event::RunFailed {
                error: format!("limit {} reached", hit.limit),
            },
            Decision::SwitchModel { index, reason } => Event::ModelSwitched {
                index,
                model: state.models[index].clone(),
                reason,
            },
            Decision::Finish { output } => Event::RunCompleted { output },
            Decision::Fail { error } => Event::RunFailed { error },
        };
        push(&mut state, journal, event);
    }
    panic!("the run did not stop within 200 decisions");
}

/// Messages the model would see, without resume bookkeeping.
fn conversation(state: &RunState) -> &[chassis_core::Message] {
    &state.messages
}

fn script() -> impl Strategy<Value = (Vec<Reply>, u32)> {
    script_with_policy().prop_map(|(replies, max_steps, _, _)| (replies, max_steps))
}

fn script_with_policy() -> impl Strategy<Value = (Vec<Reply>, u32, u32, usize)> {
    let reply = prop_oneof![
        1 => Just(Reply::Answer),
        4 => prop::collection::vec((0..TOOLS.len(), prop::bool::weighted(0.85)), 1..4)
            .prop_map(Reply::Calls),
    ];
    (
        prop::collection::vec(reply, 0..8),
        1u32..10,
        0u32..3,
        0usize..3,
    )
}

/// Whether a journal prefix ends inside an irreversible call: started, never finished.
fn cut_inside_irreversible(prefix: &[Event]) -> bool {
    let mut open = std::collections::BTreeSet::new();
    for event in prefix {
        match event {
            Event::ToolStarted {
                call_id,
                risk: RiskClass::Irreversible,
                ..
            } => {
                open.insert(call_id.clone());
            }
            Event::ToolFinished { call_id, .. } => {
                open.remove(call_id);
            }
            _ => {}
        }
    }
    !open.is_empty()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn resuming_any_prefix_continues_the_same_run(
        (script, max_steps, max_repairs, fallbacks) in script_with_policy()
    ) {
        let mut reference = vec![started_with(max_steps, max_repairs, fallbacks)];
        let live = drive(&mut reference, &script);
        prop_assert!(live.status.is_terminal());
        prop_assert_eq!(&RunState::fold(reference.iter()).unwrap(), &live);

        for cut in 1..=reference.len() {
            let mut journal = reference[..cut].to_vec();
            let resumed = drive(&mut journal, &script);
            // The resumed journal is the prefix plus new events: nothing rewritten.
            prop_assert_eq!(&journal[..cut], &reference[..cut]);
            prop_assert_eq!(&RunState::fold(journal.iter()).unwrap(), &resumed);
            if cut_inside_irreversible(&reference[..cut]) {
                // Never repeated: the run waits for a human with the call marked unknown.
                prop_assert_eq!(resumed.status, RunStatus::Waiting);
                prop_assert!(resumed.calls.iter().any(|c| c.outcome_unknown));
                let starts = journal.iter().filter(|e| matches!(e, Event::ToolStarted { risk: RiskClass::Irreversible, .. })).count();
                let reference_starts = reference[..cut].iter().filter(|e| matches!(e, Event::ToolStarted { risk: RiskClass::Irreversible, .. })).count();
                prop_assert_eq!(starts, reference_starts);
            } else {
                prop_assert_eq!(resumed.status, live.status);
                prop_assert_eq!(&resumed.output, &live.output);
                prop_assert_eq!(conversation(&resumed), conversation(&live));
                prop_assert_eq!(resumed.steps, live.steps);
                // A model reply that was journaled is never asked for again.
                let replies = |j: &[Event]| j.iter().filter(|e| matches!(e, Event::ModelResponded { .. })).count();
                prop_assert_eq!(replies(&journal), replies(&reference));
            }
        }
    }

    #[test]
    fn a_run_never_makes_more_model_calls_than_max_steps((script, max_steps) in script()) {
        let mut journal = vec![started(max_steps)];
        let state = drive(&mut journal, &script);
        prop_assert!(state.steps <= max_steps);
        prop_assert!(state.status.is_terminal());
    }

    #[test]
    fn folding_arbitrary_events_never_panics(kinds in prop::collection::vec(0u8..14, 0..30)) {
        let events: Vec<Event> = kinds.iter().enumerate().map(|(i, k)| arbitrary_event(*k, i)).collect();
        let _ = RunState::fold(events.iter());
        let mut state = RunState::default();
        for event in &events {
            if state.apply(event).is_err() {
                break;
            }
            let _ = decide(&state, &INPUTS);
        }
    }
}

fn arbitrary_event(kind: u8, i: usize) -> Event {
    let call_id = format!("call_{}", i % 3);
    match kind {
        0 => started(3),
        1 => Event::ModelRequested {
            step: 1,
            model: "m".into(),
            messages: 2,
        },
        2 => Event::ModelResponded {
            step: 1,
            model: "m".into(),
            message: AssistantMessage {
                content: None,
                tool_calls: vec![ToolCall {
                    id: call_id,
                    name: "pay".into(),
                    arguments: "{}".into(),
                }],
            },
            usage: Usage::default(),
            finish_reason: None,
            latency_ms: 0,
            cost_usd: Some(0.01),
        },
        3 => Event::ModelFailed {
            step: 1,
            model: "m".into(),
            error: "x".into(),
            unavailable: i.is_multiple_of(2),
        },
        4 => Event::ToolRefused {
            call_id,
            name: "pay".into(),
            error: "bad".into(),
        },
        5 => Event::ToolStarted {
            call_id,
            name: "pay".into(),
            args: serde_json::json!({}),
            risk: RiskClass::Irreversible,
            idempotency_key: "k".into(),
        },
        6 => Event::ToolFinished {
            call_id,
            ok: true,
            content: "ok".into(),
            latency_ms: 1,
        },
        7 => Event::ToolOutcomeUnknown {
            call_id,
            name: "pay".into(),
        },
        8 => Event::RunWaiting {
            reason: "r".into(),
            at_ms: i as u64,
        },
        9 => Event::RunResumed { at_ms: i as u64 },
        10 => Event::RunCompleted { output: "o".into() },
        11 => Event::RunPaused {
            reason: "p".into(),
            at_ms: i as u64,
        },
        12 => Event::ModelSwitched {
            index: 1,
            model: "m2".into(),
            reason: "r".into(),
        },
        _ => Event::RunFailed { error: "e".into() },
    }
}
