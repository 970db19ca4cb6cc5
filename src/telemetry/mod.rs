//! What Signalbox tells the mesh's observability stack: metric series for
//! Envoy stats (this module), per-request access-log fields
//! ([`access_log`]), and the gauges derived from shared state ([`gauges`]).
//!
//! A metric is an Envoy stat named `signalbox_<family>` with its labels in
//! the name, Istio style: `signalbox_requests_total;tenant=.=team;.;…`.
//! The `stats_tags` shipped in `envoy/*.yaml` (one regex per entry of
//! [`LABEL_NAMES`]) turn each `;name=.=value;.;` into a Prometheus label, so
//! values may hold dots (`gpt-4.1`). Every value is a configured name
//! (tenant, tier, model, deployment) or one of a fixed set (outcome,
//! result, …), never client input: cardinality is bounded by the config.

pub mod access_log;
pub mod gauges;
pub mod report;

use crate::config::{Config, DeploymentId, ModelId, TierId};
use crate::error::GatewayError;
use crate::failure::FailureKind;
use crate::govern::admission::Denial;
use crate::govern::quota::Period;

pub type TenantId = usize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One metric name; its series differ by labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// Client requests Signalbox handled, by tenant, tier, serving model, route and outcome.
    Requests,
    /// Upstream attempts by deployment and result.
    Attempts,
    /// Attempts that failed and handed the request to the next link, by the failed model.
    Failovers,
    /// Tokens by tenant, model and kind (input, cached_input, output).
    Tokens,
    /// Cost in micro-USD by tenant and model.
    CostMicroUsd,
    /// Requests refused by a tenant or user limit or a quota, by reason.
    Rejections,
    /// Soft budget alerts fired (once per tenant and period).
    SoftAlerts,
    /// Plugin configurations loaded or rejected (one per VM and role).
    ConfigLoads,
    /// Settled usage of a quota in its current period (gauge).
    QuotaUsed,
    /// A quota's cap (gauge).
    QuotaLimit,
    /// A deployment's health score in percent (gauge).
    HealthScore,
    /// A deployment's circuit: 0 closed, 1 half-open, 2 open (gauge).
    CircuitState,
    /// Attempts in flight per deployment (gauge).
    InFlight,
    /// Time the filter itself spends, in µs, by phase (route, prepare, translate).
    FilterDuration,
    /// Attempt start to first content, per successful attempt.
    FirstToken,
    /// Attempt start to its end, per successful attempt.
    UpstreamDuration,
    /// Request start to end, for requests a model served.
    RequestDuration,
    /// Calls to the fleet ledger by operation (admit, settle, spend) and result.
    StoreCalls,
    /// How long a fleet ledger call took, in ms, by operation.
    StoreDuration,
    /// Decisions made without the fleet ledger, by tenant and result
    /// (`refused`: it failed closed; `local`: counted here at the replica's share).
    StoreFallbacks,
    /// Requests a guardrail acted on, by tenant, check (`kind`: pii,
    /// injection) and action (`result`: log, mask, route, block, flag).
    GuardrailActions,
    /// Personal data and secrets found in prompts, by tenant and category (`kind`).
    PiiFindings,
    /// Chat requests the response cache took part in, by tenant and result
    /// (hit, miss, stale, bypass).
    CacheRequests,
    /// What cache hits would have cost at the models' prices, in micro-USD.
    CacheSavedMicroUsd,
    /// Bytes of entries the cache holds (gauge).
    CacheBytes,
    /// Entries the cache holds (gauge).
    CacheEntries,
    /// Embeddings calls of semantic lookups, by result (ok, failed).
    CacheEmbeddings,
    /// Whole answers a tier's cascade assessed, by tier, model and result
    /// (escalated, accepted).
    CascadeAssessments,
    /// Escalated answers by tier and weakness (`reason`); one answer may
    /// count under several.
    CascadeEscalations,
    /// Canary rollout moves by tier, canary model and result (advanced,
    /// promoted, rolled_back).
    CanaryMoves,
    /// A canary rollout's share of its tier, in percent, after its last move (gauge).
    CanaryShare,
    /// User ratings by tier, serving model, prompt kind and result (positive, negative).
    FeedbackRatings,
    /// The sum of those ratings, in thousandths (divide by the count for the mean).
    FeedbackRatingMilli,
    /// Shadow comparisons by tier, prompt kind and result (agree, disagree,
    /// failed: the reference call gave no answer).
    ShadowComparisons,
    /// The sum of the comparisons' agreement, in thousandths.
    ShadowAgreementMilli,
    /// Comparisons a judge model was asked to score and the rules scored
    /// instead, by judge model and reason (no_answer, no_score).
    ShadowJudgeFailures,
}

