//! One request as the router knows it when the request ends, and the
//! metric samples a request and each of its upstream attempts make.

use super::{attempt_result, Family, Label, Outcome, Sample, TenantId};
use crate::assess::Assessment;
use crate::cache::plan::CacheResult;
use crate::config::{Config, DeploymentId, ModelId, TierId};
use crate::failure::FailureKind;
use crate::govern::ledger::Consumption;
use crate::route::screen::{PiiAction, Screening};
use crate::route::{AttemptTrail, RoutingDecision};

/// Everything known about a finished request (the access-log fields are
/// drawn from it too).
#[derive(Debug, Clone, Default)]
pub struct RequestReport<'a> {
    pub request_id: Option<&'a str>,
    pub tenant: Option<TenantId>,
    pub user: Option<&'a str>,
    /// The configured name of the virtual key (never the key).
    pub key_name: Option<&'a str>,
    /// `chat.completions` or `embeddings`.
    pub endpoint: &'static str,
    /// The `model` the client sent, once the request was planned.
    pub requested_model: Option<&'a str>,
    pub decision: Option<&'a RoutingDecision>,
    pub trail: AttemptTrail,
    pub outcome: Option<Outcome>,
    /// What the request consumed at its providers, attempt by attempt.
    pub consumption: Consumption,
    /// Request start to the first content of the answer.
    pub first_token_ms: Option<u64>,
    /// Request start to end.
    pub duration_ms: u64,
    /// Time the router spent reading and planning the request.
    pub routing_us: Option<u64>,
    /// What the guardrails found and did.
    pub screening: Option<&'a Screening>,
    /// What the response cache did.
    pub cache: Option<CacheReport>,
}

/// The response cache's part in a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheReport {
    pub result: CacheResult,
    /// The model whose answer a hit replayed, and what that answer cost.
    pub hit: Option<(ModelId, u64)>,
    /// The hit answered a near-duplicate (the semantic cache).
    pub semantic: bool,
}

impl CacheReport {
    /// The metric and access-log value: the result, `semantic_hit` for a
    /// near-duplicate's.
    pub fn name(&self) -> &'static str {
        if self.semantic {
            "semantic_hit"
        } else {
            self.result.name()
        }
    }
}

