//! The configuration document exactly as operators write it (JSON in the
//! Wasm plugin's `configuration`). Unknown fields are rejected so a typo is a
//! load error, not a silently ignored setting. [`super::resolve`] validates
//! and compiles it.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::classify::ClassifierSettings;

pub const DEFAULT_ROUTING_HEADER: &str = "x-signalbox-cluster";
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
pub const DEFAULT_CONTEXT_WINDOW: u64 = 128_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Request header the Envoy route reads with `cluster_header`.
    #[serde(default = "default_routing_header")]
    pub routing_header: String,
    /// `model` values that ask Signalbox to choose.
    #[serde(default = "default_auto_models")]
    pub auto_models: Vec<String>,
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    #[serde(default)]
    pub explain: ExplainMode,
    /// Let clients steer with `x-signalbox-tier` / `x-signalbox-model`.
    #[serde(default)]
    pub trust_client_headers: bool,
    pub providers: BTreeMap<String, RawProvider>,
    pub models: BTreeMap<String, RawModel>,
    pub tiers: Vec<RawTier>,
    #[serde(default)]
    pub classifier: ClassifierSettings,
    #[serde(default)]
    pub rules: Vec<RawRule>,
}

/// When the score and signals headers are added to responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExplainMode {
    Never,
    /// When the request carries `x-signalbox-explain: 1`.
    #[default]
    OnRequest,
    Always,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// OpenAI and every API that speaks its chat-completions format.
    #[default]
    Openai,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    #[serde(default)]
    pub kind: ProviderKind,
    /// Envoy cluster that reaches this provider.
    pub cluster: String,
    /// Path prefix of the API (`/v1` for OpenAI, `/openai/v1` for Groq).
    #[serde(default)]
    pub base_path: Option<String>,
    /// Value for `:authority`, when the cluster does not rewrite the host.
    #[serde(default)]
    pub host: Option<String>,
    /// API key written into the config.
    #[serde(default)]
    pub api_key: Option<String>,
    /// Name of an environment variable holding the API key (exposed to the
    /// Wasm VM with `vm_config.environment_variables.host_env_keys`).
    #[serde(default)]
    pub api_key_env: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    pub provider: String,
    /// The provider's name for the model; defaults to the config key.
    #[serde(default)]
    pub id: Option<String>,
    /// Overrides the provider's cluster for this model.
    #[serde(default)]
    pub cluster: Option<String>,
    #[serde(default)]
    pub context_window: Option<u64>,
    #[serde(default)]
    pub price: RawPrice,
    /// What the model can do; when given, requests needing a missing
    /// capability skip it.
    #[serde(default)]
    pub capabilities: Option<Vec<Capability>>,
}

/// USD per million tokens.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrice {
    #[serde(default)]
    pub input: f64,
    #[serde(default)]
    pub output: f64,
    #[serde(default)]
    pub cached_input: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    Tools,
    Vision,
    JsonOutput,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTier {
    pub name: String,
    /// Scores below this fall in the tier; the last tier takes the rest.
    #[serde(default)]
    pub max_score: Option<f64>,
    pub models: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub name: String,
    pub when: RawCondition,
    pub then: RawAction,
}

/// Every condition given must hold.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCondition {
    /// Regex searched in the last user message.
    #[serde(default)]
    pub last_user: Option<String>,
    /// Regex searched in the system (and developer) messages.
    #[serde(default)]
    pub system: Option<String>,
    /// Header name → regex its value must match.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAction {
    #[serde(default)]
    pub tier: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
}

fn default_routing_header() -> String {
    DEFAULT_ROUTING_HEADER.to_string()
}

fn default_auto_models() -> Vec<String> {
    vec!["auto".to_string(), "signalbox/auto".to_string()]
}

fn default_max_body_bytes() -> usize {
    DEFAULT_MAX_BODY_BYTES
}
