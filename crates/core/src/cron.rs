//! Cron expressions for schedules: the five classic fields, pure (time zones are the engine's).
//!
//! `MINUTE HOUR DAY-OF-MONTH MONTH DAY-OF-WEEK`, each `*`, a number, a range `a-b`, a step
//! `*/n` or `a-b/n` or `a/n`, or a list of those separated by commas; months and days of the
//! week also by name (`JAN`, `MON-FRI`); day of week 0 or 7 is Sunday. `@yearly`, `@monthly`,
//! `@weekly`, `@daily` and `@hourly` stand for their usual expressions. As in every cron, when
//! both day fields are restricted a day matches if either does.

/// A parsed cron expression: the set of values each field allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    /// Whether the day-of-month field was `*` (then only the weekday decides, and vice versa).
    any_day: bool,
    any_weekday: bool,
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

impl Cron {
    /// Parses `text`; the error names the field and what was wrong.
    pub fn parse(text: &str) -> Result<Cron, String> {
        let expanded = match text.trim() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let [minute, hour, day, month, weekday] = fields[..] else {
            return Err(format!(
                "`{text}` has {} fields; a cron expression has five: minute hour \
                 day-of-month month day-of-week (e.g. \"0 6 * * MON-FRI\")",
                fields.len()
            ));
        };
        let weekdays = field(weekday, "day-of-week", 0, 7, &WEEKDAYS)?;
        // 7 is Sunday too.
        let weekdays = (weekdays & 0x7f) | u64::from(weekdays & (1 << 7) != 0);
        Ok(Cron {
            minutes: field(minute, "minute", 0, 59, &[])?,
            hours: field(hour, "hour", 0, 23, &[])? as u32,
            days: field(day, "day-of-month", 1, 31, &[])? as u32,
            months: field(month, "month", 1, 12, &MONTHS)? as u16,
            weekdays: weekdays as u8,
            any_day: day == "*" || day == "?",
            any_weekday: weekday == "*" || weekday == "?",
        })
    }

    /// Whether the minute `minute` (0–59) matches.
    pub fn minute(&self, minute: u8) -> bool {
        minute < 60 && self.minutes & (1 << minute) != 0
    }

    /// Whether the hour `hour` (0–23) matches.
    pub fn hour(&self, hour: u8) -> bool {
        hour < 24 && self.hours & (1 << hour) != 0
    }

    /// Whether a day matches: `month` 1–12, `day` 1–31, `weekday` 0 (Sunday) to 6.
    pub fn day(&self, month: u8, day: u8, weekday: u8) -> bool {
        let month_ok = (1..=12).contains(&month) && self.months & (1 << month) != 0;
        let by_day = (1..=31).contains(&day) && self.days & (1 << day) != 0;
        let by_weekday = weekday < 7 && self.weekdays & (1 << weekday) != 0;
        let day_ok = match (self.any_day, self.any_weekday) {
            (true, true) => true,
            (true, false) => by_weekday,
            (false, true) => by_day,
            (false, false) => by_day || by_weekday,
        };
        month_ok && day_ok
    }
}

/// The values `text` allows in `min..=max`, as bits; `names` spell values from `min` (months
/// from 1, weekdays from 0).
fn field(text: &str, name: &str, min: u8, max: u8, names: &[&str]) -> Result<u64, String> {
    let err = |m: String| format!("{name} field `{text}`: {m}");
    let mut bits = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => {
                let step: u8 = step
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| err(format!("`{step}` is not a step above zero")))?;
                (range, step)
            }
            None => (part, 1),
        };
        let (from, to) = if range == "*" || range == "?" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (
                value(a, min, max, names).map_err(err)?,
                value(b, min, max, names).map_err(err)?,
            )
        } else {
            let v = value(range, min, max, names).map_err(err)?;
            // `a/n` runs from a to the end, as in Vixie cron.
            (v, if part.contains('/') { max } else { v })
        };
        if from > to {
            return Err(err(format!("the range {from}-{to} runs backwards")));
        }
        let mut v = from;
        while v <= to {
            bits |= 1 << v;
            match v.checked_add(step) {
                Some(next) => v = next,
                None => break,
            }
        }
    }
    Ok(bits)
}

/// One value: a number in `min..=max`, or a name.
fn value(text: &str, min: u8, max: u8, names: &[&str]) -> Result<u8, String> {
    if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
        // Months are named from 1, weekdays from 0.
        return Ok(i as u8 + min.max(if names.len() == 12 { 1 } else { 0 }));
    }
    match text.parse::<u8>() {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        Ok(v) => Err(format!("{v} is outside {min}-{max}")),
        Err(_) if text.is_empty() => Err("an empty value".to_string()),
        Err(_) => Err(format!(
            "`{text}` is not a number{}",
            if names.is_empty() {
                String::new()
            } else {
                format!(" or one of {}", names.join(", "))
            }
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weekdays_in_the_morning() {
        let cron = Cron::parse("0 6 * * MON-FRI").unwrap();
        assert!(cron.minute(0) && !cron.minute(1));
        assert!(cron.hour(6) && !cron.hour(7));
        // 2026-12-07 is a Monday.
        assert!(cron.day(12, 7, 1));
        assert!(!cron.day(12, 6, 0));
        assert!(!cron.day(12, 12, 6));
    }

    #[test]
    fn both_day_fields_restricted_match_either() {
        let cron = Cron::parse("30 2 1,15 * SUN").unwrap();
        assert!(cron.day(3, 1, 3));
        assert!(cron.day(3, 8, 0));
        assert!(!cron.day(3, 9, 1));
        let sunday = Cron::parse("0 0 * * 7").unwrap();
        assert!(sunday.day(1, 4, 0));
        let monthly = Cron::parse("@monthly").unwrap();
        assert!(monthly.day(2, 1, 4) && !monthly.day(2, 2, 5));
        let steps = Cron::parse("*/15 9-17/4 * JAN,jul *").unwrap();
        assert!(steps.minute(45) && !steps.minute(50));
        assert!(steps.hour(13) && !steps.hour(11));
        assert!(steps.day(7, 3, 5) && !steps.day(8, 3, 1));
    }

    #[test]
    fn errors_name_the_field() {
        for (text, needle) in [
            ("0 6 * *", "five"),
            ("61 * * * *", "minute field `61`: 61 is outside 0-59"),
            ("* 5-2 * * *", "runs backwards"),
            ("* * * FOO *", "month field"),
            ("*/0 * * * *", "not a step above zero"),
            ("* * , * *", "an empty value"),
        ] {
            let err = Cron::parse(text).unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}
