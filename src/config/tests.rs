use super::*;
use crate::providers::Credential;

/// The key a provider key sends, whatever header carries it.
fn key_value(key: &ProviderKey) -> Option<&str> {
    match key.credential.as_ref()? {
        Credential::Bearer(secret) | Credential::Header { value: secret, .. } => Some(secret.expose()),
        Credential::AwsSigV4 { .. } => None,
    }
}
use crate::testing::{env, sample_config, SAMPLE_CONFIG};

fn parse(json: &str) -> Result<Config, ConfigError> {
    Config::parse(json.as_bytes(), &env)
}

/// The sample config with the member at a JSON pointer set (or added).
fn sample_with(pointer: &str, value: serde_json::Value) -> String {
    let mut document: serde_json::Value = serde_json::from_str(SAMPLE_CONFIG).unwrap();
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let parent = document.pointer_mut(parent).unwrap_or_else(|| panic!("{pointer}"));
    match parent {
        serde_json::Value::Object(members) => {
            members.insert(key.to_string(), value);
        }
        serde_json::Value::Array(items) => items[key.parse::<usize>().unwrap()] = value,
        _ => panic!("{pointer}"),
    }
    document.to_string()
}

fn error_at(json: &str) -> ConfigError {
    parse(json).expect_err("config should be rejected")
}

