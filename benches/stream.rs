//! Native micro-benchmark of the stream reader's part of what the upstream
//! filter does with each chunk of a streamed answer: the 200-chunk answers
//! `make bench`'s mock upstream sends (`bench/src/bin/sb-upstream.rs`),
//! pushed through the attempt's stream reader one event at a time, as Envoy
//! hands them over: an OpenAI stream passed through (read for usage, finish
//! and failures) and an Anthropic Messages stream translated to OpenAI
//! chunks. The time of a whole answer (its opening and closing events
//! included) is divided by its 200 content chunks. What the filter adds
//! around the reader (the host calls, holding the first output) is not in
//! it. `cargo bench --bench stream` (part of `make bench`).

mod common;

use std::hint::black_box;
use std::time::Duration;

use common::{measure, micros};

use signalbox::config::Config;
use signalbox::headers::HeaderMap;
use signalbox::route::attempts::call_for;
use signalbox::route::chain::NoHistory;
use signalbox::route::response::stream_reader;
use signalbox::route::{plan_chat, ClientHints, Situation};
use signalbox_bench::{sse_events, StreamFormat};

const OPENAI_CONFIG: &str = include_str!("../bench/signalbox.json");
const ANTHROPIC_CONFIG: &str = include_str!("../bench/signalbox-anthropic.json");
const STREAM_BODY: &[u8] = include_bytes!("../bench/bodies/stream.json");
const CHUNKS: u32 = 200;

/// The mock upstream's answer in `format`, one event a read.
fn events(format: StreamFormat) -> Vec<String> {
    sse_events(format, CHUNKS)
        .into_iter()
        .map(|event| event + "\n\n")
        .collect()
}

/// Microseconds per content chunk of reading one whole answer through the
/// stream reader `config`'s plan gives its first attempt.
fn per_chunk(config_text: &str, events: &[String], budget: Duration) -> f64 {
    let config = Config::parse(config_text.as_bytes(), &|_| None).expect("bench config is valid");
    let headers: HeaderMap = [(":path", "/v1/chat/completions"), (":method", "POST")]
        .into_iter()
        .collect();
    let health = NoHistory { now_ms: 0 };
    let plan = plan_chat(
        &config,
        STREAM_BODY,
        &headers,
        &ClientHints::default(),
        &Situation::open(&health, 0),
    )
    .expect("the bench body plans");
    let deployment = plan.attempts.chain[0];
    let call = call_for(&config, &plan.attempts, deployment, 0);
    let mut out = Vec::with_capacity(1024);
    let answer = micros(measure(
        || {
            let mut reader = stream_reader(&config, &plan.attempts, deployment, &call);
            for event in events {
                out.clear();
                reader
                    .push(black_box(event.as_bytes()), &mut out)
                    .expect("the bench stream reads");
                black_box(&out);
            }
            reader.finish(&mut out);
            assert!(reader.usage().is_some(), "the bench stream reports usage");
        },
        budget,
    ));
    answer / f64::from(CHUNKS)
}

fn main() {
    let budget = Duration::from_millis(500);
    println!("| stream reader, 200-chunk answer | µs per chunk |");
    println!("|---|---:|");
    let openai = per_chunk(OPENAI_CONFIG, &events(StreamFormat::OpenAi), budget);
    println!("| OpenAI, passed through | {openai:.3} |");
    let anthropic = per_chunk(ANTHROPIC_CONFIG, &events(StreamFormat::Anthropic), budget);
    println!("| Anthropic, translated to OpenAI chunks | {anthropic:.3} |");
}
