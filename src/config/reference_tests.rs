//! The configuration reference (`docs/configuration.md`, section
//! "Reference") against the config types: every key the plugin accepts is
//! documented exactly once, and every documented key exists.
//!
//! The keys come from serde itself. Every config struct denies unknown
//! fields, so adding `"zz_probe": 0` to an object of a valid document makes
//! [`Config::parse`] fail with "unknown field `zz_probe`, expected one of
//! `a`, `b`, ...": that object's full list of keys, optional ones included.
//! An object that takes the probe without that error is a map keyed by
//! names (providers, models, tenants, ...); its values are probed instead.
//! The walk only reaches objects present in [`maximal_sample`], so the test
//! also fails when a key is missing from the sample or a map or list there
//! is empty.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use super::Config;

const PROBE: &str = "zz_probe";

/// Keys only a build with a feature accepts, which the walk cannot see in
/// a build without it.
#[cfg(not(feature = "test-clock"))]
const FEATURE_KEYS: &[&str] = &["governance.test_clock_header"];
#[cfg(feature = "test-clock")]
const FEATURE_KEYS: &[&str] = &[];

fn env(name: &str) -> Option<String> {
    match name {
        "ANTHROPIC_KEY" => Some("sk-ant-from-env".to_string()),
        "AZURE_KEY_B" => Some("azure-key-b".to_string()),
        "AWS_ACCESS_KEY_ID" => Some("AKIAEXAMPLEEXAMPLE01".to_string()),
        "AWS_SECRET_ACCESS_KEY" => Some("secret-from-env".to_string()),
        "AWS_SESSION_TOKEN" => Some("token-from-env".to_string()),
        _ => None,
    }
}

fn digest(key: &str) -> String {
    crate::testing::hex(&crate::keys::digest_of(key))
}