#[test]
fn the_sample_resolves_names_to_indexes() {
    let config = sample_config();
    assert!(config.is_auto("auto") && config.is_auto("signalbox/auto"));
    let small = config.model_named("small").unwrap();
    assert_eq!(config.models[small].upstream_id, "gpt-4o-mini");
    assert_eq!(config.models[small].upstream_id_json, br#""gpt-4o-mini""#.to_vec());
    assert_eq!(config.models[small].cluster, "openai");
    assert_eq!(config.provider_of(small).name, "openai");
    let medium = config.model_named("medium").unwrap();
    assert_eq!(config.provider_of(medium).spec.base_path, "/v1");
    assert_eq!(
        key_value(&config.provider_of(medium).keys[0]).unwrap(),
        "sk-ant-from-env"
    );
    assert_eq!(config.tiers.len(), 3);
    assert_eq!(config.tiers[2].max_score, f64::INFINITY);
    assert_eq!(config.rules[0].action, RuleAction::Tier(2));
}

#[test]
fn scores_map_to_tiers_by_threshold() {
    let config = sample_config();
    assert_eq!(config.tier_for_score(0.0), 0);
    assert_eq!(config.tier_for_score(0.3), 1);
    assert_eq!(config.tier_for_score(0.59), 1);
    assert_eq!(config.tier_for_score(0.99), 2);
}

#[test]
fn defaults_fill_what_a_small_config_leaves_out() {
    let config = parse(r#"{"providers":{"p":{"cluster":"c"}},"models":{"m":{"provider":"p"}},"tiers":[{"name":"all","models":["m"]}]}"#).unwrap();
    assert_eq!(config.models[0].upstream_id, "m");
    assert_eq!(config.models[0].context_window, 128_000);
    assert_eq!(config.max_body_bytes, 4 * 1024 * 1024);
    assert_eq!(config.explain, ExplainMode::OnRequest);
    assert!(!config.trust_client_headers);
    assert!(config.providers[0].keys[0].credential.is_none());
}

#[test]
fn secrets_never_appear_in_debug_output() {
    let printed = format!("{:?}", sample_config());
    assert!(!printed.contains("sk-test-openai") && !printed.contains("sk-ant-from-env"));
}

#[test]
fn unknown_fields_are_rejected_with_their_path() {
    let err = error_at(&sample_with("/tiers/1/modles", serde_json::json!([])));
    assert!(err.path.starts_with("tiers[1]"), "{err}");
    assert!(err.message.contains("unknown field"), "{err}");
}

#[test]
fn every_invalid_field_is_named() {
    let cases: Vec<(String, &str)> = vec![
        (
            sample_with("/tiers/1/canary", serde_json::json!({"model": "large", "share": 0.1})),
            "tiers[1].canary.model",
        ),
        (
            sample_with("/tiers/0/cascade", serde_json::json!({"threshold": 2})),
            "tiers[0].cascade.threshold",
        ),
        (
            sample_with("/feedback", serde_json::json!({"path": "/signalbox/health"})),
            "feedback.path",
        ),
        (
            sample_with("/feedback", serde_json::json!({"path": "/v1/chat/completions"})),
            "feedback.path",
        ),
        (
            sample_with("/tiers/1/max_score", serde_json::json!(0.2)),
            "tiers[1].max_score",
        ),
        (
            sample_with("/tiers/0/max_score", serde_json::json!(1.5)),
            "tiers[0].max_score",
        ),
        (
            sample_with("/tiers/2/max_score", serde_json::json!(0.9)),
            "tiers[2].max_score",
        ),
        (sample_with("/tiers/1/models", serde_json::json!([])), "tiers[1].models"),
        (
            sample_with("/tiers/1/models", serde_json::json!(["nope"])),
            "tiers[1].models[0]",
        ),
        (sample_with("/tiers", serde_json::json!([])), "tiers"),
        (
            sample_with("/models/small/provider", serde_json::json!("nope")),
            "models.small.provider",
        ),
        (
            sample_with("/models/small/context_window", serde_json::json!(0)),
            "models.small.context_window",
        ),
        (
            sample_with("/models/small/price/input", serde_json::json!(-1)),
            "models.small.price.input",
        ),
        (
            sample_with("/models/small/cluster", serde_json::json!("")),
            "models.small.cluster",
        ),
        (
            sample_with("/providers/openai/base_path", serde_json::json!("v1")),
            "providers.openai.base_path",
        ),
        (
            sample_with("/providers/anthropic/api_key_env", serde_json::json!("MISSING_VAR")),
            "providers.anthropic.api_key_env",
        ),
        (
            sample_with("/rules/0/when/last_user", serde_json::json!("(unclosed")),
            "rules[0].when.last_user",
        ),
        (sample_with("/rules/0/when", serde_json::json!({})), "rules[0].when"),
        (
            sample_with(
                "/rules/0/then",
                serde_json::json!({"tier": "complex", "model": "small"}),
            ),
            "rules[0].then",
        ),
        (
            sample_with("/rules/0/then", serde_json::json!({"tier": "huge"})),
            "rules[0].then.tier",
        ),
        (
            sample_with("/rules/1/name", serde_json::json!("legal")),
            "rules[1].name",
        ),
        (
            sample_with("/rules/1/when/headers", serde_json::json!({"X-Team": "a"})),
            "rules[1].when.headers.X-Team",
        ),
        (sample_with("/max_body_bytes", serde_json::json!(10)), "max_body_bytes"),
        (
            sample_with("/auto_models", serde_json::json!(["small"])),
            "auto_models[0]",
        ),
        (
            sample_with("/classifier", serde_json::json!({"weights": {"code": "high"}})),
            "classifier.weights.code",
        ),
        (
            sample_with("/classifier", serde_json::json!({"weights": {"vibes": 1}})),
            "classifier.weights.vibes",
        ),
        (sample_with("/explain", serde_json::json!("sometimes")), "explain"),
    ];
    for (json, path) in cases {
        let err = error_at(&json);
        assert_eq!(err.path, path, "{err}");
        assert!(!err.message.is_empty());
        assert!(err.to_string().contains(path));
    }
}

#[test]
fn broken_json_is_rejected() {
    let err = error_at("{\"providers\": ");
    assert!(err.to_string().contains("invalid signalbox configuration"));
}

#[test]
fn capabilities_default_to_everything() {
    let config = sample_config();
    let text_only = &config.models[config.model_named("vision-less").unwrap()];
    assert!(text_only.capabilities.tools && !text_only.capabilities.vision);
    let small = &config.models[config.model_named("small").unwrap()];
    assert!(small.capabilities.vision && small.capabilities.json_output);
}

#[test]
fn several_keys_make_one_deployment_each() {
    let json = r#"{"providers": {"p": {"cluster": "c", "api_keys": [{"name": "a", "key": "sk-a"}, {"name": "b", "env": "ANTHROPIC_KEY", "weight": 3}]}},
      "models": {"m": {"provider": "p"}}, "tiers": [{"name": "all", "models": ["m"]}]}"#;
    let config = parse(json).unwrap();
    let names: Vec<&str> = config.deployments.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["m@a", "m@b"]);
    assert_eq!(config.deployments[1].health_key, "signalbox/v1/health/m@b");
    assert_eq!(key_value(config.key_of(1)), Some("sk-ant-from-env"));
    assert_eq!(config.key_of(1).weight, 3);
}

