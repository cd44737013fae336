//! The context builder: whatever the conversation and the budget, the context it sends is
//! valid for the provider (every tool call with its result, no result without its call), keeps
//! the head and the last turns, and fits the budget whenever the part that must stay fits.

use std::collections::{BTreeMap, BTreeSet};

use chassis_core::context::{self, Shape};
use chassis_core::{AssistantMessage, Message, ToolCall};
use proptest::prelude::*;

/// The estimate the engine builds contexts with.
fn estimate(message: &Message) -> u64 {
    context::message_bound(message)
}

/// A turn as generated: a user message, or a reply with calls and the sizes of their results.
#[derive(Clone, Debug)]
enum Turn {
    User(usize),
    Reply { text: usize, results: Vec<usize> },
}

fn turn() -> impl Strategy<Value = Turn> {
    prop_oneof![
        1 => (0usize..400).prop_map(Turn::User),
        6 => (0usize..300, prop::collection::vec(0usize..3000, 0..4))
            .prop_map(|(text, results)| Turn::Reply { text, results }),
    ]
}

/// The conversation, with unique call ids; the last reply may still lack some results.
fn conversation(turns: &[Turn], missing: usize) -> Vec<Message> {
    let mut messages = vec![
        Message::System {
            content: "s".repeat(50),
        },
        Message::User {
            content: "i".repeat(80),
        },
    ];
    let mut next = 0;
    for (t, turn) in turns.iter().enumerate() {
        match turn {
            Turn::User(n) => messages.push(Message::User {
                content: "u".repeat(*n),
            }),
            Turn::Reply { text, results } => {
                let ids: Vec<String> = results
                    .iter()
                    .map(|_| {
                        next += 1;
                        format!("c{next}")
                    })
                    .collect();
                messages.push(Message::Assistant(AssistantMessage {
                    content: (*text > 0).then(|| "t".repeat(*text)),
                    tool_calls: ids
                        .iter()
                        .map(|id| ToolCall {
                            id: id.clone(),
                            name: "read".into(),
                            arguments: "{}".into(),
                        })
                        .collect(),
                }));
                let last = t + 1 == turns.len();
                let given = if last {
                    results.len().saturating_sub(missing)
                } else {
                    results.len()
                };
                for (id, size) in ids.iter().zip(results).take(given) {
                    messages.push(Message::Tool {
                        call_id: id.clone(),
                        content: "é".repeat(size / 2) + &"r".repeat(size % 2),
                    });
                }
            }
        }
    }
    messages
}

/// Each reply's call ids with the ids of the results that follow it.
fn pairs(messages: &[Message]) -> Result<BTreeMap<Vec<String>, BTreeSet<String>>, String> {
    let mut pairs = BTreeMap::new();
    let mut current: Option<(Vec<String>, BTreeSet<String>)> = None;
    for message in messages {
        match message {
            Message::Tool { call_id, .. } => {
                let Some((calls, results)) = current.as_mut() else {
                    return Err(format!("result {call_id} follows no reply"));
                };
                if !calls.contains(call_id) {
                    return Err(format!("result {call_id} answers no call of its reply"));
                }
                results.insert(call_id.clone());
            }
            other => {
                if let Some((calls, results)) = current.take() {
                    pairs.insert(calls, results);
                }
                if let Message::Assistant(reply) = other {
                    let calls = reply.tool_calls.iter().map(|c| c.id.clone()).collect();
                    current = Some((calls, BTreeSet::new()));
                }
            }
        }
    }
    if let Some((calls, results)) = current {
        pairs.insert(calls, results);
    }
    Ok(pairs)
}

