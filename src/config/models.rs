//! The `models` section: what clients can ask for, each on one provider,
//! with its window, price, capabilities, limits and fallbacks. A model
//! reached with one of its provider's keys is a [`Deployment`], the unit of
//! health.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

use super::governance::{self, RawRate};
use super::providers::Provider;
use super::{check_name, DeploymentId, ModelId, ProviderId, STATE_PREFIX};
use crate::error::ConfigError;

const DEFAULT_CONTEXT_WINDOW: u64 = 128_000;
const MAX_CONTEXT_WINDOW: u64 = 100_000_000;

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
    pub limits: RawRate,
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

impl Capabilities {
    /// The listed capabilities; a model without a list is taken to have them all.
    fn from_list(list: Option<&[Capability]>) -> Capabilities {
        match list {
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
        }
    }
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

/// The models (in name order), the index of their names, and every
/// deployment of them.
pub(super) struct ResolvedModels {
    pub models: Vec<Model>,
    pub by_name: HashMap<String, ModelId, ahash::RandomState>,
    pub deployments: Vec<Deployment>,
}

pub(super) fn resolve(raw: &BTreeMap<String, RawModel>, providers: &[Provider]) -> Result<ResolvedModels, ConfigError> {
    if raw.is_empty() {
        return Err(ConfigError::new("models", "at least one model is required"));
    }
    let provider_by_name: BTreeMap<&str, ProviderId> = providers
        .iter()
        .enumerate()
        .map(|(id, provider)| (provider.name.as_str(), id))
        .collect();
    let mut models = Vec::with_capacity(raw.len());
    let mut by_name = HashMap::with_hasher(ahash::RandomState::new());
    for (name, model) in raw {
        by_name.insert(name.clone(), models.len());
        models.push(resolve_model(name, model, &provider_by_name, providers)?);
    }
    let deployments = list_deployments(&mut models, providers);
    resolve_fallbacks(raw, &mut models, &by_name)?;
    Ok(ResolvedModels {
        models,
        by_name,
        deployments,
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
    let context_window = token_bounds(&path, raw)?;
    let price = resolve_price(&path, &raw.price)?;
    Ok(Model {
        name: name.to_string(),
        provider,
        upstream_id_json: crate::json_edit::quote(&upstream_id),
        upstream_id,
        cluster,
        context_window,
        max_output_tokens: raw.max_output_tokens,
        price,
        capabilities: Capabilities::from_list(raw.capabilities.as_deref()),
        limits: governance::rate_limits(&format!("{path}.limits"), &raw.limits)?,
        deployments: Vec::new(),
        fallbacks: Vec::new(),
    })
}

/// The context window, checked along with the output bound it holds.
fn token_bounds(path: &str, raw: &RawModel) -> Result<u64, ConfigError> {
    let context_window = raw.context_window.unwrap_or(DEFAULT_CONTEXT_WINDOW);
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
    Ok(context_window)
}

/// Cached input costs what input does unless priced apart.
fn resolve_price(path: &str, raw: &RawPrice) -> Result<Price, ConfigError> {
    let prices = [
        ("input", raw.input),
        ("output", raw.output),
        ("cached_input", raw.cached_input.unwrap_or(0.0)),
    ];
    for (field, value) in prices {
        if !value.is_finite() || value < 0.0 {
            return Err(ConfigError::new(
                format!("{path}.price.{field}"),
                "must be a finite number >= 0 (USD per million tokens)",
            ));
        }
    }
    Ok(Price {
        input: raw.input,
        cached_input: raw.cached_input.unwrap_or(raw.input),
        output: raw.output,
    })
}

/// One deployment per model and key of its provider, recorded on the model.
fn list_deployments(models: &mut [Model], providers: &[Provider]) -> Vec<Deployment> {
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
    deployments
}

/// Each model's `fallbacks` by id, once all names are known.
fn resolve_fallbacks(
    raw: &BTreeMap<String, RawModel>,
    models: &mut [Model],
    model_by_name: &HashMap<String, ModelId, ahash::RandomState>,
) -> Result<(), ConfigError> {
    for (name, raw_model) in raw {
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
    Ok(())
}
