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
use super::chain::Chain;
use super::pin::{self, Pinning};
use super::select::{self, Expressibility, NamedModel, Requirements};
use super::strategy::CostBasis;
use super::{affinity, chain, rules, ClientHints, DecisionSource, RoutingDecision, Situation, HEADER_FORCE_TIER};

/// Output tokens assumed for cost ordering when the request sets no limit.
const DEFAULT_OUTPUT_TOKENS: u64 = 512;

/// A conversation's affinity hash and what named it.
type Conversation = (u64, AffinitySource);

/// Where the chain starts: a named (or forced) model, or a tier.
#[derive(Debug, Clone, Copy)]
pub(super) enum Primary {
    Model(ModelId),
    Tier(TierId),
}

impl Primary {
    /// The tier whose pool supplies the primary (none for a model served
    /// as named).
    fn tier(self) -> Option<TierId> {
        match self {
            Primary::Tier(tier) => Some(tier),
            Primary::Model(_) => None,
        }
    }
}

/// Which models can take this request: its requirements met (`fits`), the
/// tenant allowing them too (`permitted`), and their provider able to
/// express the request (`usable`).
struct Fit<'d> {
    config: &'d Config,
    situation: &'d Situation<'d>,
    expressible: &'d Expressibility<'d>,
    requirements: Requirements,
}

impl Fit<'_> {
    fn fits(&self, model: ModelId) -> bool {
        self.requirements.unmet_by(&self.config.models[model]).is_none()
    }

    fn permitted(&self, model: ModelId) -> bool {
        self.fits(model) && self.situation.allows(model)
    }

    fn usable(&self, model: ModelId) -> bool {
        self.permitted(model) && self.expressible.allows(self.config, model)
    }

    /// The tier that can actually supply a model for `tier`: itself, or a
    /// stronger one up to the ceiling when its models' windows are too small.
    fn supplying_tier(&self, tier: TierId, ceiling: TierId) -> Result<TierId, GatewayError> {
        select::pick(self.config, tier, ceiling, &|model| self.usable(model))
            .map(|pick| pick.tier)
            .ok_or_else(|| self.no_tier_supplies(tier, ceiling))
    }

    /// Why no tier from `tier` up can take the request. Blame the providers'
    /// formats when a permitted model fits; the policy only when, without
    /// it, some model would fit.
    fn no_tier_supplies(&self, tier: TierId, ceiling: TierId) -> GatewayError {
        let config = self.config;
        if select::pick(config, tier, ceiling, &|model| self.permitted(model)).is_some() {
            self.expressible
                .refusal()
                .unwrap_or_else(|| GatewayError::NoUsableModel {
                    message: "No configured model can take this request.".into(),
                })
        } else if select::pick(config, tier, config.tiers.len() - 1, &|model| self.fits(model)).is_some() {
            GatewayError::Forbidden {
                message: "No model this key may use can take this request.".into(),
            }
        } else {
            GatewayError::NoUsableModel {
                message: format!(
                    "No configured model can take this request (about {} tokens needed, or a capability no model offers).",
                    self.requirements.tokens
                ),
            }
        }
    }
}

/// What chose the primary: the primary, its [`DecisionSource`], the tier
/// first chosen (a different tier may have to supply the model), and what
/// tier pinning did.
struct Choice {
    primary: Primary,
    source: DecisionSource,
    chosen_tier: Option<TierId>,
    pinning: Option<Pinning>,
}

impl Choice {
    fn unpinned(primary: Primary, source: DecisionSource, chosen_tier: Option<TierId>) -> Choice {
        Choice {
            primary,
            source,
            chosen_tier,
            pinning: None,
        }
    }
}