impl RequestReport<'_> {
    /// The deployment of the last attempt: the one whose answer the client got.
    pub fn served_deployment(&self) -> Option<DeploymentId> {
        self.trail.last().map(|record| record.deployment)
    }

    pub fn served_by(&self, config: &Config) -> Option<ModelId> {
        if let Some((model, _)) = self.cache.and_then(|cache| cache.hit) {
            return Some(model);
        }
        self.served_deployment()
            .and_then(|deployment| config.deployments.get(deployment))
            .map(|deployment| deployment.model)
    }

    /// `none` (no attempt), `primary`, `fallback`, or `cascade` when a
    /// weak answer was escalated.
    pub fn route(&self) -> &'static str {
        if self.cache.is_some_and(|cache| cache.result == CacheResult::Hit) {
            return "cache";
        }
        if self.trail.escalated() {
            return "cascade";
        }
        match self.trail.0.len() {
            0 => "none",
            1 => "primary",
            _ => "fallback",
        }
    }

    pub fn outcome(&self) -> Outcome {
        self.outcome.unwrap_or(Outcome::Aborted)
    }

    /// What the request cost, summed over the attempts that consumed.
    pub fn cost_micros(&self, config: &Config) -> Option<u64> {
        (!self.consumption.is_empty()).then(|| self.consumption.cost_micros(config))
    }

    pub fn samples(&self, config: &Config) -> Vec<Sample> {
        let tenant = Label::Tenant(self.tenant);
        let served = self.served_by(config);
        let model = Label::Model(served);
        let outcome = self.outcome();
        let mut samples = Vec::with_capacity(8);
        samples.push(Sample::new(
            Family::Requests,
            &[
                tenant,
                Label::Tier(self.decision.and_then(|decision| decision.tier)),
                model,
                Label::Fixed("route", self.route()),
                Label::Fixed("outcome", outcome.name()),
            ],
            1,
        ));
        // Every attempt but the last handed the request on.
        let handed_on = self.trail.0.len().saturating_sub(1);
        // An escalated answer did not fail: the cascade metrics count it.
        for record in self.trail.0.iter().take(handed_on).filter(|record| !record.escalated) {
            let failed = config.deployments.get(record.deployment).map(|d| d.model);
            samples.push(Sample::new(
                Family::Failovers,
                &[
                    Label::Model(failed),
                    Label::Fixed("result", trail_result(record.status)),
                ],
                1,
            ));
        }
        for consumed in &self.consumption.0 {
            let model = Label::Model(Some(consumed.model));
            let usage = consumed.usage;
            let kinds = [
                ("input", usage.input.saturating_add(usage.cache_write)),
                ("cached_input", usage.cached_input),
                ("output", usage.output),
            ];
            for (kind, tokens) in kinds.into_iter().filter(|(_, tokens)| *tokens > 0) {
                samples.push(Sample::new(
                    Family::Tokens,
                    &[tenant, model, Label::Fixed("kind", kind)],
                    tokens,
                ));
            }
            let cost = consumed.cost_micros(config);
            if cost > 0 {
                samples.push(Sample::new(Family::CostMicroUsd, &[tenant, model], cost));
            }
        }
        if outcome == Outcome::Ok {
            samples.push(Sample::new(Family::RequestDuration, &[model], self.duration_ms));
        }
        if let Some(screening) = self.screening {
            guardrail_samples(screening, tenant, &mut samples);
        }
        if let Some(cache) = self.cache {
            samples.push(Sample::new(
                Family::CacheRequests,
                &[tenant, Label::Fixed("result", cache.name())],
                1,
            ));
            if let Some((model, saved)) = cache.hit.filter(|(_, saved)| *saved > 0) {
                samples.push(Sample::new(
                    Family::CacheSavedMicroUsd,
                    &[tenant, Label::Model(Some(model))],
                    saved,
                ));
            }
        }
        if let Some(routing_us) = self.routing_us {
            samples.push(Sample::new(
                Family::FilterDuration,
                &[Label::Fixed("phase", "route")],
                routing_us,
            ));
        }
        samples
    }
}

/// One count per guardrail that acted (`kind` is the check, `result` the
/// action) and the findings per category (`kind` is the category).
fn guardrail_samples(screening: &Screening, tenant: Label, samples: &mut Vec<Sample>) {
    let actions = [
        (
            "pii",
            (screening.action != PiiAction::None).then(|| screening.action.name()),
        ),
        (
            "injection",
            if screening.injection_blocked {
                Some("block")
            } else {
                screening.injection.as_ref().map(|_| "flag")
            },
        ),
    ];
    for (check, action) in actions {
        if let Some(action) = action {
            samples.push(Sample::new(
                Family::GuardrailActions,
                &[tenant, Label::Fixed("kind", check), Label::Fixed("result", action)],
                1,
            ));
        }
    }
    for category in screening.found.categories().iter() {
        samples.push(Sample::new(
            Family::PiiFindings,
            &[tenant, Label::Fixed("kind", category.name())],
            u64::from(screening.found.get(category)),
        ));
    }
}

/// The `result` of an attempt in the trail (status 0: no response).
fn trail_result(status: u16) -> &'static str {
    if status == 0 {
        "no_response"
    } else {
        attempt_result(FailureKind::from_status(status))
    }
}

/// One upstream attempt as the upstream filter saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptReport {
    pub deployment: DeploymentId,
    pub failure: Option<FailureKind>,
    pub latency_ms: u64,
    pub first_token_ms: Option<u64>,
    /// Time spent rewriting the request for the provider.
    pub prepare_us: Option<u64>,
    /// Time spent translating a whole (non-streamed) answer.
    pub translate_us: Option<u64>,
}

