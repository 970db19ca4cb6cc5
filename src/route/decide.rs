//! The routing decision for a chat request: which model or tier starts the
//! chain and why (a named model, the guardrails, a client header, a rule,
//! the score, a pinned tier), then the chain of deployments to try.

use crate::classify::{Classification, Language};
use crate::config::affinity::AffinitySource;
use crate::config::{Config, ModelId, RuleAction, TierId};
use crate::error::GatewayError;
use crate::headers::HeaderMap;
use crate::request::{ChatRequest, PromptView};

use super::candidates::candidates;
use super::pin::{self, Pinning};
use super::select::{self, Expressibility, NamedModel, Pick, Requirements};
use super::strategy::CostBasis;
use super::{affinity, chain, rules, ClientHints, DecisionSource, RoutingDecision, Situation, HEADER_FORCE_TIER};

/// Output tokens assumed for cost ordering when the request sets no limit.
const DEFAULT_OUTPUT_TOKENS: u64 = 512;

/// Where the chain starts: a named (or forced) model, or a tier.
#[derive(Debug, Clone, Copy)]
pub(super) enum Primary {
    Model(ModelId),
    Tier(TierId),
}

pub(super) fn decide(
    config: &Config,
    request: &ChatRequest<'_>,
    view: &PromptView<'_>,
    expressible: &Expressibility<'_>,
    headers: &HeaderMap,
    hints: &ClientHints,
    situation: &Situation<'_>,
) -> Result<RoutingDecision, GatewayError> {
    let requested = request.model.as_str();
    let explicit = !config.is_auto(requested);
    let named = config.model_named(requested);
    if explicit && named.is_none() {
        return Err(GatewayError::UnknownModel {
            model: requested.to_string(),
        });
    }
    let policy_cap = situation.policy.and_then(|tenant| tenant.max_tokens_per_request);
    if let (Some(cap), Some(asked)) = (policy_cap, request.max_output_tokens()) {
        if asked > cap {
            return Err(GatewayError::invalid_param(
                "max_tokens",
                format!("This key may ask for at most {cap} output tokens."),
            ));
        }
    }
    let classification = if explicit {
        hints.explain.then(|| config.classifier.classify(view))
    } else {
        Some(config.classifier.classify(view))
    };
    let prompt_tokens = classification
        .as_ref()
        .map_or_else(|| view.last_user_tokens(), |c| c.prompt_tokens);
    let max_output_tokens = request.max_output_tokens().or(policy_cap);
    let requirements = Requirements::of(view, prompt_tokens, max_output_tokens);
    let permitted = |model: ModelId| requirements.unmet_by(&config.models[model]).is_none() && situation.allows(model);
    let usable = |model: ModelId| permitted(model) && expressible.allows(config, model);
    let score = classification.as_ref().map_or(0.0, |c| c.score);
    let (ceiling, downgraded) = situation.ceiling(config);
    let tenant = situation.policy.map(|tenant| tenant.name.as_str());
    let conversation = config
        .affinity
        .as_ref()
        .and_then(|affinity| affinity::draw(affinity, request, headers, tenant));
    let mut pinning = None;

    let (primary, source, scored_tier) = match named.filter(|_| explicit && situation.confined_to.is_none()) {
        Some(model) => {
            if !situation.allows(model) {
                return Err(GatewayError::Forbidden {
                    message: format!("Model `{requested}` is not allowed for this key."),
                });
            }
            // The tenant's tier caps hold for a named model as for `auto`:
            // above `max_tier` it is refused; above the downgrade tier in
            // force, that tier serves the request.
            match select::named_model(config, model, situation.max_tier(config), ceiling) {
                NamedModel::AboveMaxTier(cap) => {
                    return Err(GatewayError::Forbidden {
                        message: format!(
                            "Model `{requested}` is above this key's maximum tier `{}`; name a model of that tier or use `auto`.",
                            config.tiers[cap].name
                        ),
                    });
                }
                NamedModel::Downgraded(tier) => (Primary::Tier(tier), DecisionSource::Explicit, None),
                NamedModel::AsAsked => {
                    if let Some(reason) = requirements.unmet_by(&config.models[model]) {
                        return Err(GatewayError::NoUsableModel {
                            message: format!(
                                "Model `{requested}` cannot take this request ({reason}; about {} tokens needed).",
                                requirements.tokens
                            ),
                        });
                    }
                    (Primary::Model(model), DecisionSource::Explicit, None)
                }
            }
        }
        // Whatever was asked, the guardrails' private model serves it.
        None if let Some(private) = situation.confined_to => {
            if let Some(reason) = requirements.unmet_by(&config.models[private]) {
                return Err(GatewayError::NoUsableModel {
                    message: format!(
                        "This request's data may only reach model `{}`, which cannot take it ({reason}).",
                        config.models[private].name
                    ),
                });
            }
            (Primary::Model(private), DecisionSource::Guardrails, None)
        }
        None => match forced_choice(config, request, view, classification.as_ref(), headers, hints)? {
            // A forced model that cannot (or may not) take the request, or
            // ranks above the tenant's ceiling, falls back to the scored
            // tier rather than failing the request.
            Some((RuleAction::Model(model), source)) if usable(model) && select::rank(config, model) <= ceiling => {
                (Primary::Model(model), source, None)
            }
            Some((RuleAction::Tier(tier), source)) => (Primary::Tier(tier.min(ceiling)), source, Some(tier)),
            _ => {
                let scored = config.tier_for_score(score);
                let pin = config.affinity.as_ref().and_then(|affinity| affinity.pin_tier);
                let (tier, source) = match (pin, conversation) {
                    (Some(pin), Some((hash, _))) => {
                        let (tier, pinned) =
                            pin::apply(config, &pin, scored, score, situation.health.pinned_tier(hash));
                        pinning = Some(pinned);
                        let source = match pinned {
                            Pinning::Kept { scored } if scored != tier => DecisionSource::Pinned,
                            _ => DecisionSource::Score,
                        };
                        (tier, source)
                    }
                    _ => (scored, DecisionSource::Score),
                };
                (Primary::Tier(tier.min(ceiling)), source, Some(tier))
            }
        },
    };
    // The tier that can actually supply a model (a stronger one, up to the
    // ceiling, when the chosen tier's windows are too small).
    let primary = match primary {
        Primary::Tier(tier) => {
            let fits = |model: ModelId| requirements.unmet_by(&config.models[model]).is_none();
            let Pick { tier: supplying, .. } = select::pick(config, tier, ceiling, &usable).ok_or_else(|| {
                // Blame the providers' formats when a permitted model fits;
                // the policy only when, without it, some model would fit.
                if select::pick(config, tier, ceiling, &permitted).is_some() {
                    expressible.refusal().unwrap_or_else(|| GatewayError::NoUsableModel {
                        message: "No configured model can take this request.".into(),
                    })
                } else if select::pick(config, tier, config.tiers.len() - 1, &fits).is_some() {
                    GatewayError::Forbidden { message: "No model this key may use can take this request.".into() }
                } else {
                    GatewayError::NoUsableModel {
                        message: format!(
                            "No configured model can take this request (about {} tokens needed, or a capability no model offers).",
                            requirements.tokens
                        ),
                    }
                }
            })?;
            Primary::Tier(supplying)
        }
        model => model,
    };
    let tier = match primary {
        Primary::Tier(tier) => Some(tier),
        Primary::Model(_) => None,
    };
    if let (Some(_), Some((hash, _)), Some(tier)) = (pinning, conversation, tier) {
        situation.health.pin_tier(hash, tier);
    }
    let (draw, affinity) = draw_for(config, tier, conversation, headers, situation);
    let basis = CostBasis {
        prompt_tokens: requirements.tokens,
        output_tokens: max_output_tokens.unwrap_or(DEFAULT_OUTPUT_TOKENS),
    };
    let stream = request.stream.unwrap_or(false);
    let models = candidates(config, primary, &usable, situation, basis, stream, draw);
    let chain = chain::build(config, &models, situation.health, draw);
    if chain.deployments.is_empty() {
        return Err(expressible.refusal().unwrap_or_else(|| GatewayError::NoUsableModel {
            message: "No configured model deployment can take this request.".into(),
        }));
    }
    Ok(RoutingDecision {
        chain: chain.deployments,
        models,
        degraded: chain.degraded,
        trials: chain.trials,
        tier,
        escalated_from: scored_tier.filter(|scored| Some(*scored) != tier),
        downgraded: downgraded && tier == Some(ceiling),
        source,
        classification,
        estimated_tokens: requirements.tokens,
        prompt_tokens: requirements.tokens.saturating_sub(max_output_tokens.unwrap_or(0)),
        max_output_tokens,
        choices: request.choices(),
        affinity,
        pinning,
    })
}

