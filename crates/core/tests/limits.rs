//! Property: whatever the token counts, costs and timings, a run never ends above a limit
//! (and wall time never by more than the one call in flight).

use std::collections::BTreeMap;

use chassis_core::{
    AssistantMessage, Decision, Event, Inputs, LimitAction, LimitName, Limits, Price, RiskClass,
    RunState, ToolCall, ToolDef, Usage, decide,
};
use proptest::prelude::*;

const MODEL: &str = "openai:sim-model";
const PRICE: Price = Price {
    input: 3.0,
    cached_input: 1.5,
    output: 15.0,
};

#[derive(Clone, Debug)]
struct Call {
    /// Input tokens of the next context; the provider reports at most this many.
    context: u64,
    /// Of those, how many the provider reports (it may count fewer).
    reported_share: f64,
    /// Output tokens the provider reports, a share of `max_tokens`.
    output_share: f64,
    /// Milliseconds the call takes.
    millis: u64,
    /// Whether the reply calls a tool (else it is the final answer).
    tool: bool,
}

fn calls() -> impl Strategy<Value = Vec<Call>> {
    prop::collection::vec(
        (
            1u64..5_000,
            0.0f64..=1.0,
            0.0f64..=1.0,
            1u64..2_000,
            prop::bool::weighted(0.9),
        )
            .prop_map(
                |(context, reported_share, output_share, millis, tool)| Call {
                    context,
                    reported_share,
                    output_share,
                    millis,
                    tool,
                },
            ),
        1..60,
    )
}

