//! Trace and span ids derived from the journal, so every process that drives a run (the first,
//! and each that resumes it) puts its spans in the same trace without journaling anything.
//!
//! The trace id is the run id's ULID (128 bits: a millisecond timestamp and 80 random bits),
//! so a trace id found in a tracing backend leads back to the run. A run id that is not a ULID
//! is hashed instead. A span id is a hash of the run id and the sequence number of the event
//! that opened the span.

/// The trace id of a run.
pub fn trace_id(run_id: &str) -> [u8; 16] {
    let ulid = run_id
        .strip_prefix("run_")
        .and_then(|text| ulid::Ulid::from_string(&text.to_ascii_uppercase()).ok())
        .map(u128::from)
        .filter(|n| *n != 0);
    let id = ulid.unwrap_or_else(|| fnv1a_128(run_id.as_bytes()).max(1));
    id.to_be_bytes()
}

/// The id of the span opened by the event at `seq` of a run.
pub fn span_id(run_id: &str, seq: u64) -> [u8; 8] {
    let mut bytes = Vec::with_capacity(run_id.len() + 9);
    bytes.extend_from_slice(run_id.as_bytes());
    bytes.push(0xff);
    bytes.extend_from_slice(&seq.to_be_bytes());
    // Fold the 128-bit hash to 64 bits so every input byte reaches every output byte.
    let hash = fnv1a_128(&bytes);
    let id = ((hash >> 64) as u64 ^ hash as u64).max(1);
    id.to_be_bytes()
}

/// Lowercase hex, as trace ids are written in W3C trace context and in tracing backends.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// FNV-1a, 128-bit: stable across builds and platforms.
fn fnv1a_128(bytes: &[u8]) -> u128 {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    bytes.iter().fold(OFFSET, |hash, byte| {
        (hash ^ u128::from(*byte)).wrapping_mul(PRIME)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ulid_run_id_is_its_own_trace_id() {
        let ulid = ulid::Ulid::new();
        let run_id = format!("run_{}", ulid.to_string().to_lowercase());
        assert_eq!(trace_id(&run_id), u128::from(ulid).to_be_bytes());
        assert_eq!(trace_id(&run_id), trace_id(&run_id));
    }

    #[test]
    fn other_run_ids_hash_and_span_ids_differ_by_seq() {
        let a = trace_id("not-a-ulid");
        assert_ne!(a, [0; 16]);
        assert_ne!(a, trace_id("not-a-ulid2"));
        assert_ne!(span_id("run_x", 1), span_id("run_x", 2));
        assert_ne!(span_id("run_x", 1), span_id("run_y", 1));
        assert_eq!(span_id("run_x", 7), span_id("run_x", 7));
        assert_eq!(hex(&[0, 171]), "00ab");
    }
}
