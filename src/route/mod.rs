//! Planning a request: which model serves it, why, and exactly what must
//! change in the request and the response. The plan is plain data; the
//! filter applies it without further decisions.
//!
//! Precedence for `model: "auto"`: trusted client headers, then operator
//! rules, then the classifier's score. A concrete model name is honoured as
//! asked (and rejected if it cannot take the request), within the tenant's
//! tier caps: above its `max_tier` it is refused, above its downgrade tier
//! in force that tier serves it (see [`select::named_model`]).
//!
//! The plans: [`plan_chat`] (`chat`), [`plan_translated`] for Messages and
//! Responses (`translated`), [`plan_embeddings`] (`embeddings`). A chat
//! route is decided in `decide` (which primary, which tier supplies it) and
//! ordered in `candidates`; `explain` writes the `x-signalbox-*` headers
//! that say why, `exhausted` the one error when every attempt failed.

pub mod affinity;
pub mod attempts;
mod candidates;
pub mod chain;
mod chat;
mod decide;
mod embeddings;
mod endpoint;
mod exhausted;
mod explain;
pub mod pin;
pub mod response;
pub mod rules;
pub mod screen;
pub mod select;
mod situation;
pub mod strategy;
mod translated;

use std::borrow::Cow;

use crate::classify::Classification;
use crate::config::affinity::AffinitySource;
use crate::config::{Config, DeploymentId, ModelId, TierId};
use crate::headers::HeaderMap;
use crate::providers::CREDENTIAL_HEADERS;
pub use attempts::{AttemptPlan, AttemptTrail};
pub use chain::HealthView;
pub use chat::plan_chat;
pub use embeddings::plan_embeddings;
pub use endpoint::{check_body_headers, endpoint, models_listing, Endpoint};
pub use exhausted::{exhausted_error, is_exhausted, FinalResponse};
pub use explain::{attempt_headers, decision_reason};
pub use situation::Situation;
pub use translated::{plan_translated, TranslatedPlan};

// The router's headers, owned by `crate::contract` (re-exported: most users name them `route::HEADER_*`).
pub use crate::contract::{
    CLIENT_HEADER_PREFIX, HEADER_AFFINITY, HEADER_ATTEMPTS, HEADER_CASCADE, HEADER_EXPLAIN, HEADER_FORCE_MODEL,
    HEADER_FORCE_TIER, HEADER_MODEL, HEADER_PIN, HEADER_PROVIDER, HEADER_REASON, HEADER_ROUTE, HEADER_SCORE,
    HEADER_SIGNALS, HEADER_TIER,
};

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
    /// The guardrails confined the request to the private model.
    Guardrails,
    /// The classifier's score.
    Score,
    /// The conversation's pinned tier, over a lower score.
    Pinned,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RoutingDecision {
    /// Deployments to try, in order; the first is the primary.
    pub chain: Vec<DeploymentId>,
    /// The candidate models the chain was drawn from (cost estimates use
    /// the most expensive).
    pub models: Vec<ModelId>,
    /// Nothing was healthy: the chain holds the least-bad deployment.
    pub degraded: bool,
    /// Half-open trial slots claimed for links of the chain (position, lease).
    pub trials: Vec<(usize, crate::health::LeaseToken)>,
    /// The tenant's downgrade tier replaced the scored one.
    pub downgraded: bool,
    /// The tier whose pool supplied the primary (none for a model served
    /// as named).
    pub tier: Option<TierId>,
    /// The tier first chosen, when a different tier had to supply the model.
    pub escalated_from: Option<TierId>,
    pub source: DecisionSource,
    pub classification: Option<Classification>,
    /// Prompt plus requested output, for context-window checks.
    pub estimated_tokens: u64,
    /// Estimated prompt tokens (system, history, tools, last message).
    pub prompt_tokens: u64,
    /// Output budget: the client's `max_tokens`, or the tenant's cap.
    pub max_output_tokens: Option<u64>,
    /// Answers asked for (`n`): each may use the output budget.
    pub choices: u64,
    /// Output the `prediction` may add to each answer's bill, beyond the
    /// output budget.
    pub predicted_output_tokens: u64,
    /// What named the conversation this request's draw came from.
    pub affinity: Option<AffinitySource>,
    /// What tier pinning did, when it applied.
    pub pinning: Option<pin::Pinning>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum HeaderEdit {
    Remove(Cow<'static, str>),
    Set(Cow<'static, str>, String),
}

/// Everything the router filter applies to one request.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestPlan {
    pub decision: RoutingDecision,
    /// For the upstream filter, stored in filter state.
    pub attempts: AttemptPlan,
    pub request_headers: Vec<HeaderEdit>,
    /// Response headers known at decision time (model and route are added
    /// once the attempt that answered is known).
    pub response_headers: Vec<(&'static str, String)>,
    pub explain: bool,
    /// The `model` the client sent.
    pub requested_model: String,
    /// What the guardrails found and did (the masked body, the vault).
    pub screening: screen::Screening,
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

/// What the router changes on the request itself: client credentials go,
/// Envoy learns how many retries the chain allows and the deadline.
fn downstream_edits(config: &Config, attempts: &AttemptPlan, headers: &HeaderMap) -> Vec<HeaderEdit> {
    let mut edits: Vec<HeaderEdit> = CREDENTIAL_HEADERS
        .iter()
        .filter(|name| headers.contains(name))
        .map(|name| HeaderEdit::Remove(Cow::Borrowed(*name)))
        .collect();
    // Envoy retries the request on the next deployment; one retry per extra link.
    edits.push(HeaderEdit::Set(
        Cow::Borrowed("x-envoy-max-retries"),
        attempts.chain.len().saturating_sub(1).to_string(),
    ));
    if !attempts.stream {
        edits.push(HeaderEdit::Set(
            Cow::Borrowed("x-envoy-upstream-rq-timeout-ms"),
            config.resilience.deadline_ms.to_string(),
        ));
    }
    if attempts.per_try_timeout_ms != config.resilience.per_try_timeout_ms {
        edits.push(HeaderEdit::Set(
            Cow::Borrowed("x-envoy-upstream-rq-per-try-timeout-ms"),
            attempts.per_try_timeout_ms.to_string(),
        ));
    }
    edits
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod credential_tests;

#[cfg(test)]
mod affinity_tests;
#[cfg(test)]
mod pin_tests;
