//! Native micro-benchmark of a cascade's assessment: reading the request's
//! expectations and judging a whole answer of 1, 8 and 64 KB (with and
//! without logprobs). `cargo bench --bench assess` (part of `make bench`).

mod common;

use std::hint::black_box;
use std::time::Duration;

use common::{measure, micros, prompt_of_size};

use signalbox::assess::{assess, Expectations};
use signalbox::config::cascade::Cascade;

fn main() {
    let cascade = Cascade {
        threshold: 0.5,
        min_mean_logprob: -1.0,
        stream_tokens: 0,
    };
    let budget = Duration::from_millis(700);
    let request = serde_json::json!({
        "model": "auto",
        "messages": [{"role": "user", "content": prompt_of_size(2048)}],
        "response_format": {"type": "text"}
    })
    .to_string()
    .into_bytes();
    println!("| answer | expectations + assessment | with logprobs (1 per 4 bytes) |");
    println!("|---|---|---|");
    for size in [1024, 8 * 1024, 64 * 1024] {
        let text = prompt_of_size(size);
        let answer = |logprobs: bool| {
            let tokens: Vec<serde_json::Value> = (0..size / 4)
                .map(|_| serde_json::json!({"token": "ab", "logprob": -0.2, "bytes": [97, 98], "top_logprobs": []}))
                .collect();
            let mut choice = serde_json::json!({
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop"
            });
            if logprobs {
                choice["logprobs"] = serde_json::json!({"content": tokens});
            }
            serde_json::json!({"object": "chat.completion", "choices": [choice]})
                .to_string()
                .into_bytes()
        };
        let (plain, with_logprobs) = (answer(false), answer(true));
        let time = |body: &[u8]| {
            measure(
                || {
                    let expectations = Expectations::of_request(black_box(&request), None);
                    black_box(assess(&expectations, black_box(body), &cascade));
                },
                budget,
            )
        };
        println!(
            "| {} KB | {:.1} µs | {:.1} µs |",
            size / 1024,
            micros(time(&plain)),
            micros(time(&with_logprobs))
        );
    }
}
