use super::*;
use crate::error::GatewayError;
use crate::headers::HeaderMap;
use crate::health::DeploymentHealth;
use crate::ingress::Ingress;
use crate::providers::Operation;
use crate::route::attempts::NativeApi;
use crate::testing::{sample_config, ALL_HEALTHY};

/// What a typical client sends.
fn client_headers() -> HeaderMap {
    [
        (":path", "/v1/chat/completions"),
        (":authority", "gw:10000"),
        ("authorization", "Bearer client-key"),
    ]
    .into_iter()
    .collect()
}

fn chat(model: &str, text: &str) -> Vec<u8> {
    serde_json::json!({"model": model, "messages": [{"role": "user", "content": text}], "temperature": 0.1})
        .to_string()
        .into_bytes()
}

fn explain() -> ClientHints {
    ClientHints {
        explain: true,
        ..ClientHints::default()
    }
}

fn plan_with(
    config: &Config,
    body: &[u8],
    headers: &HeaderMap,
    hints: &ClientHints,
) -> Result<RequestPlan, GatewayError> {
    plan_chat(config, body, headers, hints, &Situation::open(&ALL_HEALTHY, 0))
}

fn plan(body: &[u8], hints: &ClientHints) -> Result<RequestPlan, GatewayError> {
    plan_with(&sample_config(), body, &client_headers(), hints)
}

fn response_header<'p>(plan: &'p RequestPlan, name: &str) -> Option<&'p str> {
    plan.response_headers
        .iter()
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.as_str())
}

fn set_header<'p>(plan: &'p RequestPlan, name: &str) -> Option<&'p str> {
    plan.request_headers.iter().find_map(|edit| match edit {
        HeaderEdit::Set(key, value) if key == name => Some(value.as_str()),
        _ => None,
    })
}

/// A trail of `(deployment, status, escalated)` records.
fn trail_of(records: &[(DeploymentId, u16, bool)]) -> AttemptTrail {
    AttemptTrail(
        records
            .iter()
            .map(|&(deployment, status, escalated)| attempts::AttemptRecord {
                deployment,
                status,
                escalated,
            })
            .collect(),
    )
}

/// Model names of the chain, in order.
fn chain_models(plan: &RequestPlan) -> Vec<String> {
    let config = sample_config();
    plan.decision
        .chain
        .iter()
        .map(|d| config.models[config.deployments[*d].model].name.clone())
        .collect()
}

#[test]
fn a_simple_prompt_goes_to_the_cheap_tier_with_stronger_tiers_behind_it() {
    let plan = plan(&chat("auto", "hi, thanks!"), &ClientHints::default()).unwrap();
    assert_eq!(chain_models(&plan), ["small", "medium", "large"]);
    assert_eq!(response_header(&plan, HEADER_TIER), Some("simple"));
    assert_eq!(plan.decision.source, DecisionSource::Score);
    assert_eq!(response_header(&plan, HEADER_SCORE), None, "no explain unless asked");
}

#[test]
fn a_hard_prompt_goes_to_the_strong_tier_with_an_explanation() {
    let text = "Prove that there are infinitely many primes, step by step, then write a Python function that lists the first n primes.";
    let plan = plan(&chat("auto", text), &explain()).unwrap();
    assert_eq!(response_header(&plan, HEADER_TIER), Some("complex"));
    assert_eq!(chain_models(&plan)[0], "large");
    let score: f64 = response_header(&plan, HEADER_SCORE).unwrap().parse().unwrap();
    assert!(score >= 0.6);
    assert!(response_header(&plan, HEADER_SIGNALS).unwrap().contains("math="));
    assert_eq!(response_header(&plan, HEADER_REASON), Some("score"));
}

#[test]
fn the_plan_sets_retries_deadline_and_drops_client_credentials() {
    let plan = plan(&chat("auto", "hello"), &ClientHints::default()).unwrap();
    assert_eq!(set_header(&plan, "x-envoy-max-retries"), Some("2"));
    assert_eq!(set_header(&plan, "x-envoy-upstream-rq-timeout-ms"), Some("300000"));
    assert!(plan
        .request_headers
        .contains(&HeaderEdit::Remove(Cow::Borrowed("authorization"))));
    assert!(
        !plan
            .request_headers
            .contains(&HeaderEdit::Remove(Cow::Borrowed("x-api-key"))),
        "absent: no host call"
    );
    assert_eq!(plan.attempts.chain, plan.decision.chain);
    assert_eq!(plan.attempts.authority, "gw:10000");
    assert!(!plan.attempts.stream);
}

