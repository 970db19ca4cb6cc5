//! Configuration, in two steps: [`raw`] is the serde tree operators write,
//! [`Config`] the validated form the request path uses — names resolved to
//! indexes, regexes and the classifier compiled, secrets wrapped so they
//! cannot be printed. Every problem is a [`ConfigError`] naming the field.
//! Each section has its own file, its raw form beside its resolver; this one
//! resolves them in order and checks what spans sections.

pub mod affinity;
pub mod cache;
pub mod canary;
pub mod cascade;
pub mod feedback;
pub mod governance;
pub mod guardrails;
pub mod models;
pub mod observability;
pub mod providers;
pub mod raw;
pub mod resilience;
pub mod rules;
pub mod shadow;
pub mod tiers;

use std::collections::HashMap;

use crate::classify::Classifier;
use crate::error::ConfigError;
use crate::keys::AdminKey;
use crate::providers::ProviderKind;
use raw::{RawAdminKey, RawConfig};

pub use canary::Canary;
pub use models::{Capabilities, Capability, Deployment, Model, Price};
pub use observability::{FieldSet, Observability};
pub use providers::{Provider, ProviderKey};
pub use raw::ExplainMode;
pub use resilience::{ProbeSettings, Resilience};
pub use rules::{LanguageSet, Rule, RuleAction};
pub use tiers::{Strategy, Tier};

pub type ProviderId = usize;
pub type ModelId = usize;
pub type TierId = usize;
/// A model reached with one of its provider's keys: the unit of health.
pub type DeploymentId = usize;

/// Prefix of every shared-data key Signalbox writes.
pub const STATE_PREFIX: &str = "signalbox/v1/";

#[derive(Debug)]
pub struct Config {
    pub auto_models: Vec<String>,
    pub max_body_bytes: usize,
    pub explain: ExplainMode,
    pub trust_client_headers: bool,
    pub providers: Vec<Provider>,
    pub models: Vec<Model>,
    pub tiers: Vec<Tier>,
    pub rules: Vec<Rule>,
    pub classifier: Classifier,
    pub deployments: Vec<Deployment>,
    pub resilience: Resilience,
    pub health_path: Option<String>,
    pub spend_path: Option<String>,
    pub admin_keys: Vec<AdminKey>,
    pub governance: Option<governance::Governance>,
    pub observability: Observability,
    pub affinity: Option<affinity::Affinity>,
    pub feedback: Option<feedback::Feedback>,
    /// Every request's guardrails (a tenant may have its own).
    pub guardrails: guardrails::Guardrails,
    pub cache: cache::Cache,
    model_by_name: HashMap<String, ModelId, ahash::RandomState>,
    tier_by_name: HashMap<String, TierId, ahash::RandomState>,
}

impl Config {
    /// Parses and validates the plugin configuration. `env` looks up
    /// environment variables (injectable for tests).
    pub fn parse(json: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let raw: RawConfig = serde_json::from_slice(json)
            .map_err(|err| ConfigError::new(crate::json_path::error_path(json, &err), err.to_string()))?;
        resolve(raw, env)
    }

    pub fn model_named(&self, name: &str) -> Option<ModelId> {
        self.model_by_name.get(name).copied()
    }

    /// The most output tokens one answer of `model` can have: the
    /// `requested` limit (the client's `max_tokens`, or a tenant's cap sent
    /// in its place) held to the model's `max_output_tokens` (a model stops
    /// there whatever was asked), else what its provider's adapter sends when
    /// the client set none (Anthropic requires a `max_tokens`). None:
    /// nothing bounds it.
    pub fn output_limit(&self, model: ModelId, requested: Option<u64>) -> Option<u64> {
        let model = self.models.get(model)?;
        let kind = self.providers.get(model.provider).map(|provider| provider.spec.kind);
        let limit = match (requested, model.max_output_tokens) {
            (Some(requested), Some(most)) => Some(requested.min(most)),
            (requested, most) => requested.or(most),
        };
        limit.or(kind.and_then(ProviderKind::injected_max_tokens))
    }

    /// The fleet store (Redis behind webdis), when governance keeps its state there.
    pub fn fleet_store(&self) -> Option<&governance::StoreSettings> {
        self.governance.as_ref()?.store.as_ref()
    }

