//! The embeddings call of a semantic lookup: the last user turn embedded
//! by the configured model, through the same provider adapters as client
//! traffic (as [`crate::probe`] builds its chat probe), and the vector read
//! back from the provider's answer.

use serde_json::Value;

use crate::config::{Config, DeploymentId, ModelId};
use crate::error::GatewayError;
use crate::providers::{self, Call, Operation};

/// The most text sent to be embedded: about 2,000 tokens, within every
/// common embedding model's input limit. A longer turn is embedded by its
/// beginning; its context key and exact key still cover all of it.
pub const MAX_INPUT_BYTES: usize = 8 * 1024;

/// An OpenAI embeddings request for `text` (cut at [`MAX_INPUT_BYTES`], on
/// a character boundary), floats asked for.
pub fn embedding_request_body(model_id: &str, text: &str) -> Vec<u8> {
    let mut end = text.len().min(MAX_INPUT_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    serde_json::json!({"model": model_id, "input": &text[..end], "encoding_format": "float"})
        .to_string()
        .into_bytes()
}

/// One embeddings call, ready to dispatch to its cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingCall {
    pub cluster: String,
    /// Pseudo-headers included (`:method`, `:path`, `:authority`), and the
    /// provider's credential.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The OpenAI-shaped request the body was built from: reading the
    /// answer needs it again ([`read_answer`]).
    pub openai_body: Vec<u8>,
    pub deployment: DeploymentId,
}

/// The call embedding `text` with `model` (its first deployment: the
/// provider's first key).
pub fn embedding_call(
    config: &Config,
    model: ModelId,
    text: &str,
    now_unix_seconds: u64,
) -> Result<EmbeddingCall, GatewayError> {
    let spec = &config.models[model];
    let deployment = *spec.deployments.first().ok_or_else(|| GatewayError::Internal {
        message: format!("The embedding model `{}` has no deployment.", spec.name),
    })?;
    let openai_body = embedding_request_body(&spec.name, text);
    let upstream = providers::build_request(&call(config, deployment, now_unix_seconds), &openai_body)?;
    let mut headers = vec![
        (":method".to_string(), "POST".to_string()),
        (":path".to_string(), upstream.path),
        ("user-agent".to_string(), "signalbox-semantic-cache".to_string()),
    ];
    if !upstream.headers.iter().any(|(name, _)| name == ":authority") {
        headers.push((":authority".to_string(), spec.cluster.clone()));
    }
    headers.extend(upstream.headers);
    Ok(EmbeddingCall {
        cluster: spec.cluster.clone(),
        headers,
        body: upstream.body,
        openai_body,
        deployment,
    })
}

fn call(config: &Config, deployment: DeploymentId, now_unix_seconds: u64) -> Call<'_> {
    let model = &config.models[config.deployments[deployment].model];
    Call {
        spec: &config.providers[model.provider].spec,
        model_id: &model.upstream_id,
        credential: config.key_of(deployment).credential.as_ref(),
        operation: Operation::Embeddings,
        stream: false,
        client_wants_usage: false,
        now_unix_seconds,
    }
}

/// The vector in the provider's answer to `sent` (status 0: no answer).
/// `None` for a failure or an answer without one usable vector.
pub fn read_answer(
    config: &Config,
    sent: &EmbeddingCall,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
) -> Option<Vec<f32>> {
    if !(200..300).contains(&status) {
        return None;
    }
    let call = call(config, sent.deployment, 0);
    let translated = providers::translate_embeddings(&call, &sent.openai_body, status, headers, body);
    if translated.failure.is_some() {
        return None;
    }
    read_embedding(&translated.body)
}