#[test]
fn resilience_and_strategy_settings_are_validated() {
    let cases: Vec<(String, &str)> = vec![
        (
            sample_with("/resilience", serde_json::json!({"max_attempts": 0})),
            "resilience.max_attempts",
        ),
        (
            sample_with("/resilience", serde_json::json!({"breaker": {"failure_rate": 1.5}})),
            "resilience.breaker.failure_rate",
        ),
        (
            sample_with("/resilience", serde_json::json!({"breaker": {"open_ms": 0}})),
            "resilience.breaker.open_ms",
        ),
        (
            sample_with("/resilience", serde_json::json!({"probes": {"interval_ms": 10}})),
            "resilience.probes.interval_ms",
        ),
        (
            sample_with(
                "/resilience",
                serde_json::json!({"breaker": {"consecutive_failures": 0}}),
            ),
            "resilience.breaker.consecutive_failures",
        ),
        (
            sample_with("/resilience", serde_json::json!({"breaker": {"half_open_trials": 0}})),
            "resilience.breaker.half_open_trials",
        ),
        (
            sample_with("/resilience", serde_json::json!({"breaker": {"min_requests": 0.5}})),
            "resilience.breaker.min_requests",
        ),
        (
            sample_with("/tiers/2/strategy", serde_json::json!("weighted")),
            "tiers[2].weights",
        ),
        (
            sample_with("/tiers/2/weights", serde_json::json!({"small": 1})),
            "tiers[2].weights.small",
        ),
        (
            sample_with("/tiers/2/canary", serde_json::json!({"model": "small", "share": 2})),
            "tiers[2].canary.share",
        ),
        (
            sample_with("/tiers/2/canary", serde_json::json!({"model": "nope", "share": 0.1})),
            "tiers[2].canary.model",
        ),
        (
            sample_with("/tiers/2/sticky_header", serde_json::json!("X-User")),
            "tiers[2].sticky_header",
        ),
        (
            sample_with("/models/small/fallbacks", serde_json::json!(["small"])),
            "models.small.fallbacks[0]",
        ),
        (
            sample_with("/models/small/fallbacks", serde_json::json!(["ghost"])),
            "models.small.fallbacks[0]",
        ),
        (
            sample_with(
                "/providers/openai/api_keys",
                serde_json::json!([{"name": "x", "key": "k"}]),
            ),
            "providers.openai.api_keys",
        ),
        (sample_with("/health_path", serde_json::json!("health")), "health_path"),
        (sample_with("/spend_path", serde_json::json!("spend")), "spend_path"),
    ];
    for (json, path) in cases {
        let err = error_at(&json);
        assert_eq!(err.path, path, "{err}");
    }
}

#[test]
fn resilience_defaults_are_sensible() {
    let config = sample_config();
    assert_eq!(config.resilience.max_attempts, 3);
    assert_eq!(config.resilience.health.breaker.consecutive_failures, 5);
    assert!(config.resilience.probes.is_none());
    assert_eq!(config.health_path.as_deref(), Some("/signalbox/health"));
    assert_eq!(config.tiers[0].strategy, Strategy::Priority);
}

#[test]
fn the_shipped_module_refuses_a_test_clock() {
    let config = serde_json::json!({
        "providers": {"p": {"cluster": "c"}},
        "models": {"m": {"provider": "p"}},
        "tiers": [{"name": "all", "models": ["m"]}],
        "governance": {"tenants": {"t": {}}, "keys": [], "test_clock_header": "x-test-now"}
    });
    let parsed = Config::parse(config.to_string().as_bytes(), &|_| None);
    if cfg!(feature = "test-clock") {
        assert!(parsed.is_ok());
    } else {
        let err = parsed.unwrap_err();
        assert_eq!(err.path, "governance.test_clock_header");
    }
}

#[test]
fn governance_numbers_out_of_range_are_refused_not_raised() {
    let with = |governance: serde_json::Value| {
        let config = serde_json::json!({
            "providers": {"p": {"cluster": "c"}},
            "models": {"m": {"provider": "p"}},
            "tiers": [{"name": "all", "models": ["m"]}],
            "governance": governance,
        });
        Config::parse(config.to_string().as_bytes(), &|_| None)
            .map(|_| ())
            .unwrap_err()
            .path
    };
    assert_eq!(
        with(serde_json::json!({"tenants": {"t": {}}, "keys": [], "default_output_reservation": 0})),
        "governance.default_output_reservation"
    );
    let alerts = |timeout_ms: u64| {
        serde_json::json!({"tenants": {"t": {}}, "keys": [],
            "alerts": {"cluster": "a", "path": "/hook", "timeout_ms": timeout_ms}})
    };
    assert_eq!(with(alerts(0)), "governance.alerts.timeout_ms");
    assert_eq!(with(alerts(600_000)), "governance.alerts.timeout_ms");
}