    pub fn tier_named(&self, name: &str) -> Option<TierId> {
        self.tier_by_name.get(name).copied()
    }

    pub fn is_auto(&self, model: &str) -> bool {
        self.auto_models.iter().any(|alias| alias == model)
    }

    /// The tier a score falls in.
    pub fn tier_for_score(&self, score: f64) -> TierId {
        self.tiers
            .iter()
            .position(|tier| score < tier.max_score)
            .unwrap_or(self.tiers.len() - 1)
    }

    pub fn provider_of(&self, model: ModelId) -> &Provider {
        &self.providers[self.models[model].provider]
    }

    /// The key a deployment uses.
    pub fn key_of(&self, deployment: DeploymentId) -> &ProviderKey {
        let deployment = &self.deployments[deployment];
        &self.provider_of(deployment.model).keys[deployment.key]
    }
}

/// Resolves the sections in order, each after the names it refers to.
fn resolve(raw: RawConfig, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    if !(1024..=(256 << 20)).contains(&raw.max_body_bytes) {
        return Err(ConfigError::new("max_body_bytes", "must be between 1024 and 268435456"));
    }
    let providers = providers::resolve(&raw.providers, env)?;
    let models::ResolvedModels {
        models,
        by_name: model_by_name,
        deployments,
    } = models::resolve(&raw.models, &providers)?;
    check_auto_models(&raw.auto_models, &model_by_name)?;
    let tiers = tiers::resolve(&raw.tiers, &model_by_name)?;
    let tier_by_name = tiers::by_name(&tiers);
    let rules = rules::resolve(&raw.rules, &model_by_name, &tier_by_name)?;
    let classifier = Classifier::compile(&raw.classifier)?;
    let resilience = resilience::resolve(&raw.resilience)?;
    let tier_models: Vec<Vec<ModelId>> = tiers.iter().map(|tier| tier.models.clone()).collect();
    let catalog = governance::Catalog {
        model_by_name: &model_by_name,
        model_count: models.len(),
        tier_by_name: &tier_by_name,
        tier_models: &tier_models,
    };
    let governance = raw
        .governance
        .as_ref()
        .map(|raw| governance::resolve(raw, &catalog, resilience.deadline_ms))
        .transpose()?;
    let observability = observability::resolve(&raw.observability)?;
    let affinity = affinity::resolve(raw.affinity.as_ref())?;
    let feedback = feedback::resolve(raw.feedback.as_ref())?;
    if let Some(feedback) = &feedback {
        check_feedback_path(&feedback.path, &raw)?;
    }
    let guardrails = raw
        .guardrails
        .as_ref()
        .map(|raw| guardrails::resolve("guardrails", raw, &model_by_name))
        .transpose()?
        .unwrap_or_default();
    let mut cache = resolve_cache(&raw, governance.as_ref(), &model_by_name)?;
    cache.tiers = cache::resolve_tiers(raw.cache.as_ref(), tiers.len(), &|name| tier_by_name.get(name).copied())?;
    check_view_paths(&raw)?;
    let admin_keys = resolve_admin_keys(&raw.admin_keys)?;
    Ok(Config {
        auto_models: raw.auto_models,
        max_body_bytes: raw.max_body_bytes,
        explain: raw.explain,
        trust_client_headers: raw.trust_client_headers,
        providers,
        models,
        tiers,
        rules,
        classifier,
        deployments,
        resilience,
        health_path: raw.health_path,
        spend_path: raw.spend_path,
        admin_keys,
        governance,
        observability,
        affinity,
        feedback,
        guardrails,
        cache,
        model_by_name,
        tier_by_name,
    })
}

/// An `auto_models` alias may not also be a model's name.
fn check_auto_models(
    aliases: &[String],
    model_by_name: &HashMap<String, ModelId, ahash::RandomState>,
) -> Result<(), ConfigError> {
    for (position, alias) in aliases.iter().enumerate() {
        let path = format!("auto_models[{position}]");
        if alias.is_empty() {
            return Err(ConfigError::new(path, "must not be empty"));
        }
        if model_by_name.contains_key(alias) {
            return Err(ConfigError::new(
                path,
                format!("`{alias}` is also a model name; a name must mean one thing"),
            ));
        }
    }
    Ok(())
}