impl Family {
    pub const ALL: [Family; 36] = [
        Family::Requests,
        Family::Attempts,
        Family::Failovers,
        Family::Tokens,
        Family::CostMicroUsd,
        Family::Rejections,
        Family::SoftAlerts,
        Family::ConfigLoads,
        Family::QuotaUsed,
        Family::QuotaLimit,
        Family::HealthScore,
        Family::CircuitState,
        Family::InFlight,
        Family::FilterDuration,
        Family::FirstToken,
        Family::UpstreamDuration,
        Family::RequestDuration,
        Family::StoreCalls,
        Family::StoreDuration,
        Family::StoreFallbacks,
        Family::GuardrailActions,
        Family::PiiFindings,
        Family::CacheRequests,
        Family::CacheSavedMicroUsd,
        Family::CacheBytes,
        Family::CacheEntries,
        Family::CacheEmbeddings,
        Family::CascadeAssessments,
        Family::CascadeEscalations,
        Family::CanaryMoves,
        Family::CanaryShare,
        Family::FeedbackRatings,
        Family::FeedbackRatingMilli,
        Family::ShadowComparisons,
        Family::ShadowAgreementMilli,
        Family::ShadowJudgeFailures,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Family::Requests => "signalbox_requests_total",
            Family::Attempts => "signalbox_attempts_total",
            Family::Failovers => "signalbox_failovers_total",
            Family::Tokens => "signalbox_tokens_total",
            Family::CostMicroUsd => "signalbox_cost_micro_usd_total",
            Family::Rejections => "signalbox_rejections_total",
            Family::SoftAlerts => "signalbox_soft_alerts_total",
            Family::ConfigLoads => "signalbox_config_loads_total",
            Family::QuotaUsed => "signalbox_quota_used",
            Family::QuotaLimit => "signalbox_quota_limit",
            Family::HealthScore => "signalbox_deployment_health_percent",
            Family::CircuitState => "signalbox_deployment_circuit_state",
            Family::InFlight => "signalbox_deployment_in_flight",
            Family::FilterDuration => "signalbox_filter_duration_us",
            Family::FirstToken => "signalbox_first_token_ms",
            Family::UpstreamDuration => "signalbox_upstream_duration_ms",
            Family::RequestDuration => "signalbox_request_duration_ms",
            Family::StoreCalls => "signalbox_store_calls_total",
            Family::StoreDuration => "signalbox_store_duration_ms",
            Family::StoreFallbacks => "signalbox_store_fallbacks_total",
            Family::GuardrailActions => "signalbox_guardrail_actions_total",
            Family::PiiFindings => "signalbox_pii_findings_total",
            Family::CacheRequests => "signalbox_cache_requests_total",
            Family::CacheSavedMicroUsd => "signalbox_cache_saved_micro_usd_total",
            Family::CacheBytes => "signalbox_cache_bytes",
            Family::CacheEntries => "signalbox_cache_entries",
            Family::CacheEmbeddings => "signalbox_cache_embeddings_total",
            Family::CascadeAssessments => "signalbox_cascade_assessments_total",
            Family::CascadeEscalations => "signalbox_cascade_escalations_total",
            Family::CanaryMoves => "signalbox_canary_moves_total",
            Family::CanaryShare => "signalbox_canary_share_percent",
            Family::FeedbackRatings => "signalbox_feedback_total",
            Family::FeedbackRatingMilli => "signalbox_feedback_rating_milli_total",
            Family::ShadowComparisons => "signalbox_shadow_total",
            Family::ShadowAgreementMilli => "signalbox_shadow_agreement_milli_total",
            Family::ShadowJudgeFailures => "signalbox_shadow_judge_failures_total",
        }
    }

    pub fn kind(self) -> Kind {
        match self {
            Family::QuotaUsed
            | Family::QuotaLimit
            | Family::HealthScore
            | Family::CircuitState
            | Family::InFlight
            | Family::CacheBytes
            | Family::CacheEntries
            | Family::CanaryShare => Kind::Gauge,
            Family::FilterDuration
            | Family::FirstToken
            | Family::UpstreamDuration
            | Family::RequestDuration
            | Family::StoreDuration => Kind::Histogram,
            _ => Kind::Counter,
        }
    }
}

