//! The embeddings plan: a named model and its fallbacks, held to the same
//! tenant policy as chat; no classification, no tiers to choose from.

use crate::config::{Config, ModelId};
use crate::error::GatewayError;
use crate::headers::HeaderMap;
use crate::providers::Operation;
use crate::request::parse_embeddings;

use super::attempts::{AttemptPlan, NativeApi};
use super::select::{self, Expressibility};
use super::{chain, downstream_edits, screen, DecisionSource, RequestPlan, RoutingDecision, Situation};

/// Plans an embeddings request: the client must name a configured model;
/// its fallbacks back it up.
pub fn plan_embeddings(
    config: &Config,
    body: &[u8],
    headers: &HeaderMap,
    situation: &Situation<'_>,
) -> Result<RequestPlan, GatewayError> {
    let request = parse_embeddings(body)?;
    let requested = request.model.as_str();
    let model = named_model(config, requested, situation)?;
    let models = candidates(config, model, body, situation)?;
    let chain = chain::build(config, &models, situation.health, situation.draw);
    let estimated_tokens = u64::from(crate::tokens::estimate(request.input.get()));
    let decision = RoutingDecision {
        chain: chain.deployments,
        models,
        degraded: chain.degraded,
        trials: chain.trials,
        tier: None,
        escalated_from: None,
        downgraded: false,
        source: DecisionSource::Explicit,
        classification: None,
        estimated_tokens,
        prompt_tokens: estimated_tokens,
        max_output_tokens: Some(0),
        choices: 1,
        predicted_output_tokens: 0,
        affinity: None,
        pinning: None,
    };
    if decision.chain.is_empty() {
        return Err(GatewayError::NoUsableModel {
            message: "No deployment of this model is configured.".into(),
        });
    }
    let attempts = attempt_plan(config, &decision, headers);
    let screening = screen::screen_embeddings(situation.guardrails(config), body)?;
    let request_headers = downstream_edits(config, &attempts, headers);
    Ok(RequestPlan {
        decision,
        attempts,
        request_headers,
        response_headers: screening.headers(),
        explain: false,
        requested_model: requested.to_string(),
        screening,
    })
}

/// The configured model the client named, held to the same policy as
/// chat: a tenant may use only its allowed models, within its `max_tier`.
fn named_model(config: &Config, requested: &str, situation: &Situation<'_>) -> Result<ModelId, GatewayError> {
    if config.is_auto(requested) {
        return Err(GatewayError::invalid_param(
            "model",
            "Embeddings need a model name; `auto` routing is for chat.",
        ));
    }
    let model = config
        .model_named(requested)
        .ok_or_else(|| GatewayError::UnknownModel {
            model: requested.to_string(),
        })?;
    if !situation.allows(model) {
        return Err(GatewayError::Forbidden {
            message: format!("Model `{requested}` is not allowed for this key."),
        });
    }
    if !within_max_tier(config, situation, model) {
        return Err(GatewayError::Forbidden {
            message: format!("Model `{requested}` is above this key's maximum tier."),
        });
    }
    Ok(model)
}

/// The named model and its fallbacks that the tenant may use and whose
/// providers can express the request.
fn candidates(
    config: &Config,
    model: ModelId,
    body: &[u8],
    situation: &Situation<'_>,
) -> Result<Vec<ModelId>, GatewayError> {
    let expressible = Expressibility::new(body, Operation::Embeddings, false);
    let models: Vec<ModelId> = std::iter::once(model)
        .chain(config.models[model].fallbacks.iter().copied())
        .filter(|candidate| {
            situation.allows(*candidate)
                && within_max_tier(config, situation, *candidate)
                && expressible.allows(config, *candidate)
        })
        .collect();
    if models.is_empty() {
        return Err(expressible.refusal().unwrap_or_else(|| GatewayError::NoUsableModel {
            message: "No deployment of this model is configured.".into(),
        }));
    }
    Ok(models)
}

/// A model in a tier's pool is held to the tenant's `max_tier` as in chat;
/// embedding models usually sit in no pool (tiers order chat models), and
/// `allowed_models` governs those.
fn within_max_tier(config: &Config, situation: &Situation<'_>, model: ModelId) -> bool {
    !config.tiers.iter().any(|tier| tier.models.contains(&model))
        || select::rank(config, model) <= situation.max_tier(config)
}

/// What the upstream filter needs: one answer, no stream, no output budget,
/// the configured per-try timeout.
fn attempt_plan(config: &Config, decision: &RoutingDecision, headers: &HeaderMap) -> AttemptPlan {
    AttemptPlan {
        chain: decision.chain.clone(),
        stream: false,
        client_wants_usage: false,
        native: NativeApi::None,
        operation: Operation::Embeddings,
        authority: headers.get(":authority").unwrap_or_default().to_string(),
        max_tokens: None,
        trials: decision.trials.clone(),
        prompt_tokens: decision.prompt_tokens,
        output_limit: None,
        choices: 1,
        per_try_timeout_ms: config.resilience.per_try_timeout_ms,
        deadline_at_ms: 0,
        request: 0,
        tier: decision.tier,
        escalation: None,
    }
}