#[test]
fn streaming_requests_have_no_overall_deadline_and_carry_their_usage_wish() {
    let body = serde_json::json!({"model": "auto", "stream": true, "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "hi"}]})
    .to_string();
    let plan = plan(body.as_bytes(), &ClientHints::default()).unwrap();
    assert_eq!(set_header(&plan, "x-envoy-upstream-rq-timeout-ms"), None);
    assert!(plan.attempts.stream && plan.attempts.client_wants_usage);
}

#[test]
fn a_named_model_routes_to_it_then_its_fallbacks() {
    let mut config = sample_config();
    let large = config.model_named("large").unwrap();
    let medium = config.model_named("medium").unwrap();
    config.models[medium].fallbacks = vec![large];
    let plan = plan_with(
        &config,
        &chat("medium", "hi"),
        &client_headers(),
        &ClientHints::default(),
    )
    .unwrap();
    assert_eq!(plan.decision.source, DecisionSource::Explicit);
    assert_eq!(chain_models(&plan), ["medium", "large"]);
    assert_eq!(response_header(&plan, HEADER_TIER), None);
    assert!(
        plan.decision.classification.is_none(),
        "no scoring work for named models"
    );
}

#[test]
fn an_unknown_model_is_a_404() {
    let err = plan(&chat("gpt-17", "hi"), &ClientHints::default()).unwrap_err();
    assert_eq!(err, GatewayError::UnknownModel { model: "gpt-17".into() });
    assert_eq!(err.status(), 404);
}

#[test]
fn a_prompt_too_long_for_the_cheap_model_skips_it() {
    // `small` has a 1000-token window; 6000 characters is ~1500 tokens.
    let plan = plan(&chat("auto", &"hi ".repeat(2000)), &explain()).unwrap();
    // Whichever tier the score picks, the primary is a model that fits.
    assert!(["medium", "large"].contains(&chain_models(&plan)[0].as_str()));
    assert!(!chain_models(&plan).contains(&"small".to_string()));
    assert!(plan.decision.estimated_tokens > 1000);
}

#[test]
fn escalation_to_another_tier_is_reported() {
    let body = serde_json::json!({"model": "auto", "messages": [{"role": "user", "content": "Prove it step by step with an integral"}], "max_tokens": 150_000}).to_string();
    let plan = plan(body.as_bytes(), &explain()).unwrap();
    assert_eq!(response_header(&plan, HEADER_TIER), Some("standard"));
    assert_eq!(
        response_header(&plan, HEADER_REASON),
        Some("score;escalated-from:complex")
    );
    assert_eq!(chain_models(&plan), ["medium"]);
}

#[test]
fn a_request_no_window_can_hold_is_rejected() {
    let body =
        serde_json::json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 900_000})
            .to_string();
    assert_eq!(
        plan(body.as_bytes(), &ClientHints::default()).unwrap_err().code(),
        "context_length_exceeded"
    );
    let named =
        serde_json::json!({"model": "small", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5000})
            .to_string();
    assert_eq!(
        plan(named.as_bytes(), &ClientHints::default()).unwrap_err().status(),
        400
    );
}

#[test]
fn rules_override_the_score() {
    let plan = plan(&chat("auto", "hi, check my contract"), &explain()).unwrap();
    assert_eq!(response_header(&plan, HEADER_TIER), Some("complex"));
    assert_eq!(response_header(&plan, HEADER_REASON), Some("rule:legal"));
}

#[test]
fn header_rules_read_request_headers() {
    let research: HeaderMap = [("x-team", "research")].into_iter().collect();
    let plan = plan_with(
        &sample_config(),
        &chat("auto", "hello"),
        &research,
        &ClientHints::default(),
    )
    .unwrap();
    assert_eq!(chain_models(&plan)[0], "medium");
    assert_eq!(plan.decision.source, DecisionSource::Rule(1));
}

#[test]
fn trusted_client_hints_force_a_tier_or_model() {
    let tier = ClientHints {
        tier: Some("complex".into()),
        ..ClientHints::default()
    };
    assert_eq!(chain_models(&plan(&chat("auto", "hi"), &tier).unwrap())[0], "large");
    let model = ClientHints {
        model: Some("medium".into()),
        ..ClientHints::default()
    };
    assert_eq!(
        plan(&chat("auto", "hi"), &model).unwrap().decision.source,
        DecisionSource::ClientHeader
    );
    let unknown = ClientHints {
        tier: Some("ultra".into()),
        ..ClientHints::default()
    };
    assert_eq!(plan(&chat("auto", "hi"), &unknown).unwrap_err().status(), 400);
}

#[test]
fn an_unhealthy_primary_moves_down_the_chain() {
    struct BrokenSmall<'c>(&'c Config);
    impl HealthView for BrokenSmall<'_> {
        fn health(&self, deployment: DeploymentId) -> DeploymentHealth {
            let small = self.0.model_named("small").unwrap();
            if self.0.deployments[deployment].model == small {
                DeploymentHealth {
                    breaker: crate::health::BreakerState::Open { until_ms: u64::MAX },
                    ..Default::default()
                }
            } else {
                DeploymentHealth::default()
            }
        }
        fn claim_trial(&self, _: DeploymentId) -> Option<crate::health::LeaseToken> {
            None
        }
        fn now_ms(&self) -> u64 {
            1
        }
    }
    let config = sample_config();
    let broken = BrokenSmall(&config);
    let situation = Situation::open(&broken, 0);
    let plan = plan_chat(
        &config,
        &chat("auto", "hi"),
        &client_headers(),
        &ClientHints::default(),
        &situation,
    )
    .unwrap();
    let models: Vec<&str> = plan
        .decision
        .chain
        .iter()
        .map(|d| config.models[config.deployments[*d].model].name.as_str())
        .collect();
    assert_eq!(models, ["medium", "large"]);
}

#[test]
fn attempt_headers_name_the_deployment_that_answered() {
    let config = sample_config();
    let plan = plan(&chat("auto", "hi"), &ClientHints::default()).unwrap().attempts;
    let primary_only = attempt_headers(&config, &plan, &AttemptTrail::default(), false, None);
    assert!(primary_only.contains(&(HEADER_MODEL, "small".to_string())));
    assert!(primary_only.contains(&(HEADER_ROUTE, "primary".to_string())));
    let trail = trail_of(&[(plan.chain[0], 429, false), (plan.chain[1], 200, false)]);
    let after_failover = attempt_headers(&config, &plan, &trail, true, None);
    assert!(after_failover.contains(&(HEADER_MODEL, "medium".to_string())));
    assert!(after_failover.contains(&(HEADER_PROVIDER, "anthropic".to_string())));
    assert!(after_failover.contains(&(HEADER_ROUTE, "fallback-1".to_string())));
    assert!(after_failover.contains(&(HEADER_ATTEMPTS, "small:429,medium:200".to_string())));
    let trail = trail_of(&[(plan.chain[0], 200, true), (plan.chain[1], 200, false)]);
    let after_cascade = attempt_headers(&config, &plan, &trail, false, Some("truncated"));
    assert!(after_cascade.contains(&(HEADER_ROUTE, "cascade".to_string())));
    assert!(
        after_cascade.contains(&(HEADER_ATTEMPTS, "small:weak,medium:200".to_string())),
        "a cascade always says what happened"
    );
    assert!(after_cascade.contains(&(HEADER_CASCADE, "truncated".to_string())));
}

