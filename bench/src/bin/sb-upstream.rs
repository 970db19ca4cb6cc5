//! sb-upstream: a mock OpenAI chat-completions upstream for benchmarks.
//!
//! Usage: sb-upstream [--port P]   (P = 0, the default, picks a free port)
//!
//! Prints `listening 127.0.0.1:<port>` as its first stdout line, then answers every request
//! on every keep-alive connection with the same 200 `chat.completion` JSON. Thread per
//! connection: Envoy opens only as many upstream connections as it has requests in flight,
//! so there are few threads, and blocking I/O keeps the per-request cost to two syscalls.

use signalbox_bench::{read_head, skip_body};
use std::io::{self, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::{env, process, thread};

const BODY: &str = r#"{"id":"chatcmpl-sb-bench","object":"chat.completion","created":1700000000,"model":"mock-model","choices":[{"index":0,"message":{"role":"assistant","content":"This is the fixed reply of the Signalbox benchmark upstream."},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":24,"completion_tokens":12,"total_tokens":36}}"#;

fn serve(stream: TcpStream, response: &[u8]) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut w = stream.try_clone()?;
    let mut r = BufReader::with_capacity(64 * 1024, stream);
    let mut line = Vec::with_capacity(256);
    while let Some(mut head) = read_head(&mut r, &mut line)? {
        if head.expect_continue {
            w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        skip_body(&mut r, &mut head, &mut line, false)?;
        // One write per response: head and body prebuilt in a single buffer.
        w.write_all(response)?;
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
