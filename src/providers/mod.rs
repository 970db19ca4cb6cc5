//! Provider adapters: how a request routed to a model is rewritten for the
//! provider that serves it (path, credentials, body). One file per provider
//! wire format; OpenAI-compatible vendors share [`openai`].

pub mod openai;

use crate::config::{Config, DeploymentId, ProviderKind};
use crate::error::GatewayError;

/// Headers through which clients send credentials. They are removed before a
/// request goes upstream: a client's key is never forwarded to a provider.
pub const CLIENT_CREDENTIAL_HEADERS: [&str; 4] = ["authorization", "x-api-key", "api-key", "proxy-authorization"];

/// The request as the chosen provider must receive it.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamRequest {
    pub path: String,
    /// `:authority` to set, when the provider config names a host.
    pub authority: Option<String>,
    /// Credential header for the provider (name, value).
    pub credential: Option<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// Rewrites a chat-completions `body` (already validated) for a deployment:
/// its model's provider, reached with its key.
pub fn prepare_chat(config: &Config, deployment: DeploymentId, body: &[u8]) -> Result<UpstreamRequest, GatewayError> {
    let model = config.deployments[deployment].model;
    let provider = config.provider_of(model);
    let key = config.key_of(deployment).secret.as_ref();
    match provider.kind {
        ProviderKind::Openai => openai::prepare_chat(provider, &config.models[model], key, body),
    }
}
