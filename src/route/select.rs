//! Picking a model from a tier's pool: the first candidate that can take the
//! request (context window, tools, images, JSON output). When none in the
//! tier can, stronger tiers are tried first (they usually have the larger
//! windows), then weaker ones.

use std::cell::RefCell;

use crate::config::{Config, Model, ModelId, TierId};
use crate::error::GatewayError;
use crate::providers::{self, Operation, ProviderKind};
use crate::request::{PromptView, ResponseFormatKind};

use super::attempts::NativeApi;

/// What a model must offer to take a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Requirements {
    /// Estimated prompt tokens plus the requested output budget.
    pub tokens: u64,
    pub tools: bool,
    pub vision: bool,
    pub json_output: bool,
}

impl Requirements {
    pub fn of(view: &PromptView<'_>, prompt_tokens: u32, max_output_tokens: Option<u64>) -> Requirements {
        Requirements {
            tokens: u64::from(prompt_tokens) + u64::from(view.context_tokens) + max_output_tokens.unwrap_or(0),
            tools: view.has_tools,
            vision: view.images > 0,
            json_output: view.response_format == ResponseFormatKind::JsonSchema,
        }
    }

    /// Why `model` cannot take the request, if it cannot.
    pub fn unmet_by(&self, model: &Model) -> Option<&'static str> {
        if self.tokens > model.context_window {
            Some("context window too small")
        } else if self.tools && !model.capabilities.tools {
            Some("no tool support")
        } else if self.vision && !model.capabilities.vision {
            Some("no image support")
        } else if self.json_output && !model.capabilities.json_output {
            Some("no structured output support")
        } else {
            None
        }
    }
}

/// Which kinds of provider can express one request (an Anthropic adapter
/// cannot send an audio part, a `grammar` response format or a web-search
/// tool), asked of each kind's adapter at most once. A model whose provider
/// cannot is left out of the chain like one whose window is too small.
pub struct Expressibility<'b> {
    body: &'b [u8],
    operation: Operation,
    stream: bool,
    answers: RefCell<Vec<(ProviderKind, Result<(), GatewayError>)>>,
    /// Only providers speaking this API natively may take the request, and
    /// why (the client's 400 when none can).
    native_only: Option<(NativeApi, GatewayError)>,
}

impl<'b> Expressibility<'b> {
    pub fn new(body: &'b [u8], operation: Operation, stream: bool) -> Self {
        Expressibility {
            body,
            operation,
            stream,
            answers: RefCell::new(Vec::new()),
            native_only: None,
        }
    }

    pub fn native_only(self, native_only: Option<(NativeApi, GatewayError)>) -> Self {
        Expressibility { native_only, ..self }
    }

    pub fn allows(&self, config: &Config, model: ModelId) -> bool {
        let spec = &config.providers[config.models[model].provider].spec;
        if let Some((api, _)) = &self.native_only {
            return super::attempts::speaks(spec, *api);
        }
        if let Some((_, answer)) = self.answers.borrow().iter().find(|(kind, _)| *kind == spec.kind) {
            return answer.is_ok();
        }
        let answer = providers::check_expressible(spec, self.operation, self.stream, self.body);
        let allowed = answer.is_ok();
        self.answers.borrow_mut().push((spec.kind, answer));
        allowed
    }

    /// Why a provider could not take the request, for the client's 400
    /// when no provider can.
    pub fn refusal(&self) -> Option<GatewayError> {
        if let Some((_, refusal)) = &self.native_only {
            return Some(refusal.clone());
        }
        let answers = self.answers.borrow();
        let (_, refusal) = answers.iter().find(|(_, answer)| answer.is_err())?;
        let refusal = refusal.clone().err()?;
        Some(match refusal {
            GatewayError::InvalidRequest { message, param } => GatewayError::InvalidRequest {
                message: format!("No provider this request may go to can take it: {message}"),
                param,
            },
            other => other,
        })
    }
}

/// A model chosen for a tier, and the tier whose pool supplied it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pick {
    pub model: ModelId,
    pub tier: TierId,
}

/// The first usable model, starting with `tier`'s pool, then stronger tiers
/// up to `ceiling`, then weaker ones.
pub fn pick(config: &Config, tier: TierId, ceiling: TierId, usable: &dyn Fn(ModelId) -> bool) -> Option<Pick> {
    let stronger = tier + 1..=ceiling.min(config.tiers.len() - 1);
    let weaker = (0..tier).rev();
    std::iter::once(tier)
        .chain(stronger)
        .chain(weaker)
        .find_map(|candidate_tier| {
            config.tiers[candidate_tier]
                .models
                .iter()
                .find(|&&model| usable(model))
                .map(|&model| Pick {
                    model,
                    tier: candidate_tier,
                })
        })
}

/// A model's rank among the tiers: the weakest tier whose pool holds it (a
/// model may sit in several pools; the cheapest place it is offered is what
/// it is). A model in no tier's pool ranks with the strongest tier, so a
/// tier cap never lets through a model it cannot place.
pub fn rank(config: &Config, model: ModelId) -> TierId {
    config
        .tiers
        .iter()
        .position(|tier| tier.models.contains(&model))
        .unwrap_or_else(|| config.tiers.len().saturating_sub(1))
}

