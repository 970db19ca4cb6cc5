//! Planning a request: which model serves it, why, and exactly what must
//! change in the request and the response. The plan is plain data; the
//! filter applies it without further decisions.
//!
//! Precedence for `model: "auto"`: trusted client headers, then operator
//! rules, then the classifier's score. A concrete model name is honoured as
//! asked (and rejected if it cannot take the request).

pub mod rules;
pub mod select;

use std::borrow::Cow;
use std::fmt::Write as _;

use crate::classify::Classification;
use crate::config::{Config, ExplainMode, ModelId, RuleAction, TierId};
use crate::error::GatewayError;
use crate::headers::HeaderMap;
use crate::providers::{self, CLIENT_CREDENTIAL_HEADERS};
use crate::request::{parse_chat, ChatRequest, PromptView};
use select::{Pick, Requirements};

pub const HEADER_MODEL: &str = "x-signalbox-model";
pub const HEADER_PROVIDER: &str = "x-signalbox-provider";
pub const HEADER_TIER: &str = "x-signalbox-tier";
pub const HEADER_SCORE: &str = "x-signalbox-score";
pub const HEADER_SIGNALS: &str = "x-signalbox-signals";
pub const HEADER_REASON: &str = "x-signalbox-reason";
pub const HEADER_EXPLAIN: &str = "x-signalbox-explain";
/// Client steering headers, honoured only with `trust_client_headers`.
pub const HEADER_FORCE_TIER: &str = "x-signalbox-tier";
pub const HEADER_FORCE_MODEL: &str = "x-signalbox-model";
/// Every client-sent header with this prefix is dropped before routing.
pub const CLIENT_HEADER_PREFIX: &str = "x-signalbox-";

/// What the client asked for through headers, already filtered by trust.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientHints {
    pub explain: bool,
    pub tier: Option<String>,
    pub model: Option<String>,
}

