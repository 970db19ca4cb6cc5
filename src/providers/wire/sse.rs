//! Incremental server-sent-events framing (the WHATWG `text/event-stream`
//! format), for provider streams that arrive in arbitrary pieces.
//!
//! Bytes are fed as they come; complete events are pulled out one at a time,
//! so nothing waits for the whole answer. Lines end in `\n`, `\r\n` or a lone
//! `\r`; a blank line dispatches the event; `data:` lines join with `\n`;
//! comments (`:`) and unknown fields are skipped. An event whose pending line
//! and data together exceed the cap is an error rather than unbounded memory.

use crate::error::GatewayError;

/// Largest event (pending line plus accumulated data) a framer accepts.
pub const MAX_FRAME_BYTES: usize = 1 << 20;

/// One dispatched event. `event` is empty when the stream named none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SseEvent<'a> {
    pub event: &'a str,
    pub data: &'a [u8],
}

#[derive(Debug)]
pub struct SseFramer {
    buffer: Vec<u8>,
    /// Start of the unconsumed bytes in `buffer`.
    line_start: usize,
    /// Bytes before this index (from `line_start`) hold no line terminator:
    /// a long line fed a byte at a time is scanned once, not once per byte.
    scanned: usize,
    data: Vec<u8>,
    has_data: bool,
    event: String,
    /// The previous call returned an event whose fields must now be reset.
    dispatched: bool,
    at_start: bool,
    ended: bool,
    cap: usize,
}

impl Default for SseFramer {
    fn default() -> Self {
        SseFramer::new(MAX_FRAME_BYTES)
    }
}

impl SseFramer {
    pub fn new(cap: usize) -> SseFramer {
        SseFramer {
            buffer: Vec::new(),
            line_start: 0,
            scanned: 0,
            data: Vec::new(),
            has_data: false,
            event: String::new(),
            dispatched: false,
            at_start: true,
            ended: false,
            cap,
        }
    }

    /// Appends stream bytes; pull events with [`SseFramer::next_event`].
    pub fn feed(&mut self, chunk: &[u8]) {
        if self.line_start > 0 {
            self.buffer.drain(..self.line_start);
            self.scanned -= self.line_start;
            self.line_start = 0;
        }
        self.buffer.extend_from_slice(chunk);
    }

    /// Marks the end of the stream: a last line without a terminator still
    /// counts, and an event without its closing blank line is dispatched.
    pub fn end(&mut self) {
        self.ended = true;
    }

