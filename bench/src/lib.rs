//! Minimal HTTP/1.1 message framing shared by `sb-upstream` and `sb-load`, and the
//! streamed answers `sb-upstream` sends (which the native stream bench reads too).
//!
//! The framing is only what is needed to find where one message ends and the next begins on
//! a keep-alive connection: the start line, Content-Length, chunked Transfer-Encoding and Connection
//! (plus the two headers that ask `sb-upstream` for a streamed answer).
//! Bodies are skipped, never stored, so neither tool pays for copies it does not need.

use std::io::{self, BufRead};

/// The framing-relevant parts of a request or response head.
#[derive(Debug, Default)]
pub struct Head {
    /// Request line or status line, without the CRLF.
    pub start_line: String,
    pub content_length: Option<u64>,
    pub chunked: bool,
    /// The peer will close (or wants us to close) the connection after this message.
    pub close: bool,
    pub expect_continue: bool,
    /// `x-sb-stream-chunks` (requests to `sb-upstream`): answer with a stream of this many
    /// content chunks instead of one JSON body.
    pub stream_chunks: Option<u32>,
    /// `x-sb-chunk-gap-us`: microseconds between streamed chunks, so that each reaches
    /// Envoy as its own read (a real provider spaces its tokens out).
    pub chunk_gap_us: u64,
}

