//! The configuration document exactly as operators write it (JSON in the
//! Wasm plugin's `configuration`). Unknown fields are rejected so a typo is a
//! load error, not a silently ignored setting. This file holds the document
//! root and its top-level settings; each section's raw form lives beside its
//! resolver (`providers.rs`, `tiers.rs`, ...). [`super::Config::parse`]
//! validates and compiles it.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::models::RawModel;
use super::observability::RawObservability;
use super::providers::RawProvider;
use super::resilience::RawResilience;
use super::rules::RawRule;
use super::tiers::RawTier;
use crate::classify::ClassifierSettings;

pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

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