#[test]
fn malformed_bodies_never_produce_a_plan() {
    for body in [
        &b"{"[..],
        b"null",
        b"{\"model\":\"auto\",\"messages\":{}}",
        b"\xff\xfe\x00",
    ] {
        assert_eq!(plan(body, &ClientHints::default()).unwrap_err().status(), 400);
    }
}

#[test]
fn endpoints_are_recognised_with_or_without_query_and_prefix() {
    assert_eq!(endpoint("/v1/chat/completions"), Endpoint::ChatCompletions);
    assert_eq!(endpoint("/v1/chat/completions?x=1"), Endpoint::ChatCompletions);
    assert_eq!(endpoint("/chat/completions/"), Endpoint::ChatCompletions);
    assert_eq!(endpoint("/v1/models"), Endpoint::Models);
    assert_eq!(endpoint("/healthz"), Endpoint::Other);
    assert_eq!(endpoint("/v1/messages?beta=true"), Endpoint::Messages);
    assert_eq!(endpoint("/v1/messages/count_tokens"), Endpoint::CountTokens);
    assert_eq!(endpoint("/v1/responses"), Endpoint::Responses);
    assert_eq!(endpoint("/v1/responses/resp_1"), Endpoint::Other);
    assert_eq!(Endpoint::Messages.ingress(), Some(crate::ingress::Ingress::Messages));
    assert_eq!(Endpoint::ChatCompletions.ingress(), None);
    assert_eq!(endpoint(""), Endpoint::Other);
}

#[test]
fn steering_hints_need_trust_but_explain_does_not() {
    let headers: HeaderMap = [(HEADER_EXPLAIN, "1"), (HEADER_FORCE_TIER, "complex")]
        .into_iter()
        .collect();
    let mut config = sample_config();
    let untrusted = client_hints(&config, &headers);
    assert_eq!(
        untrusted,
        ClientHints {
            explain: true,
            tier: None,
            model: None
        }
    );
    config.trust_client_headers = true;
    assert_eq!(client_hints(&config, &headers).tier.as_deref(), Some("complex"));
}

#[test]
fn the_models_listing_names_aliases_and_models() {
    let listing: serde_json::Value = serde_json::from_slice(&models_listing(&sample_config())).unwrap();
    let ids: Vec<&str> = listing["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"auto") && ids.contains(&"small") && ids.contains(&"large"));
    assert_eq!(listing["object"], "list");
}

#[test]
fn an_exhausted_chain_becomes_one_openai_error_with_retry_after() {
    let config = sample_config();
    let plan = plan(&chat("auto", "hi"), &ClientHints::default()).unwrap().attempts;
    let all_limited = trail_of(&[(plan.chain[0], 429, false), (plan.chain[1], 429, false)]);
    let last = FinalResponse {
        status: 429,
        retry_after_ms: Some(2_500),
    };
    let error = exhausted_error(&config, &plan, &all_limited, last, &ALL_HEALTHY);
    assert_eq!(error.headers(), vec![("retry-after", "3".to_string())]);
    assert_eq!(error.status(), 429);
    assert_eq!(error.code(), "rate_limit_exceeded");
    assert!(error.to_string().contains("small:429,medium:429"));
    let mixed = trail_of(&[(plan.chain[0], 429, false), (plan.chain[1], 0, false)]);
    let error = exhausted_error(
        &config,
        &plan,
        &mixed,
        FinalResponse {
            status: 503,
            retry_after_ms: None,
        },
        &ALL_HEALTHY,
    );
    assert_eq!(error.status(), 503);
    assert_eq!(error.code(), "providers_unavailable");
    assert!(is_exhausted(503) && is_exhausted(429) && !is_exhausted(400) && !is_exhausted(200));
}

#[test]
fn retry_after_comes_from_the_soonest_cooldown() {
    struct Cooling;
    impl HealthView for Cooling {
        fn health(&self, deployment: DeploymentId) -> DeploymentHealth {
            DeploymentHealth {
                cooldown_until_ms: 1_000 + 4_000 * (deployment as u64 + 1),
                ..Default::default()
            }
        }
        fn claim_trial(&self, _: DeploymentId) -> Option<crate::health::LeaseToken> {
            None
        }
        fn now_ms(&self) -> u64 {
            1_000
        }
    }
    let config = sample_config();
    let plan = AttemptPlan {
        chain: vec![2, 1],
        stream: false,
        client_wants_usage: false,
        native: NativeApi::None,
        operation: Operation::ChatCompletions,
        max_tokens: None,
        trials: Vec::new(),
        prompt_tokens: 0,
        output_limit: None,
        choices: 1,
        per_try_timeout_ms: 30_000,
        deadline_at_ms: 0,
        request: 0,
        tier: None,
        escalation: None,
        authority: String::new(),
    };
    let last = FinalResponse {
        status: 503,
        retry_after_ms: Some(60_000),
    };
    let error = exhausted_error(&config, &plan, &AttemptTrail::default(), last, &Cooling);
    assert_eq!(error.headers(), vec![("retry-after", "8".to_string())]);
    assert!(error.to_string().contains("none could be reached"));
}

#[test]
fn embeddings_route_to_the_named_model_and_its_fallbacks() {
    let mut config = sample_config();
    let large = config.model_named("large").unwrap();
    let small = config.model_named("small").unwrap();
    config.models[small].fallbacks = vec![large];
    let body = br#"{"model":"small","input":["one","two"]}"#;
    let plan = plan_embeddings(&config, body, &client_headers(), &Situation::open(&ALL_HEALTHY, 0)).unwrap();
    assert_eq!(plan.attempts.operation, Operation::Embeddings);
    assert_eq!(plan.attempts.chain.len(), 2);
    assert!(!plan.attempts.stream);
    assert_eq!(set_header(&plan, "x-envoy-max-retries"), Some("1"));
    let auto = plan_embeddings(
        &config,
        br#"{"model":"auto","input":"x"}"#,
        &client_headers(),
        &Situation::open(&ALL_HEALTHY, 0),
    );
    assert_eq!(auto.unwrap_err().status(), 400);
    assert_eq!(endpoint("/v1/embeddings"), Endpoint::Embeddings);
}

fn policy_situation<'a>(config: &'a Config, tenant: &str, downgrade: bool) -> Situation<'a> {
    let governance = config.governance.as_ref().unwrap();
    let policy = governance
        .tenants
        .iter()
        .find(|candidate| candidate.name == tenant)
        .unwrap();
    Situation {
        health: &ALL_HEALTHY,
        draw: 0,
        policy: Some(policy),
        downgrade,
        confined_to: None,
    }
}

