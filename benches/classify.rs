//! Native micro-benchmark of the request path's core: classification alone,
//! and the whole plan (parse, classify, select, rewrite) for 1, 8 and 64 KB
//! prompts. `cargo bench --bench classify` (part of `make bench`).
//!
//! Each case runs in batches for a fixed time; the median batch gives the
//! per-call time, so a noisy neighbour on the machine skews it little.

use std::hint::black_box;
use std::time::{Duration, Instant};

use signalbox::classify::{Classifier, ClassifierSettings};
use signalbox::config::Config;
use signalbox::headers::HeaderMap;
use signalbox::request::PromptView;
use signalbox::route::chain::NoHistory;
use signalbox::route::{plan_chat, ClientHints, Situation};

const CONFIG: &str = r#"{
  "providers": {"openai": {"cluster": "openai", "api_key": "sk-bench"}},
  "models": {
    "small": {"provider": "openai", "id": "gpt-4o-mini"},
    "large": {"provider": "openai", "id": "gpt-4o"}
  },
  "tiers": [
    {"name": "simple", "max_score": 0.4, "models": ["small"]},
    {"name": "complex", "models": ["large"]}
  ]
}"#;

/// Mixed prose, a question and a code block: what real prompts look like.
const PARAGRAPH: &str = "Our billing service occasionally double-charges customers when a payment \
provider times out and the client retries. Explain why this happens, compare idempotency keys \
with a transactional outbox, and recommend one approach for a team of four.\n\
```python\ndef charge(customer, amount):\n    response = provider.charge(customer.id, amount)\n    \
if response.status == 'timeout':\n        return charge(customer, amount)\n    return response\n```\n";

fn prompt_of_size(bytes: usize) -> String {
    let mut text = String::with_capacity(bytes + PARAGRAPH.len());
    while text.len() < bytes {
        text.push_str(PARAGRAPH);
    }
    text.truncate(bytes);
    text
}

/// Median time per call over batches run for about `budget`.
fn measure(mut call: impl FnMut(), budget: Duration) -> Duration {
    let batch = {
        let start = Instant::now();
        let mut calls = 0u32;
        while start.elapsed() < Duration::from_millis(20) {
            call();
            calls += 1;
        }
        calls.max(1)
    };
    let mut samples = Vec::new();
    let start = Instant::now();
    while start.elapsed() < budget || samples.len() < 5 {
        let batch_start = Instant::now();
        for _ in 0..batch {
            call();
        }
        samples.push(batch_start.elapsed() / batch);
    }
    samples.sort_unstable();
    samples[samples.len() / 2]
}

fn main() {
    let config = Config::parse(CONFIG.as_bytes(), &|_| None).expect("bench config is valid");
    let classifier = Classifier::compile(&ClassifierSettings::default()).expect("classifier compiles");
    let headers: HeaderMap = [(":path", "/v1/chat/completions")].into_iter().collect();
    let hints = ClientHints::default();
    let budget = Duration::from_millis(700);
    let health = NoHistory { now_ms: 0 };
    let situation = Situation::open(&health, 0);

    println!("| prompt | classify | whole plan (parse+classify+select+rewrite) |");
    println!("|---|---|---|");
    for size in [1024, 8 * 1024, 64 * 1024] {
        let text = prompt_of_size(size);
        let body = serde_json::json!({
            "model": "auto",
            "messages": [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": text}],
            "temperature": 0.2
        })
        .to_string()
        .into_bytes();
        let view = PromptView {
            last_user_parts: vec![&text],
            user_turns: 1,
            ..PromptView::default()
        };
        let classify = measure(
            || {
                black_box(classifier.classify(black_box(&view)));
            },
            budget,
        );
        let plan = measure(
            || {
                drop(black_box(
                    plan_chat(&config, black_box(&body), &headers, &hints, &situation).expect("plan"),
                ))
            },
            budget,
        );
        println!(
            "| {} KB | {:.1} µs | {:.1} µs |",
            size / 1024,
            micros(classify),
            micros(plan)
        );
    }
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}
