//! Shared fixtures for the native unit tests.

use crate::config::Config;

/// A small but complete configuration: two providers, three tiers, a rule.
pub const SAMPLE_CONFIG: &str = r#"{
  "providers": {
    "openai": {"cluster": "openai", "vendor": "openai", "api_key": "sk-test-openai"},
    "anthropic": {"cluster": "anthropic", "base_path": "/v1/", "api_key_env": "ANTHROPIC_KEY"}
  },
  "models": {
    "small": {"provider": "openai", "id": "gpt-4o-mini", "context_window": 1000, "price": {"input": 0.15, "output": 0.6}},
    "medium": {"provider": "anthropic", "id": "claude-haiku", "context_window": 200000},
    "large": {"provider": "openai", "id": "gpt-4o", "context_window": 128000, "price": {"input": 2.5, "output": 10}},
    "vision-less": {"provider": "openai", "id": "text-only", "capabilities": ["tools"]}
  },
  "tiers": [
    {"name": "simple", "max_score": 0.3, "models": ["small", "medium"]},
    {"name": "standard", "max_score": 0.6, "models": ["medium"]},
    {"name": "complex", "models": ["large"]}
  ],
  "rules": [
    {"name": "legal", "when": {"last_user": "(?i)\\bcontract\\b"}, "then": {"tier": "complex"}},
    {"name": "research-team", "when": {"headers": {"x-team": "^research$"}}, "then": {"model": "medium"}}
  ]
}"#;

pub fn env(name: &str) -> Option<String> {
    (name == "ANTHROPIC_KEY").then(|| "sk-ant-from-env".to_string())
}

pub fn sample_config() -> Config {
    Config::parse(SAMPLE_CONFIG.as_bytes(), &env).expect("sample config is valid")
}

/// The sample config with its `anthropic` provider speaking Anthropic's
/// own API (`kind: anthropic`).
pub fn anthropic_kind_config() -> Config {
    let text = SAMPLE_CONFIG.replace(
        r#""anthropic": {"cluster""#,
        r#""anthropic": {"kind": "anthropic", "cluster""#,
    );
    Config::parse(text.as_bytes(), &env).expect("sample config is valid")
}

/// Every deployment healthy, every trial slot free.
pub const ALL_HEALTHY: crate::route::chain::NoHistory = crate::route::chain::NoHistory { now_ms: 1_000 };

/// The sample config with governance: two tenants, three keys.
pub fn governed_config() -> Config {
    let mut document: serde_json::Value = serde_json::from_str(SAMPLE_CONFIG).expect("sample JSON");
    document["governance"] = serde_json::json!({
        "tenants": {
            "research": {
                "limits": {"rpm": 3, "tpm": 10_000},
                "user_limits": {"rpm": 2},
                "quotas": [{"window": "day", "tokens": 5_000}, {"window": "month", "cost_usd": 1.0}],
                "alert_at": 0.5,
                "show_usage": true
            },
            "interns": {"allowed_models": ["small"], "max_tier": "simple", "max_tokens_per_request": 256}
        },
        "keys": [
            {"sha256": hex(&crate::govern::keys::digest_of("sk-research-alice")), "tenant": "research", "user": "alice", "name": "alice"},
            {"sha256": hex(&crate::govern::keys::digest_of("sk-research-bob")), "tenant": "research", "user": "bob", "name": "bob"},
            {"sha256": hex(&crate::govern::keys::digest_of("sk-intern")), "tenant": "interns", "name": "intern"}
        ]
    });
    Config::parse(document.to_string().as_bytes(), &env).expect("governed config is valid")
}

/// One request's worth of `count` tokens and no cost.
pub fn tokens(count: u64) -> crate::govern::quota::Amounts {
    crate::govern::quota::Amounts {
        requests: 1,
        tokens: count,
        cost_micros: 0,
    }
}

/// A deterministic pseudo-random sequence (xorshift64) for garbage tests.
pub fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// One finished request of research's alice on `small` in `store`:
/// `estimate_tokens` reserved at admission, settled to the actual usage.
pub fn finished_request(
    config: &Config,
    store: &crate::state::MemoryStore,
    estimate_tokens: u64,
    input: u64,
    output: u64,
    now_ms: u64,
) {
    use crate::govern::admission::{admit, settle};
    let governance = config.governance.as_ref().expect("a governed config");
    let identity = crate::govern::keys::Identity {
        tenant: governance
            .tenants
            .iter()
            .position(|t| t.name == "research")
            .expect("research"),
        user: Some("alice".into()),
        key_name: "alice".into(),
    };
    let estimate = crate::govern::quota::Amounts {
        requests: 1,
        tokens: estimate_tokens,
        cost_micros: 0,
    };
    let usage = crate::providers::TokenUsage {
        input,
        cached_input: 0,
        cache_write: 0,
        output,
    };
    let tenant = &governance.tenants[identity.tenant];
    let admission = admit(tenant, store, &identity, estimate, now_ms).expect("admitted");
    let consumption = crate::govern::ledger::Consumption(vec![crate::govern::ledger::Consumed {
        model: config.model_named("small").expect("the sample config has `small`"),
        usage,
        estimated: false,
    }]);
    settle(config, tenant, store, &admission, &consumption, now_ms);
}

/// Any JSON value, a few levels deep: numbers of every kind, strings with
/// any characters, arrays and objects.
pub fn any_json() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
    use proptest::prelude::*;
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        // Eighths print and parse back exactly (serde_json's default float
        // parsing may be off by an ulp, which is no concern of the code under test).
        any::<i32>().prop_map(|units| Value::from(f64::from(units) / 8.0)),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_\"\\\\é]{0,6}", inner, 0..6)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}
