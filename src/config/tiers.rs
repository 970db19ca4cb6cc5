//! The `tiers` section: score bands, each with its models and how the
//! primary is picked among them, plus an optional canary and cascade.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

use super::canary::{self, Canary, RawCanary};
use super::cascade::{self, Cascade, RawCascade};
use super::{check_header_name, check_name, ModelId, TierId};
use crate::error::ConfigError;

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
    pub weights: BTreeMap<String, u32>,
    /// A model taking a small share of the tier's traffic, whatever the strategy.
    #[serde(default)]
    pub canary: Option<RawCanary>,
    /// Request header whose value pins a client to the same weighted or
    /// canary choice (e.g. a user id); random otherwise.
    #[serde(default)]
    pub sticky_header: Option<String>,
    /// Assess this tier's whole answers and escalate weak ones.
    #[serde(default)]
    pub cascade: Option<RawCascade>,
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
    pub cascade: Option<Cascade>,
}

pub(super) fn resolve(
    raw: &[RawTier],
    model_by_name: &HashMap<String, ModelId, ahash::RandomState>,
) -> Result<Vec<Tier>, ConfigError> {
    if raw.is_empty() {
        return Err(ConfigError::new("tiers", "at least one tier is required"));
    }
    let mut tiers: Vec<Tier> = Vec::with_capacity(raw.len());
    for (position, tier) in raw.iter().enumerate() {
        let is_last = position + 1 == raw.len();
        let resolved = resolve_tier(&format!("tiers[{position}]"), tier, is_last, &tiers, model_by_name)?;
        tiers.push(resolved);
    }
    Ok(tiers)
}

/// The index of tier names.
pub(super) fn by_name(tiers: &[Tier]) -> HashMap<String, TierId, ahash::RandomState> {
    tiers
        .iter()
        .enumerate()
        .map(|(id, tier)| (tier.name.clone(), id))
        .collect()
}

fn resolve_tier(
    path: &str,
    raw: &RawTier,
    is_last: bool,
    earlier: &[Tier],
    model_by_name: &HashMap<String, ModelId, ahash::RandomState>,
) -> Result<Tier, ConfigError> {
    check_name(format!("{path}.name"), &raw.name)?;
    if earlier.iter().any(|tier| tier.name == raw.name) {
        return Err(ConfigError::new(
            format!("{path}.name"),
            format!("duplicate tier name `{}`", raw.name),
        ));
    }
    let max_score = max_score(path, raw.max_score, is_last, earlier.last())?;
    let models = tier_models(path, &raw.models, model_by_name)?;
    let weights = resolve_weights(path, raw)?;
    let canary = raw
        .canary
        .as_ref()
        .map(|canary| canary::resolve(path, canary, model_by_name))
        .transpose()?;
    if canary.as_ref().is_some_and(|canary| !models.contains(&canary.model)) {
        return Err(ConfigError::new(
            format!("{path}.canary.model"),
            "must be one of the tier's models (the canary takes a share of the tier's traffic)",
        ));
    }
    if let Some(header) = &raw.sticky_header {
        check_header_name(&format!("{path}.sticky_header"), header)?;
    }
    let cascade = cascade::resolve(path, raw.cascade.as_ref(), is_last)?;
    Ok(Tier {
        name: raw.name.clone(),
        max_score,
        models,
        strategy: raw.strategy,
        weights,
        canary,
        sticky_header: raw.sticky_header.clone(),
        cascade,
    })
}

/// The score a tier's band ends below: increasing from tier to tier, and
/// unbounded for the last one.
fn max_score(path: &str, score: Option<f64>, is_last: bool, previous: Option<&Tier>) -> Result<f64, ConfigError> {
    match (score, is_last) {
        (None, true) => Ok(f64::INFINITY),
        (Some(score), true) if score >= 1.0 => Ok(f64::INFINITY),
        (Some(_), true) => Err(ConfigError::new(
            format!("{path}.max_score"),
            "the last tier takes every higher score; omit max_score",
        )),
        (None, false) => Err(ConfigError::new(
            format!("{path}.max_score"),
            "required on every tier but the last",
        )),
        (Some(score), false) => {
            if !(score > 0.0 && score < 1.0) {
                return Err(ConfigError::new(
                    format!("{path}.max_score"),
                    "must be between 0 and 1 (exclusive)",
                ));
            }
            if let Some(previous) = previous {
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
            Ok(score)
        }
    }
}

/// The tier's models by id, each once.
fn tier_models(
    path: &str,
    names: &[String],
    model_by_name: &HashMap<String, ModelId, ahash::RandomState>,
) -> Result<Vec<ModelId>, ConfigError> {
    if names.is_empty() {
        return Err(ConfigError::new(
            format!("{path}.models"),
            "a tier needs at least one model",
        ));
    }
    let mut models = Vec::with_capacity(names.len());
    for (index, model) in names.iter().enumerate() {
        let id = *model_by_name
            .get(model)
            .ok_or_else(|| ConfigError::new(format!("{path}.models[{index}]"), format!("unknown model `{model}`")))?;
        if models.contains(&id) {
            return Err(ConfigError::new(
                format!("{path}.models[{index}]"),
                format!("model `{model}` is listed twice"),
            ));
        }
        models.push(id);
    }
    Ok(models)
}

/// Each model's weight, in the order of the tier's `models`.
fn resolve_weights(path: &str, raw: &RawTier) -> Result<Vec<u32>, ConfigError> {
    let mut weights = vec![0u32; raw.models.len()];
    for (name, weight) in &raw.weights {
        let position = raw.models.iter().position(|model| model == name).ok_or_else(|| {
            ConfigError::new(
                format!("{path}.weights.{name}"),
                format!("`{name}` is not one of this tier's models"),
            )
        })?;
        weights[position] = *weight;
    }
    if raw.strategy == Strategy::Weighted && weights.iter().all(|weight| *weight == 0) {
        return Err(ConfigError::new(
            format!("{path}.weights"),
            "strategy `weighted` needs a weight above 0",
        ));
    }
    Ok(weights)
}
