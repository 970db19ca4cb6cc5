//! OpenAI and the OpenAI-compatible family: same body, the provider's own
//! model id spliced into `model`, a bearer key, the provider's base path.

use crate::config::{Model, Provider, Secret};
use crate::error::GatewayError;
use crate::json_edit;

use super::UpstreamRequest;

pub fn prepare_chat(
    provider: &Provider,
    model: &Model,
    key: Option<&Secret>,
    body: &[u8],
) -> Result<UpstreamRequest, GatewayError> {
    let span = json_edit::member_value_span(body, "model")
        .ok_or_else(|| GatewayError::invalid_param("model", "`model` must be a top-level string field."))?;
    Ok(UpstreamRequest {
        path: format!("{}/chat/completions", provider.base_path),
        authority: provider.host.clone(),
        credential: key.map(|key| ("authorization", format!("Bearer {}", key.expose()))),
        body: json_edit::splice(body, span, &model.upstream_id_json),
    })
}

#[cfg(test)]
mod tests {
    use super::super::prepare_chat;
    use crate::testing::sample_config;

    #[test]
    fn the_model_id_path_and_key_are_the_providers() {
        let config = sample_config();
        let model = config.models[config.model_named("small").unwrap()].deployments[0];
        let body = br#"{"model":"auto","messages":[{"role":"user","content":"hi"}],"temperature":0.3}"#;
        let upstream = prepare_chat(&config, model, body).unwrap();
        assert_eq!(upstream.path, "/v1/chat/completions");
        assert_eq!(
            upstream.credential,
            Some(("authorization", "Bearer sk-test-openai".to_string()))
        );
        assert_eq!(upstream.authority, None);
        assert_eq!(
            upstream.body,
            br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"temperature":0.3}"#.to_vec()
        );
    }
}
