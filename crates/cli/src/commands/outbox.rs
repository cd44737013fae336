//! `chassis outbox [--status pending|failed|delivered] [--json]`: the webhook deliveries.

use std::path::Path;

use chassis_store::{DeliveryStatus, OutboxFilter};

use crate::commands::{open_reading_journal, resolve_run};
use crate::exit::UsageError;

// Arguments of `chassis outbox`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// Only deliveries in this state: pending (not yet acknowledged; retried until they
    /// expire), failed (given up) or delivered
    #[arg(long, value_name = "pending|failed|delivered")]
    status: Option<String>,
    /// Only the notifications of this run (an id, a unique prefix, or `last`)
    #[arg(long, value_name = "RUN")]
    run: Option<String>,
    /// At most this many, newest first
    #[arg(long, default_value_t = 50, value_name = "N")]
    limit: usize,
    /// Print a JSON array (bodies included) instead of a table
    #[arg(long)]
    json: bool,
}

/// Lists the outbox's deliveries, newest first.
pub(crate) async fn run(db: &Path, args: Args) -> anyhow::Result<u8> {
    let status = match &args.status {
        None => None,
        Some(text) => Some(DeliveryStatus::parse(text).ok_or_else(|| {
            UsageError(format!(
                "--status: unknown status `{text}` (use pending, failed or delivered)"
            ))
        })?),
    };
    let journal = open_reading_journal(db).await?;
    let run_id = match &args.run {
        Some(text) => Some(resolve_run(journal.as_ref(), text).await?),
        None => None,
    };
    let filter = OutboxFilter {
        status,
        run_id,
        limit: Some(args.limit),
    };
    let deliveries = chassis_engine::list_deliveries(journal.as_ref(), &filter).await?;
    if args.json {
        outln!("{}", serde_json::to_string(&deliveries)?);
        return Ok(crate::exit::COMPLETED);
    }
    if deliveries.is_empty() {
        noteln!(
            "no deliveries{}",
            args.status
                .as_ref()
                .map_or(String::new(), |s| format!(" {s}"))
        );
        return Ok(crate::exit::COMPLETED);
    }
    outln!(
        "{:<36}  {:<18}  {:<9}  {:>8}  {:<20}  LAST ERROR",
        "DELIVERY",
        "KIND",
        "STATUS",
        "ATTEMPTS",
        "NEXT / DONE (UTC)"
    );
    for d in &deliveries {
        let when = d
            .next_attempt_ms
            .or(d.done_ms)
            .map_or_else(String::new, time);
        outln!(
            "{:<36}  {:<18}  {:<9}  {:>8}  {:<20}  {}",
            d.delivery_id,
            d.kind,
            d.status,
            d.attempts,
            when,
            d.last_error.as_deref().unwrap_or("")
        );
    }
    Ok(crate::exit::COMPLETED)
}

/// A time in ms since the epoch as `YYYY-MM-DD HH:MM:SS` (UTC).
fn time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_are_civil_utc() {
        assert_eq!(super::time(0), "1970-01-01 00:00:00");
        assert_eq!(super::time(1_709_251_199_000), "2024-02-29 23:59:59");
    }
}
