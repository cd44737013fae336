//! Fault injection: the kinds of failure the mock can produce and the seeded draw that picks them.
//!
//! The draw is a splitmix64 sequence kept in one atomic, so picking a fault takes no lock and the
//! same seed with the same request order gives the same faults.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::Error;

/// A way the mock can misbehave instead of (or before) giving its scripted reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// HTTP 429 with a `Retry-After` header and an error body in the endpoint's format.
    RateLimited,
    /// HTTP 500 with an error body in the endpoint's format.
    ServerError,
    /// HTTP 503 with an error body in the endpoint's format.
    Unavailable,
    /// Waits [`MockConfig::hang`](crate::MockConfig::hang) before giving the scripted reply.
    Hang,
    /// Closes the connection without sending any response bytes.
    Cut,
    /// HTTP 200 whose body is not valid JSON (a truncated completion).
    Malformed,
    /// HTTP 200 with a tool call whose arguments are broken.
    ///
    /// OpenAI: the `arguments` string is truncated JSON. Anthropic: `input` must be JSON, so it
    /// is a JSON string holding the truncated arguments instead of an object; a client that
    /// serializes `input` as the arguments gets a string, which no object schema accepts.
    BadArgs,
    /// A streamed answer that breaks after
    /// [`MockConfig::stream_fault_after`](crate::MockConfig::stream_fault_after) events: the
    /// body ends in error (the connection closes, or the HTTP/2 stream is reset). A request that
    /// is not streamed gets [`FaultKind::Cut`] instead.
    StreamCut,
    /// A streamed answer that falls silent for [`MockConfig::hang`](crate::MockConfig::hang)
    /// after some events, then goes on. A request that is not streamed gets
    /// [`FaultKind::Hang`] instead.
    StreamStall,
    /// A streamed answer one of whose events is cut in the middle of its JSON, then goes on.
    /// A request that is not streamed gets [`FaultKind::Malformed`] instead.
    StreamMalformed,
}

const EXPECTED: &str = "429, 500, 503, hang, cut, malformed, bad_args, stream_cut, stream_stall, \
     stream_malformed (or rate_limited, server_error, unavailable)";

impl FaultKind {
    /// Every kind, in declaration order; the set used when a config allows "all".
    pub const ALL: [FaultKind; 10] = [
        FaultKind::RateLimited,
        FaultKind::ServerError,
        FaultKind::Unavailable,
        FaultKind::Hang,
        FaultKind::Cut,
        FaultKind::Malformed,
        FaultKind::BadArgs,
        FaultKind::StreamCut,
        FaultKind::StreamStall,
        FaultKind::StreamMalformed,
    ];

    /// What the fault does to a request that is not streamed: a mid-stream fault becomes the
    /// fault of a whole answer it resembles.
    #[must_use]
    pub(crate) fn unstreamed(self) -> FaultKind {
        match self {
            FaultKind::StreamCut => FaultKind::Cut,
            FaultKind::StreamStall => FaultKind::Hang,
            FaultKind::StreamMalformed => FaultKind::Malformed,
            other => other,
        }
    }

    /// The short name used on the command line and as the key in [`Stats::faults`](crate::Stats::faults).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::RateLimited => "429",
            FaultKind::ServerError => "500",
            FaultKind::Unavailable => "503",
            FaultKind::Hang => "hang",
            FaultKind::Cut => "cut",
            FaultKind::Malformed => "malformed",
            FaultKind::BadArgs => "bad_args",
            FaultKind::StreamCut => "stream_cut",
            FaultKind::StreamStall => "stream_stall",
            FaultKind::StreamMalformed => "stream_malformed",
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FaultKind {
    type Err = Error;

    /// Accepts the short names (`429`, `hang`, `bad_args`, ...) and the variant names in
    /// snake_case (`rate_limited`, `server_error`, `unavailable`), ignoring ASCII case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let kind = match s.trim().to_ascii_lowercase().as_str() {
            "429" | "rate_limited" => FaultKind::RateLimited,
            "500" | "server_error" => FaultKind::ServerError,
            "503" | "unavailable" => FaultKind::Unavailable,
            "hang" => FaultKind::Hang,
            "cut" => FaultKind::Cut,
            "malformed" => FaultKind::Malformed,
            "bad_args" => FaultKind::BadArgs,
            "stream_cut" => FaultKind::StreamCut,
            "stream_stall" => FaultKind::StreamStall,
            "stream_malformed" => FaultKind::StreamMalformed,
            _ => {
                return Err(Error::UnknownFaultKind {
                    name: s.to_owned(),
                    expected: EXPECTED,
                });
            }
        };
        Ok(kind)
    }
}

