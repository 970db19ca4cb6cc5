//! Picking a model from a tier's pool: the first candidate that can take the
//! request (context window, tools, images, JSON output). When none in the
//! tier can, stronger tiers are tried first (they usually have the larger
//! windows), then weaker ones.

use std::cell::RefCell;

use crate::config::{Config, Model, ModelId, TierId};
use crate::error::GatewayError;
use crate::providers::{self, Operation, ProviderKind};
use crate::request::{PromptView, ResponseFormatKind};

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
}

impl<'b> Expressibility<'b> {
    pub fn new(body: &'b [u8], operation: Operation, stream: bool) -> Self {
        Expressibility {
            body,
            operation,
            stream,
            answers: RefCell::new(Vec::new()),
        }
    }

    pub fn allows(&self, config: &Config, model: ModelId) -> bool {
        let spec = &config.providers[config.models[model].provider].spec;
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