/// Every label any series carries; each needs a `stats_tags` entry.
pub const LABEL_NAMES: [&str; 14] = [
    "tenant",
    "tier",
    "provider",
    "model",
    "deployment",
    "route",
    "outcome",
    "result",
    "kind",
    "reason",
    "window",
    "resource",
    "phase",
    "op",
];

/// One label of a series. Config-backed labels hold ids (named at first
/// use); `None` is reported as `none` (no tenant without governance, no
/// tier for a named model, no model when nothing was attempted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Label {
    Tenant(Option<TenantId>),
    Tier(Option<TierId>),
    /// `provider` and `model`.
    Model(Option<ModelId>),
    /// `deployment`, `provider` and `model`.
    Deployment(DeploymentId),
    /// A label from a fixed set of values: (name, value).
    Fixed(&'static str, &'static str),
}

const MAX_LABELS: usize = 5;

/// A metric family with its label values: one Envoy stat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Series {
    pub family: Family,
    labels: [Option<Label>; MAX_LABELS],
}

impl Series {
    pub fn new(family: Family, labels: &[Label]) -> Series {
        debug_assert!(labels.len() <= MAX_LABELS);
        let mut slots = [None; MAX_LABELS];
        for (slot, label) in slots.iter_mut().zip(labels) {
            *slot = Some(*label);
        }
        Series { family, labels: slots }
    }

    /// The Envoy stat name (Envoy adds its `wasmcustom.` namespace).
    pub fn stat_name(&self, config: &Config) -> String {
        let mut name = String::with_capacity(96);
        name.push_str(self.family.name());
        for label in self.labels.iter().flatten() {
            match *label {
                Label::Tenant(tenant) => {
                    let tenant = tenant
                        .and_then(|id| config.governance.as_ref()?.tenants.get(id))
                        .map(|tenant| tenant.name.as_str());
                    push_label(&mut name, "tenant", tenant.unwrap_or(NONE));
                }
                Label::Tier(tier) => {
                    let tier = tier.and_then(|id| config.tiers.get(id)).map(|tier| tier.name.as_str());
                    push_label(&mut name, "tier", tier.unwrap_or(NONE));
                }
                Label::Model(model) => push_model(&mut name, config, model),
                Label::Deployment(deployment) => {
                    let deployment = config.deployments.get(deployment);
                    push_label(&mut name, "deployment", deployment.map_or(NONE, |d| d.name.as_str()));
                    push_model(&mut name, config, deployment.map(|d| d.model));
                }
                Label::Fixed(label, value) => push_label(&mut name, label, value),
            }
        }
        name
    }
}

const NONE: &str = "none";