/// Ratings are posted on a path of their own, apart from the API and the views.
fn check_feedback_path(path: &str, raw: &RawConfig) -> Result<(), ConfigError> {
    let taken = [raw.health_path.as_deref(), raw.spend_path.as_deref()].contains(&Some(path));
    if taken || path.starts_with("/v1/") {
        return Err(ConfigError::new(
            "feedback.path",
            "must differ from the API paths (/v1/…) and the health and spend paths",
        ));
    }
    Ok(())
}

/// `health_path` and `spend_path`: absolute paths, or null to turn a view off.
fn check_view_paths(raw: &RawConfig) -> Result<(), ConfigError> {
    for (field, path, example) in [
        ("health_path", &raw.health_path, "/signalbox/health"),
        ("spend_path", &raw.spend_path, "/signalbox/spend"),
    ] {
        if let Some(path) = path {
            if !is_request_path(path) {
                return Err(ConfigError::new(
                    field,
                    format!("must be an absolute path such as `{example}`, or null"),
                ));
            }
        }
    }
    Ok(())
}

fn resolve_admin_keys(raw: &[RawAdminKey]) -> Result<Vec<AdminKey>, ConfigError> {
    let mut admin_keys: Vec<AdminKey> = Vec::with_capacity(raw.len());
    for (position, key) in raw.iter().enumerate() {
        let path = format!("admin_keys[{position}]");
        check_name(format!("{path}.name"), &key.name)?;
        let digest = governance::key_digest(&path, &key.sha256)?;
        if admin_keys.iter().any(|known| known.digest == digest) {
            return Err(ConfigError::new(
                format!("{path}.sha256"),
                "the same key is listed twice",
            ));
        }
        admin_keys.push(AdminKey {
            name: key.name.clone(),
            digest,
        });
    }
    Ok(admin_keys)
}

/// The cache section with each tenant's override, in tenant-id order.
fn resolve_cache(
    raw: &RawConfig,
    governance: Option<&governance::Governance>,
    model_by_name: &HashMap<String, ModelId, ahash::RandomState>,
) -> Result<cache::Cache, ConfigError> {
    let tenants: Vec<(&str, Option<&cache::RawTenantCache>)> = match (&raw.governance, governance) {
        (Some(raw_governance), Some(governance)) => governance
            .tenants
            .iter()
            .map(|tenant| {
                let raw_tenant = raw_governance.tenants.get(&tenant.name);
                (tenant.name.as_str(), raw_tenant.and_then(|raw| raw.cache.as_ref()))
            })
            .collect(),
        _ => Vec::new(),
    };
    cache::resolve(raw.cache.as_ref(), &tenants, &|name| model_by_name.get(name).copied())
}

/// `value` when it is in `low..=high`; else an error naming `path`.
pub(crate) fn within(path: impl Into<String>, value: u64, (low, high): (u64, u64)) -> Result<u64, ConfigError> {
    if (low..=high).contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::new(path, format!("must be between {low} and {high}")))
    }
}

pub(crate) fn check_header_name(path: &str, name: &str) -> Result<(), ConfigError> {
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(ConfigError::new(
            path,
            format!("`{name}` is not a valid header name (lowercase letters, digits, `-`, `_`)"),
        ))
    }
}

pub(crate) fn check_name(path: String, name: &str) -> Result<(), ConfigError> {
    let valid = !name.is_empty() && name.len() <= 128 && name.bytes().all(|b| b.is_ascii_graphic());
    if valid {
        Ok(())
    } else {
        Err(ConfigError::new(
            path,
            format!("`{name}` must be 1 to 128 visible ASCII characters"),
        ))
    }
}

/// An absolute request path without a query, of printable ASCII: what a
/// path Signalbox answers on may be.
pub(crate) fn is_request_path(path: &str) -> bool {
    path.starts_with('/') && path.bytes().all(|b| b.is_ascii_graphic() && b != b'?')
}

#[cfg(test)]
mod reference_tests;
#[cfg(test)]
mod tests;
