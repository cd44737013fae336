//! Redacting text that arrives in pieces: an answer as it streams.
//!
//! A secret can be cut anywhere between two pieces, so a piece cannot be shown as it comes:
//! [`Stream`] holds back the end of what arrived for as long as it could still turn out to be
//! part of a secret, and shows the rest redacted. What it holds back is bounded: the longest
//! end of the text that begins a secret; the last `12 ×` the longest secret's length while that
//! stretch holds a backslash (a secret may be arriving JSON-escaped, up to twelve bytes a
//! character through three layers of escaping); and, when there are patterns, the last
//! [`PATTERN_WINDOW`] bytes. A match still growing at the end of the text is never cut in two.
//!
//! With nothing to redact, every piece is shown at once, whole.

use crate::Redactor;

/// How much of a stream's end is held back when the redactor has patterns: a pattern's match
/// is caught in a stream as long as it is decided within this many bytes.
pub const PATTERN_WINDOW: usize = 256;

/// Bytes a character can take once JSON-escaped through [`crate::escapes::MAX_LAYERS`] layers
/// (`\u002d` is six; escaped again, its backslash doubles).
const ESCAPED_CHAR_BYTES: usize = 12;

/// One stream's redaction: push its pieces, show what comes back.
#[derive(Debug, Clone)]
pub struct Stream {
    redactor: Redactor,
    /// What arrived and was not shown yet.
    pending: String,
}

impl Stream {
    /// A stream redacted by `redactor`.
    pub fn new(redactor: Redactor) -> Stream {
        Stream {
            redactor,
            pending: String::new(),
        }
    }

    /// Takes `piece`; returns what may be shown now, redacted (possibly empty).
    pub fn push(&mut self, piece: &str) -> String {
        self.pending.push_str(piece);
        if self.redactor.is_empty() {
            return std::mem::take(&mut self.pending);
        }
        let cut = self.safe_cut();
        let shown = self.redactor.redact(&self.pending[..cut]);
        self.pending.drain(..cut);
        shown
    }

    /// The stream ended: the rest, redacted.
    pub fn finish(&mut self) -> String {
        let rest = std::mem::take(&mut self.pending);
        self.redactor.redact(&rest)
    }

    /// The stream was abandoned: forget what was held back.
    pub fn reset(&mut self) {
        self.pending.clear();
    }

    /// How many bytes of `pending` are held back now (for tests and diagnostics).
    pub fn held(&self) -> usize {
        self.pending.len()
    }