/// A tier or model forced by a trusted client header or an operator rule.
fn forced_choice(
    config: &Config,
    request: &ChatRequest<'_>,
    view: &PromptView<'_>,
    classification: Option<&Classification>,
    headers: &HeaderMap,
    hints: &ClientHints,
) -> Result<Option<(RuleAction, DecisionSource)>, GatewayError> {
    if let Some(name) = &hints.model {
        let model = config
            .model_named(name)
            .ok_or_else(|| GatewayError::UnknownModel { model: name.clone() })?;
        return Ok(Some((RuleAction::Model(model), DecisionSource::ClientHeader)));
    }
    if let Some(name) = &hints.tier {
        let tier = config
            .tier_named(name)
            .ok_or_else(|| GatewayError::invalid(format!("Unknown tier `{name}` in {HEADER_FORCE_TIER}.")))?;
        return Ok(Some((RuleAction::Tier(tier), DecisionSource::ClientHeader)));
    }
    let language = classification.map_or(Language::Undetermined, |classification| classification.language);
    Ok(rules::first_match(config, request, view, language, headers)
        .map(|index| (config.rules[index].action, DecisionSource::Rule(index))))
}

/// The draw for this request, and the affinity source that fixed it: the
/// tier's sticky header (one user, one model) first, then the request's
/// conversation (its [`affinity`] hash), else the random draw.
fn draw_for(
    config: &Config,
    tier: Option<TierId>,
    conversation: Option<(u64, AffinitySource)>,
    headers: &HeaderMap,
    situation: &Situation<'_>,
) -> (u64, Option<AffinitySource>) {
    let sticky = tier
        .and_then(|tier| config.tiers[tier].sticky_header.as_deref())
        .and_then(|name| headers.get(name));
    if let Some(value) = sticky {
        let hash = value.bytes().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3)
        });
        return (hash, None);
    }
    match conversation {
        Some((draw, source)) => (draw, Some(source)),
        None => (situation.draw, None),
    }
}
