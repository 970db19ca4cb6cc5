//! The end of an attempt (its context is done): what it says about its
//! deployment's health and its canary, what it consumed, and, when the
//! client left first, the request's settlement.

use super::{count_in_deployment_window, rollout_now, Attempt, AttemptFilter, DEADLINE_SLACK_MS};
use crate::canary::Observation;
use crate::config::{Config, ModelId};
use crate::contract::CLIENT_GONE_STATE;
use crate::filter::host::{self, HostStore};
use crate::filter::root::{log_transition, Loaded};
use crate::filter::shared;
use crate::govern::admission;
use crate::govern::ledger::Consumed;
use crate::health::{AttemptOutcome, DeploymentHealth};
use crate::providers::Operation;
use crate::route::attempts::AttemptPlan;
use crate::route::response::{self, AttemptEnd, Unreported, Verdict};
use crate::state;
use crate::telemetry::report::AttemptReport;

impl AttemptFilter {
    pub(super) fn attempt_ended(&self, state: &Loaded, attempt: Attempt) {
        let config = &state.config;
        let now = host::now_ms();
        let end = self.end_of(&attempt, now);
        if self.status.is_none() && !attempt.never_sent {
            Self::append_trail(&attempt, 0);
        }
        let verdict = response::verdict(&end, attempt.plan.per_try_timeout_ms);
        let outcome = AttemptOutcome {
            failure: match verdict {
                Verdict::Failed(kind) => Some(kind),
                Verdict::Silent | Verdict::Succeeded => None,
            },
            retry_after_ms: self.failure.and_then(|failure| failure.retry_after_ms),
            latency_ms: end.elapsed_ms,
            first_token_ms: self
                .first_content_ms
                .map(|first| first.saturating_sub(attempt.started_ms)),
        };
        let heard = (verdict != Verdict::Silent).then_some(&outcome);
        if let Some(outcome) = heard {
            self.report(state, &attempt, outcome);
            observe_canary(state, &attempt, outcome, now);
        }
        record_health(state, &attempt, heard, now);
        let consumed = self.consumed(config, &attempt, &end);
        let tokens = consumed.map_or(0, |consumed| {
            consumed.usage.prompt_total().saturating_add(consumed.usage.output)
        });
        count_in_deployment_window(config, attempt.deployment, now, 0, tokens);
        // The client left before this attempt ended: the router handed the
        // request over, and the last attempt settles it.
        if attempt.linked {
            if let Some((mut spend, consumption)) = shared::attempt_ended(attempt.plan.request, consumed) {
                if let Some(governance) = &config.governance {
                    spend.settle(config, governance, &consumption, &state.metrics);
                }
            }
        }
    }

    /// How the attempt ended, as the verdict and the bill read it.
    fn end_of(&self, attempt: &Attempt, now: u64) -> AttemptEnd {
        AttemptEnd {
            status: self.status,
            failure: self.failure,
            // An escalated stream was cut by the gateway's own retry, not
            // by its provider: it answered.
            complete: self.response_complete || self.escalated,
            // Only an attempt cut short can have been cut by the client; the
            // router says so (its log comes first when the client leaves).
            client_gone: !self.response_complete && host::filter_state(CLIENT_GONE_STATE).is_some(),
            deadline_passed: !self.response_complete
                && attempt.plan.deadline_at_ms != 0
                && now.saturating_add(DEADLINE_SLACK_MS) >= attempt.plan.deadline_at_ms,
            never_sent: attempt.never_sent,
            elapsed_ms: now.saturating_sub(attempt.started_ms),
        }
    }

    fn report(&self, state: &Loaded, attempt: &Attempt, outcome: &AttemptOutcome) {
        let report = AttemptReport {
            deployment: attempt.deployment,
            failure: outcome.failure,
            latency_ms: outcome.latency_ms,
            first_token_ms: outcome.first_token_ms,
            prepare_us: attempt.prepare_us,
            translate_us: self.translate_us,
        };
        state.metrics.emit(&state.config, &report.samples(&state.config));
    }

    /// What the attempt consumed at its provider: its usage, or an estimate.
    fn consumed(&self, config: &Config, attempt: &Attempt, end: &AttemptEnd) -> Option<Consumed> {
        let model = config.deployments[attempt.deployment].model;
        let unreported = Unreported {
            prompt_tokens: attempt.plan.prompt_tokens,
            relayed_output_tokens: self.relayed_output_tokens,
            unseen_output_tokens: unseen_output_tokens(config, &attempt.plan, model),
        };
        response::attempt_consumption(end, self.usage, &unreported, attempt.plan.per_try_timeout_ms).map(
            |(usage, estimated)| Consumed {
                model,
                usage,
                estimated,
            },
        )
    }
}

/// An answer (or a failure the deployment caused) counts for its canary; a
/// failure the client caused (a bad request, a prompt too long) says
/// nothing about the canary or the baseline.
fn observe_canary(state: &Loaded, attempt: &Attempt, outcome: &AttemptOutcome, now: u64) {
    if !outcome.failure.is_none_or(|kind| kind.blames_deployment()) {
        return;
    }
    let observed = Observation::Attempt {
        failed: outcome.failure.is_some(),
        latency_ms: outcome.first_token_ms.unwrap_or(outcome.latency_ms),
    };
    let model = state.config.deployments[attempt.deployment].model;
    let now = rollout_now(&state.config, attempt, now);
    crate::filter::rollouts::observe(state, attempt.plan.tier, model, now, observed);
}

/// Ends the attempt in its deployment's shared health (`heard`: what it
/// showed, unless it was silent), logging a circuit's transition.
fn record_health(state: &Loaded, attempt: &Attempt, heard: Option<&AttemptOutcome>, now: u64) {
    let config = &state.config;
    let settings = &config.resilience.health;
    let key = &config.deployments[attempt.deployment].health_key;
    match state::update::<DeploymentHealth, _>(&HostStore, key, |health| {
        health.finish_attempt(now, attempt.lease, heard, settings)
    }) {
        Ok((_, transition)) => log_transition(config, attempt.deployment, transition),
        Err(err) => log::warn!("cannot record an attempt: {err:?}"),
    }
}

/// The output a whole (non-streamed) chat answer may have had, billed when
/// it never reached the gateway: its bound, from the request's limit, the
/// model's, or the tenant's default reservation.
fn unseen_output_tokens(config: &Config, plan: &AttemptPlan, model: ModelId) -> u64 {
    if plan.stream || plan.operation != Operation::ChatCompletions {
        return 0;
    }
    let default_output = config
        .governance
        .as_ref()
        .map_or(0, |governance| governance.default_output_reservation);
    admission::output_bound(config, model, plan.output_limit, plan.choices, default_output)
}
