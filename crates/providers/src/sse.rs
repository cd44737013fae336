//! Server-sent events: the framing of both providers' streams, parsed from body chunks that
//! may split a line (or a UTF-8 character) anywhere.

/// Longest line kept while waiting for its end; a stream past it is not a model's answer.
const MAX_LINE: usize = 8 * 1024 * 1024;

/// One event: its `event:` name (empty when it has none) and its `data:` lines joined.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Event {
    pub(crate) name: String,
    pub(crate) data: String,
}

/// An incremental parser: feed it chunks, take complete events.
#[derive(Debug, Default)]
pub(crate) struct Parser {
    line: Vec<u8>,
    event: Event,
    has_data: bool,
}

impl Parser {
    /// Parses `chunk`, appending every event it completes to `out`; the error says what in
    /// the stream is not server-sent events.
    pub(crate) fn feed(&mut self, chunk: &[u8], out: &mut Vec<Event>) -> Result<(), String> {
        let mut rest = chunk;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            self.line.extend_from_slice(&rest[..end]);
            rest = &rest[end + 1..];
            let mut line = std::mem::take(&mut self.line);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            self.line_done(&line, out)?;
            // Keep the allocation for the next line.
            line.clear();
            self.line = line;
        }
        self.line.extend_from_slice(rest);
        if self.line.len() > MAX_LINE {
            return Err(format!("a stream line is longer than {MAX_LINE} bytes"));
        }
        if self.event.data.len() > MAX_LINE {
            return Err(format!("a stream event is longer than {MAX_LINE} bytes"));
        }
        Ok(())
    }

    fn line_done(&mut self, line: &[u8], out: &mut Vec<Event>) -> Result<(), String> {
        if line.is_empty() {
            if self.has_data {
                let mut event = std::mem::take(&mut self.event);
                if event.data.ends_with('\n') {
                    event.data.pop();
                }
                out.push(event);
            }
            self.event = Event::default();
            self.has_data = false;
            return Ok(());
        }
        let line = std::str::from_utf8(line)
            .map_err(|_| "a stream line is not valid UTF-8".to_string())?;
        if line.starts_with(':') {
            return Ok(());
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "data" => {
                self.event.data.push_str(value);
                self.event.data.push('\n');
                self.has_data = true;
            }
            "event" => self.event.name = value.to_string(),
            // `id:` and `retry:` serve reconnection, which a model call never does.
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(chunks: &[&[u8]]) -> Vec<Event> {
        let mut parser = Parser::default();
        let mut out = Vec::new();
        for chunk in chunks {
            parser.feed(chunk, &mut out).unwrap();
        }
        out
    }

    fn event(name: &str, data: &str) -> Event {
        Event {
            name: name.into(),
            data: data.into(),
        }
    }

    #[test]
    fn events_split_anywhere_are_whole() {
        let stream = "event: message_start\ndata: {\"a\":\"é\"}\n\n: keep-alive\n\ndata: one\r\ndata:two\r\n\r\ndata: [DONE]\n\n";
        let whole = parse(&[stream.as_bytes()]);
        assert_eq!(
            whole,
            vec![
                event("message_start", "{\"a\":\"é\"}"),
                event("", "one\ntwo"),
                event("", "[DONE]"),
            ]
        );
        // Byte by byte, splitting the two bytes of `é` too.
        let bytes: Vec<&[u8]> = stream.as_bytes().chunks(1).collect();
        assert_eq!(parse(&bytes), whole);
    }

    #[test]
    fn an_unfinished_event_is_not_emitted() {
        assert_eq!(parse(&[b"data: {\"partial\":"]), Vec::new());
        assert_eq!(parse(&[b"event: ping\n\n"]), Vec::new());
    }

    #[test]
    fn bytes_that_are_not_utf8_are_an_error() {
        let mut out = Vec::new();
        let err = Parser::default()
            .feed(b"data: \xff\xfe\n\n", &mut out)
            .unwrap_err();
        assert!(err.contains("UTF-8"), "{err}");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Feeds `bytes` cut at `cuts`; the events, or the first error.
        fn feed_cut(bytes: &[u8], cuts: &[usize]) -> Result<Vec<Event>, String> {
            let mut parser = Parser::default();
            let mut out = Vec::new();
            let mut at = 0;
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
            cuts.sort_unstable();
            for cut in cuts.into_iter().chain([bytes.len()]) {
                parser.feed(&bytes[at..cut.max(at)], &mut out)?;
                at = cut.max(at);
            }
            Ok(out)
        }

        proptest! {
            /// Whatever a server sends, cut wherever the network cuts it: events or an error,
            /// never a panic.
            #[test]
            fn any_bytes_in_any_pieces_never_panic(
                bytes in proptest::collection::vec(any::<u8>(), 0..2048),
                cuts in proptest::collection::vec(any::<usize>(), 0..8),
            ) {
                let _ = feed_cut(&bytes, &cuts);
            }

            /// The events of a stream do not depend on where its body was cut.
            #[test]
            fn events_do_not_depend_on_the_cuts(
                datas in proptest::collection::vec("[ -~\\u{e9}\\u{1f600}]{0,40}", 1..6),
                cuts in proptest::collection::vec(any::<usize>(), 0..8),
            ) {
                let body: String = datas
                    .iter()
                    .map(|d| format!("event: e\r\ndata: {d}\n\n"))
                    .collect();
                let whole = feed_cut(body.as_bytes(), &[]).unwrap();
                prop_assert_eq!(feed_cut(body.as_bytes(), &cuts).unwrap(), whole);
            }
        }
    }
}
