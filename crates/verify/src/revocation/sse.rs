//! A server-sent events parser for the revocation stream, fed chunk by chunk.
//!
//! Follows the event stream format of the HTML standard as far as the feed needs: lines end in
//! CRLF, LF or CR (a CRLF may be split across chunks); `:` starts a comment; `event:` names the
//! event, each `data:` adds a line to its data; a blank line ends the event. `id:` and `retry:`
//! are ignored: the cursor is each entry's `seq`, and reconnection is the verifier's own policy.
//!
//! Everything read is bounded: a line longer than [`MAX_SSE_LINE_BYTES`] or an event with more
//! than [`MAX_SSE_EVENT_BYTES`] of data is an error, so a broken or hostile peer cannot grow the
//! verifier's memory by never ending a line or an event.

/// Longest line accepted on the revocation stream, in bytes, without its line ending.
pub const MAX_SSE_LINE_BYTES: usize = 64 * 1024;
/// Most data one event of the revocation stream may carry, in bytes.
pub const MAX_SSE_EVENT_BYTES: usize = 64 * 1024;

/// One complete event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SseEvent {
    /// The `event:` field, `"message"` when absent.
    pub(crate) event: String,
    /// The `data:` lines joined by `\n`.
    pub(crate) data: String,
}

/// Why the stream cannot be read further.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SseError {
    #[error("a line of the event stream exceeds {MAX_SSE_LINE_BYTES} bytes")]
    LineTooLong,
    #[error("an event of the event stream exceeds {MAX_SSE_EVENT_BYTES} bytes")]
    EventTooLarge,
    #[error("the event stream is not UTF-8")]
    NotUtf8,
}

/// Incremental parser state: the unfinished line and the event being assembled.
#[derive(Debug, Default)]
pub(crate) struct SseParser {
    line: Vec<u8>,
    /// The previous chunk ended in CR, so a leading LF of the next one ends no line.
    after_cr: bool,
    /// Whether the first line was seen (a byte order mark may precede it).
    started: bool,
    event: Option<String>,
    data: String,
    has_data: bool,
}

impl SseParser {
    pub(crate) fn new() -> SseParser {
        SseParser::default()
    }