/// What a tenant's tier caps make of a model the client named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamedModel {
    /// Within the caps: served as asked.
    AsAsked,
    /// Above the tenant's downgrade tier while it is past its soft
    /// threshold: the downgrade tier serves the request instead.
    Downgraded(TierId),
    /// Above the tenant's `max_tier`: refused.
    AboveMaxTier(TierId),
}

/// Applies `max_tier` (hard: refused) and `ceiling` (the downgrade tier when
/// it is in force, else `max_tier`: served by that tier) to a named model.
pub fn named_model(config: &Config, model: ModelId, max_tier: TierId, ceiling: TierId) -> NamedModel {
    let rank = rank(config, model);
    if rank > max_tier {
        NamedModel::AboveMaxTier(max_tier)
    } else if rank > ceiling {
        NamedModel::Downgraded(ceiling)
    } else {
        NamedModel::AsAsked
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::sample_config;

    fn needs(tokens: u64) -> Requirements {
        Requirements {
            tokens,
            ..Requirements::default()
        }
    }

    fn pick(config: &Config, tier: TierId, requirements: &Requirements) -> Option<Pick> {
        super::pick(config, tier, config.tiers.len() - 1, &|model| {
            requirements.unmet_by(&config.models[model]).is_none()
        })
    }

    #[test]
    fn the_first_model_of_the_tier_wins() {
        let config = sample_config();
        let pick = pick(&config, 0, &needs(10)).unwrap();
        assert_eq!(config.models[pick.model].name, "small");
        assert_eq!(pick.tier, 0);
    }

    #[test]
    fn a_model_whose_window_is_too_small_is_skipped() {
        let config = sample_config();
        let pick = pick(&config, 0, &needs(5_000)).unwrap();
        assert_eq!(config.models[pick.model].name, "medium");
        assert_eq!(pick.tier, 0);
    }

    #[test]
    fn stronger_tiers_are_tried_before_weaker_ones() {
        let config = sample_config();
        // Only `medium` (200k) fits 150k tokens; it sits in tiers 0 and 1,
        // and from tier 2 the search goes down to tier 1 first.
        let pick = pick(&config, 2, &needs(150_000)).unwrap();
        assert_eq!(config.models[pick.model].name, "medium");
        assert_eq!(pick.tier, 1);
    }

    #[test]
    fn the_ceiling_stops_escalation_and_the_predicate_filters() {
        let config = sample_config();
        // 150k tokens only fit `medium`, in tiers 0 and 1; capped at tier 0 it is found there.
        let capped = super::pick(&config, 0, 0, &|model| {
            needs(150_000).unmet_by(&config.models[model]).is_none()
        })
        .unwrap();
        assert_eq!(capped.tier, 0);
        let small = config.model_named("small").unwrap();
        let not_small = super::pick(&config, 0, 2, &|model| model != small).unwrap();
        assert_eq!(config.models[not_small.model].name, "medium");
        assert_eq!(super::pick(&config, 0, 0, &|_| false), None);
    }

    #[test]
    fn a_model_ranks_with_the_weakest_tier_that_offers_it() {
        let config = sample_config();
        let rank_of = |name: &str| rank(&config, config.model_named(name).unwrap());
        assert_eq!(rank_of("small"), 0);
        // `medium` is in the simple and the standard pools: it ranks simple.
        assert_eq!(rank_of("medium"), 0);
        assert_eq!(rank_of("large"), 2);
        // In no pool: ranked with the strongest tier, so caps hold it back.
        assert_eq!(rank_of("vision-less"), 2);
    }

    #[test]
    fn a_named_model_above_max_tier_is_refused_and_above_the_ceiling_downgraded() {
        let config = sample_config();
        let large = config.model_named("large").unwrap();
        let small = config.model_named("small").unwrap();
        let unranked = config.model_named("vision-less").unwrap();
        // No caps: everything as asked.
        for model in [small, large, unranked] {
            assert_eq!(named_model(&config, model, 2, 2), NamedModel::AsAsked);
        }
        // max_tier standard: the complex model and the unranked one are refused.
        assert_eq!(named_model(&config, large, 1, 1), NamedModel::AboveMaxTier(1));
        assert_eq!(named_model(&config, unranked, 1, 1), NamedModel::AboveMaxTier(1));
        assert_eq!(named_model(&config, small, 1, 1), NamedModel::AsAsked);
        // Downgraded to simple (max_tier complex): served by the simple tier.
        assert_eq!(named_model(&config, large, 2, 0), NamedModel::Downgraded(0));
        assert_eq!(named_model(&config, small, 2, 0), NamedModel::AsAsked);
        // Both: the hard cap wins over the downgrade.
        assert_eq!(named_model(&config, large, 1, 0), NamedModel::AboveMaxTier(1));
    }

    #[test]
    fn nothing_fits_a_request_larger_than_every_window() {
        assert_eq!(pick(&sample_config(), 0, &needs(10_000_000)), None);
    }

    #[test]
    fn capabilities_are_required_only_when_used() {
        let config = sample_config();
        let text_only = &config.models[config.model_named("vision-less").unwrap()];
        assert_eq!(
            Requirements {
                vision: true,
                ..needs(1)
            }
            .unmet_by(text_only),
            Some("no image support")
        );
        assert_eq!(
            Requirements {
                tools: true,
                ..needs(1)
            }
            .unmet_by(text_only),
            None
        );
        assert_eq!(needs(200_000).unmet_by(text_only), Some("context window too small"));
    }
}