fn push_model(name: &mut String, config: &Config, model: Option<ModelId>) {
    let model = model.and_then(|id| config.models.get(id));
    let provider = model.and_then(|model| config.providers.get(model.provider));
    push_label(
        name,
        "provider",
        provider.map_or(NONE, |provider| provider.name.as_str()),
    );
    push_label(name, "model", model.map_or(NONE, |model| model.name.as_str()));
}

/// Appends `;label=.=value;.;`, with any `;` in a configured name replaced
/// (it would end the value early).
fn push_label(name: &mut String, label: &str, value: &str) {
    name.push(';');
    name.push_str(label);
    name.push_str("=.=");
    name.extend(value.chars().map(|c| if c == ';' { '_' } else { c }));
    name.push_str(";.;");
}

/// A value for a series: added to a counter, set on a gauge, recorded in a
/// histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub series: Series,
    pub value: u64,
}

impl Sample {
    pub fn new(family: Family, labels: &[Label], value: u64) -> Sample {
        Sample {
            series: Series::new(family, labels),
            value,
        }
    }
}

/// The stat name counting configuration loads (`ok` or `rejected`); it
/// needs no config, which a rejected load does not have.
pub fn config_load_stat_name(loaded: bool) -> String {
    let mut name = Family::ConfigLoads.name().to_string();
    push_label(&mut name, "result", if loaded { "ok" } else { "rejected" });
    name
}

/// How a client request ended, as the `outcome` label and access-log field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A model answered with a 2xx.
    Ok,
    /// Refused as malformed, too large, for an unknown model or method.
    Invalid,
    /// No, unknown or disabled virtual key.
    Unauthorized,
    /// The tenant may not use what it asked for.
    Forbidden,
    /// Over a tenant's or user's per-minute limit.
    RateLimited,
    /// A quota or budget is used up.
    QuotaExceeded,
    /// Every attempt failed.
    Unavailable,
    /// A provider refused the request (a 4xx the client caused).
    UpstreamError,
    /// The client went away before a response.
    Aborted,
    /// Signalbox could not handle the request.
    InternalError,
    /// The guardrails refused the prompt.
    Refused,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Invalid => "invalid",
            Outcome::Unauthorized => "unauthorized",
            Outcome::Forbidden => "forbidden",
            Outcome::RateLimited => "rate_limited",
            Outcome::QuotaExceeded => "quota_exceeded",
            Outcome::Unavailable => "unavailable",
            Outcome::UpstreamError => "upstream_error",
            Outcome::Aborted => "aborted",
            Outcome::InternalError => "internal_error",
            Outcome::Refused => "refused",
        }
    }

    /// A local reply Signalbox sent.
    pub fn of_error(error: &GatewayError) -> Outcome {
        match error {
            GatewayError::InvalidRequest { .. }
            | GatewayError::BodyTooLarge { .. }
            | GatewayError::MethodNotAllowed { .. }
            | GatewayError::UnknownModel { .. }
            | GatewayError::NoUsableModel { .. }
            | GatewayError::RequestNotFound
            | GatewayError::AlreadyRated => Outcome::Invalid,
            GatewayError::Unauthorized { .. } => Outcome::Unauthorized,
            GatewayError::Forbidden { .. } => Outcome::Forbidden,
            GatewayError::RateLimited { .. } => Outcome::RateLimited,
            GatewayError::QuotaExceeded { .. } => Outcome::QuotaExceeded,
            GatewayError::ProvidersUnavailable { .. } | GatewayError::LedgerUnavailable => Outcome::Unavailable,
            GatewayError::Internal { .. } => Outcome::InternalError,
            GatewayError::ContentRefused { .. } => Outcome::Refused,
        }
    }

    /// The final status of a routed request (exhausted chains were turned
    /// into 429/503 by the router).
    pub fn of_status(status: u16) -> Outcome {
        match status {
            0 => Outcome::Aborted,
            200..=299 => Outcome::Ok,
            429 | 500..=599 => Outcome::Unavailable,
            _ => Outcome::UpstreamError,
        }
    }
}