#[test]
fn a_tenant_policy_limits_models_tiers_and_output() {
    let config = crate::testing::governed_config();
    let interns = policy_situation(&config, "interns", false);
    let plan_for = |body: &[u8]| plan_chat(&config, body, &client_headers(), &ClientHints::default(), &interns);
    assert_eq!(plan_for(&chat("large", "hi")).unwrap_err().status(), 403);
    let hard = plan_for(&chat(
        "auto",
        "Prove Fermat's little theorem step by step and write a Python function for it",
    ))
    .unwrap();
    let models: Vec<&str> = hard
        .decision
        .chain
        .iter()
        .map(|d| config.models[config.deployments[*d].model].name.as_str())
        .collect();
    assert_eq!(models, ["small"], "capped at the simple tier and its allowed models");
    assert_eq!(
        hard.attempts.max_tokens,
        Some(256),
        "the tenant's cap is added as max_tokens"
    );
    let greedy =
        serde_json::json!({"model": "auto", "max_tokens": 1000, "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(plan_for(greedy.to_string().as_bytes()).unwrap_err().status(), 400);
}

#[test]
fn past_the_soft_threshold_a_downgrade_tier_takes_over() {
    let mut config = crate::testing::governed_config();
    let governance = config.governance.as_mut().unwrap();
    let research = governance
        .tenants
        .iter_mut()
        .find(|tenant| tenant.name == "research")
        .unwrap();
    research.downgrade_tier = Some(0);
    let hard = chat(
        "auto",
        "Prove that the square root of 2 is irrational, step by step, with a rigorous proof.",
    );
    let normal = plan_chat(
        &config,
        &hard,
        &client_headers(),
        &explain(),
        &policy_situation(&config, "research", false),
    )
    .unwrap();
    assert_eq!(response_header(&normal, HEADER_TIER), Some("complex"));
    let downgraded = plan_chat(
        &config,
        &hard,
        &client_headers(),
        &explain(),
        &policy_situation(&config, "research", true),
    )
    .unwrap();
    assert_eq!(response_header(&downgraded, HEADER_TIER), Some("simple"));
    assert_eq!(
        response_header(&downgraded, HEADER_REASON),
        Some("score;escalated-from:complex;downgraded")
    );
}

/// The governed sample config with research's tier caps set.
fn research_capped(max_tier: Option<TierId>, downgrade_tier: Option<TierId>) -> Config {
    let mut config = crate::testing::governed_config();
    let governance = config.governance.as_mut().unwrap();
    let research = governance
        .tenants
        .iter_mut()
        .find(|tenant| tenant.name == "research")
        .unwrap();
    research.max_tier = max_tier;
    research.downgrade_tier = downgrade_tier;
    config
}

#[test]
fn a_named_model_above_the_tenants_max_tier_is_refused() {
    let config = research_capped(Some(1), None);
    let research = policy_situation(&config, "research", false);
    let plan_for = |model: &str| plan_chat(&config, &chat(model, "hi"), &client_headers(), &explain(), &research);
    let refused = plan_for("large").unwrap_err();
    assert_eq!(refused.status(), 403);
    let body: serde_json::Value = serde_json::from_slice(&refused.to_json()).unwrap();
    assert_eq!(body["error"]["code"], "model_not_allowed");
    assert_eq!(body["error"]["type"], "permission_error");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("`large`") && message.contains("`standard`"),
        "{message}"
    );
    // In no tier's pool: ranked with the strongest tier, so refused too.
    assert_eq!(plan_for("vision-less").unwrap_err().status(), 403);
    // Within the cap (medium ranks simple): served as asked.
    let medium = plan_for("medium").unwrap();
    assert_eq!(chain_models(&medium), ["medium"]);
    assert_eq!(response_header(&medium, HEADER_REASON), Some("explicit"));
}

#[test]
fn past_the_soft_threshold_a_named_model_above_the_downgrade_tier_is_served_by_it() {
    let config = research_capped(None, Some(0));
    let plan_for = |model: &str, downgrade: bool| {
        plan_chat(
            &config,
            &chat(model, "hi"),
            &client_headers(),
            &explain(),
            &policy_situation(&config, "research", downgrade),
        )
        .unwrap()
    };
    let normal = plan_for("large", false);
    assert_eq!(chain_models(&normal), ["large"]);
    let downgraded = plan_for("large", true);
    assert_eq!(downgraded.decision.source, DecisionSource::Explicit);
    assert!(downgraded.decision.downgraded);
    assert_eq!(chain_models(&downgraded)[0], "small");
    assert!(!chain_models(&downgraded).contains(&"large".to_string()));
    assert_eq!(response_header(&downgraded, HEADER_TIER), Some("simple"));
    assert_eq!(response_header(&downgraded, HEADER_REASON), Some("explicit;downgraded"));
    // A model of the downgrade tier is still served as named.
    let small = plan_for("small", true);
    assert_eq!(chain_models(&small), ["small"]);
    assert!(!small.decision.downgraded);
    assert_eq!(response_header(&small, HEADER_TIER), None);
}

#[test]
fn a_named_models_fallbacks_above_the_ceiling_are_left_out() {
    let mut config = research_capped(None, Some(0));
    let large = config.model_named("large").unwrap();
    let medium = config.model_named("medium").unwrap();
    config.models[medium].fallbacks = vec![large];
    let plan_for = |downgrade: bool| {
        plan_chat(
            &config,
            &chat("medium", "hi"),
            &client_headers(),
            &ClientHints::default(),
            &policy_situation(&config, "research", downgrade),
        )
        .unwrap()
    };
    assert_eq!(chain_models(&plan_for(false)), ["medium", "large"]);
    assert_eq!(chain_models(&plan_for(true)), ["medium"]);
}

#[test]
fn a_forced_model_above_the_ceiling_falls_back_to_the_capped_tier() {
    let config = research_capped(Some(1), None);
    let research = policy_situation(&config, "research", false);
    let forced = ClientHints {
        model: Some("large".into()),
        ..ClientHints::default()
    };
    let plan = plan_chat(&config, &chat("auto", "hi"), &client_headers(), &forced, &research).unwrap();
    assert_eq!(plan.decision.source, DecisionSource::Score);
    assert!(!chain_models(&plan).contains(&"large".to_string()));
}

/// The sample config with `medium` on a real Anthropic (Messages API) provider.
fn with_anthropic_medium() -> Config {
    let json = crate::testing::SAMPLE_CONFIG.replace(
        r#""anthropic": {"cluster": "anthropic","#,
        r#""anthropic": {"kind": "anthropic", "cluster": "anthropic","#,
    );
    Config::parse(json.as_bytes(), &crate::testing::env).unwrap()
}

#[test]
fn a_provider_that_cannot_express_the_request_is_left_out_of_the_chain() {
    let mut config = with_anthropic_medium();
    let small = config.model_named("small").unwrap();
    let medium = config.model_named("medium").unwrap();
    config.models[small].fallbacks = vec![medium];
    config.models[medium].fallbacks = vec![small];
    let names = |plan: &RequestPlan| -> Vec<String> {
        plan.decision
            .chain
            .iter()
            .map(|d| config.models[config.deployments[*d].model].name.clone())
            .collect()
    };
    let tool = br#"{"model":"small","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"web_search"}]}"#;
    let plan = plan_with(&config, tool, &client_headers(), &ClientHints::default()).unwrap();
    assert_eq!(names(&plan), ["small"]);
    let named = br#"{"model":"medium","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"web_search"}]}"#;
    let plan = plan_with(&config, named, &client_headers(), &ClientHints::default()).unwrap();
    assert_eq!(
        names(&plan),
        ["small"],
        "the named model's provider cannot: its fallback serves"
    );
    config.models[medium].fallbacks.clear();
    let refused = plan_with(&config, named, &client_headers(), &ClientHints::default()).unwrap_err();
    assert_eq!(refused.status(), 400);
    assert!(refused.to_string().contains("web_search"), "{refused}");
}

fn plan_ingress(ingress: Ingress, body: serde_json::Value) -> Result<TranslatedPlan, GatewayError> {
    plan_ingress_with(&crate::testing::anthropic_kind_config(), ingress, body)
}

fn plan_ingress_with(
    config: &Config,
    ingress: Ingress,
    body: serde_json::Value,
) -> Result<TranslatedPlan, GatewayError> {
    let body = body.to_string().into_bytes();
    let situation = Situation::open(&ALL_HEALTHY, 0);
    plan_translated(
        config,
        ingress,
        &body,
        &client_headers(),
        &ClientHints::default(),
        &situation,
    )
}

#[test]
fn messages_and_responses_requests_are_planned_as_the_chat_they_translate_to() {
    let messages = serde_json::json!({"model": "auto", "max_tokens": 100, "stream": true,
        "system": "Be brief.", "messages": [{"role": "user", "content": "hi, thanks!"}]});
    let translated = plan_ingress(Ingress::Messages, messages).unwrap();
    assert_eq!(chain_models(&translated.plan)[0], "small");
    assert_eq!(translated.plan.requested_model, "auto");
    assert!(translated.plan.attempts.stream);
    // The answer's usage is needed for the format's closing events.
    assert!(translated.plan.attempts.client_wants_usage);
    let chat: serde_json::Value = serde_json::from_slice(&translated.chat_body).unwrap();
    assert_eq!(chat["messages"][0]["role"], "system");
    assert_eq!(chat["max_completion_tokens"], 100);

    // The chain (small, then medium at Anthropic) has a native link.
    assert_eq!(translated.plan.attempts.native, NativeApi::Messages);
    let config = crate::testing::anthropic_kind_config();
    let native: Vec<bool> = translated
        .plan
        .attempts
        .chain
        .iter()
        .map(|deployment| attempts::is_native(&config, &translated.plan.attempts, *deployment))
        .collect();
    assert!(native.contains(&true) && native.contains(&false), "{native:?}");

    // OpenAI itself speaks Responses: its links send the client's body.
    let responses = serde_json::json!({"model": "large", "input": "hi", "max_output_tokens": 50});
    let translated = plan_ingress(Ingress::Responses, responses.clone()).unwrap();
    assert_eq!(chain_models(&translated.plan)[0], "large");
    assert!(!translated.plan.attempts.stream);
    assert_eq!(translated.plan.attempts.native, NativeApi::Responses);
    // An OpenAI-compatible vendor gets the chat translation.
    let mut vendor = crate::testing::anthropic_kind_config();
    for provider in &mut vendor.providers {
        provider.spec.quirks = crate::providers::Quirks::STANDARD;
    }
    let translated = plan_ingress_with(&vendor, Ingress::Responses, responses).unwrap();
    assert_eq!(translated.plan.attempts.native, NativeApi::None);
}

#[test]
fn a_responses_request_only_openai_can_take_goes_only_to_openai() {
    let stateful = serde_json::json!({"model": "auto", "input": "hi, thanks!", "previous_response_id": "resp_1"});
    let translated = plan_ingress(Ingress::Responses, stateful.clone()).unwrap();
    assert_eq!(translated.plan.attempts.native, NativeApi::Responses);
    let config = crate::testing::anthropic_kind_config();
    assert!(!translated.plan.attempts.chain.is_empty());
    for deployment in &translated.plan.attempts.chain {
        assert!(attempts::is_native(&config, &translated.plan.attempts, *deployment));
    }
    // Planned from its texts: the simple prompt scores into the cheap tier.
    assert_eq!(chain_models(&translated.plan)[0], "small");
    let web_search = serde_json::json!({"model": "large", "input": "news?", "tools": [{"type": "web_search"}]});
    assert!(plan_ingress(Ingress::Responses, web_search).is_ok());

    // No OpenAI link to take it: the 400 names the field.
    let mut anthropic_only = crate::testing::anthropic_kind_config();
    let medium = anthropic_only.model_named("medium").unwrap();
    anthropic_only.models[medium].fallbacks.clear();
    let named = serde_json::json!({"model": "medium", "input": "hi", "previous_response_id": "resp_1"});
    let refused = plan_ingress_with(&anthropic_only, Ingress::Responses, named).unwrap_err();
    assert_eq!(refused.status(), 400);
    assert!(refused.to_string().contains("previous_response_id"), "{refused}");
}

#[test]
fn ingress_requests_chat_cannot_express_get_no_plan() {
    let missing_max_tokens = serde_json::json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}]});
    let error = plan_ingress(Ingress::Messages, missing_max_tokens).unwrap_err();
    assert_eq!(error.status(), 400);
    let unknown =
        serde_json::json!({"model": "nope", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(plan_ingress(Ingress::Messages, unknown).unwrap_err().status(), 404);
    let count = serde_json::json!({"model": "auto", "messages": []});
    assert!(plan_ingress(Ingress::CountTokens, count).is_err());
}

// ---- Red-team findings (Responses native pass-through, affinity) ----

/// The providers block of `docs/providers.md`, as an operator copies it:
/// Groq and a local vLLM are OpenAI-compatible vendors configured without
/// `vendor` (before the Responses pass-through, `vendor` only mattered for
/// Mistral).
fn docs_providers_config() -> Config {
    let text = r#"{
      "providers": {
        "groq":  {"cluster": "groq", "base_path": "/openai/v1", "host": "api.groq.com", "api_key": "gsk-test"},
        "local": {"cluster": "vllm", "base_path": "/v1"}
      },
      "models": {
        "llama": {"provider": "groq", "id": "llama-3.3-70b-versatile"},
        "qwen":  {"provider": "local", "id": "qwen2.5-coder"}
      },
      "tiers": [{"name": "only", "models": ["llama", "qwen"]}]
    }"#;
    Config::parse(text.as_bytes(), &crate::testing::env).expect("the documented providers are valid")
}

