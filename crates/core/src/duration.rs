//! Human durations in specs: `250ms`, `30s`, `5m`, `2h`, `1d`.

use std::time::Duration;

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
    Ok(Duration::from_secs_f64(seconds))
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
    }

    #[test]
    fn rejects_bad_input() {
        assert!(parse("30").unwrap_err().contains("no unit"));
        assert!(parse("abc").unwrap_err().contains("number"));
        assert!(parse("3w").unwrap_err().contains("unknown unit"));
        assert!(parse("0s").unwrap_err().contains("greater than zero"));
    }
}