/// Decides a chat request's route: what chose its primary (a named model,
/// the guardrails' private model, a client header or rule, the score), the
/// tier that can supply it, and the chain of deployments drawn for it.
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
    let max_output_tokens = output_budget(request, situation)?;
    let classification = classify(config, view, hints, explicit);
    let prompt_tokens = classification
        .as_ref()
        .map_or_else(|| view.last_user_tokens(), |c| c.prompt_tokens);
    let fit = Fit {
        config,
        situation,
        expressible,
        requirements: Requirements::of(view, prompt_tokens, max_output_tokens),
    };
    let (ceiling, downgraded) = situation.ceiling(config);
    let conversation = conversation_of(config, request, headers, situation);
    let choice = match named.filter(|_| explicit && situation.confined_to.is_none()) {
        Some(model) => named_choice(&fit, model, requested, ceiling)?,
        // Whatever was asked, the guardrails' private model serves it.
        None if let Some(private) = situation.confined_to => confined_choice(&fit, private)?,
        None => {
            let forced = forced_choice(config, request, view, classification.as_ref(), headers, hints)?;
            let score = classification.as_ref().map_or(0.0, |c| c.score);
            auto_choice(&fit, forced, score, ceiling, conversation)
        }
    };
    let primary = match choice.primary {
        Primary::Tier(tier) => Primary::Tier(fit.supplying_tier(tier, ceiling)?),
        model => model,
    };
    let tier = primary.tier();
    // The pin records the tier that supplies the request, not the one first chosen.
    if let (Some(_), Some((hash, _)), Some(tier)) = (choice.pinning, conversation, tier) {
        situation.health.pin_tier(hash, tier);
    }
    let (draw, affinity) = draw_for(config, tier, conversation, headers, situation);
    let stream = request.stream.unwrap_or(false);
    let (models, chain) = chain_for(&fit, primary, max_output_tokens, stream, draw)?;
    Ok(RoutingDecision {
        chain: chain.deployments,
        models,
        degraded: chain.degraded,
        trials: chain.trials,
        tier,
        escalated_from: choice.chosen_tier.filter(|chosen| Some(*chosen) != tier),
        downgraded: downgraded && tier == Some(ceiling),
        source: choice.source,
        classification,
        estimated_tokens: fit.requirements.tokens,
        prompt_tokens: fit.requirements.tokens.saturating_sub(max_output_tokens.unwrap_or(0)),
        max_output_tokens,
        choices: request.choices(),
        predicted_output_tokens: request.predicted_output_tokens(),
        affinity,
        pinning: choice.pinning,
    })
}

/// The request's output budget: what it asks for, refused above the
/// tenant's per-request cap, or that cap when it asks for nothing.
fn output_budget(request: &ChatRequest<'_>, situation: &Situation<'_>) -> Result<Option<u64>, GatewayError> {
    let policy_cap = situation.policy.and_then(|tenant| tenant.max_tokens_per_request);
    if let (Some(cap), Some(asked)) = (policy_cap, request.max_output_tokens()) {
        if asked > cap {
            return Err(GatewayError::invalid_param(
                "max_tokens",
                format!("This key may ask for at most {cap} output tokens."),
            ));
        }
    }
    Ok(request.max_output_tokens().or(policy_cap))
}

/// The classifier's verdict: `auto` routes on its score; a named model
/// needs it only to explain the request.
fn classify(config: &Config, view: &PromptView<'_>, hints: &ClientHints, explicit: bool) -> Option<Classification> {
    if explicit {
        hints.explain.then(|| config.classifier.classify(view))
    } else {
        Some(config.classifier.classify(view))
    }
}

/// The conversation the request belongs to, when affinity is configured
/// and one of its sources names one (per tenant: see [`affinity::draw`]).
fn conversation_of(
    config: &Config,
    request: &ChatRequest<'_>,
    headers: &HeaderMap,
    situation: &Situation<'_>,
) -> Option<Conversation> {
    let tenant = situation.policy.map(|tenant| tenant.name.as_str());
    config
        .affinity
        .as_ref()
        .and_then(|affinity| affinity::draw(affinity, request, headers, tenant))
}

/// A model the client named. The tenant's tier caps hold for it as for
/// `auto`: above `max_tier` it is refused; above the downgrade tier in
/// force, that tier serves the request.
fn named_choice(fit: &Fit<'_>, model: ModelId, requested: &str, ceiling: TierId) -> Result<Choice, GatewayError> {
    let config = fit.config;
    if !fit.situation.allows(model) {
        return Err(GatewayError::Forbidden {
            message: format!("Model `{requested}` is not allowed for this key."),
        });
    }
    match select::named_model(config, model, fit.situation.max_tier(config), ceiling) {
        NamedModel::AboveMaxTier(cap) => Err(GatewayError::Forbidden {
            message: format!(
                "Model `{requested}` is above this key's maximum tier `{}`; name a model of that tier or use `auto`.",
                config.tiers[cap].name
            ),
        }),
        NamedModel::Downgraded(tier) => Ok(Choice::unpinned(Primary::Tier(tier), DecisionSource::Explicit, None)),
        NamedModel::AsAsked => match fit.requirements.unmet_by(&config.models[model]) {
            Some(reason) => Err(GatewayError::NoUsableModel {
                message: format!(
                    "Model `{requested}` cannot take this request ({reason}; about {} tokens needed).",
                    fit.requirements.tokens
                ),
            }),
            None => Ok(Choice::unpinned(Primary::Model(model), DecisionSource::Explicit, None)),
        },
    }
}

