//! The credential property: for every ordered pair of provider kinds in a
//! failover chain and every request shape some adapter cannot express, each
//! planned attempt is prepared for its own provider — its credential, its
//! path, a body in its format — and nothing of another provider's reaches it.

use super::*;
use crate::route::attempts::prepare_attempt;
use crate::testing::ALL_HEALTHY;

/// Distinct, recognisable secrets per provider.
const SECRETS: [(&str, &str); 5] = [
    ("openai", "sk-secret-openai-0001"),
    ("azure", "secret-azure-0002"),
    ("anthropic", "sk-ant-secret-0003"),
    ("gemini", "secret-gemini-0004"),
    ("bedrock", "secret-bedrock-0005"),
];

fn config_with(first: &str, second: &str) -> Config {
    let config = serde_json::json!({
        "providers": {
            "openai": {"cluster": "c-openai", "api_key": SECRETS[0].1},
            "azure": {"kind": "azure", "cluster": "c-azure", "api_version": "2024-10-21", "api_key": SECRETS[1].1},
            "anthropic": {"kind": "anthropic", "cluster": "c-anthropic", "api_key": SECRETS[2].1},
            "gemini": {"kind": "gemini", "cluster": "c-gemini", "api_key": SECRETS[3].1},
            "bedrock": {"kind": "bedrock", "cluster": "c-bedrock", "region": "us-east-1",
                        "aws_access_key_id": "AKIDEXAMPLE", "aws_secret_access_key": SECRETS[4].1}
        },
        "models": {
            "first": {"provider": first, "id": format!("{first}-model"), "fallbacks": ["second"]},
            "second": {"provider": second, "id": format!("{second}-model")}
        },
        "tiers": [{"name": "all", "models": ["first", "second"]}],
        "resilience": {"max_attempts": 4}
    });
    Config::parse(config.to_string().as_bytes(), &|_| None).unwrap()
}

/// Chat request shapes that at least one adapter cannot express.
fn shapes() -> Vec<(&'static str, serde_json::Value)> {
    let with = |extra: serde_json::Value| {
        let mut body = serde_json::json!({"model": "first", "messages": [{"role": "user", "content": "hi"}]});
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        body
    };
    let part = |part: serde_json::Value| {
        with(serde_json::json!({"messages": [{"role": "user", "content": [{"type": "text", "text": "look"}, part]}]}))
    };
    vec![
        (
            "input_audio",
            part(serde_json::json!({"type": "input_audio", "input_audio": {"data": "UklG", "format": "wav"}})),
        ),
        (
            "file",
            part(serde_json::json!({"type": "file", "file": {"file_id": "file-1"}})),
        ),
        (
            "image link",
            part(serde_json::json!({"type": "image_url", "image_url": {"url": "https://example.com/a.png"}})),
        ),
        (
            "bmp image",
            part(serde_json::json!({"type": "image_url", "image_url": {"url": "data:image/bmp;base64,Qk0="}})),
        ),
        (
            "unencoded image",
            part(serde_json::json!({"type": "image_url", "image_url": {"url": "data:image/png,raw"}})),
        ),
        (
            "grammar",
            with(serde_json::json!({"response_format": {"type": "grammar", "grammar": "root ::= \"y\""}})),
        ),
        (
            "web search tool",
            with(serde_json::json!({"tools": [{"type": "web_search"}]})),
        ),
        (
            "orphan tool result",
            with(serde_json::json!({"messages": [
                {"role": "user", "content": "hi"},
                {"role": "tool", "tool_call_id": "call_nowhere", "content": "42"}
            ]})),
        ),
    ]
}

fn header<'h>(edits: &'h [HeaderEdit], name: &str) -> Option<&'h str> {
    edits.iter().rev().find_map(|edit| match edit {
        HeaderEdit::Set(key, value) if key == name => Some(value.as_str()),
        _ => None,
    })
}

/// Every link of `plan` prepares, for its own provider, with nothing of another's.
fn assert_each_link_is_its_providers(config: &Config, plan: &RequestPlan, body: &[u8], what: &str) {
    for attempt in 1..=plan.attempts.chain.len() {
        let prepared = prepare_attempt(config, &plan.attempts, attempt, body, 1_700_000_000)
            .unwrap_or_else(|err| panic!("{what}: attempt {attempt} was planned but cannot be prepared: {err}"));
        let model = &config.models[config.deployments[prepared.deployment].model];
        let provider = &config.providers[model.provider];
        let everything = format!(
            "{:?} {}",
            prepared.request_headers,
            String::from_utf8_lossy(&prepared.body)
        );
        for (name, secret) in SECRETS {
            if name != provider.name {
                assert!(
                    !everything.contains(secret),
                    "{what}: {name}'s secret reached {}",
                    provider.name
                );
            }
        }
        let path = header(&prepared.request_headers, ":path").unwrap_or_default();
        let own_path = match provider.name.as_str() {
            "openai" => path.starts_with("/v1/") && !path.contains("/messages"),
            "azure" => path.starts_with("/openai/deployments/"),
            "anthropic" => path == "/v1/messages",
            "gemini" => path.starts_with("/v1beta/models/"),
            _ => path.starts_with("/model/"),
        };
        assert!(own_path, "{what}: {} got path {path}", provider.name);
        let untranslated = prepared.body == body
            || String::from_utf8_lossy(&prepared.body).contains("\"messages\":[{\"role\":\"user\",\"content\":[");
        if matches!(provider.name.as_str(), "gemini" | "bedrock") {
            assert!(!untranslated, "{what}: {} got the OpenAI body", provider.name);
        }
    }
}

#[test]
fn no_provider_ever_receives_another_providers_credential_path_or_body() {
    let kinds = ["openai", "azure", "anthropic", "gemini", "bedrock"];
    let mut planned = 0;
    for first in kinds {
        for second in kinds {
            let config = config_with(first, second);
            for (shape, body) in shapes() {
                let body = body.to_string().into_bytes();
                let what = format!("{first} -> {second}, {shape}");
                let headers: HeaderMap = [(":authority", "gw")].into_iter().collect();
                match plan_chat(
                    &config,
                    &body,
                    &headers,
                    &ClientHints::default(),
                    &Situation::open(&ALL_HEALTHY, 0),
                ) {
                    Ok(plan) => {
                        planned += 1;
                        assert_each_link_is_its_providers(&config, &plan, &body, &what);
                    }
                    // Nobody in the chain can take it: a client error, nothing sent.
                    Err(error) => assert_eq!(error.status(), 400, "{what}: {error}"),
                }
            }
            let embeddings = br#"{"model":"first","input":"hello"}"#;
            let headers: HeaderMap = [(":authority", "gw")].into_iter().collect();
            if let Ok(plan) = plan_embeddings(&config, embeddings, &headers, &Situation::open(&ALL_HEALTHY, 0)) {
                assert_each_link_is_its_providers(
                    &config,
                    &plan,
                    embeddings,
                    &format!("{first} -> {second}, embeddings"),
                );
            }
        }
    }
    assert!(
        planned > 100,
        "most shapes have some provider that takes them ({planned} planned)"
    );
}