#[test]
fn a_vendorless_openai_compatible_provider_is_not_taken_for_openai_itself() {
    // A request only OpenAI can take (stored state at OpenAI) must not go
    // to Groq or a local vLLM: with no OpenAI link it is the client's 400.
    let config = docs_providers_config();
    let stateful = serde_json::json!({"model": "auto", "input": "continue", "previous_response_id": "resp_abc"});
    let planned = plan_ingress_with(&config, Ingress::Responses, stateful);
    let routed_to: Vec<String> = planned
        .as_ref()
        .map(|translated| {
            translated
                .plan
                .attempts
                .chain
                .iter()
                .map(|deployment| config.deployments[*deployment].name.clone())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        planned.is_err(),
        "an OpenAI-only Responses request (previous_response_id) was planned natively to non-OpenAI vendors: {routed_to:?}"
    );
    // And a plain Responses request is translated to chat for them, not
    // sent as a Responses body to `/openai/v1/responses` on Groq.
    let plain = serde_json::json!({"model": "auto", "input": "hi"});
    let translated = plan_ingress_with(&config, Ingress::Responses, plain).unwrap();
    assert_eq!(translated.plan.attempts.native, NativeApi::None);
}

/// A plan whose one link is OpenAI's `small`, native for a Responses client.
fn native_responses_plan(config: &Config) -> AttemptPlan {
    let body = serde_json::json!({"model": "small", "input": "hi"});
    let translated = plan_ingress_with(config, Ingress::Responses, body).unwrap();
    assert_eq!(translated.plan.attempts.native, NativeApi::Responses);
    translated.plan.attempts
}

#[test]
fn a_native_responses_error_quoting_the_provider_key_is_scrubbed_as_on_chat() {
    let config = crate::testing::anthropic_kind_config();
    let plan = native_responses_plan(&config);
    let deployment = plan.chain[0];
    assert!(attempts::is_native(&config, &plan, deployment));
    // A 400 whose message quotes the gateway's key (some backends echo the
    // request's credentials in validation errors).
    let provider_body = br#"{"error":{"message":"Invalid request for key sk-test-openai: unsupported parameter","type":"invalid_request_error","param":null,"code":null}}"#;
    let finished = response::finish_buffered(&config, &plan, 1, deployment, b"{}", 400, &[], provider_body, 0);
    // On the chat path the message is quoted with our secret redacted.
    let chat_view = String::from_utf8_lossy(&finished.body).to_string();
    assert!(!chat_view.contains("sk-test-openai"), "{chat_view}");
    // What a Responses client gets on the native path:
    let client = finished.native_body(NativeApi::Responses, 400, provider_body);
    let client = String::from_utf8_lossy(&client);
    assert!(
        !client.contains("sk-test-openai"),
        "the provider key reaches the client unscrubbed on the native path: {client}"
    );
}

#[test]
fn a_client_caused_404_on_a_native_responses_attempt_is_not_the_deployments_failure() {
    // Any tenant can name a stored object that does not exist
    // (previous_response_id, conversation, prompt, file_id): OpenAI answers
    // an `invalid_request_error` naming the param, possibly as a 404. Counted
    // as a Server failure, a handful of such requests open the circuit of
    // the shared deployment for every tenant (and fail over to the next key,
    // marking it too).
    let config = crate::testing::anthropic_kind_config();
    let plan = native_responses_plan(&config);
    let deployment = plan.chain[0];
    let provider_body = br#"{"error":{"message":"Previous response with id 'resp_nope' not found.","type":"invalid_request_error","param":"previous_response_id","code":"previous_response_not_found"}}"#;
    let finished = response::finish_buffered(&config, &plan, 1, deployment, b"{}", 404, &[], provider_body, 0);
    let end = response::AttemptEnd {
        status: Some(404),
        failure: finished.failure,
        complete: true,
        elapsed_ms: 20,
        ..response::AttemptEnd::default()
    };
    let verdict = response::verdict(&end, plan.per_try_timeout_ms);
    // Replay what the upstream filter records for ten such requests.
    let settings = &config.resilience.health;
    let mut health = DeploymentHealth::default();
    let failure = match verdict {
        response::Verdict::Failed(kind) => Some(kind),
        _ => None,
    };
    for step in 0..10u64 {
        let now = 1_000 + step;
        let lease = crate::health::AttemptLease {
            in_flight: health.begin_attempt(now, settings),
            trial: None,
        };
        let outcome = crate::health::AttemptOutcome {
            failure,
            retry_after_ms: None,
            latency_ms: 20,
            first_token_ms: None,
        };
        health.finish_attempt(now, lease, Some(&outcome), settings);
    }
    assert!(
        health.availability(1_100, settings).is_available(),
        "ten requests naming an unknown previous_response_id opened the shared deployment's circuit \
         (verdict {verdict:?}; the client was told {} `{}`)",
        finished.status,
        String::from_utf8_lossy(&finished.body)
    );
}

#[test]
fn a_stateful_responses_request_reserves_no_more_than_its_visible_text() {
    // `previous_response_id` (likewise `conversation`, a stored `prompt`, a
    // file by id, `file_search`) makes OpenAI read input the gateway never
    // sees: the stored conversation can fill the model's context window.
    // The reservation (admission::estimate, "an upper bound of what it can
    // consume … for budgets in money must hold") is made from the visible
    // text only, so N concurrent stateful requests are each admitted on a
    // few tokens and each billed up to a whole window afterwards; a stream
    // the client cuts before `response.completed` is even settled at that
    // tiny estimate (attempt_consumption falls back to `prompt_tokens`).
    let config = crate::testing::anthropic_kind_config();
    let stateful = serde_json::json!({"model": "auto", "input": "go on", "previous_response_id": "resp_long_history"});
    let translated = plan_ingress_with(&config, Ingress::Responses, stateful).unwrap();
    let decision = &translated.plan.decision;
    let smallest_window = decision
        .chain
        .iter()
        .map(|deployment| config.models[config.deployments[*deployment].model].context_window)
        .min()
        .unwrap();
    assert!(
        decision.prompt_tokens >= smallest_window,
        "a request continuing an unseen stored conversation is reserved and, when its usage is not \
         reported, billed {} prompt tokens (attempt plan: {}); the stored context may be up to {} tokens",
        decision.prompt_tokens,
        translated.plan.attempts.prompt_tokens,
        smallest_window
    );
}

#[test]
fn a_built_in_tool_naming_its_own_model_escapes_the_tenants_allowed_models() {
    // The interns may use only `small` (gpt-4o-mini) and at most 256 output
    // tokens. Native pass-through sends built-in tools as they came; the
    // image_generation tool names the model OpenAI runs for it, billed
    // outside the main model's usage (so outside the tenant's quota too).
    let config = crate::testing::governed_config();
    let interns = policy_situation(&config, "interns", false);
    let body = serde_json::json!({"model": "small", "input": "draw a cat",
        "tools": [{"type": "image_generation", "model": "gpt-image-1", "quality": "high", "size": "1536x1024"}]})
    .to_string()
    .into_bytes();
    let planned = plan_translated(
        &config,
        Ingress::Responses,
        &body,
        &client_headers(),
        &ClientHints::default(),
        &interns,
    );
    let Ok(translated) = planned else {
        return; // refused: the tenant's policy held
    };
    let attempts = &translated.plan.attempts;
    let sent = attempts::prepare_native_attempt(
        &config,
        attempts,
        1,
        &translated.chat_body,
        &body,
        &HeaderMap::default(),
        0,
    )
    .unwrap();
    let sent = String::from_utf8_lossy(&sent.body);
    assert!(
        !sent.contains("gpt-image-1"),
        "a tenant allowed only `small` had OpenAI run gpt-image-1 for it: {sent}"
    );
}

#[test]
fn a_native_stream_echoing_long_instructions_is_read_to_its_usage() {
    // OpenAI's response.created / in_progress / completed events carry the
    // whole response object, which echoes the request's `instructions` (and
    // tools). A client sending 1.2 MB of instructions (the body limit is 4 MiB)
    // makes every such event larger than the SSE framer's 1 MiB cap: the
    // reader breaks at the first event, never sees content or usage, and
    // judges a complete 200 stream a provider failure.
    let config = crate::testing::anthropic_kind_config();
    let mut plan = native_responses_plan(&config);
    plan.stream = true;
    let deployment = plan.chain[0];
    let call = attempts::call_for(&config, &plan, deployment, 0);
    let mut reader = response::stream_reader(&config, &plan, deployment, &call);
    let instructions = "You are a careful assistant. ".repeat(43_000); // ~1.2 MB
    let opening = serde_json::json!({"id": "resp_1", "object": "response", "status": "in_progress",
        "instructions": instructions, "output": [], "usage": null});
    let mut done = opening.clone();
    done["status"] = "completed".into();
    done["usage"] = serde_json::json!({"input_tokens": 300_000, "output_tokens": 2, "total_tokens": 300_002});
    let events = [
        (
            "response.created",
            serde_json::json!({"type": "response.created", "response": opening}),
        ),
        (
            "response.output_text.delta",
            serde_json::json!({"type": "response.output_text.delta", "delta": "Hi"}),
        ),
        (
            "response.completed",
            serde_json::json!({"type": "response.completed", "response": done}),
        ),
    ];
    let stream: String = events
        .iter()
        .map(|(name, data)| format!("event: {name}\ndata: {data}\n\n"))
        .collect();
    let mut out = Vec::new();
    for chunk in stream.as_bytes().chunks(16 * 1024) {
        let _ = reader.push(chunk, &mut out);
    }
    reader.finish(&mut out);
    let end = response::AttemptEnd {
        status: Some(200),
        failure: reader.failure(),
        complete: true,
        elapsed_ms: 900,
        ..response::AttemptEnd::default()
    };
    let unreported = response::Unreported {
        prompt_tokens: plan.prompt_tokens,
        relayed_output_tokens: reader.relayed_output_tokens(),
        unseen_output_tokens: 0,
    };
    let billed = response::attempt_consumption(&end, reader.usage(), &unreported, plan.per_try_timeout_ms);
    assert!(
        reader.failure().is_none() && reader.saw_content(),
        "a complete native stream was judged {:?} (content seen: {}): its deployment is blamed, \
         the held 200 becomes a 503 retried on the next link, and the attempt is billed {:?} \
         (its prompt estimate, no output) although OpenAI generated and reported the answer",
        reader.failure(),
        reader.saw_content(),
        billed.map(|(usage, _)| (usage.input, usage.output))
    );
}

fn with_guardrails(json: &str) -> Config {
    let mut config = crate::testing::anthropic_kind_config();
    let raw = serde_json::from_str(json).unwrap();
    config.guardrails =
        crate::config::guardrails::resolve("guardrails", &raw, &std::collections::HashMap::default()).unwrap();
    config
}

#[test]
fn data_only_a_native_body_carries_is_still_screened() {
    let config = with_guardrails(r#"{"pii":{"card":"block","email":"mask"}}"#);
    // A thinking block is dropped from the chat translation, but an
    // Anthropic link would send the client's body with it.
    let thinking = serde_json::json!({"model": "auto", "max_tokens": 100, "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "card 4111 1111 1111 1111", "signature": "s"},
            {"type": "text", "text": "ok"}]},
        {"role": "user", "content": "thanks"}]});
    let refused = plan_ingress_with(&config, Ingress::Messages, thinking).unwrap_err();
    assert_eq!(refused.code(), "sensitive_data", "{refused}");
    // A Responses request only OpenAI can take goes as it came: its
    // function-call arguments are read too.
    let stored = serde_json::json!({"model": "large", "previous_response_id": "resp_1", "input": [
        {"type": "function_call", "call_id": "c1", "name": "pay", "arguments": "{\"card\":\"4111 1111 1111 1111\"}"},
        {"type": "function_call_output", "call_id": "c1", "output": "done"}]});
    let refused = plan_ingress_with(&config, Ingress::Responses, stored).unwrap_err();
    assert_eq!(refused.code(), "sensitive_data", "{refused}");
    // A masked value the translation drops keeps the request off the
    // native path (the translation, without it, goes instead).
    let mailed = serde_json::json!({"model": "auto", "max_tokens": 100, "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "mail a@x.io", "signature": "s"},
            {"type": "text", "text": "ok"}]},
        {"role": "user", "content": "thanks"}]});
    let translated = plan_ingress_with(&config, Ingress::Messages, mailed).unwrap();
    assert_eq!(translated.plan.attempts.native, NativeApi::None);
    assert!(!String::from_utf8(translated.chat_body).unwrap().contains("a@x.io"));
}