/// What must stay whatever the budget: the head, the last turns without their results' text
/// (each left out to a note), and a note for every step.
fn fixed(messages: &[Message], keep: u32) -> u64 {
    let shape = Shape::of(messages, keep);
    let kept = shape
        .turns
        .get(shape.droppable)
        .map_or(messages.len(), |t| t.start);
    let steps = messages
        .iter()
        .filter(|m| matches!(m, Message::Assistant(_)))
        .count() as u32;
    let minimal = |m: &Message| match m {
        Message::Tool { call_id, content } => estimate(&Message::Tool {
            call_id: call_id.clone(),
            content: format!(
                "[result left out to fit the context window: {} bytes]",
                content.len()
            ),
        })
        .min(estimate(m)),
        other => estimate(other),
    };
    messages[..shape.head].iter().map(estimate).sum::<u64>()
        + messages[kept..].iter().map(minimal).sum::<u64>()
        + estimate(&context::steps_note(steps))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn the_context_is_valid_keeps_what_must_stay_and_fits_when_it_can(
        turns in prop::collection::vec(turn(), 0..30),
        missing in 0usize..3,
        budget in 50u64..30_000,
        keep in 1u32..5,
    ) {
        let messages = conversation(&turns, missing);
        let built = context::build(&messages, budget, keep, 0, &estimate);
        let sent = built.messages.as_ref();
        let total: u64 = sent.iter().map(estimate).sum();
        let whole: u64 = messages.iter().map(estimate).sum();

        // Fitting conversations go as they are.
        if whole <= budget {
            prop_assert!(!built.trimmed);
            prop_assert_eq!(sent, messages.as_slice());
        }
        // No result without its call; each reply kept with exactly the results it had.
        let before = pairs(&messages).map_err(TestCaseError::fail)?;
        let after = pairs(sent).map_err(TestCaseError::fail)?;
        for (calls, results) in &after {
            prop_assert_eq!(Some(results), before.get(calls), "reply {:?}", calls);
        }
        // The head and the last turns stay, in order.
        prop_assert_eq!(&sent[..2], &messages[..2]);
        let shape = Shape::of(&messages, keep);
        let kept_replies: Vec<&AssistantMessage> = shape.turns[shape.droppable..]
            .iter()
            .filter_map(|t| match &messages[t.start] {
                Message::Assistant(reply) => Some(reply),
                _ => None,
            })
            .collect();
        let sent_replies: Vec<&AssistantMessage> = sent
            .iter()
            .filter_map(|m| match m {
                Message::Assistant(reply) => Some(reply),
                _ => None,
            })
            .collect();
        // A reply too large for its share may go with a note for arguments or clipped text,
        // but always with the same calls.
        let calls = |reply: &&AssistantMessage| -> Vec<(String, String)> {
            reply.tool_calls.iter().map(|c| (c.id.clone(), c.name.clone())).collect()
        };
        let sent_calls: Vec<_> = sent_replies.iter().map(calls).collect();
        let kept_calls: Vec<_> = kept_replies.iter().map(calls).collect();
        prop_assert!(sent_calls.ends_with(&kept_calls));
        // Within the budget whenever what must stay fits.
        if fixed(&messages, keep) <= budget {
            prop_assert!(total <= budget, "{} > {}", total, budget);
        }
    }
}

#[test]
fn a_result_too_large_for_its_share_is_clipped_with_a_note() {
    let messages = conversation(
        &[Turn::Reply {
            text: 0,
            results: vec![50_000],
        }],
        0,
    );
    let built = context::build(&messages, 2_000, 4, 0, &estimate);
    let Message::Tool { content, .. } = &built.messages[3] else {
        panic!("the result stays: {:?}", built.messages);
    };
    assert!(
        content.contains("[clipped to fit the context window: "),
        "{content}"
    );
    assert!(content.ends_with(" of 50000 bytes shown]"), "{content}");
    assert!(built.messages.iter().map(estimate).sum::<u64>() <= 2_000);
}

#[test]
fn left_out_steps_are_counted_in_a_note_after_the_head() {
    let turns = vec![
        Turn::Reply {
            text: 10,
            results: vec![500],
        };
        10
    ];
    let messages = conversation(&turns, 0);
    let built = context::build(&messages, 1_500, 2, 0, &estimate);
    let Message::User { content } = &built.messages[2] else {
        panic!("a note follows the head: {:?}", built.messages);
    };
    let replies = built
        .messages
        .iter()
        .filter(|m| matches!(m, Message::Assistant(_)))
        .count();
    assert!(replies >= 2, "the last turns stay");
    let expected = format!("[context: {} earlier steps were left out", 10 - replies);
    assert!(content.starts_with(&expected), "{content}");
}

#[test]
fn a_reply_with_arguments_too_large_for_its_share_keeps_its_calls_with_a_note() {
    let mut messages = conversation(
        &[Turn::Reply {
            text: 20,
            results: vec![100, 100],
        }],
        0,
    );
    let Message::Assistant(reply) = &mut messages[2] else {
        panic!("a reply follows the head: {messages:?}");
    };
    let huge = format!("{{\"content\":\"{}\"}}", "x".repeat(50_000));
    reply.tool_calls[0].arguments = huge.clone();
    let small = reply.tool_calls[1].arguments.clone();
    let built = context::build(&messages, 2_000, 4, 0, &estimate);
    let Message::Assistant(sent) = &built.messages[2] else {
        panic!("the reply stays: {:?}", built.messages);
    };
    // Both calls stay, with their ids (their results follow); only the large one is a note,
    // valid JSON naming the size.
    assert_eq!(sent.tool_calls.len(), 2);
    let note: serde_json::Value = serde_json::from_str(&sent.tool_calls[0].arguments).unwrap();
    assert!(
        note["left_out"]
            .as_str()
            .unwrap()
            .contains(&format!("arguments of {} bytes", huge.len())),
        "{note}"
    );
    assert_eq!(sent.tool_calls[1].arguments, small);
    assert_eq!(sent.content.as_deref(), Some("t".repeat(20).as_str()));
    pairs(&built.messages).unwrap();
    assert!(built.messages.iter().map(estimate).sum::<u64>() <= 2_000);
}