impl AttemptReport {
    pub fn samples(&self, config: &Config) -> Vec<Sample> {
        let mut samples = Vec::with_capacity(5);
        samples.push(Sample::new(
            Family::Attempts,
            &[
                Label::Deployment(self.deployment),
                Label::Fixed("result", attempt_result(self.failure)),
            ],
            1,
        ));
        if self.failure.is_none() {
            let model = Label::Model(config.deployments.get(self.deployment).map(|d| d.model));
            samples.push(Sample::new(Family::UpstreamDuration, &[model], self.latency_ms));
            if let Some(first_token_ms) = self.first_token_ms {
                samples.push(Sample::new(Family::FirstToken, &[model], first_token_ms));
            }
        }
        for (phase, micros) in [("prepare", self.prepare_us), ("translate", self.translate_us)] {
            if let Some(micros) = micros {
                samples.push(Sample::new(
                    Family::FilterDuration,
                    &[Label::Fixed("phase", phase)],
                    micros,
                ));
            }
        }
        samples
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::TokenUsage;
    use crate::route::attempts::AttemptRecord;
    use crate::telemetry::LABEL_NAMES;
    use crate::testing::governed_config;

    fn names(config: &Config, samples: &[Sample]) -> Vec<(String, u64)> {
        samples
            .iter()
            .map(|sample| (sample.series.stat_name(config), sample.value))
            .collect()
    }

    fn usage() -> TokenUsage {
        TokenUsage {
            input: 100,
            cached_input: 20,
            cache_write: 0,
            output: 50,
        }
    }

    /// `usage()` consumed on `model`, as reported.
    fn consumed_on(model: ModelId) -> Consumption {
        Consumption(vec![crate::govern::ledger::Consumed {
            model,
            usage: usage(),
            estimated: false,
        }])
    }

    #[test]
    fn a_failed_over_request_counts_once_with_its_failovers_tokens_and_cost() {
        let config = governed_config();
        let small = config.model_named("small").unwrap();
        let large = config.model_named("large").unwrap();
        let deployment_of = |model| config.deployments.iter().position(|d| d.model == model).unwrap();
        let report = RequestReport {
            tenant: Some(1),
            trail: AttemptTrail(vec![
                AttemptRecord {
                    deployment: deployment_of(large),
                    status: 503,
                    escalated: false,
                },
                AttemptRecord {
                    deployment: deployment_of(small),
                    status: 200,
                    escalated: false,
                },
            ]),
            outcome: Some(Outcome::Ok),
            consumption: consumed_on(small),
            duration_ms: 42,
            routing_us: Some(17),
            ..Default::default()
        };
        let samples = names(&config, &report.samples(&config));
        let tenant = &config.governance.as_ref().unwrap().tenants[1].name;
        let provider = |model: ModelId| config.providers[config.models[model].provider].name.clone();
        let served = format!(";provider=.={};.;;model=.=small;.;", provider(small));
        let expected = [
            (
                format!("signalbox_requests_total;tenant=.={tenant};.;;tier=.=none;.;{served};route=.=fallback;.;;outcome=.=ok;.;"),
                1,
            ),
            (
                format!(
                    "signalbox_failovers_total;provider=.={};.;;model=.=large;.;;result=.=overloaded;.;",
                    provider(large)
                ),
                1,
            ),
            (format!("signalbox_tokens_total;tenant=.={tenant};.;{served};kind=.=input;.;"), 100),
            (format!("signalbox_tokens_total;tenant=.={tenant};.;{served};kind=.=cached_input;.;"), 20),
            (format!("signalbox_tokens_total;tenant=.={tenant};.;{served};kind=.=output;.;"), 50),
            (
                format!("signalbox_cost_micro_usd_total;tenant=.={tenant};.;{served}"),
                report.cost_micros(&config).unwrap(),
            ),
            (format!("signalbox_request_duration_ms{served}"), 42),
            ("signalbox_filter_duration_us;phase=.=route;.;".to_string(), 17),
        ];
        assert_eq!(samples, expected);
        assert!(report.cost_micros(&config).unwrap() > 0);
    }

    #[test]
    fn a_refused_request_counts_without_a_model_and_records_no_latency() {
        let config = governed_config();
        let report = RequestReport {
            outcome: Some(Outcome::Unauthorized),
            ..Default::default()
        };
        assert_eq!(
            names(&config, &report.samples(&config)),
            [(
                "signalbox_requests_total;tenant=.=none;.;;tier=.=none;.;;provider=.=none;.;;model=.=none;.;;\
                 route=.=none;.;;outcome=.=unauthorized;.;"
                    .to_string(),
                1
            )]
        );
        let aborted = RequestReport::default();
        assert_eq!(aborted.outcome(), Outcome::Aborted);
    }

    #[test]
    fn attempts_count_by_result_and_time_only_successes() {
        let config = governed_config();
        let failed = AttemptReport {
            deployment: 0,
            failure: Some(FailureKind::Timeout),
            latency_ms: 1000,
            first_token_ms: None,
            prepare_us: Some(9),
            translate_us: None,
        };
        let samples = names(&config, &failed.samples(&config));
        assert_eq!(samples.len(), 2);
        assert!(samples[0].0.ends_with("result=.=timeout;.;"));
        assert_eq!(
            samples[1],
            ("signalbox_filter_duration_us;phase=.=prepare;.;".to_string(), 9)
        );
        let served = AttemptReport {
            failure: None,
            first_token_ms: Some(30),
            translate_us: Some(5),
            ..failed
        };
        let families: Vec<Family> = served.samples(&config).iter().map(|s| s.series.family).collect();
        assert_eq!(
            families,
            [
                Family::Attempts,
                Family::UpstreamDuration,
                Family::FirstToken,
                Family::FilterDuration,
                Family::FilterDuration
            ]
        );
    }

    #[test]
    fn every_label_a_sample_carries_has_a_stats_tag() {
        let config = governed_config();
        let report = RequestReport {
            tenant: Some(0),
            trail: AttemptTrail(vec![
                AttemptRecord {
                    deployment: 0,
                    status: 0,
                    escalated: false,
                },
                AttemptRecord {
                    deployment: 1,
                    status: 200,
                    escalated: false,
                },
            ]),
            outcome: Some(Outcome::Ok),
            consumption: consumed_on(config.deployments[1].model),
            routing_us: Some(1),
            ..Default::default()
        };
        let attempt = AttemptReport {
            deployment: 0,
            failure: None,
            latency_ms: 1,
            first_token_ms: Some(1),
            prepare_us: Some(1),
            translate_us: Some(1),
        };
        let samples = report.samples(&config).into_iter().chain(attempt.samples(&config));
        for sample in samples {
            let name = sample.series.stat_name(&config);
            for part in name.split(";.;").filter(|part| part.contains("=.=")) {
                let label = part.trim_start_matches(';').split("=.=").next().unwrap();
                let label = label.rsplit(';').next().unwrap();
                assert!(LABEL_NAMES.contains(&label), "{label} in {name}");
            }
        }
    }

    #[test]
    fn a_judge_that_gave_no_score_is_counted_beside_the_rules_comparison() {
        use crate::shadow::{JudgeFailure, Judged, ShadowJob};
        let config = governed_config();
        let job = ShadowJob {
            tenant: 0,
            request_id: None,
            tier: 0,
            kind: None,
            served: 0,
            reference: 1,
            judge: Some(1),
            request: Vec::new(),
            answer: String::new(),
        };
        let judged_by = |judged| {
            let report = ShadowReport {
                job: &job,
                agreement: Some(0.25),
                judged,
            };
            names(&config, &report.samples())
        };
        let failed = judged_by(Judged::RulesInstead(JudgeFailure::NoScore));
        assert_eq!(failed.len(), 3, "{failed:?}");
        assert!(failed[0].0.contains(";result=.=disagree;.;"), "{failed:?}");
        assert_eq!(failed[1].1, 250);
        let (name, count) = &failed[2];
        assert!(
            name.starts_with("signalbox_shadow_judge_failures_total;provider=.="),
            "{name}"
        );
        assert!(name.ends_with(";reason=.=no_score;.;") && *count == 1, "{name}");
        assert_eq!(judged_by(Judged::Model).len(), 2, "a score is no failure");
    }
}

/// A tier's cascade judged one whole answer.
#[derive(Debug, Clone, Copy)]
pub struct CascadeReport<'a> {
    pub tier: TierId,
    pub model: ModelId,
    pub assessment: &'a Assessment,
    /// `escalated`, `kept` (weak, but no time left) or `accepted`.
    pub result: &'static str,
}