/// The guardrails' private model, the only one this request's data may
/// reach: refused when it cannot take the request.
fn confined_choice(fit: &Fit<'_>, private: ModelId) -> Result<Choice, GatewayError> {
    let model = &fit.config.models[private];
    match fit.requirements.unmet_by(model) {
        Some(reason) => Err(GatewayError::NoUsableModel {
            message: format!(
                "This request's data may only reach model `{}`, which cannot take it ({reason}).",
                model.name
            ),
        }),
        None => Ok(Choice::unpinned(
            Primary::Model(private),
            DecisionSource::Guardrails,
            None,
        )),
    }
}

/// An `auto` request: a forced model or tier (see [`forced_choice`]), else
/// the scored tier. A forced model that cannot (or may not) take the
/// request, or ranks above the tenant's ceiling, falls back to the scored
/// tier rather than failing the request.
fn auto_choice(
    fit: &Fit<'_>,
    forced: Option<(RuleAction, DecisionSource)>,
    score: f64,
    ceiling: TierId,
    conversation: Option<Conversation>,
) -> Choice {
    match forced {
        Some((RuleAction::Model(model), source)) if fit.usable(model) && select::rank(fit.config, model) <= ceiling => {
            Choice::unpinned(Primary::Model(model), source, None)
        }
        Some((RuleAction::Tier(tier), source)) => {
            Choice::unpinned(Primary::Tier(tier.min(ceiling)), source, Some(tier))
        }
        _ => scored_choice(fit.config, fit.situation, score, ceiling, conversation),
    }
}

/// The tier the score picks, or, with tier pinning, the conversation's
/// pinned tier when the score falls below it (see [`pin::apply`]).
fn scored_choice(
    config: &Config,
    situation: &Situation<'_>,
    score: f64,
    ceiling: TierId,
    conversation: Option<Conversation>,
) -> Choice {
    let scored = config.tier_for_score(score);
    let pin = config.affinity.as_ref().and_then(|affinity| affinity.pin_tier);
    let (tier, source, pinning) = match (pin, conversation) {
        (Some(pin), Some((hash, _))) => {
            let (tier, pinned) = pin::apply(config, &pin, scored, score, situation.health.pinned_tier(hash));
            let source = match pinned {
                Pinning::Kept { scored } if scored != tier => DecisionSource::Pinned,
                _ => DecisionSource::Score,
            };
            (tier, source, Some(pinned))
        }
        _ => (scored, DecisionSource::Score, None),
    };
    Choice {
        primary: Primary::Tier(tier.min(ceiling)),
        source,
        chosen_tier: Some(tier),
        pinning,
    }
}

/// The candidate models in the order they are tried, and the deployments
/// drawn from them; refused when none can take the request.
fn chain_for(
    fit: &Fit<'_>,
    primary: Primary,
    max_output_tokens: Option<u64>,
    stream: bool,
    draw: u64,
) -> Result<(Vec<ModelId>, Chain), GatewayError> {
    let basis = CostBasis {
        prompt_tokens: fit.requirements.tokens,
        output_tokens: max_output_tokens.unwrap_or(DEFAULT_OUTPUT_TOKENS),
    };
    let models = candidates(
        fit.config,
        primary,
        &|model| fit.usable(model),
        fit.situation,
        basis,
        stream,
        draw,
    );
    let chain = chain::build(fit.config, &models, fit.situation.health, draw);
    if chain.deployments.is_empty() {
        return Err(fit
            .expressible
            .refusal()
            .unwrap_or_else(|| GatewayError::NoUsableModel {
                message: "No configured model deployment can take this request.".into(),
            }));
    }
    Ok((models, chain))
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
    conversation: Option<Conversation>,
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
