use super::*;
use crate::testing::sample_config;

use crate::headers::HeaderMap;

/// What a typical client sends.
fn client_headers() -> HeaderMap {
    [
        (":path", "/v1/chat/completions"),
        ("authorization", "Bearer client-key"),
        ("content-length", "1"),
    ]
    .into_iter()
    .collect()
}

fn chat(model: &str, text: &str) -> Vec<u8> {
    serde_json::json!({"model": model, "messages": [{"role": "user", "content": text}], "temperature": 0.1})
        .to_string()
        .into_bytes()
}

fn plan(body: &[u8], hints: &ClientHints) -> Result<RequestPlan, GatewayError> {
    plan_chat(&sample_config(), body, &client_headers(), hints)
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

#[test]
fn a_simple_prompt_goes_to_the_cheap_tier() {
    let plan = plan(&chat("auto", "hi, thanks!"), &ClientHints::default()).unwrap();
    assert_eq!(response_header(&plan, HEADER_MODEL), Some("small"));
    assert_eq!(response_header(&plan, HEADER_PROVIDER), Some("openai"));
    assert_eq!(response_header(&plan, HEADER_TIER), Some("simple"));
    assert_eq!(plan.decision.source, DecisionSource::Score);
    assert_eq!(response_header(&plan, HEADER_SCORE), None, "no explain unless asked");
}

#[test]
fn a_hard_prompt_goes_to_the_strong_tier_with_an_explanation() {
    let text = "Prove that there are infinitely many primes, step by step, then write a Python function that lists the first n primes.";
    let plan = plan(
        &chat("auto", text),
        &ClientHints {
            explain: true,
            ..ClientHints::default()
        },
    )
    .unwrap();
    assert_eq!(response_header(&plan, HEADER_TIER), Some("complex"));
    assert_eq!(response_header(&plan, HEADER_MODEL), Some("large"));
    let score: f64 = response_header(&plan, HEADER_SCORE).unwrap().parse().unwrap();
    assert!(score >= 0.6);
    assert!(response_header(&plan, HEADER_SIGNALS).unwrap().contains("math="));
    assert_eq!(response_header(&plan, HEADER_REASON), Some("score"));
}

#[test]
fn the_request_is_rewritten_for_the_chosen_provider() {
    let plan = plan(&chat("auto", "hello"), &ClientHints::default()).unwrap();
    assert_eq!(set_header(&plan, "x-signalbox-cluster"), Some("openai"));
    assert_eq!(set_header(&plan, "authorization"), Some("Bearer sk-test-openai"));
    assert_eq!(set_header(&plan, ":path"), None, "an unchanged path costs no host call");
    assert_eq!(
        set_header(&plan, "content-length"),
        Some(plan.body.len().to_string().as_str())
    );
    // `authorization` is overwritten; credential headers the client did not send need no edit.
    assert!(!plan
        .request_headers
        .iter()
        .any(|edit| matches!(edit, HeaderEdit::Remove(_))));
    let sent: HeaderMap = [("x-api-key", "k"), ("api-key", "k"), ("transfer-encoding", "chunked")]
        .into_iter()
        .collect();
    let from_other_client =
        plan_chat(&sample_config(), &chat("auto", "hello"), &sent, &ClientHints::default()).unwrap();
    for name in ["x-api-key", "api-key", "transfer-encoding"] {
        let removal = HeaderEdit::Remove(Cow::Borrowed(name));
        assert!(
            from_other_client.request_headers.contains(&removal),
            "{name} is removed"
        );
    }
    assert_eq!(set_header(&from_other_client, ":path"), Some("/v1/chat/completions"));
    let body: serde_json::Value = serde_json::from_slice(&plan.body).unwrap();
    assert_eq!(body["model"], "gpt-4o-mini");
    assert_eq!(body["temperature"], 0.1);
}

#[test]
fn a_named_model_routes_straight_to_its_provider() {
    let plan = plan(&chat("medium", "hi"), &ClientHints::default()).unwrap();
    assert_eq!(plan.decision.source, DecisionSource::Explicit);
    assert_eq!(response_header(&plan, HEADER_PROVIDER), Some("anthropic"));
    assert_eq!(response_header(&plan, HEADER_TIER), None);
    assert_eq!(set_header(&plan, "authorization"), Some("Bearer sk-ant-from-env"));
    assert!(
        plan.decision.classification.is_none(),
        "no scoring work for explicit models"
    );
}

#[test]
fn an_unknown_model_is_a_404() {
    let err = plan(&chat("gpt-17", "hi"), &ClientHints::default()).unwrap_err();
    assert_eq!(err, GatewayError::UnknownModel { model: "gpt-17".into() });
    assert_eq!(err.status(), 404);
}

#[test]
fn a_prompt_too_long_for_the_cheap_model_escalates() {
    // `small` has a 1000-token window; 6000 characters is ~1500 tokens.
    let plan = plan(
        &chat("auto", &"hi ".repeat(2000)),
        &ClientHints {
            explain: true,
            ..ClientHints::default()
        },
    )
    .unwrap();
    assert_eq!(response_header(&plan, HEADER_MODEL), Some("medium"));
    assert!(plan.decision.estimated_tokens > 1000);
}

#[test]
fn escalation_to_another_tier_is_reported() {
    let body =
        serde_json::json!({"model": "auto", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 150_000})
            .to_string();
    let explain = ClientHints {
        explain: true,
        ..ClientHints::default()
    };
    let simple = plan(body.as_bytes(), &explain).unwrap();
    assert_eq!(response_header(&simple, HEADER_MODEL), Some("medium"));
    assert_eq!(response_header(&simple, HEADER_TIER), Some("simple"));
    let body = serde_json::json!({"model": "auto", "messages": [{"role": "user", "content": "Prove it step by step with an integral"}], "max_tokens": 150_000}).to_string();
    let complex = plan(body.as_bytes(), &explain).unwrap();
    assert_eq!(response_header(&complex, HEADER_TIER), Some("standard"));
    assert_eq!(
        response_header(&complex, HEADER_REASON),
        Some("score;escalated-from:complex")
    );
}

#[test]
fn a_request_no_window_can_hold_is_rejected() {
    let body =
        serde_json::json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 900_000})
            .to_string();
    let err = plan(body.as_bytes(), &ClientHints::default()).unwrap_err();
    assert_eq!(err.code(), "context_length_exceeded");
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
    let plan = plan(
        &chat("auto", "hi, check my contract"),
        &ClientHints {
            explain: true,
            ..ClientHints::default()
        },
    )
    .unwrap();
    assert_eq!(response_header(&plan, HEADER_TIER), Some("complex"));
    assert_eq!(response_header(&plan, HEADER_REASON), Some("rule:legal"));
}

#[test]
fn header_rules_read_request_headers() {
    let research: HeaderMap = [("x-team", "research")].into_iter().collect();
    let plan = plan_chat(
        &sample_config(),
        &chat("auto", "hello"),
        &research,
        &ClientHints::default(),
    )
    .unwrap();
    assert_eq!(response_header(&plan, HEADER_MODEL), Some("medium"));
    assert_eq!(plan.decision.source, DecisionSource::Rule(1));
}

#[test]
fn trusted_client_hints_force_a_tier_or_model() {
    let tier = ClientHints {
        tier: Some("complex".into()),
        ..ClientHints::default()
    };
    assert_eq!(
        response_header(&plan(&chat("auto", "hi"), &tier).unwrap(), HEADER_MODEL),
        Some("large")
    );
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