fn limits() -> impl Strategy<Value = (Limits, u32)> {
    (
        1u32..40,
        1u32..60,
        1u32..60,
        1u64..100_000,
        1u64..20_000,
        1u64..120_000,
        0.001f64..2.0,
        100u64..60_000,
        prop_oneof![
            Just(LimitAction::Fail),
            Just(LimitAction::Pause),
            Just(LimitAction::Escalate)
        ],
        1u32..2_000,
    )
        .prop_map(
            |(
                steps,
                model_calls,
                tool_calls,
                input,
                output,
                total,
                cost,
                wall,
                action,
                max_tokens,
            )| {
                let values = BTreeMap::from([
                    (LimitName::MaxSteps, f64::from(steps)),
                    (LimitName::MaxModelCalls, f64::from(model_calls)),
                    (LimitName::MaxToolCalls, f64::from(tool_calls)),
                    (LimitName::MaxInputTokens, input as f64),
                    (LimitName::MaxOutputTokens, output as f64),
                    (LimitName::MaxTotalTokens, total as f64),
                    (LimitName::MaxCostUsd, cost),
                    (LimitName::MaxWallTime, wall as f64),
                ]);
                let limits = Limits {
                    values,
                    on_limit: action,
                    ..Limits::default()
                };
                (limits, max_tokens)
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn a_run_never_ends_above_a_limit((limits, max_tokens) in limits(), script in calls()) {
        let mut state = RunState::default();
        let mut now = 1_000_000u64;
        let apply = |state: &mut RunState, event: Event| state.apply(&event).unwrap();
        apply(&mut state, Event::RunStarted(Box::new(chassis_core::RunStart {
            agent: "a".into(),
            spec_path: "/a.toml".into(),
            input: "go".into(),
            system: "s".into(),
            model: MODEL.into(),
            fallbacks: vec![],
            tools: vec![ToolDef {
                name: "t".into(),
                description: String::new(),
                parameters: serde_json::json!({"type": "object"}),
                risk: RiskClass::ReadOnly,
                idempotent: false,
                max_attempts: 1,
            }]
            .into(),
            limits: limits.clone(),
            max_tokens,
            prices: BTreeMap::from([(MODEL.to_string(), PRICE)]),
            at_ms: now,
            max_repairs: 2,
            park_retry_ms: chassis_core::event::DEFAULT_PARK_RETRY_MS,
            context: Default::default(),
            version: String::new(),
            version_label: None,
            approvals: Default::default(),
            tags: Default::default(),
        })));
        let mut longest_call = 0u64;
        let mut step = 0usize;
        for _ in 0..1_000 {
            let call = &script[step.min(script.len() - 1)];
            let inputs = Inputs { now_ms: now, next_input_tokens: call.context };
            match decide(&state, &inputs) {
                Decision::CallModel => {
                    step += 1;
                    apply(&mut state, Event::ModelRequested { step: step as u32, model: MODEL.into(), messages: 2 });
                    now += call.millis;
                    longest_call = longest_call.max(call.millis);
                    let input_tokens = (call.context as f64 * call.reported_share) as u64;
                    let output_tokens = (f64::from(max_tokens) * call.output_share) as u64;
                    let message = AssistantMessage {
                        content: Some("x".into()),
                        tool_calls: if call.tool {
                            vec![ToolCall { id: format!("c{step}"), name: "t".into(), arguments: format!("{{\"n\":{step}}}") }]
                        } else {
                            vec![]
                        },
                    };
                    apply(&mut state, Event::ModelResponded {
                        step: step as u32,
                        model: MODEL.into(),
                        message,
                        usage: Usage { input_tokens, output_tokens, cached_input_tokens: 0 },
                        finish_reason: None,
                        latency_ms: call.millis,
                        cost_usd: Some(PRICE.cost(input_tokens, 0, output_tokens)),
                    });
                }
                Decision::CallTool(tool_call) => {
                    apply(&mut state, tool_call.started("run", serde_json::from_str(&tool_call.arguments).unwrap()));
                    now += call.millis / 2;
                    longest_call = longest_call.max(call.millis / 2);
                    apply(&mut state, tool_call.finished(true, format!("result {step}"), call.millis / 2));
                }
                Decision::Limit(hit) => {
                    prop_assert!(hit.projected > hit.value || hit.limit == LimitName::MaxWallTime);
                    apply(&mut state, Event::LimitReached {
                        limit: hit.limit, value: hit.value, used: hit.used, projected: hit.projected, action: hit.action,
                    });
                    let reason = format!("limit {} reached", hit.limit);
                    let stop = match hit.action {
                        LimitAction::Fail => Event::RunFailed { error: reason },
                        LimitAction::Pause => Event::RunPaused { reason, at_ms: now },
                        LimitAction::Escalate => Event::RunWaiting { reason, at_ms: now },
                    };
                    apply(&mut state, stop);
                }
                Decision::Finish { output } => apply(&mut state, Event::RunCompleted { output }),
                Decision::Idle => break,
                other => prop_assert!(false, "unexpected decision {other:?}"),
            }
        }
        let at_most = |limit: LimitName, used: f64| {
            let value = limits.get(limit).unwrap();
            (used <= value + 1e-9, format!("{limit}: used {used}, limit {value}"))
        };
        let u = state.usage();
        for (ok, what) in [
            at_most(LimitName::MaxSteps, f64::from(state.steps())),
            at_most(LimitName::MaxModelCalls, f64::from(state.model_calls())),
            at_most(LimitName::MaxToolCalls, f64::from(state.tool_calls())),
            at_most(LimitName::MaxInputTokens, u.input_tokens as f64),
            at_most(LimitName::MaxOutputTokens, u.output_tokens as f64),
            at_most(LimitName::MaxTotalTokens, (u.input_tokens + u.output_tokens) as f64),
            at_most(LimitName::MaxCostUsd, state.cost_usd()),
            // Time is the one budget a call in flight can overshoot, by at most that call.
            at_most(LimitName::MaxWallTime, state.wall_ms(now).saturating_sub(longest_call) as f64),
        ] {
            prop_assert!(ok, "{}", what);
        }
        prop_assert!(state.status().is_terminal() || state.waiting_reason.is_some());
    }
}

#[test]
fn the_same_call_repeated_past_max_repeats_is_a_limit() {
    let mut state = RunState::default();
    let mut limits = Limits::default();
    limits.values.insert(LimitName::MaxRepeats, 2.0);
    state
        .apply(&Event::RunStarted(Box::new(chassis_core::RunStart {
            agent: "a".into(),
            spec_path: "/a.toml".into(),
            input: "go".into(),
            system: "s".into(),
            model: MODEL.into(),
            fallbacks: vec![],
            tools: vec![].into(),
            limits,
            max_tokens: 10,
            prices: BTreeMap::new(),
            at_ms: 0,
            max_repairs: 2,
            park_retry_ms: chassis_core::event::DEFAULT_PARK_RETRY_MS,
            context: Default::default(),
            version: String::new(),
            version_label: None,
            approvals: Default::default(),
            tags: Default::default(),
        })))
        .unwrap();
    let inputs = Inputs {
        now_ms: 0,
        next_input_tokens: 1,
    };
    for step in 1..=3u32 {
        state
            .apply(&Event::ModelResponded {
                step,
                model: MODEL.into(),
                message: AssistantMessage {
                    content: None,
                    // Same call, keys in another order: still the same call.
                    tool_calls: vec![ToolCall {
                        id: format!("c{step}"),
                        name: "read".into(),
                        arguments: if step % 2 == 0 {
                            r#"{"b":2,"a":1}"#
                        } else {
                            r#"{"a":1,"b":2}"#
                        }
                        .into(),
                    }],
                },
                usage: Usage::default(),
                finish_reason: None,
                latency_ms: 0,
                cost_usd: None,
            })
            .unwrap();
        match decide(&state, &inputs) {
            Decision::CallTool(call) if step < 3 => {
                state
                    .apply(&call.started("run", serde_json::from_str(&call.arguments).unwrap()))
                    .unwrap();
                state.apply(&call.finished(true, "same", 0)).unwrap();
            }
            Decision::Limit(hit) if step == 3 => {
                assert_eq!(hit.limit, LimitName::MaxRepeats);
                assert_eq!(hit.used, 2.0);
            }
            other => panic!("step {step}: unexpected {other:?}"),
        }
    }
}