impl Head {
    /// Status code of a response head (0 if the status line is malformed).
    pub fn status(&self) -> u16 {
        self.start_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// Reads one CRLF-terminated line into `line` (cleared first), without the line ending.
/// Returns false on EOF before any byte.
fn read_line<R: BufRead>(r: &mut R, line: &mut Vec<u8>) -> io::Result<bool> {
    line.clear();
    if r.read_until(b'\n', line)? == 0 {
        return Ok(false);
    }
    if line.last() != Some(&b'\n') {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(true)
}

/// Reads a message head. `Ok(None)` means the peer closed the connection cleanly between
/// messages, which on a keep-alive connection is normal rather than an error.
pub fn read_head<R: BufRead>(r: &mut R, line: &mut Vec<u8>) -> io::Result<Option<Head>> {
    if !read_line(r, line)? {
        return Ok(None);
    }
    let mut head = Head {
        start_line: String::from_utf8_lossy(line).into_owned(),
        ..Head::default()
    };
    // HTTP/1.0 closes by default; HTTP/1.1 keeps alive by default.
    let http10 = head.start_line.starts_with("HTTP/1.0") || head.start_line.ends_with("HTTP/1.0");
    let mut keep_alive = false;
    loop {
        if !read_line(r, line)? {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if line.is_empty() {
            break;
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or_else(|| invalid("header without ':'"))?;
        let name = &line[..colon];
        let value = String::from_utf8_lossy(&line[colon + 1..]).trim().to_ascii_lowercase();
        if name.eq_ignore_ascii_case(b"content-length") {
            head.content_length = Some(value.parse().map_err(|_| invalid("bad content-length"))?);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            head.chunked = value.split(',').any(|t| t.trim() == "chunked");
        } else if name.eq_ignore_ascii_case(b"connection") {
            head.close |= value.split(',').any(|t| t.trim() == "close");
            keep_alive |= value.split(',').any(|t| t.trim() == "keep-alive");
        } else if name.eq_ignore_ascii_case(b"expect") {
            head.expect_continue = value == "100-continue";
        } else if name.eq_ignore_ascii_case(b"x-sb-stream-chunks") {
            head.stream_chunks = Some(value.parse().map_err(|_| invalid("bad x-sb-stream-chunks"))?);
        } else if name.eq_ignore_ascii_case(b"x-sb-chunk-gap-us") {
            head.chunk_gap_us = value.parse().map_err(|_| invalid("bad x-sb-chunk-gap-us"))?;
        }
    }
    if http10 && !keep_alive {
        head.close = true;
    }
    Ok(Some(head))
}

/// Discards exactly `n` bytes.
fn skip<R: BufRead>(r: &mut R, mut n: u64) -> io::Result<()> {
    while n > 0 {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let k = buf.len().min(n.min(usize::MAX as u64) as usize);
        r.consume(k);
        n -= k as u64;
    }
    Ok(())
}

/// Discards the body that follows `head` and returns its length.
///
/// `unframed_until_eof`: a response with neither Content-Length nor chunked encoding runs
/// to connection close (RFC 9112 §6.3); a request in that state has no body.
pub fn skip_body<R: BufRead>(
    r: &mut R,
    head: &mut Head,
    line: &mut Vec<u8>,
    unframed_until_eof: bool,
) -> io::Result<u64> {
    if head.chunked {
        let mut total = 0u64;
        loop {
            if !read_line(r, line)? {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            // Chunk size is hex, optionally followed by ";extensions".
            let size_str = String::from_utf8_lossy(line);
            let size_hex = size_str.split(';').next().unwrap_or("").trim();
            let size = u64::from_str_radix(size_hex, 16).map_err(|_| invalid("bad chunk size"))?;
            if size == 0 {
                // Trailer section, ended by an empty line.
                loop {
                    if !read_line(r, line)? {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                    if line.is_empty() {
                        return Ok(total);
                    }
                }
            }
            skip(r, size)?;
            total += size;
            if !read_line(r, line)? || !line.is_empty() {
                return Err(invalid("chunk not followed by CRLF"));
            }
        }
    } else if let Some(n) = head.content_length {
        skip(r, n)?;
        Ok(n)
    } else if unframed_until_eof {
        head.close = true;
        let mut total = 0u64;
        loop {
            let n = r.fill_buf()?.len();
            if n == 0 {
                return Ok(total);
            }
            r.consume(n);
            total += n as u64;
        }
    } else {
        Ok(0)
    }
}

/// Which provider's wire format a streamed answer is in.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum StreamFormat {
    OpenAi,
    Anthropic,
}

impl StreamFormat {
    /// What a request to `sb-upstream` asks for: Anthropic's on a path ending in `/messages`.
    pub fn of(head: &Head) -> StreamFormat {
        let path = head.start_line.split(' ').nth(1).unwrap_or_default();
        if path.split('?').next().unwrap_or_default().ends_with("/messages") {
            StreamFormat::Anthropic
        } else {
            StreamFormat::OpenAi
        }
    }
}

/// The SSE events (without their closing blank line) of a streamed answer with `chunks`
/// content chunks of one short word each: what `sb-upstream` sends, and what the native
/// stream bench (`benches/stream.rs`) reads.
pub fn sse_events(format: StreamFormat, chunks: u32) -> Vec<String> {
    let word = |i: u32| format!("w{i} ");
    let mut events: Vec<String> = Vec::new();
    match format {
        StreamFormat::OpenAi => {
            let chunk = |delta: &str, finish: &str| {
                format!(
                    r#"data: {{"id":"chatcmpl-sb-bench","object":"chat.completion.chunk","created":1700000000,"model":"mock-model","system_fingerprint":"fp_bench","choices":[{{"index":0,"delta":{delta},"logprobs":null,"finish_reason":{finish}}}]}}"#
                )
            };
            events.push(chunk(r#"{"role":"assistant","content":"","refusal":null}"#, "null"));
            events.extend((0..chunks).map(|i| chunk(&format!(r#"{{"content":"{}"}}"#, word(i)), "null")));
            events.push(chunk("{}", r#""stop""#));
            events.push(format!(
                r#"data: {{"id":"chatcmpl-sb-bench","object":"chat.completion.chunk","created":1700000000,"model":"mock-model","choices":[],"usage":{{"prompt_tokens":24,"completion_tokens":{chunks},"total_tokens":{}}}}}"#,
                24 + chunks
            ));
            events.push("data: [DONE]".into());
        }
        StreamFormat::Anthropic => {
            let event = |name: &str, data: String| format!("event: {name}\ndata: {data}");
            events.push(event(
                "message_start",
                r#"{"type":"message_start","message":{"id":"msg_sb_bench","type":"message","role":"assistant","model":"mock-model","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":24,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1}}}"#.into(),
            ));
            events.push(event(
                "content_block_start",
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#.into(),
            ));
            events.push(event("ping", r#"{"type":"ping"}"#.into()));
            events.extend((0..chunks).map(|i| {
                event(
                    "content_block_delta",
                    format!(
                        r#"{{"type":"content_block_delta","index":0,"delta":{{"type":"text_delta","text":"{}"}}}}"#,
                        word(i)
                    ),
                )
            }));
            events.push(event(
                "content_block_stop",
                r#"{"type":"content_block_stop","index":0}"#.into(),
            ));
            events.push(event(
                "message_delta",
                format!(
                    r#"{{"type":"message_delta","delta":{{"stop_reason":"end_turn","stop_sequence":null}},"usage":{{"output_tokens":{chunks}}}}}"#
                ),
            ));
            events.push(event("message_stop", r#"{"type":"message_stop"}"#.into()));
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn content_length_then_chunked_on_one_connection() {
        let wire = b"POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc\
POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n4;x=y\r\nwxyz\r\n2\r\n12\r\n0\r\nT: v\r\n\r\n";
        let mut r = Cursor::new(&wire[..]);
        let mut line = Vec::new();
        let mut h = read_head(&mut r, &mut line).unwrap().unwrap();
        assert_eq!(h.start_line, "POST /a HTTP/1.1");
        assert_eq!(skip_body(&mut r, &mut h, &mut line, false).unwrap(), 3);
        assert!(!h.close);
        let mut h = read_head(&mut r, &mut line).unwrap().unwrap();
        assert!(h.chunked && h.close);
        assert_eq!(skip_body(&mut r, &mut h, &mut line, false).unwrap(), 6);
        assert!(read_head(&mut r, &mut line).unwrap().is_none());
    }

    #[test]
    fn stream_steering_headers_are_read() {
        let wire = b"POST /v1/messages HTTP/1.1\r\nX-SB-Stream-Chunks: 200\r\nx-sb-chunk-gap-us: 50\r\n\r\n";
        let mut line = Vec::new();
        let h = read_head(&mut Cursor::new(&wire[..]), &mut line).unwrap().unwrap();
        assert_eq!((h.stream_chunks, h.chunk_gap_us), (Some(200), 50));
    }

    #[test]
    fn response_status_and_unframed_body() {
        let wire = b"HTTP/1.0 503 Service Unavailable\r\n\r\nno upstream";
        let mut r = Cursor::new(&wire[..]);
        let mut line = Vec::new();
        let mut h = read_head(&mut r, &mut line).unwrap().unwrap();
        assert_eq!(h.status(), 503);
        assert_eq!(skip_body(&mut r, &mut h, &mut line, true).unwrap(), 11);
        assert!(h.close);
    }

    #[test]
    fn truncated_body_is_an_error() {
        let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
        let mut r = Cursor::new(&wire[..]);
        let mut line = Vec::new();
        let mut h = read_head(&mut r, &mut line).unwrap().unwrap();
        assert!(skip_body(&mut r, &mut h, &mut line, true).is_err());
    }

    #[test]
    fn the_path_picks_the_format() {
        let head = |line: &str| Head {
            start_line: line.into(),
            ..Head::default()
        };
        assert!(StreamFormat::of(&head("POST /v1/messages HTTP/1.1")) == StreamFormat::Anthropic);
        assert!(StreamFormat::of(&head("POST /v1/chat/completions HTTP/1.1")) == StreamFormat::OpenAi);
    }
}
