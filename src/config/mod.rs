//! Configuration, in two steps: [`raw`] is the serde tree operators write,
//! [`Config`] the validated form the request path uses — names resolved to
//! indexes, regexes and the classifier compiled, secrets wrapped so they
//! cannot be printed. Every problem is a [`ConfigError`] naming the field.

pub mod raw;

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use regex::{Regex, RegexBuilder};

use crate::classify::Classifier;
use crate::error::ConfigError;
pub use raw::{Capability, ExplainMode, ProviderKind};
use raw::{RawAction, RawConfig, RawModel, RawProvider, RawRule, RawTier};

pub type ProviderId = usize;
pub type ModelId = usize;
pub type TierId = usize;

/// Compiled regexes are capped so a pathological rule cannot eat the VM's memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;
const MAX_CONTEXT_WINDOW: u64 = 100_000_000;

/// A credential: usable by the request path, never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug)]
pub struct Provider {
    pub name: String,
    pub kind: ProviderKind,
    pub cluster: String,
    pub base_path: String,
    pub host: Option<String>,
    pub api_key: Option<Secret>,
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
    pub price: Price,
    pub capabilities: Capabilities,
}

#[derive(Debug)]
pub struct Tier {
    pub name: String,
    /// Scores strictly below this fall in the tier (the last tier: +inf).
    pub max_score: f64,
    pub models: Vec<ModelId>,
}

#[derive(Debug)]
pub struct Rule {
    pub name: String,
    pub last_user: Option<Regex>,
    pub system: Option<Regex>,
    /// Lowercase header name and the regex its value must match.
    pub headers: Vec<(String, Regex)>,
    pub action: RuleAction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleAction {
    Tier(TierId),
    Model(ModelId),
}

#[derive(Debug)]
pub struct Config {
    pub routing_header: String,
    pub auto_models: Vec<String>,
    pub max_body_bytes: usize,
    pub explain: ExplainMode,
    pub trust_client_headers: bool,
    pub providers: Vec<Provider>,
    pub models: Vec<Model>,
    pub tiers: Vec<Tier>,
    pub rules: Vec<Rule>,
    pub classifier: Classifier,
    model_by_name: HashMap<String, ModelId, ahash::RandomState>,
    tier_by_name: HashMap<String, TierId, ahash::RandomState>,
}

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
}

fn resolve(raw: RawConfig, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    check_header_name("routing_header", &raw.routing_header)?;
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
    Ok(Config {
        routing_header: raw.routing_header,
        auto_models: raw.auto_models,
        max_body_bytes: raw.max_body_bytes,
        explain: raw.explain,
        trust_client_headers: raw.trust_client_headers,
        providers,
        models,
        tiers,
        rules,
        classifier,
        model_by_name,
        tier_by_name,
    })
}

fn check_header_name(path: &str, name: &str) -> Result<(), ConfigError> {
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

fn check_name(path: String, name: &str) -> Result<(), ConfigError> {
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
    let base_path = raw
        .base_path
        .as_deref()
        .unwrap_or("/v1")
        .trim_end_matches('/')
        .to_string();
    if !raw.base_path.as_deref().unwrap_or("/").starts_with('/')
        || base_path.bytes().any(|b| !b.is_ascii_graphic() || b == b'?')
    {
        return Err(ConfigError::new(
            format!("{path}.base_path"),
            "must be an absolute path such as `/v1`, without a query",
        ));
    }
    if let Some(host) = &raw.host {
        check_name(format!("{path}.host"), host)?;
    }
    let api_key = match (&raw.api_key, &raw.api_key_env) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(format!("{path}.api_key_env"), "set either `api_key` or `api_key_env`, not both"));
        }
        (Some(key), None) => Some(key.clone()),
        (None, Some(variable)) => Some(env(variable).filter(|value| !value.is_empty()).ok_or_else(|| {
            ConfigError::new(
                format!("{path}.api_key_env"),
                format!("environment variable `{variable}` is not set or not exposed to the Wasm VM (vm_config.environment_variables.host_env_keys)"),
            )
        })?),
        (None, None) => None,
    };
    if let Some(key) = &api_key {
        if key.is_empty() || key.bytes().any(|b| !b.is_ascii_graphic()) {
            return Err(ConfigError::new(
                format!("{path}.api_key"),
                "must be a non-empty string of visible ASCII characters",
            ));
        }
    }
    Ok(Provider {
        name: name.to_string(),
        kind: raw.kind,
        cluster: raw.cluster.clone(),
        base_path,
        host: raw.host.clone(),
        api_key: api_key.map(Secret),
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
        price: Price {
            input: raw.price.input,
            cached_input: raw.price.cached_input.unwrap_or(raw.price.input),
            output: raw.price.output,
        },
        capabilities,
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
        tiers.push(Tier {
            name: tier.name.clone(),
            max_score,
            models,
        });
    }
    Ok(tiers)
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
    if condition.last_user.is_none() && condition.system.is_none() && condition.headers.is_empty() {
        return Err(ConfigError::new(
            format!("{path}.when"),
            "give at least one of last_user, system, headers",
        ));
    }
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
        action,
    })
}

#[cfg(test)]
mod tests;