/// A valid configuration in which every key the plugin accepts appears at
/// least once, and every map and list has a member. Keys that exclude each
/// other (`api_key` / `api_key_env` / `api_keys`, the AWS pairs) are spread
/// over several providers.
fn maximal_sample() -> Value {
    #[allow(unused_mut)]
    let mut sample = json!({
        "auto_models": ["auto", "signalbox/auto"],
        "max_body_bytes": 4_194_304,
        "explain": "on_request",
        "trust_client_headers": false,
        "providers": {
            "openai": {
                "kind": "openai", "cluster": "openai", "base_path": "/v1", "host": "api.openai.com",
                "vendor": "openai", "api_key": "sk-test-openai"
            },
            "anthropic": {
                "kind": "anthropic", "cluster": "anthropic", "anthropic_version": "2023-06-01",
                "api_key_env": "ANTHROPIC_KEY"
            },
            "azure": {
                "kind": "azure", "cluster": "azure", "api_version": "2024-10-21",
                "api_keys": [
                    {"name": "a", "key": "azure-key-a", "weight": 2},
                    {"name": "b", "env": "AZURE_KEY_B"}
                ]
            },
            "bedrock": {
                "kind": "bedrock", "cluster": "bedrock", "region": "us-east-1",
                "aws_access_key_id": "AKIAEXAMPLEEXAMPLE02",
                "aws_secret_access_key_env": "AWS_SECRET_ACCESS_KEY",
                "aws_session_token": "token-literal"
            },
            "bedrock-env": {
                "kind": "bedrock", "cluster": "bedrock", "region": "eu-west-1",
                "aws_access_key_id_env": "AWS_ACCESS_KEY_ID",
                "aws_secret_access_key": "secret-literal",
                "aws_session_token_env": "AWS_SESSION_TOKEN"
            }
        },
        "models": {
            "small": {
                "provider": "openai", "id": "gpt-4o-mini", "cluster": "openai-eu",
                "context_window": 128_000, "max_output_tokens": 16_384,
                "price": {"input": 0.15, "output": 0.6, "cached_input": 0.075},
                "capabilities": ["tools", "vision", "json_output"],
                "fallbacks": ["large"],
                "limits": {"rpm": 500, "tpm": 200_000}
            },
            "large": {"provider": "anthropic", "id": "claude-sonnet"},
            "azure-large": {"provider": "azure", "id": "gpt-4o"},
            "nova": {"provider": "bedrock", "id": "amazon.nova-pro-v1:0"},
            "nova-eu": {"provider": "bedrock-env", "id": "amazon.nova-pro-v1:0"},
            "embed": {"provider": "openai", "id": "text-embedding-3-small"}
        },
        "tiers": [
            {
                "name": "simple", "max_score": 0.3, "models": ["small", "azure-large", "nova"],
                "strategy": "weighted", "weights": {"small": 3, "azure-large": 1},
                "canary": {"model": "nova", "share": 0.05},
                "sticky_header": "x-user-id",
                "cascade": {"threshold": 0.4, "min_mean_logprob": -1.5, "stream_tokens": 16}
            },
            {
                "name": "complex", "models": ["large", "nova-eu"],
                "canary": {
                    "model": "nova-eu", "steps": [0.05, 0.25, 1.0], "window_s": 600, "min_requests": 50,
                    "max_error_rate_increase": 0.01, "max_latency_ratio": 1.3, "max_cascade_rate_increase": 0.05
                }
            }
        ],
        "classifier": {
            "learned": true,
            "bias": -2.0,
            "weights": {"code": 3.0},
            "phrases": {"expertise": ["kubernetes operator", "terraform*"]}
        },
        "rules": [
            {
                "name": "legal",
                "when": {
                    "last_user": "(?i)\\bcontract\\b", "system": "(?i)lawyer",
                    "headers": {"x-team": "^legal$"}, "language": ["de", "fr"]
                },
                "then": {"tier": "complex"}
            },
            {"name": "foreign", "when": {"language": "non_en"}, "then": {"model": "large"}}
        ],
        "resilience": {
            "max_attempts": 3, "per_try_timeout_ms": 30_000, "deadline_ms": 300_000,
            "output_token_ms": 20, "health_half_life_ms": 60_000, "slow_ms": 10_000,
            "breaker": {
                "consecutive_failures": 5, "failure_rate": 0.5, "min_requests": 10,
                "open_ms": 30_000, "max_open_ms": 300_000, "half_open_trials": 1
            },
            "probes": {"interval_ms": 10_000, "timeout_ms": 5_000},
            "context_length_fallback": true
        },
        "governance": {
            "tenants": {
                "research": {
                    "allowed_models": ["small"], "allowed_tiers": ["simple"],
                    "max_tier": "complex", "max_tokens_per_request": 4_096,
                    "limits": {"rpm": 60, "tpm": 100_000},
                    "user_limits": {"rpm": 10, "tpm": 20_000},
                    "quotas": [{"window": "day", "requests": 1_000, "tokens": 1_000_000, "cost_usd": 20.0}],
                    "alert_at": 0.8, "downgrade_tier": "simple",
                    "show_usage": true, "audit_content": false, "allowed_builtin_tools": ["web_search"],
                    "shadow": {"reference": "azure-large", "share": 0.05, "max_per_minute": 30, "judge": "azure-large"},
                    "on_store_failure": {"budgets": "closed", "rate_limits": "local"},
                    "guardrails": {
                        "pii": {"email": "log", "ssn": "route"}, "private_model": "small",
                        "injection": {"mode": "block", "threshold": 0.8}
                    },
                    "cache": {
                        "enabled": true, "ttl_seconds": 900, "max_temperature": 0.2, "max_entry_bytes": 65_536,
                        "semantic": {"enabled": true, "threshold": 0.97}
                    }
                }
            },
            "keys": [
                {"sha256": digest("sk-research-alice"), "tenant": "research", "user": "alice", "name": "alice", "disabled": false}
            ],
            "alerts": {"cluster": "alerts", "path": "/hooks/signalbox", "authority": "alerts.internal", "timeout_ms": 5_000},
            "default_output_reservation": 1_024,
            "store": {
                "cluster": "ledger", "authority": "ledger.internal", "timeout_ms": 100,
                "replicas": 3, "reservation_ttl_ms": 360_000
            }
        },
        "health_path": "/signalbox/health",
        "spend_path": "/signalbox/spend",
        "admin_keys": [{"name": "ops", "sha256": digest("sk-admin-ops")}],
        "observability": {"metrics": true, "access_log": true, "access_log_fields": ["tier", "model", "cost_usd"], "gauge_interval_ms": 5_000, "audit_max_chars": 2_000},
        "affinity": {"sources": ["session_header", "user", "prefix"], "session_header": "x-session-id", "pin_tier": {"margin": 0.1, "remember": 1024, "idle_s": 600}},
        "feedback": {"path": "/signalbox/feedback", "remember": 1024, "keep_s": 3600},
        "guardrails": {
            "pii": {"all": "mask", "card": "block", "ssn": "route"}, "private_model": "nova-eu",
            "injection": {"mode": "flag", "threshold": 0.6}
        },
        "cache": {
            "enabled": false, "ttl_seconds": 300, "max_temperature": 0.0, "max_entry_bytes": 262_144,
            "max_request_bytes": 1_048_576, "max_bytes": 67_108_864,
            "semantic": {"enabled": false, "model": "embed", "threshold": 0.95, "max_entries": 1_000},
            "tiers": {"simple": {"enabled": true, "ttl_seconds": 60}, "complex": {"enabled": false}}
        }
    });
    #[cfg(feature = "test-clock")]
    {
        sample["governance"]["test_clock_header"] = json!("x-test-clock");
    }
    sample
}