#[test]
fn a_cascading_tier_escalates_to_the_first_link_outside_it() {
    let text = crate::testing::SAMPLE_CONFIG.replace(
        r#""models": ["small", "medium"]}"#,
        r#""models": ["small", "medium"], "cascade": {}}"#,
    );
    let config = Config::parse(text.as_bytes(), &crate::testing::env).unwrap();
    let planned = plan_with(&config, &chat("auto", "hi"), &client_headers(), &ClientHints::default()).unwrap();
    let escalation = planned.attempts.escalation.expect("the simple tier cascades");
    assert_eq!(escalation.tier, 0);
    let escalation_model = config.deployments[planned.attempts.chain[escalation.to_link]].model;
    assert_eq!(config.models[escalation_model].name, "large");
    assert!(planned.attempts.chain[..escalation.to_link]
        .iter()
        .all(|link| config.tiers[0].models.contains(&config.deployments[*link].model)));
    let decoded = AttemptPlan::decode(&planned.attempts.encode()).unwrap();
    assert_eq!(decoded.escalation, Some(escalation));

    let streamed =
        serde_json::json!({"model": "auto", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let streamed = plan_with(
        &config,
        streamed.to_string().as_bytes(),
        &client_headers(),
        &ClientHints::default(),
    )
    .unwrap();
    assert_eq!(streamed.attempts.escalation, None, "streams are not assessed");
    let without = plan_with(
        &sample_config(),
        &chat("auto", "hi"),
        &client_headers(),
        &ClientHints::default(),
    )
    .unwrap();
    assert_eq!(without.attempts.escalation, None);
    let capped = Config::parse(
        text.replace(r#""tiers""#, r#""resilience": {"max_attempts": 2}, "tiers""#)
            .as_bytes(),
        &crate::testing::env,
    )
    .unwrap();
    let capped = plan_with(&capped, &chat("auto", "hi"), &client_headers(), &ClientHints::default()).unwrap();
    assert_eq!(capped.attempts.escalation, None, "the chain never leaves the tier");
}
