//! Native micro-benchmark of what the filter's Wasm code does for one
//! non-streamed chat request, step by step, on the bodies `make bench`
//! sends through Envoy (`bench/bodies/short.json`, `long.json`) and the
//! answer its mock upstream gives: the router's plan, the plan handed to the
//! upstream filter (encoded, decoded), the attempt's rewrite for its
//! provider, reading the answer, and the request's report (access-log
//! fields, metric samples). `cargo bench --bench request` (part of `make
//! bench`). Inside Envoy the same code runs compiled to Wasm, between host
//! calls; this says which steps are worth making cheaper.

mod common;

use std::hint::black_box;
use std::time::Duration;

use common::{measure, micros};

use signalbox::config::Config;
use signalbox::govern::ledger::{Consumed, Consumption};
use signalbox::headers::HeaderMap;
use signalbox::route::attempts::{prepare_attempt, AttemptPlan, AttemptRecord, AttemptTrail};
use signalbox::route::chain::NoHistory;
use signalbox::route::response::finish_buffered;
use signalbox::route::{plan_chat, ClientHints, Situation};
use signalbox::telemetry::access_log;
use signalbox::telemetry::report::RequestReport;
use signalbox::telemetry::Outcome;

/// `bench/signalbox.json`, the config of the bench's signalbox scenario.
const CONFIG: &str = include_str!("../bench/signalbox.json");
const SHORT: &[u8] = include_bytes!("../bench/bodies/short.json");
const LONG: &[u8] = include_bytes!("../bench/bodies/long.json");
/// What `sb-upstream` answers.
const ANSWER: &[u8] = br#"{"id":"chatcmpl-sb-bench","object":"chat.completion","created":1700000000,"model":"mock-model","choices":[{"index":0,"message":{"role":"assistant","content":"This is the fixed reply of the Signalbox benchmark upstream."},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":24,"completion_tokens":12,"total_tokens":36}}"#;

/// One step of the request, run over and over.
type Step<'a> = Box<dyn FnMut() + 'a>;

fn main() {
    let config = Config::parse(CONFIG.as_bytes(), &|_| None).expect("bench config is valid");
    let headers: HeaderMap = [
        (":path", "/v1/chat/completions"),
        (":method", "POST"),
        ("content-type", "application/json"),
    ]
    .into_iter()
    .collect();
    let hints = ClientHints::default();
    let health = NoHistory { now_ms: 0 };
    let situation = Situation::open(&health, 0);
    let budget = Duration::from_millis(500);
    let answer_headers = vec![
        (":status".to_string(), "200".to_string()),
        ("content-type".to_string(), "application/json".to_string()),
    ];

    println!("| step (µs) | short | long |");
    println!("|---|---:|---:|");
    let mut rows: Vec<(&str, [f64; 2])> = Vec::new();
    for (column, body) in [SHORT, LONG].into_iter().enumerate() {
        let plan = plan_chat(&config, body, &headers, &hints, &situation).expect("the bench body plans");
        let encoded = plan.attempts.encode();
        let attempts = AttemptPlan::decode(&encoded).expect("the plan decodes");
        let deployment = attempts.chain[0];
        let report = RequestReport {
            request_id: Some("0f6c1d2e-6b0a-4a53-9a8e-2f6c1a5b7d9e"),
            endpoint: "chat.completions",
            requested_model: Some(&plan.requested_model),
            decision: Some(&plan.decision),
            trail: AttemptTrail(vec![AttemptRecord {
                deployment,
                status: 200,
                escalated: false,
            }]),
            outcome: Some(Outcome::Ok),
            consumption: Consumption(vec![Consumed {
                model: config.deployments[deployment].model,
                usage: Default::default(),
                estimated: false,
            }]),
            first_token_ms: Some(3),
            duration_ms: 4,
            routing_us: Some(50),
            ..Default::default()
        };
        let steps: [(&str, Step); 7] = [
            (
                "plan (parse, classify, select, rewrite)",
                Box::new(|| {
                    drop(black_box(plan_chat(
                        &config,
                        black_box(body),
                        &headers,
                        &hints,
                        &situation,
                    )))
                }),
            ),
            (
                "encode the attempt plan",
                Box::new(|| drop(black_box(plan.attempts.encode()))),
            ),
            (
                "decode the attempt plan",
                Box::new(|| drop(black_box(AttemptPlan::decode(black_box(&encoded))))),
            ),
            (
                "prepare the attempt",
                Box::new(|| drop(black_box(prepare_attempt(&config, &attempts, 1, black_box(body), 0)))),
            ),
            (
                "read the answer",
                Box::new(|| {
                    drop(black_box(finish_buffered(
                        &config,
                        &attempts,
                        1,
                        deployment,
                        body,
                        200,
                        &answer_headers,
                        black_box(ANSWER),
                        0,
                    )))
                }),
            ),
            (
                "access-log fields",
                Box::new(|| {
                    let mut fields = access_log::request_fields(&config, black_box(&report));
                    fields.extend(access_log::result_fields(&config, &report, None));
                    drop(black_box(fields))
                }),
            ),
            ("metric samples", Box::new(|| drop(black_box(report.samples(&config))))),
        ];
        for (index, (name, mut step)) in steps.into_iter().enumerate() {
            let cost = micros(measure(&mut step, budget));
            if column == 0 {
                rows.push((name, [cost, 0.0]));
            } else {
                rows[index].1[1] = cost;
            }
        }
    }
    for (name, [short, long]) in rows {
        println!("| {name} | {short:.2} | {long:.2} |");
    }
}