/// The keys serde names when `"zz_probe"` is added to the object at
/// `pointer`, or None when the object takes it (a map keyed by names).
fn probe(document: &Value, pointer: &str) -> Option<Vec<String>> {
    let mut probed = document.clone();
    probed
        .pointer_mut(pointer)
        .and_then(Value::as_object_mut)
        .unwrap_or_else(|| panic!("no object at {pointer:?}"))
        .insert(PROBE.to_string(), json!(0));
    let error = Config::parse(probed.to_string().as_bytes(), &env).err()?;
    let rest = error.message.strip_prefix(&format!("unknown field `{PROBE}`, "))?;
    if rest.starts_with("there are no fields") {
        return Some(Vec::new());
    }
    // "expected `a`" or "expected one of `a`, `b`": names are between backticks.
    Some(rest.split('`').skip(1).step_by(2).map(str::to_string).collect())
}

/// What walking the sample found.
#[derive(Default)]
struct Surface {
    /// Every key path and whether the sample sets it somewhere.
    keys: BTreeMap<String, bool>,
    /// Empty maps and lists (the walk cannot see inside them).
    empty: Vec<String>,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn walk(document: &Value, pointer: &str, path: &str, surface: &mut Surface) {
    match document.pointer(pointer).expect("walked pointers exist") {
        Value::Object(members) => {
            if members.is_empty() {
                surface.empty.push(path.to_string());
            }
            match probe(document, pointer) {
                Some(fields) => {
                    for field in fields {
                        let present = members.contains_key(&field);
                        *surface.keys.entry(join(path, &field)).or_default() |= present;
                    }
                    for name in members.keys() {
                        walk(document, &format!("{pointer}/{name}"), &join(path, name), surface);
                    }
                }
                None => {
                    for name in members.keys() {
                        walk(document, &format!("{pointer}/{name}"), &join(path, "<name>"), surface);
                    }
                }
            }
        }
        Value::Array(items) => {
            if items.is_empty() {
                surface.empty.push(path.to_string());
            }
            for position in 0..items.len() {
                walk(
                    document,
                    &format!("{pointer}/{position}"),
                    &format!("{path}[]"),
                    surface,
                );
            }
        }
        _ => {}
    }
}

/// Every key path the configuration accepts.
fn accepted_keys() -> BTreeSet<String> {
    let sample = maximal_sample();
    if let Err(error) = Config::parse(sample.to_string().as_bytes(), &env) {
        panic!("the maximal sample must be a valid config: {error:?}");
    }
    let mut surface = Surface::default();
    walk(&sample, "", "", &mut surface);
    let unset: Vec<&String> = surface
        .keys
        .iter()
        .filter(|(_, set)| !**set)
        .map(|(key, _)| key)
        .collect();
    assert!(
        unset.is_empty() && surface.empty.is_empty(),
        "maximal_sample() must set every key (so the walk reaches inside it) and give every map \
         and list a member; not set: {unset:?}; empty: {:?}",
        surface.empty
    );
    let mut keys: BTreeSet<String> = surface.keys.into_keys().collect();
    keys.extend(FEATURE_KEYS.iter().map(|key| key.to_string()));
    keys
}

const REFERENCE: &str = include_str!("../../docs/configuration.md");

/// The key path of each reference row: the first cell, in backticks, of
/// every table row in the "## Reference" section.
fn documented_rows(page: &str) -> Vec<String> {
    page.lines()
        .skip_while(|line| line.trim() != "## Reference")
        .skip(1)
        .take_while(|line| !line.starts_with("## "))
        .filter_map(|line| {
            let cell = line.trim().strip_prefix('|')?.split('|').next()?.trim();
            let key = cell.strip_prefix('`')?.strip_suffix('`')?;
            Some(key.to_string())
        })
        .collect()
}

#[test]
fn the_probe_reads_the_fields_of_a_struct_and_takes_maps_for_maps() {
    let sample = maximal_sample();
    let breaker = probe(&sample, "/resilience/breaker").unwrap();
    assert!(
        breaker.contains(&"open_ms".to_string()) && breaker.len() == 6,
        "{breaker:?}"
    );
    assert_eq!(probe(&sample, "/providers"), None);
    assert_eq!(probe(&sample, "/classifier/weights"), None);
}

#[test]
fn the_reference_documents_every_config_key_exactly_once() {
    let accepted = accepted_keys();
    assert!(accepted.len() > 100, "the walk found only {} keys", accepted.len());
    let rows = documented_rows(REFERENCE);
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for row in &rows {
        *count.entry(row.as_str()).or_default() += 1;
    }
    let missing: Vec<&String> = accepted
        .iter()
        .filter(|key| !count.contains_key(key.as_str()))
        .collect();
    let stale: Vec<&&str> = count.keys().filter(|key| !accepted.contains(**key)).collect();
    let repeated: Vec<(&&str, &usize)> = count.iter().filter(|(_, times)| **times > 1).collect();
    assert!(
        missing.is_empty() && stale.is_empty() && repeated.is_empty(),
        "docs/configuration.md \"## Reference\" is out of step with the config types \
         (one table row per key, full path in backticks in the first cell):\n\
         undocumented: {missing:#?}\nno such key: {stale:#?}\ndocumented more than once: {repeated:#?}"
    );
}
