//! Property tests of the fold: a journal cut at any point and continued gives the run an
//! uninterrupted run would have had; no event sequence makes the fold panic.

use chassis_core::approvals::Verdict;
use chassis_core::{
    AssistantMessage, Decision, Event, Inputs, LimitName, Limits, RiskClass, RunState, RunStatus,
    ToolCall, ToolDef, Usage, Wake, decide,
};
use proptest::prelude::*;

/// How a simulated provider names the calls of a reply.
#[derive(Clone, Copy, Debug)]
enum Ids {
    /// `call_STEP_INDEX`: unique, as OpenAI does.
    Unique,
    /// Every call of every reply is `call_0`.
    Same,
    /// Empty ids.
    Empty,
    /// `call_INDEX` at every step: unique within a reply, reused across steps.
    Reused,
}

/// A scripted model step: a final answer, or tool calls (tool index, arguments valid?) named
/// by an id scheme.
#[derive(Clone, Debug)]
enum Reply {
    Answer,
    Calls(Vec<(usize, bool)>, Ids),
}

/// The tools granted to the simulated agent; index `TOOLS.len()` names a tool that does not
/// exist (the model calls it anyway).
const TOOLS: [(&str, RiskClass); 3] = [
    ("lookup", RiskClass::ReadOnly),
    ("write", RiskClass::Reversible),
    ("pay", RiskClass::Irreversible),
];

fn tool_name(index: usize) -> &'static str {
    TOOLS.get(index).map_or("nope", |(name, _)| name)
}

fn started(max_steps: u32) -> Event {
    started_with(max_steps, 100, 0)
}

fn started_with(max_steps: u32, max_repairs: u32, fallbacks: usize) -> Event {
    started_policy(max_steps, max_repairs, fallbacks, Verdict::Auto)
}