#[test]
fn a_rule_on_language_takes_codes_or_non_en_and_names_an_unknown_code() {
    let rule = |language: serde_json::Value| {
        sample_with(
            "/rules/0",
            serde_json::json!({"name": "by-language", "when": {"language": language}, "then": {"tier": "complex"}}),
        )
    };
    let config = parse(&rule(serde_json::json!(["de", "fr"]))).unwrap();
    let languages = config.rules[0].languages.unwrap();
    assert!(languages.contains(crate::classify::Language::German));
    assert!(!languages.contains(crate::classify::Language::English));
    let other = parse(&rule(serde_json::json!("non_en"))).unwrap().rules[0]
        .languages
        .unwrap();
    assert!(other.contains(crate::classify::Language::Japanese));
    assert!(!other.contains(crate::classify::Language::English));
    assert!(!other.contains(crate::classify::Language::Undetermined));
    let err = error_at(&rule(serde_json::json!(["de", "klingon"])));
    assert_eq!(err.path, "rules[0].when.language[1]");
    assert!(err.message.contains("non_en"), "{}", err.message);
    assert_eq!(error_at(&rule(serde_json::json!([]))).path, "rules[0].when.language");
}

#[test]
fn each_tenant_gets_its_own_cache_policy_by_tenant_id() {
    let json = sample_with("/cache", serde_json::json!({"enabled": true, "ttl_seconds": 60}));
    let json = {
        let mut document: serde_json::Value = serde_json::from_str(&json).unwrap();
        document["governance"] = serde_json::json!({
            "tenants": {
                "zeta": {"cache": {"ttl_seconds": 600}},
                "alpha": {"cache": {"enabled": false}},
                "mid": {}
            },
            "keys": []
        });
        document.to_string()
    };
    let config = parse(&json).unwrap();
    let tenants = &config.governance.as_ref().unwrap().tenants;
    let id = |name: &str| tenants.iter().position(|tenant| tenant.name == name);
    let ttl = |name: &str| config.cache.policy(id(name)).map(|policy| policy.ttl_ms);
    assert_eq!(ttl("zeta"), Some(600_000));
    assert_eq!(ttl("alpha"), None);
    assert_eq!(ttl("mid"), Some(60_000));
    let error = error_at(&json.replace("600}", "0}"));
    assert_eq!(error.path, "governance.tenants.zeta.cache.ttl_seconds");
}

#[test]
fn the_cache_is_off_unless_configured() {
    assert!(!sample_config().cache.is_used());
}

#[test]
fn a_shadow_reference_must_be_a_model_the_tenant_may_use() {
    let mut document: serde_json::Value = serde_json::from_str(SAMPLE_CONFIG).unwrap();
    document["governance"] = serde_json::json!({
        "tenants": {"interns": {"allowed_models": ["small"], "shadow": {"reference": "large", "share": 0.1}}},
        "keys": []
    });
    assert_eq!(
        parse(&document.to_string()).unwrap_err().path,
        "governance.tenants.interns.shadow.reference"
    );
    document["governance"]["tenants"]["interns"]["allowed_models"] = serde_json::json!(["small", "large"]);
    assert!(parse(&document.to_string()).is_ok());
}

#[test]
fn a_shadow_judge_must_be_a_model_the_tenant_may_use() {
    let mut document: serde_json::Value = serde_json::from_str(SAMPLE_CONFIG).unwrap();
    document["governance"] = serde_json::json!({
        "tenants": {"interns": {
            "allowed_models": ["small", "large"],
            "shadow": {"reference": "large", "share": 0.1, "judge": "medium"}
        }},
        "keys": []
    });
    assert_eq!(
        parse(&document.to_string()).unwrap_err().path,
        "governance.tenants.interns.shadow.judge"
    );
    document["governance"]["tenants"]["interns"]["allowed_models"] = serde_json::json!(["small", "large", "medium"]);
    assert!(parse(&document.to_string()).is_ok());
}

#[test]
fn access_log_fields_pick_what_is_written_and_refuse_what_is_not_a_field() {
    let all = parse(SAMPLE_CONFIG).unwrap().observability.access_log_fields;
    assert!(crate::contract::ACCESS_LOG_FIELDS
        .iter()
        .all(|field| all.contains(field)));
    let picked = parse(&sample_with(
        "/observability",
        serde_json::json!({"access_log_fields": ["tier", "cost_usd"]}),
    ))
    .unwrap()
    .observability
    .access_log_fields;
    assert!(picked.contains("tier") && picked.contains("cost_usd"));
    assert!(!picked.contains("model") && !picked.contains("prompt"));
    let off = parse(&sample_with("/observability", serde_json::json!({"access_log": false})))
        .unwrap()
        .observability
        .access_log_fields;
    assert!(off.is_empty());
    for (observability, wanted) in [
        (serde_json::json!({"access_log_fields": ["tier", "modle"]}), "`modle`"),
        (serde_json::json!({"access_log_fields": []}), "is empty"),
        (
            serde_json::json!({"access_log": false, "access_log_fields": ["tier"]}),
            "access_log is false",
        ),
    ] {
        let error = error_at(&sample_with("/observability", observability));
        assert_eq!(error.path, "observability.access_log_fields");
        assert!(error.message.contains(wanted), "{}", error.message);
    }
}
