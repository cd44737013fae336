//! Property: `--since` dates parse or are refused, never a panic, whatever the text.
//! `PROPTEST_CASES=100000 cargo nextest run -p chassis-telemetry parsers` fuzzes for minutes.

use chassis_telemetry::time::{parse_rfc3339, rfc3339_millis};
use proptest::prelude::*;

/// Text shaped like a timestamp often enough to reach every branch, with any characters
/// (multi-byte ones too) where digits belong.
fn timestamp_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{4}-[0-9]{2}-[0-9]{2}([Tt ][0-9]{1,2}:[0-9]{2}(:[0-9]{2})?(\\.[0-9é😀x]{0,12})?([Zz]|[+-][0-9é]{0,20}:[0-9]{0,20})?)?",
        "[0-9:.T+\\-Zé😀]{0,40}",
        any::<String>(),
    ]
}

proptest! {
    #[test]
    fn timestamps_parse_or_are_refused(text in timestamp_like()) {
        let _ = parse_rfc3339(&text);
    }

    #[test]
    fn formatted_times_read_back(ms in 0u64..253_402_300_799_999) {
        prop_assert_eq!(parse_rfc3339(&rfc3339_millis(ms)), Some(ms));
    }
}

#[test]
fn the_multibyte_fraction_that_used_to_panic_is_refused() {
    assert_eq!(parse_rfc3339("2025-03-01T12:34:56.12éZ"), None);
    assert_eq!(parse_rfc3339("2025-03-01T12:34:56.1😀Z"), None);
    assert_eq!(
        parse_rfc3339("2025-03-01T12:34:56+99999999999999999:00"),
        None
    );
}
