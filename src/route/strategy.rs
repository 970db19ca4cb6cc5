//! Ordering a tier's models: which one is primary and which follow as
//! fallbacks, by the tier's strategy, then the canary's share.
//!
//! Randomness comes in as `draw` (a uniform u64): from the VM's generator,
//! or a hash of the sticky header so one user keeps one model. Everything
//! else is deterministic, so tests pin draws instead of mocking randomness.

use crate::config::{Config, ModelId, Strategy, Tier};

/// What the strategies read about a model, summarised over its deployments.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ModelStats {
    /// Recent p95 latency (time to first token for streams), if known.
    pub p95_ms: Option<u64>,
    /// Attempts in flight across its deployments.
    pub in_flight: u32,
}

/// The request facts cost ordering needs.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CostBasis {
    pub prompt_tokens: u64,
    pub output_tokens: u64,
}

/// A uniform value in [0, 1) from a draw.
pub fn unit(draw: u64) -> f64 {
    (draw >> 11) as f64 / (1u64 << 53) as f64
}

/// An independent draw derived from another (SplitMix64 finaliser).
pub fn derive(draw: u64, salt: u64) -> u64 {
    let mut z = draw.wrapping_add(salt.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Index picked from `weights` by a draw (weights all zero: the first).
pub fn weighted_index(weights: &[u32], draw: u64) -> usize {
    let total: u64 = weights.iter().map(|&weight| u64::from(weight)).sum();
    if total == 0 {
        return 0;
    }
    let mut target = (unit(draw) * total as f64) as u64;
    for (index, &weight) in weights.iter().enumerate() {
        if target < u64::from(weight) {
            return index;
        }
        target -= u64::from(weight);
    }
    weights.len().saturating_sub(1)
}

/// `candidates` (a subset of the tier's models, in the tier's order) ordered
/// for this request. `stats` is indexed like `candidates`; `canary_share` is
/// the tier's canary's share now (its rollout's step, see [`crate::canary`]).
pub fn order(
    config: &Config,
    tier: &Tier,
    candidates: &[ModelId],
    stats: &[ModelStats],
    basis: CostBasis,
    draw: u64,
    canary_share: f64,
) -> Vec<ModelId> {
    let mut positions: Vec<usize> = (0..candidates.len()).collect();
    match tier.strategy {
        Strategy::Priority => {}
        Strategy::Weighted => {
            let weights: Vec<u32> = candidates.iter().map(|model| weight_in_tier(tier, *model)).collect();
            let primary = weighted_index(&weights, derive(draw, 1));
            positions.remove(primary);
            positions.insert(0, primary);
        }
        // Unknown latency sorts first: a deployment without data gets tried
        // (and measured) instead of starving behind one that has data.
        Strategy::Latency => positions.sort_by_key(|&position| stats[position].p95_ms.unwrap_or(0)),
        Strategy::Cost => positions.sort_by(|&a, &b| {
            estimated_cost(config, candidates[a], basis).total_cmp(&estimated_cost(config, candidates[b], basis))
        }),
        Strategy::LeastBusy => positions.sort_by_key(|&position| stats[position].in_flight),
    }
    let mut ordered: Vec<ModelId> = positions.into_iter().map(|position| candidates[position]).collect();
    if let Some(canary) = &tier.canary {
        apply_canary(&mut ordered, canary.model, canary_share, derive(draw, 2));
    }
    ordered
}

fn weight_in_tier(tier: &Tier, model: ModelId) -> u32 {
    tier.models
        .iter()
        .position(|known| *known == model)
        .map_or(0, |position| tier.weights[position])
}

/// USD for the request's estimated tokens.
pub fn estimated_cost(config: &Config, model: ModelId, basis: CostBasis) -> f64 {
    let price = config.models[model].price;
    (price.input * basis.prompt_tokens as f64 + price.output * basis.output_tokens as f64) / 1e6
}

/// The canary goes first for its share of draws, and last otherwise (it
/// stays a fallback of last resort).
fn apply_canary(ordered: &mut Vec<ModelId>, canary: ModelId, share: f64, draw: u64) {
    let Some(position) = ordered.iter().position(|model| *model == canary) else {
        return;
    };
    let model = ordered.remove(position);
    if unit(draw) < share {
        ordered.insert(0, model);
    } else {
        ordered.push(model);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const CONFIG: &str = r#"{
      "providers": {"p": {"cluster": "c"}},
      "models": {
        "a": {"provider": "p", "price": {"input": 3, "output": 15}},
        "b": {"provider": "p", "price": {"input": 0.5, "output": 1.5}},
        "c": {"provider": "p", "price": {"input": 1, "output": 2}}
      },
      "tiers": [
        {"name": "priority", "max_score": 0.2, "models": ["a", "b", "c"]},
        {"name": "weighted", "max_score": 0.4, "models": ["a", "b", "c"], "strategy": "weighted", "weights": {"a": 70, "b": 30}},
        {"name": "latency", "max_score": 0.6, "models": ["a", "b", "c"], "strategy": "latency"},
        {"name": "cost", "max_score": 0.7, "models": ["a", "b", "c"], "strategy": "cost"},
        {"name": "busy", "max_score": 0.8, "models": ["a", "b", "c"], "strategy": "least_busy"},
        {"name": "canary", "models": ["a", "b", "c"], "canary": {"model": "c", "share": 0.05}}
      ]
    }"#;

    fn config() -> Config {
        Config::parse(CONFIG.as_bytes(), &|_| None).unwrap()
    }

    fn names(config: &Config, order: &[ModelId]) -> Vec<String> {
        order.iter().map(|model| config.models[*model].name.clone()).collect()
    }

    thread_local! {
        static CONFIG_ONCE: Config = config();
    }

    fn ordered(tier: &str, stats: [ModelStats; 3], draw: u64) -> Vec<String> {
        CONFIG_ONCE.with(|config| ordered_in(config, tier, stats, draw))
    }

    fn ordered_in(config: &Config, tier: &str, stats: [ModelStats; 3], draw: u64) -> Vec<String> {
        let tier = &config.tiers[config.tier_named(tier).unwrap()];
        let candidates = tier.models.clone();
        let basis = CostBasis {
            prompt_tokens: 1_000,
            output_tokens: 500,
        };
        let share = tier.canary.as_ref().map_or(0.0, |canary| canary.share);
        names(config, &order(config, tier, &candidates, &stats, basis, draw, share))
    }

    #[test]
    fn priority_keeps_the_configured_order() {
        assert_eq!(ordered("priority", Default::default(), 123), ["a", "b", "c"]);
    }

    #[test]
    fn weighted_splits_the_primary_by_weight() {
        let mut first_a = 0;
        for draw in 0..10_000u64 {
            if ordered("weighted", Default::default(), derive(draw, 99))[0] == "a" {
                first_a += 1;
            }
        }
        assert!((6_700..=7_300).contains(&first_a), "{first_a}");
        let order = ordered("weighted", Default::default(), 5);
        assert_eq!(order.len(), 3, "the others stay as fallbacks");
    }

    #[test]
    fn the_same_draw_gives_the_same_choice() {
        assert_eq!(
            ordered("weighted", Default::default(), 77),
            ordered("weighted", Default::default(), 77)
        );
    }

    #[test]
    fn latency_puts_the_fastest_first_and_tries_unknown_ones() {
        let stats = [
            ModelStats {
                p95_ms: Some(3_000),
                in_flight: 0,
            },
            ModelStats {
                p95_ms: Some(400),
                in_flight: 0,
            },
            ModelStats {
                p95_ms: Some(900),
                in_flight: 0,
            },
        ];
        assert_eq!(ordered("latency", stats, 0), ["b", "c", "a"]);
        let unknown = [stats[0], stats[1], ModelStats::default()];
        assert_eq!(ordered("latency", unknown, 0), ["c", "b", "a"]);
    }

    #[test]
    fn cost_puts_the_cheapest_first() {
        assert_eq!(ordered("cost", Default::default(), 0), ["b", "c", "a"]);
    }

    #[test]
    fn least_busy_puts_the_idlest_first() {
        let stats = [
            ModelStats {
                in_flight: 5,
                ..Default::default()
            },
            ModelStats {
                in_flight: 9,
                ..Default::default()
            },
            ModelStats {
                in_flight: 1,
                ..Default::default()
            },
        ];
        assert_eq!(ordered("busy", stats, 0), ["c", "a", "b"]);
    }

    #[test]
    fn the_canary_takes_its_share_and_is_last_otherwise() {
        let mut canary_first = 0;
        for draw in 0..20_000u64 {
            let order = ordered("canary", Default::default(), derive(draw, 7));
            if order[0] == "c" {
                canary_first += 1;
            } else {
                assert_eq!(order, ["a", "b", "c"]);
            }
        }
        assert!((800..=1_200).contains(&canary_first), "{canary_first}");
    }

    #[test]
    fn weighted_index_respects_zero_weights() {
        for draw in 0..1_000u64 {
            assert_ne!(weighted_index(&[5, 0, 5], derive(draw, 3)), 1);
        }
        assert_eq!(weighted_index(&[0, 0], 1), 0);
        assert_eq!(weighted_index(&[], 1), 0);
    }
}
