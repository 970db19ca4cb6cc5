//! The configuration document exactly as operators write it (JSON in the
//! Wasm plugin's `configuration`). Unknown fields are rejected so a typo is a
//! load error, not a silently ignored setting. [`super::resolve`] validates
//! and compiles it.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::classify::ClassifierSettings;
pub use crate::providers::ProviderKind;

pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
pub const DEFAULT_CONTEXT_WINDOW: u64 = 128_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
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
    #[serde(default)]
    pub resilience: RawResilience,
    /// Virtual keys, tenants, limits, quotas and budgets.
    #[serde(default)]
    pub governance: Option<super::governance::RawGovernance>,
    /// Path of the JSON health view (`GET`), or null to turn it off.
    #[serde(default = "default_health_path")]
    pub health_path: Option<String>,
    /// Path of the JSON spend view (`GET`), or null to turn it off.
    #[serde(default = "default_spend_path")]
    pub spend_path: Option<String>,
    /// Keys that may read the health and spend views (as SHA-256 digests).
    /// Without one, the health view is closed and the spend view shows a
    /// tenant's own key only its own tenant.
    #[serde(default)]
    pub admin_keys: Vec<RawAdminKey>,
    #[serde(default)]
    pub observability: RawObservability,
    /// Keep a conversation's turns on one deployment (prompt caches).
    #[serde(default)]
    pub affinity: Option<super::affinity::RawAffinity>,
    /// Clients rate answers by request id.
    #[serde(default)]
    pub feedback: Option<super::feedback::RawFeedback>,
    /// Personal data, secrets and prompt injection (every request's default).
    #[serde(default)]
    pub guardrails: Option<super::guardrails::RawGuardrails>,
    /// The exact response cache (off unless enabled here or per tenant).
    #[serde(default)]
    pub cache: Option<super::cache::RawCache>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdminKey {
    pub name: String,
    /// Hex SHA-256 of the key (`printf %s "$KEY" | sha256sum`).
    pub sha256: String,
}

/// Metrics and access-log fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawObservability {
    /// Export Envoy stats (`signalbox_*` in `/stats/prometheus`).
    #[serde(default = "enabled")]
    pub metrics: bool,
    /// Write per-request filter state (`wasm.signalbox.*`) for access logs.
    #[serde(default = "enabled")]
    pub access_log: bool,
    /// How often one VM per process refreshes the health and quota gauges.
    #[serde(default = "default_gauge_interval_ms")]
    pub gauge_interval_ms: u64,
    /// Longest prompt or answer (in characters) kept for tenants with `audit_content`.
    #[serde(default = "default_audit_max_chars")]
    pub audit_max_chars: usize,
}

impl Default for RawObservability {
    fn default() -> Self {
        RawObservability {
            metrics: true,
            access_log: true,
            gauge_interval_ms: default_gauge_interval_ms(),
            audit_max_chars: default_audit_max_chars(),
        }
    }
}

fn enabled() -> bool {
    true
}

fn default_gauge_interval_ms() -> u64 {
    5_000
}