impl CascadeReport<'_> {
    pub fn samples(&self) -> Vec<Sample> {
        let tier = Label::Tier(Some(self.tier));
        let mut samples = vec![Sample::new(
            Family::CascadeAssessments,
            &[
                tier,
                Label::Model(Some(self.model)),
                Label::Fixed("result", self.result),
            ],
            1,
        )];
        if self.result == "escalated" {
            samples.extend(self.assessment.weaknesses.iter().map(|weakness| {
                Sample::new(
                    Family::CascadeEscalations,
                    &[tier, Label::Fixed("reason", weakness.name())],
                    1,
                )
            }));
        }
        samples
    }
}

/// A canary rollout moved.
#[derive(Debug, Clone, Copy)]
pub struct CanaryMoveReport {
    pub tier: TierId,
    pub model: ModelId,
    pub made: crate::canary::Move,
    /// The share after the move, in [0, 1].
    pub share: f64,
}

impl CanaryMoveReport {
    pub fn samples(&self) -> [Sample; 2] {
        let labels = [Label::Tier(Some(self.tier)), Label::Model(Some(self.model))];
        [
            Sample::new(
                Family::CanaryMoves,
                &[labels[0], labels[1], Label::Fixed("result", self.made.name())],
                1,
            ),
            CanaryMoveReport::share_sample(self.tier, self.model, self.share),
        ]
    }

