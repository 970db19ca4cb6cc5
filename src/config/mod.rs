//! Configuration, in two steps: [`raw`] is the serde tree operators write,
//! [`Config`] the validated form the request path uses — names resolved to
//! indexes, regexes and the classifier compiled, secrets wrapped so they
//! cannot be printed. Every problem is a [`ConfigError`] naming the field.

pub mod affinity;
pub mod cache;
pub mod canary;
pub mod cascade;
pub mod feedback;
pub mod governance;
pub mod guardrails;
pub mod raw;
pub mod shadow;

use std::collections::{BTreeMap, HashMap};

use regex::{Regex, RegexBuilder};

use crate::classify::{Classifier, Language};
use crate::error::ConfigError;
use crate::health::{BreakerSettings, HealthSettings};
use crate::keys::AdminKey;
use crate::providers::{Credential, ProviderKind, ProviderSpec, Quirks};
use crate::secret::Secret;
pub use raw::{Capability, ExplainMode, Strategy};
use raw::{RawAction, RawConfig, RawKey, RawModel, RawProvider, RawResilience, RawRule, RawTier};

pub type ProviderId = usize;
pub type ModelId = usize;
pub type TierId = usize;
/// A model reached with one of its provider's keys: the unit of health.
pub type DeploymentId = usize;

/// Prefix of every shared-data key Signalbox writes.
pub const STATE_PREFIX: &str = "signalbox/v1/";

/// Compiled regexes are capped so a pathological rule cannot eat the VM's memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;
const MAX_CONTEXT_WINDOW: u64 = 100_000_000;

#[derive(Debug)]
pub struct Provider {
    pub name: String,
    pub cluster: String,
    /// Wire format, paths, versions, region, host.
    pub spec: ProviderSpec,
    /// At least one; a keyless provider (self-hosted) has one without a credential.
    pub keys: Vec<ProviderKey>,
}

#[derive(Debug)]
pub struct ProviderKey {
    pub name: String,
    pub credential: Option<Credential>,
    /// Relative share of traffic; 0 keeps the key configured but unused.
    pub weight: u32,
}

#[derive(Debug)]
pub struct Deployment {
    pub model: ModelId,
    /// Index into the provider's `keys`.
    pub key: usize,
    /// `model` or, when the provider has several keys, `model@key`.
    pub name: String,
    /// Shared-data key of its health record.
    pub health_key: String,
}

/// USD per million tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Price {
    pub input: f64,
    pub cached_input: f64,
    pub output: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    pub tools: bool,
    pub vision: bool,
    pub json_output: bool,
}

#[derive(Debug)]
pub struct Model {
    /// The name clients use and response headers report.
    pub name: String,
    pub provider: ProviderId,
    /// The provider's own model id.
    pub upstream_id: String,
    /// `upstream_id` as a JSON string literal, ready to splice into bodies.
    pub upstream_id_json: Vec<u8>,
    pub cluster: String,
    pub context_window: u64,
    /// The most output tokens one answer can have (reservation bound).
    pub max_output_tokens: Option<u64>,
    pub price: Price,
    pub capabilities: Capabilities,
    /// Per deployment of this model.
    pub limits: crate::policy::RateLimits,
    /// This model reached with each of its provider's keys, in key order.
    pub deployments: Vec<DeploymentId>,
    /// Tried next when a client names this model and it fails.
    pub fallbacks: Vec<ModelId>,
}

#[derive(Debug)]
pub struct Tier {
    pub name: String,
    /// Scores strictly below this fall in the tier (the last tier: +inf).
    pub max_score: f64,
    pub models: Vec<ModelId>,
    pub strategy: Strategy,
    /// Weight of each of `models` (same order), for `Strategy::Weighted`.
    pub weights: Vec<u32>,
    pub canary: Option<Canary>,
    pub sticky_header: Option<String>,
    /// Weak whole answers escalate to a stronger tier.
    pub cascade: Option<cascade::Cascade>,
}

