//! The candidate models of a decided route, in the order their deployments
//! are tried: the primary's tier ordered by its strategy, stronger tiers
//! behind it, or a named model and its fallbacks.

use crate::config::{Config, ModelId};

use super::decide::Primary;
use super::strategy::{self, CostBasis, ModelStats};
use super::{select, HealthView, Situation};

/// Ordered candidate models: the primary's tier (or the named model), then
/// fallbacks; only models that can take the request.
pub(super) fn candidates(
    config: &Config,
    primary: Primary,
    usable: &dyn Fn(ModelId) -> bool,
    situation: &Situation<'_>,
    basis: CostBasis,
    stream: bool,
    draw: u64,
) -> Vec<ModelId> {
    let health = situation.health;
    let (ceiling, _) = situation.ceiling(config);
    let fits = |model: &ModelId| usable(*model);
    let mut ordered: Vec<ModelId> = match primary {
        // A fallback ranked above the ceiling is left out, as a stronger
        // tier is for tier routing.
        // Confined: the private model's own deployments, no fallbacks.
        Primary::Model(model) if situation.confined_to == Some(model) => std::iter::once(model).filter(fits).collect(),
        Primary::Model(model) => std::iter::once(model)
            .chain(config.models[model].fallbacks.iter().copied())
            .filter(|candidate| fits(candidate) && select::rank(config, *candidate) <= ceiling)
            .collect(),
        Primary::Tier(tier) => {
            let fitting: Vec<ModelId> = config.tiers[tier].models.iter().copied().filter(fits).collect();
            let stats: Vec<ModelStats> = fitting
                .iter()
                .map(|model| model_stats(config, *model, health, stream))
                .collect();
            let canary_share = config.tiers[tier].canary.as_ref().map_or(0.0, |canary| {
                match (&canary.rollout, health.canary_record(tier)) {
                    (Some(rollout), Some(record)) => record.share(rollout),
                    _ => canary.share,
                }
            });
            let mut ordered = strategy::order(config, &config.tiers[tier], &fitting, &stats, basis, draw, canary_share);
            // Stronger tiers (up to the ceiling) back the tier up when its own models fail.
            for stronger in config.tiers.iter().take(ceiling + 1).skip(tier + 1) {
                ordered.extend(stronger.models.iter().copied().filter(fits));
            }
            ordered
        }
    };
    let mut seen = Vec::with_capacity(ordered.len());
    ordered.retain(|model| {
        let first = !seen.contains(model);
        seen.push(*model);
        first
    });
    ordered
}

/// What the strategies need about a model, from its deployments' health.
fn model_stats(config: &Config, model: ModelId, health: &dyn HealthView, stream: bool) -> ModelStats {
    let mut stats = ModelStats::default();
    for &deployment in &config.models[model].deployments {
        let record = health.health(deployment);
        stats.in_flight += record.in_flight(health.now_ms(), &config.resilience.health);
        let histogram = if stream { &record.first_token } else { &record.latency };
        if let Some(p95) = histogram.quantile_ms(0.95) {
            stats.p95_ms = Some(stats.p95_ms.map_or(p95, |known| known.min(p95)));
        }
    }
    stats
}
