//! Property: the parsers of user text never panic, whatever the text.
//!
//! Durations (spec timeouts, `--lease-ttl`, `--since`), `--raise` values and whole spec files
//! come from people and scripts; each either parses or says what is wrong. Each case runs in
//! well under a second; `PROPTEST_CASES=100000 cargo nextest run -p chassis-core --test
//! parsers` fuzzes for minutes.

use std::time::Duration;

use chassis_core::LimitName;
use chassis_core::duration;
use chassis_core::spec::AgentSpec;
use proptest::prelude::*;

const BASE: &str = "[agent]\nname = \"a\"\nprompt = \"p\"\n[model]\nprimary = \"openai:m\"\n";

/// Text that looks like a duration often enough to reach every branch: digits, dots, units,
/// signs, exponents, spaces and non-ASCII characters.
fn duration_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9.]{0,30}(ms|s|m|h|d|w|é|µs| s|)",
        "[-+]?[0-9]{0,25}(\\.[0-9]{0,25})?[eE]?[0-9]{0,4}(ms|s|m|h|d)",
        any::<String>(),
    ]
}

/// A TOML basic string holding `text`.
fn toml_string(text: &str) -> String {
    let mut quoted = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            c if c.is_control() => quoted.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

proptest! {
    #[test]
    fn durations_parse_or_say_why(text in duration_like()) {
        match duration::parse(&text) {
            Ok(d) => {
                prop_assert!(d > Duration::ZERO && d <= duration::MAX, "{text}: {d:?}");
                // The promise callers rely on: adding it to any time since the epoch in
                // milliseconds cannot overflow.
                prop_assert!(u64::try_from(d.as_millis()).unwrap().checked_add(u64::MAX / 2).is_some());
            }
            Err(message) => prop_assert!(!message.is_empty()),
        }
    }

    #[test]
    fn raise_values_parse_or_say_why(name in "[a-z_]{0,20}", value in duration_like()) {
        let _ = LimitName::parse(&name);
        for limit in LimitName::ALL {
            match limit.parse_value(&value) {
                Ok(v) => prop_assert!(v.is_finite() && v > 0.0, "{limit}={value}: {v}"),
                Err(message) => prop_assert!(message.starts_with(limit.as_str()), "{message}"),
            }
        }
    }

    #[test]
    fn arbitrary_text_is_not_a_spec_but_never_a_panic(text in any::<String>()) {
        let _ = AgentSpec::parse(&text);
    }

    /// Arbitrary values in every key that goes through a parser of its own.
    #[test]
    fn odd_values_in_a_valid_spec_are_refused_by_key(value in duration_like(), number in any::<i64>(), float in any::<f64>()) {
        let quoted = toml_string(&value);
        let float = if float.is_finite() { format!("{float:?}") } else { "nan".to_string() };
        let specs = [
            format!("{BASE}timeout = {quoted}\n"),
            format!("{BASE}connect_timeout = {quoted}\nidle_timeout = {quoted}\n"),
            format!("{BASE}max_tokens = {number}\nmax_repairs = {number}\ntemperature = {float}\n"),
            format!("{BASE}[limits]\nmax_wall_time = {quoted}\nmax_steps = {number}\nmax_cost_usd = {float}\n"),
            format!("{BASE}[limits]\nmax_tool_args_bytes = {number}\nmax_tool_result_bytes = {number}\n"),
            format!("{BASE}[limits]\non_limit = {{ {} = \"pause\" }}\n", toml_string(&value)),
            format!("{BASE}[approvals]\ntimeout = {quoted}\non_timeout = {quoted}\n"),
            format!("{BASE}[providers.p]\nkind = \"openai\"\nbase_url = \"http://x\"\nretry_base_delay = {quoted}\nbreaker_cooldown = {quoted}\nmax_attempts = {number}\nbreaker_failure_rate = {float}\n"),
            format!("{BASE}[[tools]]\nname = \"t\"\ncommand = [\"x\"]\ntimeout = {quoted}\nmax_attempts = {number}\n"),
            format!("{BASE}[[tools]]\nuse = \"builtin:http\"\nallow_hosts = [{quoted}]\ntimeout = {quoted}\nmax_bytes = {number}\n"),
            format!("{BASE}[mcp.s]\nurl = {quoted}\ntimeout = {quoted}\n"),
            format!("{BASE}[mcp.s]\ncommand = [{quoted}]\nenv = [{quoted}]\n"),
            format!("{BASE}[mcp.s]\ncommand = [\"x\"]\nenv = {{ {} = {quoted} }}\n", toml_string(&value)),
            format!("{BASE}[[tools]]\nname = \"t\"\ncommand = [\"x\"]\nenv = [{quoted}, {number}]\n"),
            format!("{BASE}[redact]\nenv = [{quoted}]\npatterns = [{quoted}]\n"),
            format!("{BASE}[pricing.{quoted}]\ninput = {float}\noutput = {float}\n"),
        ];
        for text in specs {
            if let Err(e) = AgentSpec::parse(&text) {
                prop_assert!(!e.to_string().is_empty());
            }
        }
    }
}

#[test]
fn the_duration_that_used_to_panic_names_its_key() {
    let e = AgentSpec::parse(&format!(
        "{BASE}[[tools]]\nname = \"t\"\ncommand = [\"x\"]\ntimeout = \"99999999999999999999s\"\n"
    ))
    .unwrap_err();
    assert!(e.to_string().starts_with("tools[0].timeout:"), "{e}");
    let e = AgentSpec::parse(&format!("{BASE}[approvals]\ntimeout = \"1e400d\"\n")).unwrap_err();
    assert!(e.to_string().starts_with("approvals.timeout:"), "{e}");
    let e = AgentSpec::parse(&format!(
        "{BASE}[approvals]\ntimeout = \"99999999999999999999d\"\n"
    ))
    .unwrap_err();
    assert!(e.to_string().contains("too long"), "{e}");
}

/// Text that looks like a cron expression often enough to reach every branch.
fn cron_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "([0-9*/,?-]{1,8}|MON|jan|SUN-SAT) ([0-9*/,-]{1,8}) ([0-9*/,?-]{1,6}) ([0-9A-Za-z*/,-]{1,7}) ([0-9A-Za-z*/,?-]{1,7})",
        "@[a-z]{0,9}",
        any::<String>(),
    ]
}

proptest! {
    /// A cron expression parses or says which field is wrong; it never panics.
    #[test]
    fn cron_expressions_never_panic(text in cron_like()) {
        if let Err(message) = chassis_core::cron::Cron::parse(&text) {
            prop_assert!(message.contains("field") || message.contains("five"), "{message}");
        }
    }

    /// A range with a step allows exactly the values a naive count gives, in every field.
    #[test]
    fn cron_steps_allow_what_counting_gives(a in 0u8..60, len in 0u8..60, step in 1u8..20) {
        let b = a.saturating_add(len).min(59);
        let cron = chassis_core::cron::Cron::parse(&format!("{a}-{b}/{step} * * * *")).unwrap();
        for m in 0u8..60 {
            let expected = m >= a && m <= b && (m - a) % step == 0;
            prop_assert_eq!(cron.minute(m), expected, "minute {}", m);
        }
    }
}
