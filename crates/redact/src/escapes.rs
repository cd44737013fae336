//! Seeing through JSON string escapes.
//!
//! A secret can reach chassis written the way a JSON encoder chose to write it: `\u002d` for
//! `-`, `\/` for `/`, any character as `\uXXXX` (a surrogate pair beyond the BMP). A tool's
//! result, a model's tool arguments or an MCP reply is such a document held in one string, so
//! the redactor looks at the *decoded* text too: [`Decoded`] is that text with, for each of its
//! characters, the bytes of the original it came from, so a secret found in it is removed
//! from the original, escapes and all. A JSON document inside a JSON string is escaped twice;
//! [`layers`] decodes up to [`MAX_LAYERS`] times.

use std::ops::Range;

/// How many layers of escaping are seen through: a document in a string in a document, and
/// one more.
pub(super) const MAX_LAYERS: usize = 3;

/// A text with its JSON escapes decoded.
pub(super) struct Decoded {
    /// The decoded text.
    pub(super) text: String,
    /// For each character of `text`: its byte offset in `text`, and the bytes of the source
    /// it was decoded from. Sorted by offset.
    origin: Vec<(usize, Range<usize>)>,
}

impl Decoded {
    /// `source` with its escapes decoded, or `None` when it holds none.
    pub(super) fn of(source: &str) -> Option<Decoded> {
        if !source.contains('\\') {
            return None;
        }
        let bytes = source.as_bytes();
        let mut text = String::with_capacity(source.len());
        let mut origin = Vec::with_capacity(source.len());
        let mut decoded_any = false;
        let mut i = 0;
        while i < bytes.len() {
            if let Some((c, len)) = escape_at(source, i) {
                origin.push((text.len(), i..i + len));
                text.push(c);
                decoded_any = true;
                i += len;
                continue;
            }
            // Not an escape: the character stands for itself. `i` is always on a character
            // boundary: escapes are ASCII, and plain characters are stepped over whole.
            let Some(c) = source[i..].chars().next() else {
                break;
            };
            origin.push((text.len(), i..i + c.len_utf8()));
            text.push(c);
            i += c.len_utf8();
        }
        decoded_any.then_some(Decoded { text, origin })
    }

    /// The bytes of the source that `range` (bytes of the decoded text) was decoded from.
    pub(super) fn source_range(&self, range: &Range<usize>) -> Range<usize> {
        let char_at = |offset: usize| match self.origin.binary_search_by_key(&offset, |(o, _)| *o) {
            Ok(i) => i,
            // Inside a character: the one that starts before.
            Err(i) => i.saturating_sub(1),
        };
        let first = char_at(range.start);
        let last = char_at(range.end.saturating_sub(1).max(range.start));
        let start = self.origin.get(first).map_or(0, |(_, r)| r.start);
        let end = self.origin.get(last).map_or(start, |(_, r)| r.end);
        start..end
    }
}

/// The character an escape at byte `i` of `source` stands for, and the escape's length.
fn escape_at(source: &str, i: usize) -> Option<(char, usize)> {
    let bytes = source.as_bytes();
    if bytes.get(i) != Some(&b'\\') {
        return None;
    }
    let simple = match bytes.get(i + 1)? {
        b'"' => '"',
        b'\\' => '\\',
        b'/' => '/',
        b'b' => '\u{8}',
        b'f' => '\u{c}',
        b'n' => '\n',
        b'r' => '\r',
        b't' => '\t',
        b'u' => {
            let unit = hex4(bytes, i + 2)?;
            if (0xD800..0xDC00).contains(&unit) {
                // A high surrogate counts only with its low half right after it.
                if bytes.get(i + 6) == Some(&b'\\') && bytes.get(i + 7) == Some(&b'u') {
                    let low = hex4(bytes, i + 8)?;
                    if (0xDC00..0xE000).contains(&low) {
                        let c = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                        return char::from_u32(c).map(|c| (c, 12));
                    }
                }
                return None;
            }
            return char::from_u32(unit).map(|c| (c, 6));
        }
        _ => return None,
    };
    Some((simple, 2))
}

fn hex4(bytes: &[u8], at: usize) -> Option<u32> {
    let digits = bytes.get(at..at + 4)?;
    digits.iter().try_fold(0u32, |n, &b| {
        let digit = (b as char).to_digit(16)?;
        Some(n * 16 + digit)
    })
}

/// The decoded layers of `source`: once, twice, … while something was decoded, at most
/// [`MAX_LAYERS`] times. Layer `k` is decoded from layer `k - 1` (layer 0 from `source`).
pub(super) fn layers(source: &str) -> Vec<Decoded> {
    let mut layers: Vec<Decoded> = Vec::new();
    while layers.len() < MAX_LAYERS {
        let from = layers.last().map_or(source, |d| d.text.as_str());
        match Decoded::of(from) {
            Some(next) => layers.push(next),
            None => break,
        }
    }
    layers
}

/// Maps `range` in the text of layer `depth` back to bytes of the original source.
pub(super) fn to_source(layers: &[Decoded], depth: usize, range: Range<usize>) -> Range<usize> {
    layers[..=depth]
        .iter()
        .rev()
        .fold(range, |range, layer| layer.source_range(&range))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_decode_and_map_back() {
        let source = r#"{"k":"sk\u002dlive\/x \ud83d\ude00 é"}"#;
        let d = Decoded::of(source).unwrap();
        assert_eq!(d.text, "{\"k\":\"sk-live/x 😀 é\"}");
        let at = d.text.find("sk-live/x").unwrap();
        let range = d.source_range(&(at..at + "sk-live/x".len()));
        assert_eq!(&source[range], r"sk\u002dlive\/x");
        let at = d.text.find('😀').unwrap();
        assert_eq!(&source[d.source_range(&(at..at + 4))], r"\ud83d\ude00");
    }

    #[test]
    fn nothing_to_decode_is_none_and_bad_escapes_stay() {
        assert!(Decoded::of("plain text").is_none());
        assert!(Decoded::of(r"C:\path \u12 \ud800 \x").is_none());
    }

    #[test]
    fn layers_see_through_a_document_in_a_string() {
        let source = r#"{"inner":"{\"k\":\"sk\\u002dlive\"}"}"#;
        let layers = layers(source);
        assert_eq!(layers.len(), 2);
        let text = &layers[1].text;
        let at = text.find("sk-live").unwrap();
        let range = to_source(&layers, 1, at..at + "sk-live".len());
        assert_eq!(&source[range], r"sk\\u002dlive");
    }
}