/// Decides, per request, whether to inject a fault and which one.
#[derive(Debug)]
pub(crate) struct FaultPicker {
    state: AtomicU64,
    rate: f64,
    kinds: Vec<FaultKind>,
}

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

impl FaultPicker {
    /// `rate` is clamped to `0.0..=1.0` (NaN counts as 0); empty `kinds` means all kinds.
    pub(crate) fn new(seed: u64, rate: f64, kinds: &[FaultKind]) -> FaultPicker {
        let mut unique: Vec<FaultKind> = Vec::with_capacity(kinds.len());
        for &kind in kinds {
            if !unique.contains(&kind) {
                unique.push(kind);
            }
        }
        if unique.is_empty() {
            unique = FaultKind::ALL.to_vec();
        }
        let rate = if rate.is_nan() {
            0.0
        } else {
            rate.clamp(0.0, 1.0)
        };
        FaultPicker {
            state: AtomicU64::new(seed),
            rate,
            kinds: unique,
        }
    }

    /// Draws the fault for the next request, if any.
    pub(crate) fn draw(&self) -> Option<FaultKind> {
        if self.rate <= 0.0 {
            return None;
        }
        let x = self.next_u64();
        // The top 53 bits make a uniform float in [0, 1).
        let unit = (x >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
        if unit >= self.rate {
            return None;
        }
        // A second mix of the same draw chooses the kind, so each request consumes one step.
        let y = mix(x ^ GOLDEN_GAMMA);
        let len = self.kinds.len() as u64;
        let index = ((u128::from(y) * u128::from(len)) >> 64) as usize;
        Some(self.kinds[index])
    }

    fn next_u64(&self) -> u64 {
        let previous = self.state.fetch_add(GOLDEN_GAMMA, Ordering::Relaxed);
        mix(previous.wrapping_add(GOLDEN_GAMMA))
    }
}

/// The splitmix64 output function.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in FaultKind::ALL {
            assert_eq!(kind.name().parse::<FaultKind>().unwrap(), kind);
        }
        assert_eq!(
            "rate_limited".parse::<FaultKind>().unwrap(),
            FaultKind::RateLimited
        );
        assert_eq!(
            "Server_Error".parse::<FaultKind>().unwrap(),
            FaultKind::ServerError
        );
        assert_eq!(
            "unavailable".parse::<FaultKind>().unwrap(),
            FaultKind::Unavailable
        );
    }

    #[test]
    fn unknown_name_lists_the_valid_ones() {
        let err = "teapot".parse::<FaultKind>().unwrap_err().to_string();
        assert_eq!(
            err,
            "unknown fault kind `teapot`: expected one of 429, 500, 503, hang, cut, malformed, bad_args, stream_cut, stream_stall, stream_malformed (or rate_limited, server_error, unavailable)"
        );
    }

    #[test]
    fn rate_zero_never_and_rate_one_always() {
        let never = FaultPicker::new(7, 0.0, &[]);
        let always = FaultPicker::new(7, 1.0, &[]);
        for _ in 0..1000 {
            assert_eq!(never.draw(), None);
            assert!(always.draw().is_some());
        }
    }

    #[test]
    fn rate_is_roughly_honoured_and_every_kind_appears() {
        let picker = FaultPicker::new(42, 0.3, &[]);
        let mut seen = std::collections::HashMap::new();
        let draws = 20_000;
        let mut faults = 0;
        for _ in 0..draws {
            if let Some(kind) = picker.draw() {
                faults += 1;
                *seen.entry(kind).or_insert(0) += 1;
            }
        }
        let rate = f64::from(faults) / f64::from(draws);
        assert!((0.28..0.32).contains(&rate), "rate {rate}");
        assert_eq!(seen.len(), FaultKind::ALL.len(), "{seen:?}");
    }

    #[test]
    fn only_allowed_kinds_are_drawn() {
        let picker = FaultPicker::new(1, 1.0, &[FaultKind::Cut, FaultKind::Hang, FaultKind::Cut]);
        for _ in 0..1000 {
            let kind = picker.draw().unwrap();
            assert!(matches!(kind, FaultKind::Cut | FaultKind::Hang));
        }
    }

    #[test]
    fn same_seed_same_sequence() {
        let a = FaultPicker::new(99, 0.5, &[]);
        let b = FaultPicker::new(99, 0.5, &[]);
        let c = FaultPicker::new(100, 0.5, &[]);
        let seq = |p: &FaultPicker| (0..64).map(|_| p.draw()).collect::<Vec<_>>();
        let (sa, sb, sc) = (seq(&a), seq(&b), seq(&c));
        assert_eq!(sa, sb);
        assert_ne!(sa, sc);
    }
}
