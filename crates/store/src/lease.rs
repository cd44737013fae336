//! Lease tokens and lease times, the same for every backend.

use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A fresh fencing token.
///
/// Tokens need to differ from the run's previous one, not to be secret: a per-process
/// randomly keyed hash of a counter, the time and the process id is enough, without a crate.
pub(crate) fn fresh_token() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// Longest lease, about a thousand years: far beyond any use, and `now + ttl` cannot overflow.
const MAX_TTL_MS: i64 = 1 << 45;

/// A lease's time to live in milliseconds, capped at [`MAX_TTL_MS`].
pub(crate) fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).map_or(MAX_TTL_MS, |ms| ms.min(MAX_TTL_MS))
}

/// A token as the databases store it (a signed 64-bit integer, same bits).
pub(crate) fn token_to_sql(token: u64) -> i64 {
    token as i64
}

/// A token read back from a database.
pub(crate) fn token_from_sql(token: i64) -> u64 {
    token as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_differ_and_round_trip() {
        let a = fresh_token();
        let b = fresh_token();
        assert_ne!(a, b);
        assert_eq!(token_from_sql(token_to_sql(u64::MAX)), u64::MAX);
        assert_eq!(ttl_ms(Duration::from_secs(2)), 2000);
        assert_eq!(ttl_ms(Duration::MAX), MAX_TTL_MS);
    }
}