/// A run whose irreversible calls get `irreversible` from the approval policy.
fn started_policy(
    max_steps: u32,
    max_repairs: u32,
    fallbacks: usize,
    irreversible: Verdict,
) -> Event {
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
        park_retry_ms: chassis_core::event::DEFAULT_PARK_RETRY_MS,
        forked_from: None,
        context: Default::default(),
        version: String::new(),
        version_label: None,
        approvals: chassis_core::approvals::ApprovalPolicy {
            by_risk: [
                (RiskClass::ReadOnly, Verdict::Auto),
                (RiskClass::Reversible, Verdict::Auto),
                (RiskClass::Irreversible, irreversible),
            ]
            .into_iter()
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

const RUN: &str = "run_sim";

/// The reply the simulated model gives at `step`.
fn reply_at(script: &[Reply], state: &RunState, step: u32) -> AssistantMessage {
    match script
        .get(state.steps() as usize)
        .cloned()
        .unwrap_or(Reply::Answer)
    {
        Reply::Answer => AssistantMessage {
            content: Some(format!("answer after {} messages", state.messages().len())),
            tool_calls: vec![],
        },
        Reply::Calls(calls, ids) => AssistantMessage {
            content: None,
            tool_calls: calls
                .iter()
                .enumerate()
                .map(|(i, (tool, valid))| ToolCall {
                    id: match ids {
                        Ids::Unique => format!("call_{step}_{i}"),
                        Ids::Same => "call_0".into(),
                        Ids::Empty => String::new(),
                        Ids::Reused => format!("call_{i}"),
                    },
                    name: tool_name(*tool).to_string(),
                    arguments: if *valid { "{}".into() } else { "{oops".into() },
                })
                .collect(),
        },
    }
}

/// Drives a run the way the engine does, with scripted model and deterministic tools, until
/// `decide` says idle; a simulated human approves what waits for approval at once. Every tool
/// event comes from the core's own [`chassis_core::ToolAction`], as in the engine, and every
/// execution of a tool's effect is appended to `effects` as (idempotency key, tool).
fn drive(journal: &mut Vec<Event>, script: &[Reply]) -> RunState {
    drive_effects(journal, script, &mut Vec::new())
}

fn drive_effects(
    journal: &mut Vec<Event>,
    script: &[Reply],
    effects: &mut Vec<(String, String)>,
) -> RunState {
    let mut state = RunState::fold(journal.iter()).expect("journal folds");
    let push = |state: &mut RunState, journal: &mut Vec<Event>, event: Event| {
        state.apply(&event).expect("live events fold");
        journal.push(event);
    };
    if state.seq() > 1 && !state.status().is_terminal() {
        let mut probe = state.clone();
        probe.apply(&Event::RunResumed { at_ms: 0 }).unwrap();
        if !matches!(decide(&probe, &INPUTS), Decision::AwaitHuman { .. }) {
            push(&mut state, journal, Event::RunResumed { at_ms: 0 });
        }
    }
    for _ in 0..400 {
        let event = match decide(&state, &INPUTS) {
            Decision::Idle => return state,
            Decision::CallModel => {
                let step = state.steps() + 1;
                let message = reply_at(script, &state, step);
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
            Decision::CallTool(action) => {
                if action.risk.is_none() {
                    action.refused(format!("unknown tool `{}`", action.name))
                } else if action.arguments != "{}" {
                    action.refused("arguments are not valid JSON")
                } else {
                    push(
                        &mut state,
                        journal,
                        action.started(RUN, serde_json::json!({})),
                    );
                    effects.push((action.idempotency_key(RUN), action.name.clone()));
                    action.finished(true, format!("result of {}", action.call_id), 0)
                }
            }
            Decision::OutcomeUnknown(action) => action.outcome_unknown(),
            Decision::RequestApproval(action) => Event::ApprovalRequested {
                call_id: action.call_id.clone(),
                tool: action.name.clone(),
                args: serde_json::json!({}),
                risk: action.risk.unwrap_or(RiskClass::Irreversible),
                reason: None,
                context: vec![],
                at_ms: 0,
                expires_at_ms: None,
            },
            Decision::AwaitHuman { reason } => {
                let pending = state.calls().iter().find(|c| {
                    !c.resolved
                        && matches!(c.approval, chassis_core::state::Approval::Pending { .. })
                });
                match pending {
                    // The simulated human approves at once, from another process: the decision
                    // lands while the run waits, and the run is resumed.
                    Some(call) => {
                        let call_id = call.id.clone();
                        push(&mut state, journal, Event::RunWaiting { reason, at_ms: 0 });
                        push(
                            &mut state,
                            journal,
                            Event::ApprovalDecided {
                                call_id,
                                approved: true,
                                args: None,
                                by: "sim".into(),
                                note: None,
                                reason: None,
                                at_ms: 0,
                            },
                        );
                        assert_eq!(state.wake(), Wake::Now, "a decision wakes the run");
                        Event::RunResumed { at_ms: 0 }
                    }
                    None => Event::RunWaiting { reason, at_ms: 0 },
                }
            }
            Decision::Pause { reason } => Event::RunPaused { reason, at_ms: 0 },
            Decision::Deny(_) | Decision::ApprovalTimedOut(..) | Decision::Cancel { .. } => {
                panic!("the simulated policy neither denies nor times out nor cancels")
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
    panic!("the run did not stop within 400 decisions: {journal:#?}");
}

/// Messages the model would see, without resume bookkeeping.
fn conversation(state: &RunState) -> &[chassis_core::Message] {
    state.messages()
}

fn script() -> impl Strategy<Value = (Vec<Reply>, u32)> {
    script_with_policy().prop_map(|(replies, max_steps, _, _)| (replies, max_steps))
}

fn script_with_policy() -> impl Strategy<Value = (Vec<Reply>, u32, u32, usize)> {
    let ids = prop_oneof![
        Just(Ids::Unique),
        Just(Ids::Same),
        Just(Ids::Empty),
        Just(Ids::Reused)
    ];
    let reply = prop_oneof![
        1 => Just(Reply::Answer),
        4 => (prop::collection::vec((0..TOOLS.len(), prop::bool::weighted(0.85)), 1..4), ids)
            .prop_map(|(calls, ids)| Reply::Calls(calls, ids)),
    ];
    (
        prop::collection::vec(reply, 0..8),
        1u32..10,
        0u32..3,
        0usize..3,
    )
}

/// Whether a journal prefix ends inside a call that may not be repeated (anything but a
/// read): started, never finished.
fn cut_inside_effect(prefix: &[Event]) -> bool {
    let mut open = std::collections::BTreeSet::new();
    for event in prefix {
        match event {
            Event::ToolStarted { call_id, risk, .. } if *risk != RiskClass::ReadOnly => {
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

fn effect_starts(journal: &[Event]) -> usize {
    journal
        .iter()
        .filter(|e| matches!(e, Event::ToolStarted { risk, .. } if *risk != RiskClass::ReadOnly))
        .count()
}

/// What every reply of a journal asked for: (call id, tool known and arguments valid).
fn calls_made(journal: &[Event]) -> Vec<(String, bool)> {
    let mut step = 0;
    let mut made = Vec::new();
    for event in journal {
        if let Event::ModelResponded { message, .. } = event {
            step += 1;
            for (index, call) in message.tool_calls.iter().enumerate() {
                let runnable =
                    TOOLS.iter().any(|(name, _)| *name == call.name) && call.arguments == "{}";
                made.push((chassis_core::call_id(step, index), runnable));
            }
        }
    }
    made
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn resuming_any_prefix_continues_the_same_run(
        (script, max_steps, max_repairs, fallbacks) in script_with_policy()
    ) {
        let mut reference = vec![started_with(max_steps, max_repairs, fallbacks)];
        let live = drive(&mut reference, &script);
        prop_assert!(live.status().is_terminal());
        prop_assert_eq!(&RunState::fold(reference.iter()).unwrap(), &live);

        for cut in 1..=reference.len() {
            let mut journal = reference[..cut].to_vec();
            let resumed = drive(&mut journal, &script);
            // The resumed journal is the prefix plus new events: nothing rewritten.
            prop_assert_eq!(&journal[..cut], &reference[..cut]);
            prop_assert_eq!(&RunState::fold(journal.iter()).unwrap(), &resumed);
            if cut_inside_effect(&reference[..cut]) {
                // Never repeated: the run waits for a human with the call marked unknown.
                prop_assert_eq!(resumed.status(), RunStatus::Waiting);
                prop_assert!(resumed.calls().iter().any(|c| c.outcome_unknown));
                prop_assert_eq!(resumed.wake(), Wake::Never);
                prop_assert_eq!(effect_starts(&journal), effect_starts(&reference[..cut]));
            } else {
                prop_assert_eq!(resumed.status(), live.status());
                prop_assert_eq!(&resumed.output, &live.output);
                prop_assert_eq!(conversation(&resumed), conversation(&live));
                prop_assert_eq!(resumed.steps(), live.steps());
                // A model reply that was journaled is never asked for again.
                let replies = |j: &[Event]| j.iter().filter(|e| matches!(e, Event::ModelResponded { .. })).count();
                prop_assert_eq!(replies(&journal), replies(&reference));
            }
        }
    }

    /// Whatever ids a provider gives its calls (unique, all the same, empty, reused at every
    /// step), with or without approvals: every call the model made gets exactly one outcome,
    /// every runnable call's effect runs exactly once under a key of its own, the run ends,
    /// and every result goes back to the provider under an id unique within its reply.
    #[test]
    fn every_call_runs_once_whatever_ids_the_provider_gives(
        (script, max_steps, _, _) in script_with_policy(),
        require in any::<bool>(),
    ) {
        let policy = if require { Verdict::Require } else { Verdict::Auto };
        let mut journal = vec![started_policy(max_steps, 100, 0, policy)];
        let mut effects = Vec::new();
        let state = drive_effects(&mut journal, &script, &mut effects);
        prop_assert!(state.status().is_terminal(), "{:?}", state.status());

        let made = calls_made(&journal);
        let keys: std::collections::BTreeSet<&String> = effects.iter().map(|(k, _)| k).collect();
        prop_assert_eq!(keys.len(), effects.len(), "an idempotency key ran twice: {:?}", effects);
        let runnable: Vec<String> = made
            .iter()
            .filter(|(_, runnable)| *runnable)
            .map(|(id, _)| format!("{RUN}/{id}"))
            .collect();
        let ran: Vec<String> = effects.iter().map(|(k, _)| k.clone()).collect();
        prop_assert_eq!(ran, runnable);
        for (id, _) in &made {
            let outcomes = journal
                .iter()
                .filter(|e| matches!(e,
                    Event::ToolRefused { call_id, .. } | Event::ToolFinished { call_id, .. }
                    if call_id == id))
                .count();
            prop_assert_eq!(outcomes, 1, "call {} has {} outcomes", id, outcomes);
        }
        // What the provider sees: each reply's calls under distinct, non-empty ids, each
        // answered exactly once before the next reply.
        let mut open: Vec<String> = Vec::new();
        for message in state.messages() {
            match message {
                chassis_core::Message::Assistant(reply) => {
                    prop_assert!(open.is_empty(), "unanswered calls {:?}", open);
                    open = reply.tool_calls.iter().map(|c| c.id.clone()).collect();
                    let distinct: std::collections::BTreeSet<&String> = open.iter().collect();
                    prop_assert_eq!(distinct.len(), open.len());
                    prop_assert!(open.iter().all(|id| !id.is_empty()));
                }
                chassis_core::Message::Tool { call_id, .. } => {
                    let at = open.iter().position(|id| id == call_id);
                    prop_assert!(at.is_some(), "result for unknown call {}", call_id);
                    open.remove(at.unwrap_or_default());
                }
                _ => {}
            }
        }
    }

    #[test]
    fn a_run_never_makes_more_model_calls_than_max_steps((script, max_steps) in script()) {
        let mut journal = vec![started(max_steps)];
        let state = drive(&mut journal, &script);
        prop_assert!(state.steps() <= max_steps);
        prop_assert!(state.status().is_terminal());
    }

    #[test]
    fn a_snapshot_then_its_tail_folds_to_the_full_fold(
        (script, max_steps, max_repairs, fallbacks) in script_with_policy()
    ) {
        let mut journal = vec![started_with(max_steps, max_repairs, fallbacks)];
        let full = drive(&mut journal, &script);
        for cut in 1..=journal.len() {
            // The state at `cut` as the store keeps it (JSON), then the rest of the journal.
            let prefix = RunState::fold(journal[..cut].iter()).unwrap();
            let stored = serde_json::to_string(&prefix).unwrap();
            let mut state: RunState = serde_json::from_str(&stored).unwrap();
            prop_assert_eq!(&state, &prefix);
            for event in &journal[cut..] {
                state.apply(event).unwrap();
            }
            prop_assert_eq!(&state, &full, "snapshot at {}", cut);
        }
    }

    #[test]
    fn folding_arbitrary_events_never_panics(kinds in prop::collection::vec(0u8..15, 0..30)) {
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
    let call_id = if i.is_multiple_of(2) {
        format!("call_{}", i % 3)
    } else {
        format!("1.{}", i % 3)
    };
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
        13 => Event::UserMessage {
            text: "and then?".into(),
            by: "alice".into(),
            at_ms: i as u64,
        },
        _ => Event::RunFailed { error: "e".into() },
    }
}

fn answer(text: &str) -> Event {
    Event::ModelResponded {
        step: 1,
        model: "m".into(),
        message: AssistantMessage {
            content: Some(text.into()),
            tool_calls: Vec::new(),
        },
        usage: Usage::default(),
        finish_reason: None,
        latency_ms: 0,
        cost_usd: None,
    }
}

fn message(text: &str, at_ms: u64) -> Event {
    Event::UserMessage {
        text: text.into(),
        by: "alice".into(),
        at_ms,
    }
}

/// A completed run continued by a user message runs again and calls the model with the
/// message after its answer; only a completed run reopens, and never mid-call.
#[test]
fn a_user_message_reopens_a_completed_run_for_the_next_turn() {
    let mut journal = vec![
        started(10),
        answer("hi"),
        Event::RunCompleted {
            output: "hi".into(),
        },
    ];
    journal.push(message("more", 5));
    let state = RunState::fold(journal.iter()).unwrap();
    assert_eq!(state.status(), RunStatus::Running);
    assert_eq!(state.wake(), Wake::Now);
    assert_eq!(state.output, None);
    assert_eq!(state.turns, 2);
    assert_eq!(decide(&state, &INPUTS), Decision::CallModel);
    assert!(matches!(
        state.messages().last(),
        Some(chassis_core::Message::User { content }) if content == "more"
    ));
    journal.push(answer("more hi"));
    let state = RunState::fold(journal.iter()).unwrap();
    assert_eq!(
        decide(&state, &INPUTS),
        Decision::Finish {
            output: "more hi".into()
        }
    );

    // A failed run stays ended.
    let failed = [
        started(10),
        Event::RunFailed { error: "x".into() },
        message("more", 5),
    ];
    assert!(RunState::fold(failed.iter()).is_err());
    // A message while a call waits for its result would separate the call from its result.
    let mid_call = [started(10), arbitrary_event(2, 1), message("wait", 5)];
    let err = RunState::fold(mid_call.iter()).unwrap_err();
    assert!(err.to_string().contains("has no result yet"), "{err}");
}

/// A fork's clock starts at its first drive: the gap between the original's last copied event
/// and the fork counts in no limit, while the active time the copied part used still does. A
/// resume after a crash (not a fork) still counts its gap.
#[test]
fn a_fork_starts_its_clock_at_its_first_drive() {
    const DAY: u64 = 86_400_000;
    let run = |forked: bool| {
        let mut start = started(10);
        if let Event::RunStarted(start) = &mut start {
            start.at_ms = 1_000;
            start.forked_from = forked.then(|| chassis_core::ForkedFrom {
                run: "run_original".into(),
                seq: 2,
            });
        }
        let mut state = RunState::fold([
            &start,
            &Event::ModelRequested {
                step: 1,
                model: "openai:sim".into(),
                messages: 2,
            },
        ])
        .unwrap();
        // The copied part ends while the run was active (a model call in flight); a day later
        // the fork (or the crashed original) is driven.
        state.apply(&Event::RunResumed { at_ms: DAY }).unwrap();
        state.wall_ms(DAY + 5_000)
    };
    assert_eq!(run(true), 5_000);
    assert_eq!(run(false), DAY + 5_000 - 1_000);
}

/// `journal` with its run's context kept inside `max_context_tokens` by truncation, always
/// keeping `keep` turns.
fn with_window(mut journal: Vec<Event>, max_context_tokens: u64, keep: u32) -> Vec<Event> {
    if let Some(Event::RunStarted(start)) = journal.first_mut() {
        start.context = chassis_core::context::ContextPolicy {
            strategy: chassis_core::context::Strategy::Truncate,
            max_context_tokens,
            keep_last_turns: keep,
        };
    }
    journal
}

/// A conversation of several turns: the script driven, then each further user message
/// driven in turn, under a window that makes the fold forget.
fn long_conversation(
    script: &[Reply],
    turns: usize,
    max_context_tokens: u64,
    keep: u32,
) -> Vec<Event> {
    let mut start = started(1_000);
    if let Event::RunStarted(start) = &mut start {
        for limit in [LimitName::MaxModelCalls, LimitName::MaxToolCalls] {
            start.limits.values.insert(limit, 1_000.0);
        }
    }
    let mut journal = with_window(vec![start], max_context_tokens, keep);
    drive(&mut journal, script);
    for turn in 0..turns {
        if RunState::fold(journal.iter()).unwrap().status() != RunStatus::Completed {
            break;
        }
        journal.push(Event::UserMessage {
            text: format!("and then {turn}?"),
            by: "sim".into(),
            at_ms: 0,
        });
        drive(&mut journal, script);
    }
    journal
}

/// The context the engine sends for `state`, as `tokens::context` builds it.
fn sent(state: &RunState) -> (Vec<chassis_core::Message>, bool) {
    use chassis_core::context;
    let built = context::build(
        state.messages(),
        context::budget(&state.context, &state.tools),
        state.context.keep_last_turns,
        state.forgotten_steps,
        &context::message_bound,
    );
    (built.messages.into_owned(), built.trimmed)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]

    /// Bounded resume: under `truncate` the fold forgets the turns no context can hold, and
    /// at every point of every conversation the context is exactly the one the whole
    /// conversation would give; the state from a snapshot and its tail equals the full fold.
    #[test]
    fn forgetting_what_no_context_can_hold_changes_no_context(
        replies in prop::collection::vec(
            prop_oneof![
                1 => Just(Reply::Answer),
                5 => prop::collection::vec((0..2usize, Just(true)), 1..4)
                    .prop_map(|calls| Reply::Calls(calls, Ids::Unique)),
            ],
            0..40,
        ),
        turns in 0usize..4,
        // The tools and the framing take 105 tokens, the head 21: budgets from nothing to
        // a few turns.
        max_context_tokens in 100u64..700,
        keep in 1u32..4,
    ) {
        let journal = long_conversation(&replies, turns, max_context_tokens, keep);
        let whole_journal = with_window(journal.clone(), u64::MAX, keep);
        for cut in 1..=journal.len() {
            let state = RunState::fold(journal[..cut].iter()).unwrap();
            let mut whole = RunState::fold(whole_journal[..cut].iter()).unwrap();
            prop_assert_eq!(whole.forgotten_steps, 0);
            prop_assert_eq!(state.conversation_len(), whole.messages().len() as u64);
            // The same window, over the whole conversation.
            whole.context = state.context;
            prop_assert_eq!(sent(&state), sent(&whole), "at event {}", cut);

            let stored = serde_json::to_string(&state).unwrap();
            let mut resumed: RunState = serde_json::from_str(&stored).unwrap();
            for event in &journal[cut..] {
                resumed.apply(event).unwrap();
            }
            prop_assert_eq!(&resumed, &RunState::fold(journal.iter()).unwrap());
        }
    }
}

/// A long conversation under a small window: the state keeps a bounded tail of it, and the
/// context still names every step left out.
#[test]
fn a_long_conversation_keeps_a_bounded_state() {
    let replies: Vec<Reply> = (0..150)
        .map(|_| Reply::Calls(vec![(0, true)], Ids::Unique))
        .collect();
    let journal = long_conversation(&replies, 0, 600, 2);
    let state = RunState::fold(journal.iter()).unwrap();
    assert_eq!(state.status(), RunStatus::Completed, "{:?}", state.error);
    assert_eq!(state.steps(), 151);
    assert!(state.forgotten_steps > 100, "{}", state.forgotten_steps);
    assert!(state.messages().len() < 80, "{}", state.messages().len());
    let (context, trimmed) = sent(&state);
    assert!(trimmed);
    let note = chassis_core::context::steps_note(state.forgotten_steps);
    let noted = context.iter().find_map(|m| match m {
        chassis_core::Message::User { content } if content.starts_with("[context: ") => {
            Some(content.clone())
        }
        _ => None,
    });
    // The note counts the forgotten steps and those the builder left out beside them.
    let noted = noted.expect("a note for the steps left out");
    let count: u32 = noted["[context: ".len()..]
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(count >= state.forgotten_steps, "{noted} vs {note:?}");
}
