//! Native micro-benchmark of the guardrails: PII scan and injection score
//! of 1, 8 and 64 KB prompts with personal data every 4 KB, and 8 KB with
//! it every kilobyte (the aim: both under 20 µs for 8 KB); then an 8 KB
//! request masked and its answer restored, whole and streamed.
//! `cargo bench --bench guard` (part of `make bench`).

mod common;

use std::hint::black_box;
use std::time::Duration;

use common::{measure, micros, text_of_size, PARAGRAPH};
use signalbox::guard::injection::assess;
use signalbox::guard::{mask_body, restore_body, scan, CategorySet, Masker, StreamRestorer};

/// Personal data as it turns up in prompts: five values in one line.
const PERSONAL: &str = "Please reply to Jane Doe (jane.doe@example.com, +1 415-555-0132) and refund \
card 4111 1111 1111 1111; her IBAN is DE89 3704 0044 0532 0130 00.\n";

/// A prompt of `bytes` with the personal line once per `every` bytes.
fn prompt(bytes: usize, every: usize) -> String {
    let mut pieces = vec![PARAGRAPH; every / PARAGRAPH.len()];
    pieces.push(PERSONAL);
    text_of_size(&pieces, bytes)
}

fn main() {
    let budget = Duration::from_millis(700);
    println!("| prompt | PII scan | injection score | both |");
    println!("|---|---|---|---|");
    let cases = [
        ("1 KB", prompt(1024, 4096)),
        ("8 KB", prompt(8 * 1024, 4096)),
        ("64 KB", prompt(64 * 1024, 4096)),
        ("8 KB, PII every 1 KB", prompt(8 * 1024, 1024)),
    ];
    for (name, text) in &cases {
        let pii = measure(|| drop(black_box(scan(black_box(text), CategorySet::all()))), budget);
        let injection = measure(|| drop(black_box(assess(black_box(text)))), budget);
        let both = measure(
            || {
                drop(black_box(scan(black_box(text), CategorySet::all())));
                drop(black_box(assess(black_box(text))));
            },
            budget,
        );
        println!(
            "| {name} | {:.1} µs | {:.1} µs | {:.1} µs |",
            micros(pii),
            micros(injection),
            micros(both)
        );
    }

    let text = prompt(8 * 1024, 1024);
    let body = serde_json::json!({"model": "auto", "messages": [{"role": "user", "content": text}]}).to_string();
    let mut masker = Masker::new(CategorySet::all());
    let masked = mask_body(body.as_bytes(), &mut masker).expect("the prompt holds personal data");
    let vault = masker.into_vault();
    let masked_text: String = serde_json::from_slice::<serde_json::Value>(&masked).expect("masked JSON")["messages"][0]
        ["content"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let answer =
        serde_json::json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": masked_text}}]})
            .to_string();
    // The answer streamed as 4-byte deltas, as models emit tokens.
    let stream: String = masked_text
        .as_bytes()
        .chunks(4)
        .map(|piece| {
            let delta =
                serde_json::json!({"choices": [{"index": 0, "delta": {"content": String::from_utf8_lossy(piece)}}]});
            format!("data: {delta}\n\n")
        })
        .collect::<String>()
        + "data: [DONE]\n\n";
    let mask = measure(
        || {
            drop(black_box(mask_body(
                black_box(body.as_bytes()),
                &mut Masker::new(CategorySet::all()),
            )))
        },
        budget,
    );
    let restore = measure(
        || drop(black_box(restore_body(black_box(answer.as_bytes()), &vault))),
        budget,
    );
    let restore_stream = measure(
        || {
            let mut restorer = StreamRestorer::new(vault.clone());
            for chunk in stream.as_bytes().chunks(512) {
                drop(black_box(restorer.feed(chunk)));
            }
            drop(black_box(restorer.finish()));
        },
        budget,
    );
    println!();
    println!(
        "| 8 KB chat | mask request | restore answer | restore stream ({} events) |",
        stream.matches("data: ").count()
    );
    println!("|---|---|---|---|");
    println!(
        "| {} findings | {:.1} µs | {:.1} µs | {:.1} µs |",
        masker_findings(body.as_bytes()),
        micros(mask),
        micros(restore),
        micros(restore_stream)
    );
}

fn masker_findings(body: &[u8]) -> u32 {
    let mut masker = Masker::new(CategorySet::all());
    let _ = mask_body(body, &mut masker);
    let counts = masker.counts();
    counts.categories().iter().map(|category| counts.get(category)).sum()
}
