//! Which API a request path names, what its headers must say before its
//! body is buffered, and the one answer the gateway gives itself
//! (`GET /v1/models`).

use crate::config::Config;
use crate::error::GatewayError;
use crate::headers::HeaderMap;
use crate::ingress::Ingress;

/// The API paths Signalbox answers or routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    ChatCompletions,
    Embeddings,
    Models,
    /// Anthropic's `POST /v1/messages`, translated to chat.
    Messages,
    /// `POST /v1/messages/count_tokens`, answered by the gateway.
    CountTokens,
    /// OpenAI's `POST /v1/responses`, translated to chat.
    Responses,
    /// Not Signalbox's: passed through to the Envoy route table untouched.
    Other,
}

impl Endpoint {
    /// The client format of a request that is translated to chat (and its
    /// answer back), or answered in that format's shape.
    pub fn ingress(self) -> Option<Ingress> {
        match self {
            Endpoint::Messages => Some(Ingress::Messages),
            Endpoint::CountTokens => Some(Ingress::CountTokens),
            Endpoint::Responses => Some(Ingress::Responses),
            Endpoint::ChatCompletions | Endpoint::Embeddings | Endpoint::Models | Endpoint::Other => None,
        }
    }

    /// A request planned and sent to a provider (metrics, access log).
    pub fn is_routed(self) -> bool {
        matches!(
            self,
            Endpoint::ChatCompletions | Endpoint::Embeddings | Endpoint::Messages | Endpoint::Responses
        )
    }

    /// The endpoint's name in reports and the access log.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Embeddings => "embeddings",
            Endpoint::Messages => "messages",
            Endpoint::CountTokens => "messages.count_tokens",
            Endpoint::Responses => "responses",
            Endpoint::ChatCompletions | Endpoint::Models | Endpoint::Other => "chat.completions",
        }
    }
}

pub fn endpoint(path: &str) -> Endpoint {
    let path = path.split_once('?').map_or(path, |(path, _query)| path);
    match path.trim_end_matches('/') {
        "/v1/chat/completions" | "/chat/completions" => Endpoint::ChatCompletions,
        "/v1/embeddings" | "/embeddings" => Endpoint::Embeddings,
        "/v1/models" | "/models" => Endpoint::Models,
        _ => match Ingress::for_path(path) {
            Some(Ingress::Messages) => Endpoint::Messages,
            Some(Ingress::CountTokens) => Endpoint::CountTokens,
            Some(Ingress::Responses) => Endpoint::Responses,
            Some(Ingress::Chat) | None => Endpoint::Other,
        },
    }
}

/// Checks what the headers say about a JSON request body, before it is
/// buffered: a compressed or non-JSON body would be forwarded blind (the
/// classifier cannot read it, and providers would fail on it).
pub fn check_body_headers(headers: &HeaderMap) -> Result<(), GatewayError> {
    let encoding = headers.get("content-encoding").map(str::trim).unwrap_or_default();
    if !encoding.is_empty() && !encoding.eq_ignore_ascii_case("identity") {
        return Err(GatewayError::invalid_param(
            "content-encoding",
            "Compressed request bodies are not accepted; send the JSON body uncompressed.",
        ));
    }
    let media_type = headers
        .get("content-type")
        .and_then(|value| value.split(';').next())
        .map(|value| value.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let json = media_type.is_empty()
        || media_type == "application/json"
        || (media_type.starts_with("application/") && media_type.ends_with("+json"));
    if !json {
        return Err(GatewayError::invalid_param(
            "content-type",
            "The request body must be JSON: send `Content-Type: application/json`.",
        ));
    }
    Ok(())
}

/// The `GET /v1/models` answer: auto aliases and every configured model.
pub fn models_listing(config: &Config) -> Vec<u8> {
    let auto = config.auto_models.iter().map(|alias| (alias.as_str(), "signalbox"));
    let models = config
        .models
        .iter()
        .map(|model| (model.name.as_str(), config.providers[model.provider].name.as_str()));
    let data: Vec<serde_json::Value> = auto
        .chain(models)
        .map(|(id, owner)| serde_json::json!({"id": id, "object": "model", "created": 0, "owned_by": owner}))
        .collect();
    serde_json::json!({"object": "list", "data": data})
        .to_string()
        .into_bytes()
}