    /// The share gauge alone: for a replica that learns of another's move.
    pub fn share_sample(tier: TierId, model: ModelId, share: f64) -> Sample {
        let labels = [Label::Tier(Some(tier)), Label::Model(Some(model))];
        Sample::new(Family::CanaryShare, &labels, (share * 100.0).round() as u64)
    }
}

/// A user's rating of an answer (tier and model as the current config
/// knows them: `none` for one that is gone).
#[derive(Debug, Clone, Copy)]
pub struct FeedbackReport<'a> {
    pub tier: Option<TierId>,
    pub model: Option<ModelId>,
    pub kind: Option<crate::classify::PromptKind>,
    pub rating: &'a crate::feedback::Rating,
}

impl FeedbackReport<'_> {
    pub fn samples(&self) -> [Sample; 2] {
        let tier = Label::Tier(self.tier);
        let model = Label::Model(self.model);
        let kind = Label::Fixed("kind", self.kind.map_or("none", |kind| kind.name()));
        [
            Sample::new(
                Family::FeedbackRatings,
                &[tier, model, kind, Label::Fixed("result", self.rating.result())],
                1,
            ),
            Sample::new(
                Family::FeedbackRatingMilli,
                &[tier, model, kind],
                (self.rating.rating * 1000.0).round() as u64,
            ),
        ]
    }
}

/// A shadow comparison of a served answer with the reference model's.
#[derive(Debug, Clone, Copy)]
pub struct ShadowReport<'a> {
    pub job: &'a crate::shadow::ShadowJob,
    /// `None`: the reference call gave no answer.
    pub agreement: Option<f64>,
    /// What scored the agreement.
    pub judged: crate::shadow::Judged,
}

impl ShadowReport<'_> {
    pub fn samples(&self) -> Vec<Sample> {
        let tier = Label::Tier(Some(self.job.tier));
        let kind = Label::Fixed("kind", self.job.kind.map_or("none", |kind| kind.name()));
        let result = self.agreement.map_or("failed", crate::shadow::result);
        let mut samples = vec![Sample::new(
            Family::ShadowComparisons,
            &[tier, kind, Label::Fixed("result", result)],
            1,
        )];
        if let Some(agreement) = self.agreement {
            samples.push(Sample::new(
                Family::ShadowAgreementMilli,
                &[tier, kind],
                (agreement * 1000.0).round() as u64,
            ));
        }
        if let (crate::shadow::Judged::RulesInstead(failure), Some(judge)) = (self.judged, self.job.judge) {
            samples.push(Sample::new(
                Family::ShadowJudgeFailures,
                &[Label::Model(Some(judge)), Label::Fixed("reason", failure.name())],
                1,
            ));
        }
        samples
    }
}
