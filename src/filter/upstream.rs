//! The upstream filter's per-attempt HTTP context (router
//! `upstream_http_filters`). Envoy creates one for every attempt of a
//! request and replays the original body to each, so this is where a request
//! becomes one provider's: it names the cluster of the next attempt for the
//! route's matcher, rewrites path, authority, credentials and body for this
//! attempt's deployment, and records how the attempt went in the shared
//! health record and the request's attempt trail.
//!
//! A streaming success is held at the response headers until the first body
//! chunk: until then Envoy may still retry, so a provider that answers 200
//! but never produces a token (per-try timeout) fails over too.

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use super::host::{self, HostStore};
use super::root::{log_transition, Loaded};
use crate::config::DeploymentId;
use crate::headers::HeaderMap;
use crate::health::{AttemptOutcome, DeploymentHealth, FailureKind};
use crate::route::attempts::{self, AttemptPlan, AttemptRecord, AttemptTrail};
use crate::state;

/// A request Signalbox planned, at attempt `attempt` (1-based).
struct Attempt {
    plan: AttemptPlan,
    number: usize,
    deployment: DeploymentId,
    /// Request headers as this attempt received them (earlier attempts' edits included).
    headers: HeaderMap,
    started_ms: u64,
}

pub struct AttemptFilter {
    state: Option<Rc<Loaded>>,
    attempt: Option<Attempt>,
    status: Option<u16>,
    retry_after_ms: Option<u64>,
    first_byte_ms: Option<u64>,
    /// A streaming 200 held until its first body chunk.
    holding_headers: bool,
}

impl AttemptFilter {
    pub fn new(state: Option<Rc<Loaded>>) -> AttemptFilter {
        AttemptFilter {
            state,
            attempt: None,
            status: None,
            retry_after_ms: None,
            first_byte_ms: None,
            holding_headers: false,
        }
    }

    fn append_trail(&self, attempt: &Attempt, status: u16) {
        let existing = host::filter_state(attempts::TRAIL_STATE).unwrap_or_default();
        let record = AttemptRecord {
            deployment: attempt.deployment,
            status,
        };
        host::set_filter_state(attempts::TRAIL_STATE, &AttemptTrail::append(&existing, record));
    }
}

impl Context for AttemptFilter {
    fn on_done(&mut self) -> bool {
        let (Some(state), Some(attempt)) = (self.state.clone(), self.attempt.take()) else {
            return true;
        };
        let config = &state.config;
        let now = host::now_ms();
        let elapsed = now.saturating_sub(attempt.started_ms);
        let failure = match self.status {
            Some(status) => FailureKind::from_status(status),
            None => {
                // No response: refused or reset, or nothing before the per-try timeout.
                self.append_trail(&attempt, 0);
                let timed_out = elapsed.saturating_mul(10) >= config.resilience.per_try_timeout_ms.saturating_mul(9);
                Some(if timed_out {
                    FailureKind::Timeout
                } else {
                    FailureKind::Unreachable
                })
            }
        };
        let outcome = AttemptOutcome {
            failure,
            retry_after_ms: self.retry_after_ms,
            latency_ms: elapsed,
            first_token_ms: self.first_byte_ms.map(|first| first.saturating_sub(attempt.started_ms)),
        };
        let settings = &config.resilience.health;
        let key = &config.deployments[attempt.deployment].health_key;
        match state::update::<DeploymentHealth, _>(&HostStore, key, |health| {
            health.finish_attempt(now, &outcome, settings)
        }) {
            Ok((_, transition)) => log_transition(config, attempt.deployment, transition),
            Err(err) => log::warn!("cannot record an attempt: {err:?}"),
        }
        true
    }
}

impl HttpContext for AttemptFilter {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(state) = self.state.clone() else {
            return Action::Continue;
        };
        let config = &state.config;
        let Some(plan) = host::filter_state(attempts::PLAN_STATE).and_then(|text| AttemptPlan::decode(&text)) else {
            // Not a request the router planned (another route): leave it alone.
            return Action::Continue;
        };
        let headers = host::request_headers();
        let number = headers
            .get(attempts::ATTEMPT_COUNT_HEADER)
            .and_then(|count| count.trim().parse().ok())
            .unwrap_or(1);
        let Some(deployment) = plan
            .deployment_for(number)
            .filter(|deployment| *deployment < config.deployments.len())
        else {
            log::warn!("attempt {number} has no planned deployment");
            return Action::Continue;
        };
        if let Some(next) = attempts::next_cluster(config, &plan, number) {
            host::set_filter_state(attempts::NEXT_CLUSTER_STATE, next);
        }
        let now = host::now_ms();
        let settings = &config.resilience.health;
        if let Err(err) =
            state::update::<DeploymentHealth, _>(&HostStore, &config.deployments[deployment].health_key, |health| {
                health.begin_attempt(now, settings)
            })
        {
            log::warn!("cannot count an attempt in flight: {err:?}");
        }
        self.attempt = Some(Attempt {
            plan,
            number,
            deployment,
            headers,
            started_ms: now,
        });
        if end_of_stream {
            Action::Continue
        } else {
            Action::Pause
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let (Some(state), Some(attempt)) = (self.state.clone(), self.attempt.as_ref()) else {
            return Action::Continue;
        };
        if !end_of_stream {
            return Action::Pause;
        }
        let Some(body) = host::request_body(body_size) else {
            return Action::Continue;
        };
        match attempts::prepare_attempt(&state.config, &attempt.plan, attempt.number, &body) {
            Ok(prepared) => {
                host::apply_request_edits(&prepared.request_headers, &attempt.headers);
                host::replace_request_body(body_size, &prepared.body);
            }
            Err(err) => log::warn!("cannot prepare attempt {}: {err}", attempt.number),
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(attempt) = self.attempt.as_ref() else {
            return Action::Continue;
        };
        let headers = host::response_headers();
        let status = headers
            .get(":status")
            .and_then(|status| status.parse().ok())
            .unwrap_or(0);
        self.status = Some(status);
        self.retry_after_ms = attempts::retry_after_ms(&headers);
        self.first_byte_ms = Some(host::now_ms());
        self.append_trail(attempt, status);
        if attempt.plan.stream && status == 200 && !end_of_stream {
            self.holding_headers = true;
            return Action::Pause;
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.holding_headers && (body_size > 0 || end_of_stream) {
            self.holding_headers = false;
            self.first_byte_ms = Some(host::now_ms());
        }
        Action::Continue
    }
}
