//! sb-upstream: a mock OpenAI chat-completions upstream for benchmarks.
//!
//! Usage: sb-upstream [--port P]   (P = 0, the default, picks a free port)
//!
//! Prints `listening 127.0.0.1:<port>` as its first stdout line, then answers every request
//! on every keep-alive connection with the same 200 `chat.completion` JSON. Thread per
//! connection: Envoy opens only as many upstream connections as it has requests in flight,
//! so there are few threads, and blocking I/O keeps the per-request cost to two syscalls.
//!
//! A request with `x-sb-stream-chunks: N` gets a streamed answer instead: N content chunks
//! of one short word each, in Anthropic's Messages event stream when the path ends in
//! `/messages` (what Signalbox's Anthropic adapter calls), else as OpenAI chat-completion
//! SSE chunks. Each event is one HTTP chunk and one write, `x-sb-chunk-gap-us` apart.

use signalbox_bench::{read_head, skip_body, sse_events, StreamFormat};
use std::io::{self, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;
use std::{env, process, thread};

const BODY: &str = r#"{"id":"chatcmpl-sb-bench","object":"chat.completion","created":1700000000,"model":"mock-model","choices":[{"index":0,"message":{"role":"assistant","content":"This is the fixed reply of the Signalbox benchmark upstream."},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":24,"completion_tokens":12,"total_tokens":36}}"#;

const STREAM_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";

/// The SSE events of a streamed answer with `chunks` content chunks, each already framed as
/// one HTTP/1.1 chunk, the terminating zero-length chunk last.
fn stream_events(format: StreamFormat, chunks: u32) -> Vec<Vec<u8>> {
    let events = sse_events(format, chunks);
    let mut framed: Vec<Vec<u8>> = events
        .into_iter()
        .map(|event| format!("{:x}\r\n{event}\n\n\r\n", event.len() + 2).into_bytes())
        .collect();
    framed.push(b"0\r\n\r\n".to_vec());
    framed
}

/// A streamed answer, built once per connection and shape.
struct StreamedAnswer {
    format: StreamFormat,
    chunks: u32,
    events: Vec<Vec<u8>>,
}

fn serve(stream: TcpStream, response: &[u8]) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut w = stream.try_clone()?;
    let mut r = BufReader::with_capacity(64 * 1024, stream);
    let mut line = Vec::with_capacity(256);
    // The last streamed answer built on this connection: a load run repeats the same one.
    let mut streamed: Option<StreamedAnswer> = None;
    while let Some(mut head) = read_head(&mut r, &mut line)? {
        if head.expect_continue {
            w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        skip_body(&mut r, &mut head, &mut line, false)?;
        if let Some(chunks) = head.stream_chunks {
            let format = StreamFormat::of(&head);
            let answer = match streamed.take() {
                Some(built) if built.format == format && built.chunks == chunks => built,
                _ => StreamedAnswer {
                    format,
                    chunks,
                    events: stream_events(format, chunks),
                },
            };
            w.write_all(STREAM_HEAD)?;
            for event in &answer.events {
                if head.chunk_gap_us > 0 {
                    thread::sleep(Duration::from_micros(head.chunk_gap_us));
                }
                w.write_all(event)?;
            }
            streamed = Some(answer);
        } else {
            // One write per response: head and body prebuilt in a single buffer.
            w.write_all(response)?;
        }
        if head.close {
            break;
        }
    }
    Ok(())
}

fn main() {
    let mut port: u16 = 0;
    let mut args = env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--port" => port = args.next().and_then(|p| p.parse().ok()).unwrap_or_else(|| usage()),
            "-h" | "--help" => usage(),
            _ => usage(),
        }
    }
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap_or_else(|e| {
        eprintln!("sb-upstream: bind 127.0.0.1:{port}: {e}");
        process::exit(1)
    });
    let addr = listener.local_addr().expect("local_addr");
    println!("listening {addr}");
    io::stdout().flush().ok();

    let response: Arc<[u8]> = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{}",
        BODY.len(),
        BODY
    )
    .into_bytes()
    .into();

    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                let response = Arc::clone(&response);
                // Errors are per connection (peer reset, bad framing): drop it and carry on.
                thread::spawn(move || {
                    let _ = serve(stream, &response);
                });
            }
            Err(e) => eprintln!("sb-upstream: accept: {e}"),
        }
    }
}

fn usage() -> ! {
    eprintln!("usage: sb-upstream [--port P]   (0 = pick a free port)");
    process::exit(2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use signalbox_bench::skip_body;
    use std::io::Cursor;

    fn body_of(format: StreamFormat, chunks: u32) -> String {
        let wire: Vec<u8> = [STREAM_HEAD.to_vec()]
            .into_iter()
            .chain(stream_events(format, chunks))
            .flatten()
            .collect();
        let mut r = Cursor::new(&wire[..]);
        let mut line = Vec::new();
        let mut head = read_head(&mut r, &mut line).unwrap().unwrap();
        let length = skip_body(&mut r, &mut head, &mut line, true).unwrap();
        assert_eq!(
            r.position() as usize,
            wire.len(),
            "the stream ends with its zero-length chunk"
        );
        let text = String::from_utf8(wire).unwrap();
        assert!(length > 0);
        text
    }

    #[test]
    fn an_openai_stream_has_the_asked_content_chunks_then_done() {
        let text = body_of(StreamFormat::OpenAi, 200);
        assert_eq!(text.matches(r#""delta":{"content":"w"#).count(), 200);
        assert!(text.contains(r#""finish_reason":"stop""#));
        assert!(text.ends_with("data: [DONE]\n\n\r\n0\r\n\r\n"));
    }

    #[test]
    fn an_anthropic_stream_has_its_events_in_order() {
        let text = body_of(StreamFormat::Anthropic, 200);
        assert_eq!(text.matches("event: content_block_delta\n").count(), 200);
        let order = [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ];
        let positions: Vec<usize> = order
            .iter()
            .map(|name| text.find(&format!("event: {name}\n")).unwrap())
            .collect();
        assert!(positions.windows(2).all(|pair| pair[0] < pair[1]));
    }
}