/// The first embedding of an answer in OpenAI's shape, as floats.
pub fn read_embedding(openai_body: &[u8]) -> Option<Vec<f32>> {
    let answer: Value = serde_json::from_slice(openai_body).ok()?;
    let values = answer.get("data")?.get(0)?.get("embedding")?.as_array()?;
    if values.is_empty() || values.len() > super::vector::MAX_DIMENSIONS {
        return None;
    }
    values.iter().map(|value| value.as_f64().map(|x| x as f32)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const CONFIG: &str = r#"{
      "providers": {
        "openai": {"kind": "openai", "cluster": "openai", "api_key": "sk-openai"},
        "gemini": {"kind": "gemini", "cluster": "gemini", "api_key": "g-key"}
      },
      "models": {
        "small": {"provider": "openai", "id": "gpt-4o-mini"},
        "embed": {"provider": "openai", "id": "text-embedding-3-small"},
        "gembed": {"provider": "gemini", "id": "text-embedding-004"}
      },
      "tiers": [{"name": "only", "models": ["small"]}]
    }"#;

    fn config() -> Config {
        Config::parse(CONFIG.as_bytes(), &|_| None).unwrap()
    }

    fn header<'a>(call: &'a EmbeddingCall, name: &str) -> Option<&'a str> {
        call.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    #[test]
    fn the_call_is_an_embeddings_request_in_the_providers_format() {
        let config = config();
        let call = embedding_call(&config, config.model_named("embed").unwrap(), "hello", 0).unwrap();
        assert_eq!(call.cluster, "openai");
        assert_eq!(header(&call, ":method"), Some("POST"));
        assert_eq!(header(&call, ":path"), Some("/v1/embeddings"));
        assert_eq!(header(&call, ":authority"), Some("openai"));
        assert_eq!(header(&call, "authorization"), Some("Bearer sk-openai"));
        let body: Value = serde_json::from_slice(&call.body).unwrap();
        assert_eq!(body["model"], "text-embedding-3-small");
        assert_eq!(body["input"], "hello");
        let gemini = embedding_call(&config, config.model_named("gembed").unwrap(), "hello", 0).unwrap();
        assert!(
            header(&gemini, ":path").unwrap().contains("text-embedding-004"),
            "{:?}",
            gemini.headers
        );
        assert_eq!(header(&gemini, "x-goog-api-key"), Some("g-key"));
    }

    #[test]
    fn answers_become_vectors_whatever_the_provider() {
        let config = config();
        let openai = embedding_call(&config, config.model_named("embed").unwrap(), "hi", 0).unwrap();
        let answer = br#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.5,-0.25]}],"model":"m","usage":{"prompt_tokens":1,"total_tokens":1}}"#;
        assert_eq!(read_answer(&config, &openai, 200, &[], answer), Some(vec![0.5, -0.25]));
        assert_eq!(read_answer(&config, &openai, 429, &[], answer), None);
        assert_eq!(read_answer(&config, &openai, 0, &[], b""), None);
        let gemini = embedding_call(&config, config.model_named("gembed").unwrap(), "hi", 0).unwrap();
        let native = br#"{"embeddings":[{"values":[1,2,3]}]}"#;
        assert_eq!(
            read_answer(&config, &gemini, 200, &[], native),
            Some(vec![1.0, 2.0, 3.0])
        );
    }

    #[test]
    fn long_text_is_cut_on_a_character_boundary() {
        let text = "é".repeat(MAX_INPUT_BYTES);
        let body: Value = serde_json::from_slice(&embedding_request_body("m", &text)).unwrap();
        let sent = body["input"].as_str().unwrap();
        assert!(sent.len() <= MAX_INPUT_BYTES && sent.len() >= MAX_INPUT_BYTES - 1);
        assert_eq!(body["encoding_format"], "float");
    }

    #[test]
    fn unusable_answers_have_no_vector() {
        for body in [
            &b"{}"[..],
            br#"{"data":[]}"#,
            br#"{"data":[{"embedding":[]}]}"#,
            br#"{"data":[{"embedding":"AAAA"}]}"#,
            br#"{"data":[{"embedding":[1,"x"]}]}"#,
            b"garbage",
        ] {
            assert_eq!(read_embedding(body), None, "{}", String::from_utf8_lossy(body));
        }
    }
}