/// The `result` label of an attempt: `ok` or why it failed.
pub fn attempt_result(failure: Option<FailureKind>) -> &'static str {
    failure.map_or("ok", FailureKind::name)
}

/// The `window` label of a quota period, as the config spells it.
pub fn window_label(period: Period) -> &'static str {
    match period {
        Period::Day => "day",
        Period::Month => "month",
    }
}

/// The `reason` label of a refusal.
pub fn denial_reason(denial: &Denial) -> &'static str {
    match denial {
        Denial::Rate { scope: "user", .. } => "user_rate",
        Denial::Rate { .. } => "tenant_rate",
        Denial::Quota { period, dimension, .. } => match (period, *dimension) {
            (Period::Day, "requests") => "day_requests",
            (Period::Day, "tokens") => "day_tokens",
            (Period::Day, _) => "day_cost",
            (Period::Month, "requests") => "month_requests",
            (Period::Month, "tokens") => "month_tokens",
            (Period::Month, _) => "month_cost",
        },
        Denial::Busy => "busy",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{governed_config, sample_config};

    #[test]
    fn a_series_names_its_labels_in_order_with_the_configured_names() {
        let config = governed_config();
        let small = config.model_named("small").unwrap();
        let series = Series::new(
            Family::Requests,
            &[
                Label::Tenant(Some(1)),
                Label::Tier(Some(0)),
                Label::Model(Some(small)),
                Label::Fixed("outcome", "ok"),
            ],
        );
        let tenant = &config.governance.as_ref().unwrap().tenants[1].name;
        let tier = &config.tiers[0].name;
        let provider = &config.providers[config.models[small].provider].name;
        assert_eq!(
            series.stat_name(&config),
            format!(
                "signalbox_requests_total;tenant=.={tenant};.;;tier=.={tier};.;;provider=.={provider};.;;\
                 model=.=small;.;;outcome=.=ok;.;"
            )
        );
    }

    #[test]
    fn missing_ids_read_none_and_semicolons_cannot_break_the_scheme() {
        let config = sample_config();
        let series = Series::new(Family::Tokens, &[Label::Tenant(None), Label::Model(None)]);
        assert_eq!(
            series.stat_name(&config),
            "signalbox_tokens_total;tenant=.=none;.;;provider=.=none;.;;model=.=none;.;"
        );
        let mut name = String::new();
        push_label(&mut name, "tenant", "a;b");
        assert_eq!(name, ";tenant=.=a_b;.;");
    }

    #[test]
    fn a_deployment_label_carries_its_provider_and_model() {
        let config = sample_config();
        let name =
            Series::new(Family::Attempts, &[Label::Deployment(0), Label::Fixed("result", "ok")]).stat_name(&config);
        let model = &config.models[config.deployments[0].model];
        assert!(name.starts_with(&format!(
            "signalbox_attempts_total;deployment=.={};.;;provider=.={};.;;model=.={};.;",
            config.deployments[0].name, config.providers[model.provider].name, model.name
        )));
    }

    #[test]
    fn the_config_load_counter_needs_no_config() {
        assert_eq!(
            config_load_stat_name(false),
            "signalbox_config_loads_total;result=.=rejected;.;"
        );
    }

    #[test]
    fn outcomes_follow_the_status() {
        assert_eq!(Outcome::of_status(200), Outcome::Ok);
        assert_eq!(Outcome::of_status(0), Outcome::Aborted);
        assert_eq!(Outcome::of_status(503), Outcome::Unavailable);
        assert_eq!(Outcome::of_status(400), Outcome::UpstreamError);
        assert_eq!(
            Outcome::of_error(&GatewayError::Unauthorized { reason: "missing" }),
            Outcome::Unauthorized
        );
    }
}
