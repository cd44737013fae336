//! UTC calendar dates without a date library: RFC 3339 timestamps for logs and `--since`.

/// Now, in milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `ms` since the epoch as `2025-03-01T12:34:56.789Z`.
pub fn rfc3339_millis(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// The UTC day of `ms` since the epoch, `2025-03-01` (negative times are the epoch's day).
pub fn utc_day(ms: i64) -> String {
    rfc3339_millis(u64::try_from(ms).unwrap_or(0))[..10].to_string()
}

/// Parses `2025-03-01`, `2025-03-01T12:34:56Z` or `2025-03-01T12:34:56.789Z` (UTC; a
/// numeric offset such as `+02:00` is applied) into ms since the epoch.
///
/// Anything else is `None`, never a panic: the text comes from the command line.
pub fn parse_rfc3339(text: &str) -> Option<u64> {
    let text = text.trim();
    // Every valid timestamp is ASCII; checking first keeps every slice below on a character
    // boundary.
    if !text.is_ascii() {
        return None;
    }
    let (date, time) = match text.split_once(['T', 't', ' ']) {
        Some((date, time)) => (date, Some(time)),
        None => (text, None),
    };
    if date.len() != 10 {
        return None;
    }
    let mut parts = date.splitn(3, '-');
    let y: i64 = digits(parts.next()?, 4)?;
    let m: u32 = u32::try_from(digits(parts.next()?, 2)?).ok()?;
    let d: u32 = u32::try_from(digits(parts.next()?, 2)?).ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let mut ms = days_from_civil(y, m, d).checked_mul(86_400_000)?;
    if let Some(time) = time {
        let (clock, offset_ms) = if let Some(clock) = time.strip_suffix(['Z', 'z']) {
            (clock, 0)
        } else if let Some(i) = time.rfind(['+', '-']) {
            let (clock, offset) = time.split_at(i);
            let sign = if offset.starts_with('-') { -1 } else { 1 };
            let (h, m) = offset[1..].split_once(':')?;
            let (h, m) = (digits(h, 2)?, digits(m, 2)?);
            if h > 23 || m > 59 {
                return None;
            }
            (clock, sign * (h * 60 + m) * 60_000)
        } else {
            (time, 0)
        };
        let (hms, frac) = clock.split_once('.').unwrap_or((clock, ""));
        let mut hms = hms.splitn(3, ':');
        let h = digits(hms.next()?, 2)?;
        let min = digits(hms.next()?, 2)?;
        let s = match hms.next() {
            Some(s) => digits(s, 2)?,
            None => 0,
        };
        if h > 23 || min > 59 || s > 60 {
            return None;
        }
        let frac_ms: i64 = if frac.is_empty() {
            0
        } else {
            // Digits past milliseconds are accepted and dropped.
            if !frac.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            format!("{:0<3}", &frac[..frac.len().min(3)]).parse().ok()?
        };
        ms = ms.checked_add((h * 3600 + min * 60 + s) * 1000 + frac_ms - offset_ms)?;
    }
    u64::try_from(ms).ok()
}

/// `text` as a number of exactly `len` ASCII digits.
fn digits(text: &str, len: usize) -> Option<i64> {
    if text.len() != len || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// (year, month, day) → days since 1970-01-01.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_round_trip() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        let ms = 1_740_832_496_789; // 2025-03-01T12:34:56.789Z
        assert_eq!(rfc3339_millis(ms), "2025-03-01T12:34:56.789Z");
        assert_eq!(parse_rfc3339("2025-03-01T12:34:56.789Z"), Some(ms));
        assert_eq!(parse_rfc3339("2025-03-01T14:34:56.789+02:00"), Some(ms));
        assert_eq!(parse_rfc3339("2025-03-01"), Some(ms - ms % 86_400_000));
        assert_eq!(
            parse_rfc3339("2024-02-29T00:00:00Z"),
            Some(1_709_164_800_000)
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(parse_rfc3339("2025-13-01"), None);
    }

    #[test]
    fn odd_text_is_refused_without_panicking() {
        for text in [
            "2025-03-01T12:34:56.7é",
            "2025-03-01T12:34:56.\u{1F600}Z",
            "2025-03-01T12:34:56+99999999999999999:00",
            "2025-03-01T99999999999999999999:00:00Z",
            "é025-03-01",
            "2025-03-01T12:34:56.78xZ",
            "+2025-3-01",
        ] {
            assert_eq!(parse_rfc3339(text), None, "{text}");
        }
    }
}