/// Why a model was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionSource {
    /// The client named a concrete model.
    Explicit,
    /// A trusted `x-signalbox-tier` / `x-signalbox-model` header.
    ClientHeader,
    /// Operator rule, by index.
    Rule(usize),
    /// The classifier's score.
    Score,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RoutingDecision {
    pub model: ModelId,
    /// The tier whose pool supplied the model (none for explicit models).
    pub tier: Option<TierId>,
    /// The tier first chosen, when a different tier had to supply the model.
    pub escalated_from: Option<TierId>,
    pub source: DecisionSource,
    pub classification: Option<Classification>,
    pub estimated_tokens: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum HeaderEdit {
    Remove(Cow<'static, str>),
    Set(Cow<'static, str>, String),
}

/// Everything the filter applies to one request.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestPlan {
    pub decision: RoutingDecision,
    pub request_headers: Vec<HeaderEdit>,
    pub body: Vec<u8>,
    pub response_headers: Vec<(&'static str, String)>,
}

/// The API paths Signalbox answers or routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    ChatCompletions,
    Models,
    /// Not Signalbox's: passed through to the Envoy route table untouched.
    Other,
}

pub fn endpoint(path: &str) -> Endpoint {
    let path = path.split_once('?').map_or(path, |(path, _query)| path);
    match path.trim_end_matches('/') {
        "/v1/chat/completions" | "/chat/completions" => Endpoint::ChatCompletions,
        "/v1/models" | "/models" => Endpoint::Models,
        _ => Endpoint::Other,
    }
}

/// Reads the client's hints; steering hints only when the config trusts clients.
pub fn client_hints(config: &Config, headers: &HeaderMap) -> ClientHints {
    let explain = headers
        .get(HEADER_EXPLAIN)
        .is_some_and(|value| matches!(value.trim(), "1" | "true" | "yes"));
    let steering = |name: &str| {
        if config.trust_client_headers {
            headers
                .get(name)
                .map(|value| value.trim().to_string())
                .filter(|value| !value.is_empty())
        } else {
            None
        }
    };
    ClientHints {
        explain,
        tier: steering(HEADER_FORCE_TIER),
        model: steering(HEADER_FORCE_MODEL),
    }
}

/// The `GET /v1/models` answer: auto aliases and every configured model.
pub fn models_listing(config: &Config) -> Vec<u8> {
    let auto = config.auto_models.iter().map(|alias| (alias.as_str(), "signalbox"));
    let models = config
        .models
        .iter()
        .map(|model| (model.name.as_str(), config.providers[model.provider].name.as_str()));
    let data: Vec<serde_json::Value> = auto
        .chain(models)
        .map(|(id, owner)| serde_json::json!({"id": id, "object": "model", "created": 0, "owned_by": owner}))
        .collect();
    serde_json::json!({"object": "list", "data": data})
        .to_string()
        .into_bytes()
}

/// Plans a chat-completions request from its body, its headers (for rules)
/// and the client's hints.
pub fn plan_chat(
    config: &Config,
    body: &[u8],
    headers: &HeaderMap,
    hints: &ClientHints,
) -> Result<RequestPlan, GatewayError> {
    let request = parse_chat(body)?;
    let view = request.prompt_view();
    let decision = decide(config, &request, &view, headers, hints)?;
    let upstream = providers::prepare_chat(config, decision.model, body)?;

    let request_headers = upstream_header_edits(
        config,
        &decision,
        upstream.credential,
        upstream.path,
        upstream.authority,
        upstream.body.len(),
        headers,
    );
    let explain = match config.explain {
        ExplainMode::Never => false,
        ExplainMode::OnRequest => hints.explain,
        ExplainMode::Always => true,
    };
    let response_headers = response_headers(config, &decision, explain);
    Ok(RequestPlan {
        decision,
        request_headers,
        body: upstream.body,
        response_headers,
    })
}

/// The header edits that make the request the chosen provider's. Only edits
/// that change something are emitted: each one is a host call.
fn upstream_header_edits(
    config: &Config,
    decision: &RoutingDecision,
    credential: Option<(&'static str, String)>,
    path: String,
    authority: Option<String>,
    body_len: usize,
    headers: &HeaderMap,
) -> Vec<HeaderEdit> {
    let mut edits: Vec<HeaderEdit> = CLIENT_CREDENTIAL_HEADERS
        .iter()
        .filter(|name| headers.contains(name) && credential.as_ref().is_none_or(|(set, _)| set != *name))
        .map(|name| HeaderEdit::Remove(Cow::Borrowed(*name)))
        .collect();
    if let Some((name, value)) = credential {
        edits.push(HeaderEdit::Set(Cow::Borrowed(name), value));
    }
    edits.push(HeaderEdit::Set(
        Cow::Owned(config.routing_header.clone()),
        config.models[decision.model].cluster.clone(),
    ));
    let mut set_if_changed = |name: &'static str, value: String| {
        if headers.get(name) != Some(value.as_str()) {
            edits.push(HeaderEdit::Set(Cow::Borrowed(name), value));
        }
    };
    set_if_changed(":path", path);
    if let Some(authority) = authority {
        set_if_changed(":authority", authority);
    }
    // The body was rewritten: its length is known exactly, so the upstream
    // gets a plain content-length rather than the client's framing.
    set_if_changed("content-length", body_len.to_string());
    if headers.contains("transfer-encoding") {
        edits.push(HeaderEdit::Remove(Cow::Borrowed("transfer-encoding")));
    }
    edits
}

fn decide(
    config: &Config,
    request: &ChatRequest<'_>,
    view: &PromptView<'_>,
    headers: &HeaderMap,
    hints: &ClientHints,
) -> Result<RoutingDecision, GatewayError> {
    let requested = request.model.as_str();
    if !config.is_auto(requested) {
        let model = config
            .model_named(requested)
            .ok_or_else(|| GatewayError::UnknownModel {
                model: requested.to_string(),
            })?;
        let classification = hints.explain.then(|| config.classifier.classify(view));
        let prompt_tokens = classification
            .as_ref()
            .map_or_else(|| view.last_user_tokens(), |c| c.prompt_tokens);
        let requirements = Requirements::of(view, prompt_tokens, request.max_output_tokens());
        if let Some(reason) = requirements.unmet_by(&config.models[model]) {
            return Err(GatewayError::NoUsableModel {
                message: format!(
                    "Model `{requested}` cannot take this request ({reason}; about {} tokens needed).",
                    requirements.tokens
                ),
            });
        }
        return Ok(RoutingDecision {
            model,
            tier: None,
            escalated_from: None,
            source: DecisionSource::Explicit,
            classification,
            estimated_tokens: requirements.tokens,
        });
    }

    let classification = config.classifier.classify(view);
    let requirements = Requirements::of(view, classification.prompt_tokens, request.max_output_tokens());
    let forced = forced_choice(config, request, view, headers, hints)?;
    let (tier, source) = match forced {
        Some((RuleAction::Model(model), source)) => {
            let reason = requirements.unmet_by(&config.models[model]);
            if reason.is_none() {
                return Ok(RoutingDecision {
                    model,
                    tier: None,
                    escalated_from: None,
                    source,
                    classification: Some(classification),
                    estimated_tokens: requirements.tokens,
                });
            }
            // A forced model that cannot take the request falls back to
            // the scored tier rather than failing the request.
            (config.tier_for_score(classification.score), DecisionSource::Score)
        }
        Some((RuleAction::Tier(tier), source)) => (tier, source),
        None => (config.tier_for_score(classification.score), DecisionSource::Score),
    };
    let Pick {
        model,
        tier: supplying_tier,
    } = select::pick(config, tier, &requirements).ok_or_else(|| GatewayError::NoUsableModel {
        message: format!(
            "No configured model can take this request (about {} tokens needed, or a capability no model offers).",
            requirements.tokens
        ),
    })?;
    Ok(RoutingDecision {
        model,
        tier: Some(supplying_tier),
        escalated_from: (supplying_tier != tier).then_some(tier),
        source,
        classification: Some(classification),
        estimated_tokens: requirements.tokens,
    })
}

/// A tier or model forced by a trusted client header or an operator rule.
fn forced_choice(
    config: &Config,
    request: &ChatRequest<'_>,
    view: &PromptView<'_>,
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
    Ok(rules::first_match(config, request, view, headers)
        .map(|index| (config.rules[index].action, DecisionSource::Rule(index))))
}

fn response_headers(config: &Config, decision: &RoutingDecision, explain: bool) -> Vec<(&'static str, String)> {
    let model = &config.models[decision.model];
    let mut headers = vec![
        (HEADER_MODEL, model.name.clone()),
        (HEADER_PROVIDER, config.providers[model.provider].name.clone()),
    ];
    if let Some(tier) = decision.tier {
        headers.push((HEADER_TIER, config.tiers[tier].name.clone()));
    }
    if !explain {
        return headers;
    }
    if let Some(classification) = &decision.classification {
        headers.push((HEADER_SCORE, format!("{:.3}", classification.score)));
        headers.push((HEADER_SIGNALS, classification.explain()));
    }
    let mut reason = match decision.source {
        DecisionSource::Explicit => "explicit".to_string(),
        DecisionSource::ClientHeader => "client-header".to_string(),
        DecisionSource::Rule(index) => format!("rule:{}", config.rules[index].name),
        DecisionSource::Score => "score".to_string(),
    };
    if let Some(from) = decision.escalated_from {
        let _ = write!(reason, ";escalated-from:{}", config.tiers[from].name);
    }
    headers.push((HEADER_REASON, reason));
    headers
}

#[cfg(test)]
mod tests;
