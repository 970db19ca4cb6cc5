//! The `x-signalbox-*` response headers that say how a request was routed:
//! those known at decision time, and those known once an attempt answered.

use std::fmt::Write as _;

use crate::config::Config;

use super::{
    AttemptPlan, AttemptTrail, DecisionSource, RoutingDecision, HEADER_AFFINITY, HEADER_ATTEMPTS, HEADER_CASCADE,
    HEADER_MODEL, HEADER_PIN, HEADER_PROVIDER, HEADER_REASON, HEADER_ROUTE, HEADER_SCORE, HEADER_SIGNALS, HEADER_TIER,
};

/// Response headers known once the route is decided.
pub(super) fn decision_headers(
    config: &Config,
    decision: &RoutingDecision,
    explain: bool,
) -> Vec<(&'static str, String)> {
    let mut headers = Vec::with_capacity(4);
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
    headers.push((HEADER_REASON, decision_reason(config, decision)));
    if let Some(source) = decision.affinity {
        headers.push((HEADER_AFFINITY, source.name().to_string()));
    }
    if let Some(pinning) = decision.pinning {
        headers.push((HEADER_PIN, pinning.name().to_string()));
    }
    headers
}

/// Why the model was chosen: `score`, `explicit`, `client-header` or
/// `rule:<name>`, with `;escalated-from:<tier>`, `;downgraded`, `;degraded`.
pub fn decision_reason(config: &Config, decision: &RoutingDecision) -> String {
    let mut reason = match decision.source {
        DecisionSource::Explicit => "explicit".to_string(),
        DecisionSource::ClientHeader => "client-header".to_string(),
        DecisionSource::Rule(index) => format!("rule:{}", config.rules[index].name),
        DecisionSource::Score => "score".to_string(),
        DecisionSource::Guardrails => "guardrails".to_string(),
        DecisionSource::Pinned => "pinned".to_string(),
    };
    if let Some(from) = decision.escalated_from {
        let _ = write!(reason, ";escalated-from:{}", config.tiers[from].name);
    }
    if decision.downgraded {
        reason.push_str(";downgraded");
    }
    if decision.degraded {
        reason.push_str(";degraded");
    }
    reason
}

/// Response headers that depend on which attempt answered: the model and
/// provider that served it, `primary` / `fallback-N` / `cascade`, and with
/// explain (or after a cascade) the attempted chain; after a cascade, the
/// weaknesses it found (`cascade`, as the upstream filter recorded them). With no trail (no attempt reached a provider) the plan's
/// primary stands in.
pub fn attempt_headers(
    config: &Config,
    plan: &AttemptPlan,
    trail: &AttemptTrail,
    explain: bool,
    cascade: Option<&str>,
) -> Vec<(&'static str, String)> {
    let served_by = trail
        .last()
        .map(|record| record.deployment)
        .or_else(|| plan.chain.first().copied());
    let mut headers = Vec::with_capacity(4);
    if let Some(deployment) = served_by.and_then(|deployment| config.deployments.get(deployment)) {
        let model = &config.models[deployment.model];
        headers.push((HEADER_MODEL, model.name.clone()));
        headers.push((HEADER_PROVIDER, config.providers[model.provider].name.clone()));
    }
    let escalated = trail.escalated();
    let route = match trail.0.len() {
        _ if escalated => "cascade".to_string(),
        0 | 1 => "primary".to_string(),
        attempts => format!("fallback-{}", attempts - 1),
    };
    headers.push((HEADER_ROUTE, route));
    if (explain || escalated) && !trail.0.is_empty() {
        headers.push((HEADER_ATTEMPTS, trail.describe(config)));
    }
    if let Some(weaknesses) = cascade.filter(|_| escalated) {
        headers.push((HEADER_CASCADE, weaknesses.to_string()));
    }
    headers
}
