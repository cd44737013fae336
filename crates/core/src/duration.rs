//! Human durations in specs and on the command line: `250ms`, `30s`, `5m`, `2h`, `1d`.
//!
//! A duration is at most [`MAX`] (100 years): far beyond any timeout, lease or limit, and small
//! enough that adding it to any time in milliseconds since the epoch cannot overflow, so no
//! caller has to guard `now + timeout` against a spec or a flag.

use std::time::Duration;

/// The longest duration accepted: 100 years of 365.25 days.
pub const MAX: Duration = Duration::from_secs(100 * 36_525 * 864);

/// Parses a duration such as `30s`; the error says what was expected.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .ok_or_else(|| format!("`{text}` has no unit (use ms, s, m, h or d, e.g. \"30s\")"))?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` does not start with a number (e.g. \"30s\")"))?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86400.0,
        other => {
            return Err(format!(
                "`{text}` has unknown unit `{other}` (use ms, s, m, h or d)"
            ));
        }
    };
    if !seconds.is_finite() || seconds <= 0.0 {
        return Err(format!("`{text}` must be greater than zero"));
    }
    // Checked before converting: `Duration::from_secs_f64` panics past `u64::MAX` seconds.
    if seconds > MAX.as_secs_f64() {
        return Err(format!("`{text}` is too long (at most 36525d, 100 years)"));
    }
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("`{text}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("36525d").unwrap(), MAX);
    }

    #[test]
    fn rejects_bad_input() {
        assert!(parse("30").unwrap_err().contains("no unit"));
        assert!(parse("abc").unwrap_err().contains("number"));
        assert!(parse("3w").unwrap_err().contains("unknown unit"));
        assert!(parse("0s").unwrap_err().contains("greater than zero"));
    }

    #[test]
    fn rejects_durations_too_long_to_add_to_a_time() {
        for text in [
            "99999999999999999999s",
            "36526d",
            "18446744073709551616s",
            "99999999999999999999999999999999999999999999999ms",
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains("too long"), "{text}: {e}");
        }
    }
}