    /// The next complete event, or `None` until more bytes arrive.
    pub fn next_event(&mut self) -> Result<Option<SseEvent<'_>>, GatewayError> {
        if self.dispatched {
            self.data.clear();
            self.event.clear();
            self.has_data = false;
            self.dispatched = false;
        }
        if self.at_start {
            // A stream may open with a UTF-8 byte-order mark.
            const BOM: &[u8] = b"\xEF\xBB\xBF";
            if self.buffer.len() < BOM.len() && BOM.starts_with(&self.buffer) && !self.ended {
                return Ok(None);
            }
            if self.buffer.starts_with(BOM) {
                self.line_start = BOM.len();
                self.scanned = BOM.len();
            }
            self.at_start = false;
        }
        loop {
            let Some((line_end, next_line)) = self.next_line_bounds() else {
                if self.ended {
                    if self.line_start < self.buffer.len() {
                        let end = self.buffer.len();
                        self.take_line(end, end);
                        self.check_size(0)?;
                        continue;
                    }
                    return Ok(self.dispatch());
                }
                self.check_size(self.buffer.len() - self.line_start)?;
                return Ok(None);
            };
            if line_end == self.line_start {
                self.line_start = next_line;
                self.scanned = next_line;
                if self.has_data {
                    return Ok(self.dispatch());
                }
                // An event without data is dropped whole, name included.
                self.event.clear();
                continue;
            }
            self.take_line(line_end, next_line);
            self.check_size(0)?;
        }
    }

    /// (end of the line, start of the next) for the first complete line.
    fn next_line_bounds(&mut self) -> Option<(usize, usize)> {
        let from = self.scanned.max(self.line_start);
        let Some(offset) = memchr::memchr2(b'\n', b'\r', self.buffer.get(from..)?) else {
            self.scanned = self.buffer.len();
            return None;
        };
        let end = from + offset;
        self.scanned = end;
        if self.buffer.get(end) == Some(&b'\n') {
            return Some((end, end + 1));
        }
        match self.buffer.get(end + 1) {
            Some(b'\n') => Some((end, end + 2)),
            Some(_) => Some((end, end + 1)),
            // A `\r` last in the buffer may be half of `\r\n`.
            None if self.ended => Some((end, end + 1)),
            None => None,
        }
    }

    fn take_line(&mut self, line_end: usize, next_line: usize) {
        let line = self.buffer.get(self.line_start..line_end).unwrap_or_default();
        if !line.starts_with(b":") {
            let (field, value) = match memchr::memchr(b':', line) {
                Some(colon) => {
                    let (field, rest) = line.split_at(colon);
                    (field, rest.get(1..).unwrap_or_default())
                }
                None => (line, &b""[..]),
            };
            let value = value.strip_prefix(b" ").unwrap_or(value);
            match field {
                b"data" => {
                    if self.has_data {
                        self.data.push(b'\n');
                    }
                    self.data.extend_from_slice(value);
                    self.has_data = true;
                }
                b"event" => {
                    self.event.clear();
                    self.event.push_str(&String::from_utf8_lossy(value));
                }
                _ => {}
            }
        }
        self.line_start = next_line;
        self.scanned = next_line;
    }

    fn dispatch(&mut self) -> Option<SseEvent<'_>> {
        if !self.has_data {
            self.event.clear();
            return None;
        }
        self.dispatched = true;
        Some(SseEvent {
            event: &self.event,
            data: &self.data,
        })
    }

    fn check_size(&self, pending_line: usize) -> Result<(), GatewayError> {
        if pending_line.saturating_add(self.data.len()) > self.cap {
            return Err(GatewayError::Internal {
                message: format!(
                    "A provider stream event exceeded the gateway's limit of {} bytes.",
                    self.cap
                ),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(framer: &mut SseFramer) -> Vec<(String, String)> {
        let mut out = Vec::new();
        while let Some(event) = framer.next_event().unwrap() {
            out.push((
                event.event.to_string(),
                String::from_utf8_lossy(event.data).into_owned(),
            ));
        }
        out
    }

    fn frame(input: &[u8]) -> Vec<(String, String)> {
        let mut framer = SseFramer::default();
        framer.feed(input);
        framer.end();
        events(&mut framer)
    }

    fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
        expected.iter().map(|(e, d)| (e.to_string(), d.to_string())).collect()
    }

    #[test]
    fn lf_crlf_and_cr_line_endings_frame_the_same_events() {
        let expected = pairs(&[("message_start", "{\"a\":1}"), ("", "two")]);
        assert_eq!(
            frame(b"event: message_start\ndata: {\"a\":1}\n\ndata: two\n\n"),
            expected
        );
        assert_eq!(
            frame(b"event: message_start\r\ndata: {\"a\":1}\r\n\r\ndata: two\r\n\r\n"),
            expected
        );
        assert_eq!(
            frame(b"event: message_start\rdata: {\"a\":1}\r\rdata: two\r\r"),
            expected
        );
    }

    #[test]
    fn multi_line_data_joins_with_newlines_and_comments_are_skipped() {
        let input = b": keep-alive\n\ndata: first\ndata:second\nid: 7\nretry: 10\ndata\n\n";
        assert_eq!(frame(input), pairs(&[("", "first\nsecond\n")]));
    }

    #[test]
    fn an_event_name_without_data_is_not_dispatched_and_does_not_leak() {
        assert_eq!(frame(b"event: ping\n\ndata: x\n\n"), pairs(&[("", "x")]));
    }

    #[test]
    fn a_final_event_without_its_blank_line_is_dispatched_at_the_end() {
        assert_eq!(frame(b"data: last"), pairs(&[("", "last")]));
        assert_eq!(frame(b"data: last\r"), pairs(&[("", "last")]));
    }

    #[test]
    fn a_leading_byte_order_mark_is_ignored_however_it_arrives() {
        let input = b"\xEF\xBB\xBFdata: x\n\n";
        assert_eq!(frame(input), pairs(&[("", "x")]));
        let mut framer = SseFramer::default();
        let mut got = Vec::new();
        for byte in input {
            framer.feed(std::slice::from_ref(byte));
            got.extend(events(&mut framer));
        }
        assert_eq!(got, pairs(&[("", "x")]));
        assert_eq!(frame(b"\n\xEF\xBB\xBFdata: x\n\n"), vec![]);
    }

    #[test]
    fn events_come_out_as_soon_as_they_are_complete() {
        let mut framer = SseFramer::default();
        framer.feed(b"data: one\n\ndata: tw");
        assert_eq!(events(&mut framer), pairs(&[("", "one")]));
        framer.feed(b"o\r");
        assert_eq!(events(&mut framer), vec![]);
        framer.feed(b"\n\r\n");
        assert_eq!(events(&mut framer), pairs(&[("", "two")]));
    }

    #[test]
    fn every_split_point_frames_the_same_events() {
        let input: &[u8] = "event: a\r\ndata: héllo\r\ndata: wörld\r\n\r\n: c\n\ndata: x\r\rdata: y\n\n".as_bytes();
        let whole = frame(input);
        for split in 0..=input.len() {
            let mut framer = SseFramer::default();
            framer.feed(&input[..split]);
            let mut got = events(&mut framer);
            framer.feed(&input[split..]);
            framer.end();
            got.extend(events(&mut framer));
            assert_eq!(got, whole, "split at {split}");
        }
        let mut framer = SseFramer::default();
        let mut got = Vec::new();
        for byte in input {
            framer.feed(std::slice::from_ref(byte));
            got.extend(events(&mut framer));
        }
        framer.end();
        got.extend(events(&mut framer));
        assert_eq!(got, whole);
    }

    #[test]
    fn an_oversized_event_is_an_error_not_unbounded_memory() {
        let mut framer = SseFramer::new(16);
        framer.feed(b"data: 0123456789");
        assert!(framer.next_event().unwrap().is_none());
        framer.feed(b"0123456789");
        assert!(framer.next_event().is_err());

        let mut framer = SseFramer::new(16);
        framer.feed(b"data: 0123456789\ndata: 0123456789\n");
        assert!(framer.next_event().is_err());
    }

    #[test]
    fn a_last_line_without_its_terminator_is_held_to_the_cap_too() {
        // Found by the sse_framer fuzz target: the unterminated last line
        // was taken at the end of the stream without the size check.
        let mut framer = SseFramer::new(16);
        framer.feed(b"data: 0123456789\ndata: 0123456789");
        framer.end();
        assert!(framer.next_event().is_err());
    }

    #[test]
    fn garbage_bytes_never_panic() {
        let mut next = crate::testing::xorshift(0x2545_f491_4f6c_dd1d);
        for _ in 0..200 {
            let mut framer = SseFramer::new(4096);
            for _ in 0..20 {
                let chunk: Vec<u8> = (0..64)
                    .map(|_| [b'd', b'a', b't', b':', b'\n', b'\r', b' ', 0xff, b'e'][(next() % 9) as usize])
                    .collect();
                framer.feed(&chunk);
                while let Ok(Some(_)) = framer.next_event() {}
            }
        }
    }
}