    /// The longest prefix of `pending` that no secret still arriving can reach into.
    fn safe_cut(&self) -> usize {
        let text = self.pending.as_str();
        let bytes = text.as_bytes();
        let len = text.len();
        let mut cut = len;
        let mut longest = 0;
        let issued = crate::issued();
        for secret in self.redactor.literals(&issued) {
            let secret = secret.as_bytes();
            longest = longest.max(secret.len());
            // The longest end of the text that is the beginning of this secret.
            let most = (secret.len() - 1).min(len);
            if let Some(k) = (1..=most).rev().find(|&k| bytes.ends_with(&secret[..k])) {
                cut = cut.min(len - k);
            }
        }
        let escaped = longest.saturating_mul(ESCAPED_CHAR_BYTES);
        if escaped > 0 && text[len.saturating_sub(escaped)..].contains('\\') {
            cut = cut.min(len.saturating_sub(escaped));
        }
        if self.redactor.has_patterns() {
            cut = cut.min(len.saturating_sub(PATTERN_WINDOW));
        }
        // Never cut through a match: one that reaches past the cut is held back whole.
        let matches = self.redactor.source_matches(text);
        while let Some(start) = matches
            .iter()
            .filter(|m| m.start < cut && m.end > cut)
            .map(|m| m.start)
            .min()
        {
            cut = start;
        }
        text.floor_char_boundary(cut)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECRET: &str = "sk-live-0123456789abcdef";

    fn shown(redactor: &Redactor, pieces: &[&str]) -> String {
        let mut stream = Stream::new(redactor.clone());
        let mut out: String = pieces.iter().map(|p| stream.push(p)).collect();
        out.push_str(&stream.finish());
        out
    }

    #[test]
    fn a_secret_cut_between_pieces_is_never_shown() {
        let r = Redactor::new([SECRET.to_string()]);
        let pieces = ["the key is sk-li", "ve-0123", "456789abcdef, keep it"];
        assert_eq!(shown(&r, &pieces), "the key is [REDACTED], keep it");
        let mut stream = Stream::new(r);
        assert_eq!(stream.push(pieces[0]), "the key is ");
        assert_eq!(stream.push(pieces[1]), "");
        assert_eq!(stream.push(pieces[2]), "[REDACTED], keep it");
        assert_eq!(stream.held(), 0);
    }

    #[test]
    fn text_that_begins_no_secret_is_shown_at_once() {
        let r = Redactor::new([SECRET.to_string()]);
        let mut stream = Stream::new(r);
        assert_eq!(stream.push("hello wor"), "hello wor");
        assert_eq!(stream.push("ld, s"), "ld, ");
        assert_eq!(stream.push("o long"), "so long");
    }

    #[test]
    fn an_escaped_secret_in_arguments_is_never_shown() {
        let r = Redactor::new([SECRET.to_string()]);
        let escaped = r#"{"key": "sk\u002dlive\u002d0123456789abcdef", "n": 1}"#;
        for at in 1..escaped.len() {
            let out = shown(&r, &[&escaped[..at], &escaped[at..]]);
            assert_eq!(out, r#"{"key": "[REDACTED]", "n": 1}"#, "cut at {at}");
        }
    }

    #[test]
    fn a_pattern_match_still_growing_is_held_whole() {
        let r = Redactor::default()
            .with_patterns([r"Bearer [A-Za-z0-9]+"])
            .unwrap();
        let pieces = ["Authorization: Bearer ", "abc", "def123", " done"];
        assert_eq!(shown(&r, &pieces), "Authorization: [REDACTED] done");
    }

    #[test]
    fn nothing_to_redact_shows_every_piece_whole() {
        let mut stream = Stream::new(Redactor::default());
        assert_eq!(stream.push("sk-li"), "sk-li");
        assert_eq!(stream.held(), 0);
    }

    #[test]
    fn an_abandoned_stream_forgets_what_it_held() {
        let mut stream = Stream::new(Redactor::new([SECRET.to_string()]));
        assert_eq!(stream.push("x sk-live"), "x ");
        stream.reset();
        assert_eq!(stream.push("y"), "y");
        assert_eq!(stream.finish(), "");
    }

    proptest! {
        /// However the text is cut into pieces, what is shown is what redacting the whole
        /// text shows, and no secret (plain, JSON-escaped, or a pattern's match) appears.
        #[test]
        fn any_cutting_shows_the_whole_texts_redaction(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just(SECRET.to_string()),
                    Just(r"sk\u002dlive\u002d0123456789abcdef".to_string()),
                    Just("sk-live-".to_string()),
                    Just("tok_ABCDEFGHIJKLMNOP".to_string()),
                    "[a-z \\\\é\"]{0,12}",
                ],
                0..12,
            ),
            cuts in proptest::collection::vec(0usize..400, 0..8),
        ) {
            let r = Redactor::new([SECRET.to_string()])
                .with_patterns(["tok_[A-Z]{16}"])
                .unwrap();
            let text: String = parts.concat();
            let mut at: Vec<usize> = cuts
                .into_iter()
                .map(|c| text.floor_char_boundary(c.min(text.len())))
                .collect();
            at.push(0);
            at.push(text.len());
            at.sort_unstable();
            at.dedup();
            let pieces: Vec<&str> = at.windows(2).map(|w| &text[w[0]..w[1]]).collect();
            let out = shown(&r, &pieces);
            prop_assert!(!out.contains(SECRET), "{out}");
            prop_assert!(!out.contains("tok_ABCDEFGHIJKLMNOP"), "{out}");
            prop_assert_eq!(out, r.redact(&text));
        }
    }
}