    /// Reads `chunk`, appending each event it completes to `events`.
    pub(crate) fn push(
        &mut self,
        chunk: &[u8],
        events: &mut Vec<SseEvent>,
    ) -> Result<(), SseError> {
        let mut rest = chunk;
        if self.after_cr && !rest.is_empty() {
            self.after_cr = false;
            if let [b'\n', tail @ ..] = rest {
                rest = tail;
            }
        }
        while let Some(end) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.extend_line(&rest[..end])?;
            self.end_line(events)?;
            let ending_is_cr = rest[end] == b'\r';
            rest = &rest[end + 1..];
            if ending_is_cr {
                match rest {
                    [b'\n', tail @ ..] => rest = tail,
                    [] => self.after_cr = true,
                    _ => {}
                }
            }
        }
        self.extend_line(rest)
    }

    fn extend_line(&mut self, bytes: &[u8]) -> Result<(), SseError> {
        if self.line.len() + bytes.len() > MAX_SSE_LINE_BYTES {
            return Err(SseError::LineTooLong);
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn end_line(&mut self, events: &mut Vec<SseEvent>) -> Result<(), SseError> {
        let bytes = std::mem::take(&mut self.line);
        let mut line = String::from_utf8(bytes).map_err(|_| SseError::NotUtf8)?;
        if !self.started {
            self.started = true;
            if line.starts_with('\u{feff}') {
                line.drain(..'\u{feff}'.len_utf8());
            }
        }
        if line.is_empty() {
            self.dispatch(events);
            return Ok(());
        }
        if line.starts_with(':') {
            return Ok(());
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_str(), ""),
        };
        match field {
            "event" => self.event = Some(value.to_owned()),
            "data" => self.add_data(value)?,
            _ => {} // id, retry and unknown fields
        }
        Ok(())
    }

    fn add_data(&mut self, value: &str) -> Result<(), SseError> {
        let separator = usize::from(self.has_data);
        if self.data.len() + separator + value.len() > MAX_SSE_EVENT_BYTES {
            return Err(SseError::EventTooLarge);
        }
        if self.has_data {
            self.data.push('\n');
        }
        self.data.push_str(value);
        self.has_data = true;
        Ok(())
    }

    /// Ends the current event; an event without data is dropped, as the standard says.
    fn dispatch(&mut self, events: &mut Vec<SseEvent>) {
        let event = self.event.take();
        if !std::mem::take(&mut self.has_data) {
            return;
        }
        events.push(SseEvent {
            event: event.unwrap_or_else(|| "message".to_owned()),
            data: std::mem::take(&mut self.data),
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn parse_chunks(chunks: &[&[u8]]) -> Result<Vec<SseEvent>, SseError> {
        let mut parser = SseParser::new();
        let mut events = Vec::new();
        for chunk in chunks {
            parser.push(chunk, &mut events)?;
        }
        Ok(events)
    }

    fn parse(text: &str) -> Result<Vec<SseEvent>, SseError> {
        parse_chunks(&[text.as_bytes()])
    }

    fn event(event: &str, data: &str) -> SseEvent {
        SseEvent {
            event: event.into(),
            data: data.into(),
        }
    }

    const FEED: &str = ": hello\n\
        event: revocation\nid: 1\ndata: {\"seq\":1}\n\n\
        event: heartbeat\ndata: {\"head\": 1}\n\n\
        data: first\ndata:second\n\n\
        event: ignored-without-data\n\n";

    fn feed_events() -> Vec<SseEvent> {
        vec![
            event("revocation", "{\"seq\":1}"),
            event("heartbeat", "{\"head\": 1}"),
            event("message", "first\nsecond"),
        ]
    }

    #[test]
    fn reads_events_comments_and_multi_line_data() {
        assert_eq!(parse(FEED).unwrap(), feed_events());
    }

    #[test]
    fn every_line_ending_works() {
        assert_eq!(parse(&FEED.replace('\n', "\r\n")).unwrap(), feed_events());
        assert_eq!(parse(&FEED.replace('\n', "\r")).unwrap(), feed_events());
    }

    #[test]
    fn a_crlf_split_across_chunks_ends_one_line() {
        let events = parse_chunks(&[b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"]).unwrap();
        assert_eq!(events, [event("message", "a\nb")]);
    }

    #[test]
    fn an_empty_chunk_between_cr_and_lf_changes_nothing() {
        let events = parse_chunks(&[b"event: a\r", b"", b"\ndata: x\n\n"]).unwrap();
        assert_eq!(events, [event("a", "x")]);
    }

    #[test]
    fn an_unfinished_event_is_not_dispatched() {
        assert_eq!(parse("data: a\n").unwrap(), []);
    }

    #[test]
    fn a_byte_order_mark_is_skipped() {
        assert_eq!(
            parse("\u{feff}data: a\n\n").unwrap(),
            [event("message", "a")]
        );
    }

    #[test]
    fn limits_are_errors() {
        let long = "x".repeat(MAX_SSE_LINE_BYTES);
        assert_eq!(
            parse_chunks(&[b"data: ", long.as_bytes()]),
            Err(SseError::LineTooLong)
        );
        let half = "x".repeat(MAX_SSE_EVENT_BYTES / 2);
        let big_event = format!("data: {half}\ndata: {half}\n\n");
        assert_eq!(parse(&big_event), Err(SseError::EventTooLarge));
        assert_eq!(parse_chunks(&[b"data: \xff\n\n"]), Err(SseError::NotUtf8));
    }

    #[test]
    fn a_line_at_the_limit_is_accepted() {
        let data = "x".repeat(MAX_SSE_LINE_BYTES - "data: ".len());
        let events = parse(&format!("data: {data}\n\n")).unwrap();
        assert_eq!(events[0].data.len(), data.len());
    }

    proptest! {
        #[test]
        fn any_split_gives_the_same_events(
            cuts in proptest::collection::vec(0..FEED.len() * 2, 0..12),
            crlf in any::<bool>(),
        ) {
            let text = if crlf { FEED.replace('\n', "\r\n") } else { FEED.to_owned() };
            let bytes = text.as_bytes();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
            cuts.sort_unstable();
            let mut chunks = Vec::new();
            let mut start = 0;
            for cut in cuts {
                chunks.push(&bytes[start..cut]);
                start = cut;
            }
            chunks.push(&bytes[start..]);
            prop_assert_eq!(parse_chunks(&chunks).unwrap(), feed_events());
        }
    }
}
