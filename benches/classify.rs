//! Native micro-benchmark of the request path's core: classification alone,
//! and the whole plan (parse, classify, select, rewrite) for 1, 8 and 64 KB
//! prompts. `cargo bench --bench classify` (part of `make bench`).
//!
//! Timing is in [`common::measure`].

mod common;

use std::hint::black_box;
use std::time::Duration;

use common::{measure, micros, prompt_of_size};

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