pub use canary::Canary;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbeSettings {
    pub interval_ms: u64,
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Resilience {
    pub max_attempts: usize,
    pub per_try_timeout_ms: u64,
    pub deadline_ms: u64,
    /// Time allowed per output token on top of the per-try timeout for a
    /// whole (non-streamed) answer, whose headers come only once it is
    /// generated.
    pub output_token_ms: u64,
    pub health: HealthSettings,
    pub probes: Option<ProbeSettings>,
    pub context_length_fallback: bool,
}

#[derive(Debug)]
pub struct Rule {
    pub name: String,
    pub last_user: Option<Regex>,
    pub system: Option<Regex>,
    /// Lowercase header name and the regex its value must match.
    pub headers: Vec<(String, Regex)>,
    /// Languages the last user message must be guessed as, if any.
    pub languages: Option<LanguageSet>,
    pub action: RuleAction,
}

/// The languages a rule's `when.language` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LanguageSet(u32);

impl LanguageSet {
    /// `non_en` in a rule: any recognised language but English.
    pub const NON_ENGLISH: &'static str = "non_en";

    pub fn contains(self, language: Language) -> bool {
        self.0 & (1 << language.index()) != 0
    }

    fn insert(&mut self, language: Language) {
        self.0 |= 1 << language.index();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleAction {
    Tier(TierId),
    Model(ModelId),
}

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

/// 50 tokens a second: slower than the models a gateway usually fronts,
/// so a legitimately long answer is not taken for a silent provider.
const DEFAULT_OUTPUT_TOKEN_MS: u64 = 20;

impl Config {
    /// Parses and validates the plugin configuration. `env` looks up
    /// environment variables (injectable for tests).
    pub fn parse(json: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let deserializer = &mut serde_json::Deserializer::from_slice(json);
        let raw: RawConfig = serde_path_to_error::deserialize(deserializer).map_err(|err| {
            let path = err.path().to_string();
            ConfigError::new(if path == "." { String::new() } else { path }, err.inner().to_string())
        })?;
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

fn resolve(raw: RawConfig, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    if !(1024..=(256 << 20)).contains(&raw.max_body_bytes) {
        return Err(ConfigError::new("max_body_bytes", "must be between 1024 and 268435456"));
    }
    if raw.providers.is_empty() {
        return Err(ConfigError::new("providers", "at least one provider is required"));
    }
    let mut providers = Vec::with_capacity(raw.providers.len());
    let mut provider_by_name = BTreeMap::new();
    for (name, provider) in &raw.providers {
        provider_by_name.insert(name.as_str(), providers.len());
        providers.push(resolve_provider(name, provider, env)?);
    }

    if raw.models.is_empty() {
        return Err(ConfigError::new("models", "at least one model is required"));
    }
    let mut models = Vec::with_capacity(raw.models.len());
    let mut model_by_name = HashMap::with_hasher(ahash::RandomState::new());
    for (name, model) in &raw.models {
        model_by_name.insert(name.clone(), models.len());
        models.push(resolve_model(name, model, &provider_by_name, &providers)?);
    }
    let mut deployments = Vec::new();
    for (id, model) in models.iter_mut().enumerate() {
        let keys = &providers[model.provider].keys;
        for (key, provider_key) in keys.iter().enumerate() {
            let name = if keys.len() == 1 {
                model.name.clone()
            } else {
                format!("{}@{}", model.name, provider_key.name)
            };
            model.deployments.push(deployments.len());
            deployments.push(Deployment {
                model: id,
                key,
                health_key: format!("{STATE_PREFIX}health/{name}"),
                name,
            });
        }
    }
    for (name, raw_model) in &raw.models {
        let mut fallbacks = Vec::with_capacity(raw_model.fallbacks.len());
        for (position, fallback) in raw_model.fallbacks.iter().enumerate() {
            let path = format!("models.{name}.fallbacks[{position}]");
            let id = *model_by_name
                .get(fallback)
                .ok_or_else(|| ConfigError::new(&path, format!("unknown model `{fallback}`")))?;
            if fallback == name || fallbacks.contains(&id) {
                return Err(ConfigError::new(path, format!("`{fallback}` is already in the chain")));
            }
            fallbacks.push(id);
        }
        models[model_by_name[name]].fallbacks = fallbacks;
    }

    for (position, alias) in raw.auto_models.iter().enumerate() {
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

    let tiers = resolve_tiers(&raw.tiers, &model_by_name)?;
    let tier_by_name: HashMap<_, _, ahash::RandomState> = tiers
        .iter()
        .enumerate()
        .map(|(id, tier)| (tier.name.clone(), id))
        .collect();

    let mut rules = Vec::with_capacity(raw.rules.len());
    for (position, rule) in raw.rules.iter().enumerate() {
        if raw.rules[..position].iter().any(|earlier| earlier.name == rule.name) {
            return Err(ConfigError::new(
                format!("rules[{position}].name"),
                format!("duplicate rule name `{}`", rule.name),
            ));
        }
        rules.push(resolve_rule(position, rule, &model_by_name, &tier_by_name)?);
    }

    let classifier = Classifier::compile(&raw.classifier)?;
    let tier_models: Vec<Vec<ModelId>> = tiers.iter().map(|tier| tier.models.clone()).collect();
    let resilience = resolve_resilience(&raw.resilience)?;
    let governance = raw
        .governance
        .as_ref()
        .map(|raw| {
            governance::resolve(
                raw,
                &model_by_name,
                models.len(),
                &tier_by_name,
                &tier_models,
                resilience.deadline_ms,
            )
        })
        .transpose()?;
    let observability = resolve_observability(&raw.observability)?;
    let affinity = affinity::resolve(raw.affinity.as_ref())?;
    let feedback = feedback::resolve(raw.feedback.as_ref())?;
    if let Some(feedback) = &feedback {
        let taken = [raw.health_path.as_deref(), raw.spend_path.as_deref()].contains(&Some(feedback.path.as_str()));
        if taken || feedback.path.starts_with("/v1/") {
            return Err(ConfigError::new(
                "feedback.path",
                "must differ from the API paths (/v1/…) and the health and spend paths",
            ));
        }
    }
    let guardrails = raw
        .guardrails
        .as_ref()
        .map(|raw| guardrails::resolve("guardrails", raw, &model_by_name))
        .transpose()?
        .unwrap_or_default();
    let mut cache = resolve_cache(&raw, governance.as_ref(), &model_by_name)?;
    cache.tiers = cache::resolve_tiers(raw.cache.as_ref(), tiers.len(), &|name| tier_by_name.get(name).copied())?;
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
    let mut admin_keys: Vec<AdminKey> = Vec::with_capacity(raw.admin_keys.len());
    for (position, key) in raw.admin_keys.iter().enumerate() {
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

/// Metrics and access-log settings (see [`raw::RawObservability`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observability {
    pub metrics: bool,
    pub access_log: bool,
    pub gauge_interval_ms: u64,
    pub audit_max_chars: usize,
}

fn resolve_observability(raw: &raw::RawObservability) -> Result<Observability, ConfigError> {
    if !(100..=3_600_000).contains(&raw.gauge_interval_ms) {
        return Err(ConfigError::new(
            "observability.gauge_interval_ms",
            "must be between 100 and 3600000",
        ));
    }
    if !(1..=65_536).contains(&raw.audit_max_chars) {
        return Err(ConfigError::new(
            "observability.audit_max_chars",
            "must be between 1 and 65536",
        ));
    }
    Ok(Observability {
        metrics: raw.metrics,
        access_log: raw.access_log,
        gauge_interval_ms: raw.gauge_interval_ms,
        audit_max_chars: raw.audit_max_chars,
    })
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

fn resolve_provider(
    name: &str,
    raw: &RawProvider,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Provider, ConfigError> {
    let path = format!("providers.{name}");
    check_name(path.clone(), name)?;
    check_name(format!("{path}.cluster"), &raw.cluster)?;
    if let Some(host) = &raw.host {
        check_name(format!("{path}.host"), host)?;
    }
    let quirks = match &raw.vendor {
        None => Quirks::STANDARD,
        Some(vendor) => Quirks::for_vendor(vendor)
            .ok_or_else(|| ConfigError::new(format!("{path}.vendor"), format!("unknown vendor `{vendor}`")))?,
    };
    let mut spec = ProviderSpec::new(raw.kind);
    spec.base_path = raw
        .base_path
        .as_deref()
        .map_or(spec.base_path, |base| base.trim_end_matches('/').to_string());
    spec.host = raw.host.clone();
    spec.api_version = raw.api_version.clone();
    spec.region = raw.region.clone();
    spec.quirks = quirks;
    if let Some(version) = &raw.anthropic_version {
        spec.anthropic_version = version.clone();
    }
    spec.validate()
        .map_err(|(field, message)| ConfigError::new(format!("{path}.{field}"), message))?;
    let keys = resolve_keys(&path, raw, env)?;
    Ok(Provider {
        name: name.to_string(),
        cluster: raw.cluster.clone(),
        spec,
        keys,
    })
}

/// Reads a secret from the config or the environment (exactly one of them).
fn secret_from(
    path: &str,
    literal: (&str, &Option<String>),
    variable: (&str, &Option<String>),
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Secret>, ConfigError> {
    let value = match (literal.1, variable.1) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(format!("{path}.{}", variable.0), format!("set either `{}` or `{}`, not both", literal.0, variable.0)));
        }
        (Some(value), None) => value.clone(),
        (None, Some(name)) => env(name).filter(|value| !value.is_empty()).ok_or_else(|| {
            ConfigError::new(
                format!("{path}.{}", variable.0),
                format!("environment variable `{name}` is not set or not exposed to the Wasm VM (vm_config.environment_variables.host_env_keys)"),
            )
        })?,
        (None, None) => return Ok(None),
    };
    if value.is_empty() || value.bytes().any(|b| !b.is_ascii_graphic()) {
        return Err(ConfigError::new(
            format!("{path}.{}", literal.0),
            "must be a non-empty string of visible ASCII characters",
        ));
    }
    Ok(Some(Secret::new(value)))
}

fn resolve_keys(
    path: &str,
    raw: &RawProvider,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<ProviderKey>, ConfigError> {
    let single = secret_from(path, ("api_key", &raw.api_key), ("api_key_env", &raw.api_key_env), env)?;
    let aws_key_id = secret_from(
        path,
        ("aws_access_key_id", &raw.aws_access_key_id),
        ("aws_access_key_id_env", &raw.aws_access_key_id_env),
        env,
    )?;
    let aws_secret = secret_from(
        path,
        ("aws_secret_access_key", &raw.aws_secret_access_key),
        ("aws_secret_access_key_env", &raw.aws_secret_access_key_env),
        env,
    )?;
    let aws_token = secret_from(
        path,
        ("aws_session_token", &raw.aws_session_token),
        ("aws_session_token_env", &raw.aws_session_token_env),
        env,
    )?;
    let kind = raw.kind;
    if aws_key_id.is_some() || aws_secret.is_some() {
        let (Some(access_key_id), Some(secret_access_key)) = (aws_key_id, aws_secret) else {
            return Err(ConfigError::new(
                format!("{path}.aws_secret_access_key"),
                "give both the AWS access key id and secret",
            ));
        };
        if kind != ProviderKind::Bedrock || single.is_some() || !raw.api_keys.is_empty() {
            return Err(ConfigError::new(
                format!("{path}.aws_access_key_id"),
                "AWS keys are for a bedrock provider without api keys",
            ));
        }
        let credential = Credential::AwsSigV4 {
            access_key_id: access_key_id.expose().to_string(),
            secret_access_key,
            session_token: aws_token,
        };
        return Ok(vec![ProviderKey {
            name: "aws".to_string(),
            credential: Some(credential),
            weight: 1,
        }]);
    }
    if raw.api_keys.is_empty() {
        let name = if single.is_some() { "default" } else { "none" };
        let credential = single.map(|key| Credential::api_key(kind, key));
        return Ok(vec![ProviderKey {
            name: name.to_string(),
            credential,
            weight: 1,
        }]);
    }
    if single.is_some() {
        return Err(ConfigError::new(
            format!("{path}.api_keys"),
            "use either `api_keys` or `api_key`/`api_key_env`, not both",
        ));
    }
    let mut keys: Vec<ProviderKey> = Vec::with_capacity(raw.api_keys.len());
    for (
        position,
        RawKey {
            name,
            key,
            env: variable,
            weight,
        },
    ) in raw.api_keys.iter().enumerate()
    {
        let key_path = format!("{path}.api_keys[{position}]");
        check_name(format!("{key_path}.name"), name)?;
        if keys.iter().any(|known| &known.name == name) {
            return Err(ConfigError::new(
                format!("{key_path}.name"),
                format!("duplicate key name `{name}`"),
            ));
        }
        let secret = secret_from(&key_path, ("key", key), ("env", variable), env)?
            .ok_or_else(|| ConfigError::new(format!("{key_path}.key"), "give `key` or `env`"))?;
        keys.push(ProviderKey {
            name: name.clone(),
            credential: Some(Credential::api_key(kind, secret)),
            weight: *weight,
        });
    }
    if keys.iter().all(|key| key.weight == 0) {
        return Err(ConfigError::new(
            format!("{path}.api_keys"),
            "at least one key needs a weight above 0",
        ));
    }
    Ok(keys)
}

fn resolve_resilience(raw: &RawResilience) -> Result<Resilience, ConfigError> {
    let defaults = HealthSettings::default();
    let breaker_defaults = BreakerSettings::default();
    let positive = |path: &str, value: Option<u64>, default: u64| -> Result<u64, ConfigError> {
        match value {
            Some(0) => Err(ConfigError::new(path, "must be greater than 0")),
            Some(value) => Ok(value),
            None => Ok(default),
        }
    };
    let max_attempts = raw.max_attempts.unwrap_or(3);
    if !(1..=8).contains(&max_attempts) {
        return Err(ConfigError::new("resilience.max_attempts", "must be between 1 and 8"));
    }
    let breaker = &raw.breaker;
    let failure_rate = breaker.failure_rate.unwrap_or(breaker_defaults.failure_rate);
    if !(failure_rate > 0.0 && failure_rate <= 1.0) {
        return Err(ConfigError::new("resilience.breaker.failure_rate", "must be in (0, 1]"));
    }
    let open_ms = positive("resilience.breaker.open_ms", breaker.open_ms, breaker_defaults.open_ms)?;
    let max_open_ms = positive(
        "resilience.breaker.max_open_ms",
        breaker.max_open_ms,
        breaker_defaults.max_open_ms.max(open_ms),
    )?;
    if max_open_ms < open_ms {
        return Err(ConfigError::new(
            "resilience.breaker.max_open_ms",
            "must be at least open_ms",
        ));
    }
    let consecutive_failures = positive(
        "resilience.breaker.consecutive_failures",
        breaker.consecutive_failures.map(u64::from),
        u64::from(breaker_defaults.consecutive_failures),
    )?;
    let half_open_trials = positive(
        "resilience.breaker.half_open_trials",
        breaker.half_open_trials.map(u64::from),
        u64::from(breaker_defaults.half_open_trials),
    )?;
    let min_requests = match breaker.min_requests {
        None => breaker_defaults.min_requests,
        Some(value) if value.is_finite() && value >= 1.0 => value,
        Some(_) => {
            return Err(ConfigError::new(
                "resilience.breaker.min_requests",
                "must be a number of at least 1",
            ))
        }
    };
    let breaker = BreakerSettings {
        consecutive_failures: u16::try_from(consecutive_failures).unwrap_or(u16::MAX),
        failure_rate,
        min_requests,
        open_ms,
        max_open_ms,
        half_open_trials: u8::try_from(half_open_trials).unwrap_or(u8::MAX),
    };
    let probes = match &raw.probes {
        None => None,
        Some(probes) => {
            if probes.interval_ms < 1_000 {
                return Err(ConfigError::new(
                    "resilience.probes.interval_ms",
                    "must be at least 1000",
                ));
            }
            Some(ProbeSettings {
                interval_ms: probes.interval_ms,
                timeout_ms: positive("resilience.probes.timeout_ms", probes.timeout_ms, 5_000)?,
            })
        }
    };
    let per_try_timeout_ms = positive("resilience.per_try_timeout_ms", raw.per_try_timeout_ms, 30_000)?;
    Ok(Resilience {
        max_attempts: max_attempts as usize,
        per_try_timeout_ms,
        deadline_ms: positive("resilience.deadline_ms", raw.deadline_ms, 300_000)?,
        output_token_ms: raw.output_token_ms.unwrap_or(DEFAULT_OUTPUT_TOKEN_MS),
        health: HealthSettings {
            half_life_ms: positive(
                "resilience.health_half_life_ms",
                raw.health_half_life_ms,
                defaults.half_life_ms,
            )?,
            breaker,
            slow_ms: positive("resilience.slow_ms", raw.slow_ms, defaults.slow_ms)?,
            // An attempt or trial whose holder never ends it stops counting
            // once the attempt would have timed out anyway.
            lease_ms: per_try_timeout_ms,
        },
        probes,
        context_length_fallback: raw.context_length_fallback,
    })
}

fn resolve_model(
    name: &str,
    raw: &RawModel,
    provider_by_name: &BTreeMap<&str, ProviderId>,
    providers: &[Provider],
) -> Result<Model, ConfigError> {
    let path = format!("models.{name}");
    check_name(path.clone(), name)?;
    let provider = *provider_by_name.get(raw.provider.as_str()).ok_or_else(|| {
        ConfigError::new(
            format!("{path}.provider"),
            format!("unknown provider `{}`", raw.provider),
        )
    })?;
    let upstream_id = raw.id.clone().unwrap_or_else(|| name.to_string());
    if upstream_id.is_empty() {
        return Err(ConfigError::new(format!("{path}.id"), "must not be empty"));
    }
    let cluster = raw
        .cluster
        .clone()
        .unwrap_or_else(|| providers[provider].cluster.clone());
    check_name(format!("{path}.cluster"), &cluster)?;
    let context_window = raw.context_window.unwrap_or(raw::DEFAULT_CONTEXT_WINDOW);
    if context_window == 0 || context_window > MAX_CONTEXT_WINDOW {
        return Err(ConfigError::new(
            format!("{path}.context_window"),
            format!("must be between 1 and {MAX_CONTEXT_WINDOW}"),
        ));
    }
    if let Some(max_output) = raw.max_output_tokens {
        if max_output == 0 || max_output > context_window {
            return Err(ConfigError::new(
                format!("{path}.max_output_tokens"),
                format!("must be between 1 and the context window ({context_window})"),
            ));
        }
    }
    let prices = [
        ("input", raw.price.input),
        ("output", raw.price.output),
        ("cached_input", raw.price.cached_input.unwrap_or(0.0)),
    ];
    for (field, value) in prices {
        if !value.is_finite() || value < 0.0 {
            return Err(ConfigError::new(
                format!("{path}.price.{field}"),
                "must be a finite number >= 0 (USD per million tokens)",
            ));
        }
    }
    let capabilities = match &raw.capabilities {
        None => Capabilities {
            tools: true,
            vision: true,
            json_output: true,
        },
        Some(list) => Capabilities {
            tools: list.contains(&Capability::Tools),
            vision: list.contains(&Capability::Vision),
            json_output: list.contains(&Capability::JsonOutput),
        },
    };
    Ok(Model {
        name: name.to_string(),
        provider,
        upstream_id_json: crate::json_edit::quote(&upstream_id),
        upstream_id,
        cluster,
        context_window,
        max_output_tokens: raw.max_output_tokens,
        price: Price {
            input: raw.price.input,
            cached_input: raw.price.cached_input.unwrap_or(raw.price.input),
            output: raw.price.output,
        },
        capabilities,
        limits: governance::rate_limits(&format!("{path}.limits"), &raw.limits)?,
        deployments: Vec::new(),
        fallbacks: Vec::new(),
    })
}

fn resolve_tiers(
    raw: &[RawTier],
    model_by_name: &HashMap<String, ModelId, ahash::RandomState>,
) -> Result<Vec<Tier>, ConfigError> {
    if raw.is_empty() {
        return Err(ConfigError::new("tiers", "at least one tier is required"));
    }
    let mut tiers: Vec<Tier> = Vec::with_capacity(raw.len());
    for (position, tier) in raw.iter().enumerate() {
        let path = format!("tiers[{position}]");
        check_name(format!("{path}.name"), &tier.name)?;
        if tiers.iter().any(|earlier| earlier.name == tier.name) {
            return Err(ConfigError::new(
                format!("{path}.name"),
                format!("duplicate tier name `{}`", tier.name),
            ));
        }
        let is_last = position + 1 == raw.len();
        let max_score = match (tier.max_score, is_last) {
            (None, true) => f64::INFINITY,
            (Some(score), true) if score >= 1.0 => f64::INFINITY,
            (Some(_), true) => {
                return Err(ConfigError::new(
                    format!("{path}.max_score"),
                    "the last tier takes every higher score; omit max_score",
                ));
            }
            (None, false) => {
                return Err(ConfigError::new(
                    format!("{path}.max_score"),
                    "required on every tier but the last",
                ));
            }
            (Some(score), false) => {
                if !(score > 0.0 && score < 1.0) {
                    return Err(ConfigError::new(
                        format!("{path}.max_score"),
                        "must be between 0 and 1 (exclusive)",
                    ));
                }
                if let Some(previous) = tiers.last() {
                    if score <= previous.max_score {
                        return Err(ConfigError::new(
                            format!("{path}.max_score"),
                            format!(
                                "must be greater than the previous tier's max_score ({})",
                                previous.max_score
                            ),
                        ));
                    }
                }
                score
            }
        };
        if tier.models.is_empty() {
            return Err(ConfigError::new(
                format!("{path}.models"),
                "a tier needs at least one model",
            ));
        }
        let mut models = Vec::with_capacity(tier.models.len());
        for (index, model) in tier.models.iter().enumerate() {
            let id = *model_by_name.get(model).ok_or_else(|| {
                ConfigError::new(format!("{path}.models[{index}]"), format!("unknown model `{model}`"))
            })?;
            if models.contains(&id) {
                return Err(ConfigError::new(
                    format!("{path}.models[{index}]"),
                    format!("model `{model}` is listed twice"),
                ));
            }
            models.push(id);
        }
        let mut weights = vec![0u32; models.len()];
        for (name, weight) in &tier.weights {
            let position = tier.models.iter().position(|model| model == name).ok_or_else(|| {
                ConfigError::new(
                    format!("{path}.weights.{name}"),
                    format!("`{name}` is not one of this tier's models"),
                )
            })?;
            weights[position] = *weight;
        }
        if tier.strategy == Strategy::Weighted && weights.iter().all(|weight| *weight == 0) {
            return Err(ConfigError::new(
                format!("{path}.weights"),
                "strategy `weighted` needs a weight above 0",
            ));
        }
        let canary = tier
            .canary
            .as_ref()
            .map(|canary| canary::resolve(&path, canary, model_by_name))
            .transpose()?;
        if canary.as_ref().is_some_and(|canary| !models.contains(&canary.model)) {
            return Err(ConfigError::new(
                format!("{path}.canary.model"),
                "must be one of the tier's models (the canary takes a share of the tier's traffic)",
            ));
        }
        if let Some(header) = &tier.sticky_header {
            check_header_name(&format!("{path}.sticky_header"), header)?;
        }
        let cascade = cascade::resolve(&path, tier.cascade.as_ref(), is_last)?;
        tiers.push(Tier {
            name: tier.name.clone(),
            max_score,
            models,
            strategy: tier.strategy,
            weights,
            canary,
            sticky_header: tier.sticky_header.clone(),
            cascade,
        });
    }
    Ok(tiers)
}

/// An absolute request path without a query, of printable ASCII: what a
/// path Signalbox answers on may be.
pub(crate) fn is_request_path(path: &str) -> bool {
    path.starts_with('/') && path.bytes().all(|b| b.is_ascii_graphic() && b != b'?')
}

fn compile_regex(path: String, pattern: &str) -> Result<Regex, ConfigError> {
    RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|err| ConfigError::new(path, format!("invalid regex: {err}")))
}

fn resolve_rule(
    position: usize,
    raw: &RawRule,
    model_by_name: &HashMap<String, ModelId, ahash::RandomState>,
    tier_by_name: &HashMap<String, TierId, ahash::RandomState>,
) -> Result<Rule, ConfigError> {
    let path = format!("rules[{position}]");
    check_name(format!("{path}.name"), &raw.name)?;
    let condition = &raw.when;
    if condition.last_user.is_none()
        && condition.system.is_none()
        && condition.headers.is_empty()
        && condition.language.is_none()
    {
        return Err(ConfigError::new(
            format!("{path}.when"),
            "give at least one of last_user, system, headers, language",
        ));
    }
    let languages = condition
        .language
        .as_ref()
        .map(|codes| resolve_languages(&format!("{path}.when.language"), codes.items()))
        .transpose()?;
    let last_user = condition
        .last_user
        .as_deref()
        .map(|p| compile_regex(format!("{path}.when.last_user"), p))
        .transpose()?;
    let system = condition
        .system
        .as_deref()
        .map(|p| compile_regex(format!("{path}.when.system"), p))
        .transpose()?;
    let mut headers = Vec::with_capacity(condition.headers.len());
    for (name, pattern) in &condition.headers {
        let header_path = format!("{path}.when.headers.{name}");
        check_header_name(&header_path, name)?;
        headers.push((name.clone(), compile_regex(header_path, pattern)?));
    }
    let action = match &raw.then {
        RawAction {
            tier: Some(tier),
            model: None,
        } => RuleAction::Tier(
            *tier_by_name
                .get(tier)
                .ok_or_else(|| ConfigError::new(format!("{path}.then.tier"), format!("unknown tier `{tier}`")))?,
        ),
        RawAction {
            tier: None,
            model: Some(model),
        } => RuleAction::Model(
            *model_by_name
                .get(model)
                .ok_or_else(|| ConfigError::new(format!("{path}.then.model"), format!("unknown model `{model}`")))?,
        ),
        _ => {
            return Err(ConfigError::new(
                format!("{path}.then"),
                "give exactly one of `tier` or `model`",
            ))
        }
    };
    Ok(Rule {
        name: raw.name.clone(),
        last_user,
        system,
        headers,
        languages,
        action,
    })
}

/// Language codes (or `non_en`) → the set a rule accepts.
fn resolve_languages(path: &str, codes: &[String]) -> Result<LanguageSet, ConfigError> {
    if codes.is_empty() {
        return Err(ConfigError::new(path, "give at least one language code"));
    }
    let mut set = LanguageSet::default();
    for (position, code) in codes.iter().enumerate() {
        if code == LanguageSet::NON_ENGLISH {
            Language::ALL
                .into_iter()
                .filter(|language| language.is_other_than_english())
                .for_each(|language| set.insert(language));
            continue;
        }
        let language = Language::from_code(code).ok_or_else(|| {
            let known: Vec<&str> = Language::ALL.iter().map(|language| language.code()).collect();
            ConfigError::new(
                format!("{path}[{position}]"),
                format!(
                    "unknown language `{code}`; known: {}, or `{}`",
                    known.join(", "),
                    LanguageSet::NON_ENGLISH
                ),
            )
        })?;
        set.insert(language);
    }
    Ok(set)
}

#[cfg(test)]
mod reference_tests;
#[cfg(test)]
mod tests;