fn default_audit_max_chars() -> usize {
    2_000
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    /// The provider's wire format (default `openai`: any OpenAI-compatible API).
    #[serde(default)]
    pub kind: ProviderKind,
    /// Envoy cluster that reaches this provider.
    pub cluster: String,
    /// Path prefix of the API (`/v1` for OpenAI, `/openai/v1` for Groq);
    /// defaults to the kind's.
    #[serde(default)]
    pub base_path: Option<String>,
    /// Value for `:authority`, when the cluster does not rewrite the host.
    #[serde(default)]
    pub host: Option<String>,
    /// OpenAI-compatible vendor whose quirks to apply (`mistral`, `groq`, ...).
    #[serde(default)]
    pub vendor: Option<String>,
    /// Azure OpenAI `api-version`.
    #[serde(default)]
    pub api_version: Option<String>,
    /// Anthropic `anthropic-version` header.
    #[serde(default)]
    pub anthropic_version: Option<String>,
    /// AWS region (Bedrock).
    #[serde(default)]
    pub region: Option<String>,
    /// AWS access keys for Signature V4 (Bedrock), literal or from the environment.
    #[serde(default)]
    pub aws_access_key_id: Option<String>,
    #[serde(default)]
    pub aws_access_key_id_env: Option<String>,
    #[serde(default)]
    pub aws_secret_access_key: Option<String>,
    #[serde(default)]
    pub aws_secret_access_key_env: Option<String>,
    #[serde(default)]
    pub aws_session_token: Option<String>,
    #[serde(default)]
    pub aws_session_token_env: Option<String>,
    /// API key written into the config.
    #[serde(default)]
    pub api_key: Option<String>,
    /// Name of an environment variable holding the API key (exposed to the
    /// Wasm VM with `vm_config.environment_variables.host_env_keys`).
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Several keys, balanced by weight, each with its own health and
    /// cooldown (instead of `api_key` / `api_key_env`).
    #[serde(default)]
    pub api_keys: Vec<RawKey>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    /// Label for logs, headers and metrics (never the key itself).
    pub name: String,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub env: Option<String>,
    #[serde(default = "default_weight")]
    pub weight: u32,
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
    /// The most output tokens the model produces for one answer: the bound
    /// a request without `max_tokens` is reserved at.
    #[serde(default)]
    pub max_output_tokens: Option<u64>,
    #[serde(default)]
    pub price: RawPrice,
    /// What the model can do; when given, requests needing a missing
    /// capability skip it.
    #[serde(default)]
    pub capabilities: Option<Vec<Capability>>,
    /// Models tried next when a client names this one and it fails.
    #[serde(default)]
    pub fallbacks: Vec<String>,
    /// Rate limits of each deployment (model with one key); a deployment
    /// at its limit is skipped, spilling traffic over to the others.
    #[serde(default)]
    pub limits: super::governance::RawRate,
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
    /// How the primary model is picked; the others follow as fallbacks.
    #[serde(default)]
    pub strategy: Strategy,
    /// Relative shares for `strategy: weighted` (models not listed: 0).
    #[serde(default)]
    pub weights: std::collections::BTreeMap<String, u32>,
    /// A model taking a small share of the tier's traffic, whatever the strategy.
    #[serde(default)]
    pub canary: Option<super::canary::RawCanary>,
    /// Request header whose value pins a client to the same weighted or
    /// canary choice (e.g. a user id); random otherwise.
    #[serde(default)]
    pub sticky_header: Option<String>,
    /// Assess this tier's whole answers and escalate weak ones.
    #[serde(default)]
    pub cascade: Option<super::cascade::RawCascade>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// The configured order.
    #[default]
    Priority,
    /// Random by `weights` (sticky with `sticky_header`).
    Weighted,
    /// Lowest recent p95 latency (time to first token for streams).
    Latency,
    /// Cheapest for this request's estimated tokens.
    Cost,
    /// Fewest attempts in flight.
    LeastBusy,
}

/// Failover, health and circuit-breaker tuning.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResilience {
    /// Deployments tried per request, primary included.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// Must match the route's `retry_policy.per_try_timeout`: an attempt with
    /// no response after this long counts as a timeout, sooner as a reset.
    #[serde(default)]
    pub per_try_timeout_ms: Option<u64>,
    /// Overall deadline for non-streaming requests (all attempts).
    #[serde(default)]
    pub deadline_ms: Option<u64>,
    /// Extra per-try time per output token a whole answer may have (0: none).
    #[serde(default)]
    pub output_token_ms: Option<u64>,
    #[serde(default)]
    pub health_half_life_ms: Option<u64>,
    /// p95 latency above which a deployment's health score drops.
    #[serde(default)]
    pub slow_ms: Option<u64>,
    #[serde(default)]
    pub breaker: RawBreaker,
    #[serde(default)]
    pub probes: Option<RawProbes>,
    /// A context-length error moves the request to the next candidate with
    /// a larger window instead of failing.
    #[serde(default)]
    pub context_length_fallback: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBreaker {
    #[serde(default)]
    pub consecutive_failures: Option<u16>,
    #[serde(default)]
    pub failure_rate: Option<f32>,
    #[serde(default)]
    pub min_requests: Option<f32>,
    #[serde(default)]
    pub open_ms: Option<u64>,
    #[serde(default)]
    pub max_open_ms: Option<u64>,
    #[serde(default)]
    pub half_open_trials: Option<u8>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProbes {
    pub interval_ms: u64,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
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
    /// Guessed language of the last user message: codes (`"de"`, `["de","fr"]`)
    /// or `"non_en"` (recognised and not English).
    #[serde(default)]
    pub language: Option<OneOrMany>,
}

/// A string or a list of strings.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn items(&self) -> &[String] {
        match self {
            OneOrMany::One(item) => std::slice::from_ref(item),
            OneOrMany::Many(items) => items,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAction {
    #[serde(default)]
    pub tier: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
}

fn default_weight() -> u32 {
    1
}

fn default_health_path() -> Option<String> {
    Some("/signalbox/health".to_string())
}

fn default_spend_path() -> Option<String> {
    Some("/signalbox/spend".to_string())
}

fn default_auto_models() -> Vec<String> {
    vec!["auto".to_string(), "signalbox/auto".to_string()]
}

fn default_max_body_bytes() -> usize {
    DEFAULT_MAX_BODY_BYTES
}
