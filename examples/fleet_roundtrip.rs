//! Runs the fleet ledger's calls as `signalbox::fleet` builds and reads them,
//! against a real webdis, for tests/test_fleet_store.py. Talks over stdio:
//! prints each request body as `CALL <body>`, reads webdis's answer back as
//! one line `<status> <body>`, and prints the typed result as `RESULT <name>
//! <debug>`. A call answered NOSCRIPT is sent again with EVAL, as the filter
//! will. The tenant's name and the user's have the bytes that need escaping.

use std::fmt::Debug;
use std::io::{self, BufRead, Write};

use signalbox::config::governance::{FailMode, Tenant};
use signalbox::fleet::{
    parse_admission, parse_settlement, parse_spend, AdmitCall, Charge, Invocation, LedgerEntry, ScriptCall,
    ScriptNames, SettleCall, SpendCall, StoreFailure,
};
use signalbox::govern::quota::{Amounts, Caps, Period, Quota};
use signalbox::govern::window::RateLimits;
use signalbox::providers::TokenUsage;

fn tenant() -> Tenant {
    Tenant {
        name: "re{search}:x%".into(),
        allowed_models: None,
        max_tier: None,
        max_tokens_per_request: None,
        limits: RateLimits {
            requests_per_minute: Some(60),
            tokens_per_minute: None,
        },
        user_limits: RateLimits {
            requests_per_minute: None,
            tokens_per_minute: Some(10_000),
        },
        quotas: vec![Quota {
            period: Period::Month,
            caps: Caps {
                cost_micros: Some(5_000_000),
                ..Caps::default()
            },
        }],
        alert_at: 0.8,
        downgrade_tier: None,
        show_usage: false,
        audit_content: false,
        on_store_failure: (FailMode::Closed, FailMode::Local),
        allowed_builtin_tools: Vec::new(),
        guardrails: None,
        shadow: None,
    }
}

/// Sends `call` (EVALSHA, then EVAL on NOSCRIPT) and prints what `parse` makes of the answer.
fn run<T: Debug>(
    name: &str,
    call: &impl ScriptCall,
    names: &ScriptNames,
    parse: impl Fn(u32, &[u8]) -> Result<T, StoreFailure>,
) {
    let stdin = io::stdin();
    let mut stdout = io::stdout();
    for invocation in [Invocation::BySha, Invocation::WithText] {
        let request = call.request(names, invocation, "webdis");
        let body = String::from_utf8(request.body).expect("bodies are ASCII");
        writeln!(stdout, "CALL {body}")
            .and_then(|()| stdout.flush())
            .expect("stdout");
        let mut answer = String::new();
        stdin.lock().read_line(&mut answer).expect("an answer line");
        let (status, reply) = answer.trim_end().split_once(' ').unwrap_or((answer.trim_end(), ""));
        let result = parse(status.parse().unwrap_or(0), reply.as_bytes());
        if !matches!(result, Err(StoreFailure::NoScript)) {
            writeln!(stdout, "RESULT {name} {result:?}").expect("stdout");
            return;
        }
    }
    writeln!(stdout, "RESULT {name} NOSCRIPT after EVAL").expect("stdout");
}

fn main() {
    let names = ScriptNames::compute();
    let tenant = tenant();
    let user = Some("a/b.c?+%");
    let admit = |reservation_id, cost_micros| AdmitCall {
        tenant: &tenant,
        user,
        reservation_id,
        ttl_ms: 60_000,
        test_clock_ms: None,
        estimate: Amounts {
            requests: 1,
            tokens: 300,
            cost_micros,
        },
    };
    run("admit", &admit("ex-1", 4_000), &names, parse_admission);
    run("admit-over-budget", &admit("ex-2", 4_999_000), &names, parse_admission);
    let settle = SettleCall {
        tenant: &tenant,
        user,
        reservation_id: "ex-1",
        test_clock_ms: None,
        actual: Amounts {
            requests: 1,
            tokens: 120,
            cost_micros: 900,
        },
        ledger: &[LedgerEntry {
            model: "gpt-4o.mini",
            usage: TokenUsage {
                input: 70,
                cached_input: 10,
                cache_write: 0,
                output: 40,
            },
            cost_micros: 900,
            estimated: false,
        }],
        charge: Charge::Reserved,
    };
    run("settle", &settle, &names, parse_settlement);
    run("settle-again", &settle, &names, parse_settlement);
    let models = ["gpt-4o.mini"];
    let spend = SpendCall {
        tenant: &tenant,
        test_clock_ms: None,
        models: &models,
    };
    run("spend", &spend, &names, |status, body| parse_spend(status, body, 1, 1));
}
