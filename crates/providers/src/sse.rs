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
}
