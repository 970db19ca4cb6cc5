//! The upstream filter's per-attempt HTTP context (router
//! `upstream_http_filters`). Envoy creates one for every attempt of a
//! request and replays the original body to each, so this is where a request
//! becomes one provider's and its answer the client's:
//!
//! - request: name the cluster of the next attempt for the route's matcher,
//!   rewrite path, authority, credentials and body for this attempt's
//!   deployment (translating to the provider's API);
//! - response: translate the answer back to OpenAI's format — streams chunk
//!   by chunk, everything else whole — capture token usage, and record how
//!   the attempt went in shared health and the request's attempt trail.
//!
//! Response headers are held until the answer says how it went: a streaming
//! success until its first content (until then Envoy may still retry, so a
//! provider that accepts but never produces a token, or fails inside its
//! stream, still fails over), anything else until its body is complete. A
//! whole success whose body is slow is not held past most of the per-try
//! timeout: the root releases it (see [`super::shared`]), so Envoy's per-try
//! timeout never cuts an answer whose headers came and replays the request
//! elsewhere; the body then has the route's per-try idle timeout.
//!
//! When the attempt ends it works out what it consumed at its provider
//! (usage, or an estimate when none was reported) for the request's bill.

use std::rc::Rc;
use std::time::Instant;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use super::host::{self, elapsed_us, HostStore};
use super::root::Loaded;
use super::shared;
use crate::canary::Observation;
use crate::config::{Config, DeploymentId};
use crate::contract::{self, TRIALS_BEGUN_STATE};
use crate::error::GatewayError;
use crate::govern::window::RateWindow;
use crate::headers::HeaderMap;
use crate::health::{AttemptLease, DeploymentHealth};
use crate::providers::{self, Failure, StreamTranslator, TokenUsage};
use crate::route::attempts::{self, AttemptPlan, AttemptRecord};
use crate::route::chain::deployment_window_key;
use crate::route::response::{self, AttemptClock, CascadeCheck};
use crate::state;
use crate::telemetry::report::CascadeReport;

/// A request Signalbox planned, at attempt `number` (1-based chain position).
struct Attempt {
    plan: AttemptPlan,
    number: usize,
    /// Links a cascade skipped before this attempt (see [`contract::LINK_SHIFT_STATE`]).
    link_shift: usize,
    deployment: DeploymentId,
    /// Request headers as this attempt received them (earlier attempts' edits included).
    headers: HeaderMap,
    /// The client's body (translated embeddings answers need it again).
    request_body: Vec<u8>,
    started_ms: u64,
    /// Time spent rewriting the request for the provider.
    prepare_us: Option<u64>,
    /// The in-flight (and trial) slots this attempt holds.
    lease: AttemptLease,
    /// The request could not be prepared for its provider and was answered
    /// here: it never left the gateway.
    never_sent: bool,
    /// The router of this request is in this VM (it always is when both
    /// roles share one `vm_config`).
    linked: bool,
    /// The attempt sends the client's own Messages body to an Anthropic
    /// provider and relays its answer as it came (usage is still read).
    native: bool,
}

impl Attempt {
    /// Until when response headers may be held (a whole answer's for its
    /// body, a stream's for a cascade's look at its start): Envoy's per-try
    /// timeout runs until they go.
    fn hold_until(&self) -> u64 {
        self.started_ms
            .saturating_add(self.plan.per_try_timeout_ms.saturating_mul(HOLD_SHARE_PERCENT) / 100)
    }
}

/// How the answer is being handled.
enum Answer {
    /// No response headers yet.
    Pending,
    /// Translated whole once complete; headers held until then (a slow
    /// success's headers may be released before: `shared::still_held`).
    Buffered {
        status: u16,
        headers: Vec<(String, String)>,
        /// The headers went to the client when they came.
        released: bool,
        /// A success held under the root's watch (it may release it).
        watched: bool,
        /// The body so far, taken out of Envoy's buffer: if the root
        /// releases the headers, Envoy sends what it buffered with them, and
        /// the client must get only the translated whole.
        collected: Vec<u8>,
    },
    /// A streaming success, translated chunk by chunk.
    Streaming {
        translator: Box<dyn StreamTranslator>,
        /// Output tokens held for a cascade's assessment before the headers
        /// go (0: released at the first content).
        hold_tokens: u64,
        /// Headers held until the first content; the translated output so
        /// far sits in Envoy's buffer, raw input is appended after it.
        held_output: Option<Vec<u8>>,
    },
}

pub struct AttemptFilter {
    context_id: u32,
    state: Option<Rc<Loaded>>,
    attempt: Option<Attempt>,
    answer: Answer,
    status: Option<u16>,
    failure: Option<Failure>,
    usage: Option<TokenUsage>,
    first_content_ms: Option<u64>,
    /// Time spent translating a whole answer.
    translate_us: Option<u64>,
    /// The response reached its end of stream.
    response_complete: bool,
    /// Output relayed to the client by a stream (what a cut stream is billed).
    relayed_output_tokens: u64,
    /// A cascade judged the answer weak: Envoy retries on a stronger link.
    escalated: bool,
}

/// An attempt without an answer that ends this close to its request's
/// deadline was cut by it (the router's clock starts slightly before Envoy's
/// route timer).
const DEADLINE_SLACK_MS: u64 = 250;

/// Share of the per-try timeout after which a whole success's headers are
/// released rather than held for its body.
const HOLD_SHARE_PERCENT: u64 = 80;

impl AttemptFilter {
    pub fn new(state: Option<Rc<Loaded>>, context_id: u32) -> AttemptFilter {
        AttemptFilter {
            context_id,
            state,
            attempt: None,
            answer: Answer::Pending,
            status: None,
            failure: None,
            usage: None,
            first_content_ms: None,
            translate_us: None,
            response_complete: false,
            relayed_output_tokens: 0,
            escalated: false,
        }
    }

    /// The first content of the answer is here. When it is content for the
    /// client (`delivered`), this is the request's time to first token.
    fn mark_first_content(&mut self, delivered: bool, now: u64) {
        self.first_content_ms = Some(now);
        if let (true, Some(attempt)) = (delivered, self.attempt.as_ref()) {
            shared::set_first_content(attempt.plan.request, now);
        }
    }

    /// Whole answer in: translate it, then mark it (a 2xx that turned out to
    /// be a failure is not the client's first token). `body_size`: the body
    /// in Envoy's buffer; `None` for an answer that ended with its headers,
    /// which has no buffer to write into.
    fn finish_and_mark(
        &mut self,
        body_size: Option<usize>,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
        released: bool,
    ) -> Action {
        let now = host::now_ms();
        let action = self.finish_buffered(body_size, status, headers, body, released, now);
        let delivered = (200..300).contains(&status) && self.failure.is_none() && !self.escalated;
        self.mark_first_content(delivered, now);
        action
    }

    /// Adds this attempt's record to the request's trail.
    fn append_trail(attempt: &Attempt, status: u16) {
        let record = AttemptRecord {
            deployment: attempt.deployment,
            status,
            escalated: false,
        };
        shared::append_attempt(attempt.plan.request, record);
    }

    fn record_usage(&mut self, usage: Option<TokenUsage>) {
        let Some(usage) = usage else { return };
        self.usage = Some(usage);
        if let Some(attempt) = self.attempt.as_ref() {
            shared::set_answer_usage(attempt.plan.request, usage);
        }
    }

    /// Whole answer in: translate it, fix the held headers (unless they
    /// went out already), release.
    fn finish_buffered(
        &mut self,
        body_size: Option<usize>,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
        released: bool,
        now_ms: u64,
    ) -> Action {
        let (Some(state), Some(attempt)) = (self.state.clone(), self.attempt.as_ref()) else {
            return Action::Continue;
        };
        let started = Instant::now();
        let mut finished = response::finish_buffered(
            &state.config,
            &attempt.plan,
            attempt.number,
            attempt.deployment,
            &attempt.request_body,
            status,
            headers,
            body,
            now_ms / 1000,
        );
        let cascade = response::check_cascade(
            &state.config,
            &attempt.plan,
            attempt.number,
            attempt.deployment,
            &attempt.request_body,
            &mut finished,
            !released,
            AttemptClock {
                started_ms: attempt.started_ms,
                now_ms,
            },
        );
        self.translate_us = Some(elapsed_us(started));
        if let Some(check) = &cascade {
            escalate(&state, attempt, check);
            self.escalated = check.escalated;
        }
        let native = attempt
            .native
            .then(|| finished.native_body(attempt.plan.native, status, body));
        let client_body = native.as_deref().unwrap_or(&finished.body);
        let action = deliver_whole(
            body_size,
            (status, headers, body),
            released,
            finished.status,
            client_body,
        );
        self.failure = finished.failure;
        self.record_usage(finished.usage);
        action
    }

    /// One stream chunk in: translate it; release the held headers at the
    /// first content (or turn a stream that failed before any into a retry).
    fn stream_chunk(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(buffer) = host::response_body(body_size) else {
            return Action::Continue;
        };
        let native = self.attempt.as_ref().is_some_and(|attempt| attempt.native);
        let Answer::Streaming {
            translator,
            held_output,
            hold_tokens,
        } = &mut self.answer
        else {
            return Action::Continue;
        };
        let hold_tokens = *hold_tokens;
        // While held, Envoy keeps appending raw input after our output.
        let raw = buffer
            .get(held_output.as_ref().map_or(0, Vec::len)..)
            .unwrap_or_default();
        let mut translated = Vec::with_capacity(raw.len() + 64);
        if let Err(err) = translator.push(raw, &mut translated) {
            log::warn!("dropping an untranslatable stream: {err}");
        }
        if end_of_stream {
            translator.finish(&mut translated);
        }
        if native {
            // Read for usage and failures only: the client gets the provider's events.
            translated = raw.to_vec();
        }
        let (saw_content, failure, usage) = (translator.saw_content(), translator.failure(), translator.usage());
        self.relayed_output_tokens = translator.relayed_output_tokens();
        self.failure = failure.or(self.failure);
        let held = held_output.take().map(|mut output| {
            output.extend_from_slice(&translated);
            output
        });
        if end_of_stream {
            self.record_usage(usage);
        } else {
            // A stream cut short is billed what it reported so far.
            self.usage = usage.or(self.usage);
        }
        let Some(output) = held else {
            // Events the client gets byte for byte as they came (an OpenAI
            // stream's, a native one's) stay in Envoy's buffer untouched.
            if translated != raw {
                host::replace_response_body(body_size, &translated);
            }
            return Action::Continue;
        };
        host::replace_response_body(body_size, &output);
        // A slow stream is judged on what it has before Envoy's per-try
        // timeout (which runs until the headers go) would cut it.
        let hold_until = self.attempt.as_ref().map_or(0, Attempt::hold_until);
        let held_enough = self.relayed_output_tokens >= hold_tokens || host::now_ms() >= hold_until;
        if (saw_content && held_enough) || end_of_stream {
            if saw_content && hold_tokens > 0 && self.escalate_stream(&output, end_of_stream) {
                return Action::Continue;
            }
            self.mark_first_content(saw_content, host::now_ms());
            if !saw_content {
                if let Some(status) = response::failed_stream_status(failure) {
                    host::set_response_header(":status", &status.to_string());
                }
            }
            return Action::Continue;
        }
        if let Answer::Streaming { held_output, .. } = &mut self.answer {
            *held_output = Some(output);
        }
        Action::Pause
    }
}

impl AttemptFilter {
    /// The held start of a stream is assessed by its tier's cascade; a weak
    /// one becomes Envoy's retry on the escalation link (true).
    fn escalate_stream(&mut self, sse: &[u8], ended: bool) -> bool {
        let (Some(state), Some(attempt)) = (self.state.clone(), self.attempt.as_ref()) else {
            return false;
        };
        let clock = AttemptClock {
            started_ms: attempt.started_ms,
            now_ms: host::now_ms(),
        };
        let Some(check) = response::check_stream_cascade(
            &state.config,
            &attempt.plan,
            attempt.number,
            attempt.deployment,
            &attempt.request_body,
            sse,
            ended,
            clock,
        ) else {
            return false;
        };
        escalate(&state, attempt, &check);
        if check.escalated {
            host::set_response_header(":status", &response::RETRY_STATUS.to_string());
            self.escalated = true;
        }
        check.escalated
    }
}

/// Puts a whole answer's client form (`client_status`, `client_body`) where
/// the client gets it, given what was received (status, headers, body) and
/// `body_size`, the body in Envoy's buffer (`None`: the answer ended with
/// its headers). Pauses when the answer went as this attempt's own reply.
fn deliver_whole(
    body_size: Option<usize>,
    (status, headers, body): (u16, &[(String, String)], &[u8]),
    released: bool,
    client_status: u16,
    client_body: &[u8],
) -> Action {
    match body_size {
        Some(body_size) if client_status != status || client_body != body || body.len() != body_size => {
            if !released {
                host::apply_response_edits(&response::whole_answer_header_edits(
                    headers,
                    client_status,
                    client_body.len(),
                ));
            }
            host::replace_response_body(body_size, client_body);
        }
        // An answer already in the client's format whose body came in one
        // piece passes through as it came: Envoy's copy is left alone
        // rather than the same bytes and headers written back.
        Some(_) => {}
        // Nothing to write a body into. A final error (a client error,
        // which is not retried) is sent as this attempt's reply, which the
        // router relays like any answer; otherwise only the status can
        // change (a retry, or the router's error for an exhausted chain).
        None if !released && !client_body.is_empty() && !crate::route::is_exhausted(client_status) => {
            host::send_json(u32::from(client_status), &[], client_body);
            return Action::Pause;
        }
        None if client_status != status && !released => {
            host::set_response_header(":status", &client_status.to_string());
        }
        None => {}
    }
    Action::Continue
}

/// The time canary windows are judged on: a test's clock in modules built
/// for tests, the host's otherwise.
fn rollout_now(config: &Config, attempt: &Attempt, host_now: u64) -> u64 {
    config
        .governance
        .as_ref()
        .and_then(|governance| governance.test_now(&attempt.headers))
        .unwrap_or(host_now)
}

/// Meters a cascade's judgement and, for a weak answer, points Envoy's next
/// attempt at the escalation link and tells the router why.
fn escalate(state: &Loaded, attempt: &Attempt, check: &CascadeCheck) {
    let config = &state.config;
    let report = CascadeReport {
        tier: check.escalation.tier,
        model: config.deployments[attempt.deployment].model,
        assessment: &check.assessment,
        result: check.result(),
    };
    state.metrics.emit(config, &report.samples());
    let observed = Observation::Assessed { escalated: check.weak };
    let now = rollout_now(config, attempt, host::now_ms());
    super::rollouts::observe(state, attempt.plan.tier, report.model, now, observed);
    if !check.escalated {
        return;
    }
    let to_link = check.escalation.to_link;
    if let Some(cluster) = attempts::next_cluster(config, &attempt.plan, to_link) {
        host::set_filter_state(contract::NEXT_CLUSTER_STATE, cluster);
    }
    let shift = attempts::shift_to(attempt.number, attempt.link_shift, to_link);
    host::set_filter_state(contract::LINK_SHIFT_STATE, &shift.to_string());
    shared::mark_last_escalated(attempt.plan.request);
    let weaknesses = check.assessment.describe();
    log::info!(
        "cascade: {} answered weakly ({weaknesses}); escalating to link {}",
        config.deployments[attempt.deployment].name,
        to_link + 1
    );
    host::set_filter_state(contract::CASCADE_STATE, &weaknesses);
}

/// Counts an attempt's request (at its start) or tokens (at its end) in the
/// deployment's sliding minute, when its model has limits to spill over at.
fn count_in_deployment_window(config: &Config, deployment: DeploymentId, now: u64, requests: u64, tokens: u64) {
    if config.models[config.deployments[deployment].model]
        .limits
        .is_unlimited()
    {
        return;
    }
    let key = deployment_window_key(config, deployment);
    if let Err(err) = state::update::<RateWindow, _>(&HostStore, &key, |window| window.record(now, requests, tokens)) {
        log::warn!("cannot count in {key}: {err:?}");
    }
}

/// This attempt's link in the chain and the links a cascade skipped before
/// it, from Envoy's attempt count and the router's filter state.
fn chain_position(headers: &HeaderMap) -> (usize, usize) {
    let envoy_attempt = headers
        .get(attempts::ATTEMPT_COUNT_HEADER)
        .and_then(|count| count.trim().parse().ok())
        .unwrap_or(1);
    // Only an earlier attempt's cascade shifts links: the first has none to read.
    let link_shift = if envoy_attempt > 1 {
        host::filter_state(contract::LINK_SHIFT_STATE)
            .and_then(|shift| shift.parse().ok())
            .unwrap_or(0)
    } else {
        0
    };
    (attempts::link_of_attempt(envoy_attempt, link_shift), link_shift)
}

/// Counts the attempt in flight at its deployment; the token gives it back.
fn begin_in_health(config: &Config, deployment: DeploymentId, now: u64) -> u64 {
    let settings = &config.resilience.health;
    match state::update::<DeploymentHealth, _>(&HostStore, &config.deployments[deployment].health_key, |health| {
        health.begin_attempt(now, settings)
    }) {
        Ok((_, token)) => token,
        Err(err) => {
            log::warn!("cannot count an attempt in flight: {err:?}");
            0
        }
    }
}

/// This attempt now owns link `number`'s trial slot; the router gives back
/// only the slots of links no attempt began.
fn claim_trial(number: usize) {
    let begun = host::filter_state(TRIALS_BEGUN_STATE).unwrap_or_default();
    host::set_filter_state(
        TRIALS_BEGUN_STATE,
        &attempts::append_entry(&begun, &(number - 1).to_string()),
    );
}

mod ended;

impl Context for AttemptFilter {
    fn on_done(&mut self) -> bool {
        shared::unhold(self.context_id);
        if let (Some(state), Some(attempt)) = (self.state.clone(), self.attempt.take()) {
            self.attempt_ended(&state, attempt);
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
        let Some(plan) = host::filter_state(contract::PLAN_STATE).and_then(|text| AttemptPlan::decode(&text)) else {
            // Not a request the router planned (another route): leave it alone.
            return Action::Continue;
        };
        let headers = host::request_headers();
        let (number, link_shift) = chain_position(&headers);
        let Some(deployment) = plan
            .deployment_for(number)
            .filter(|deployment| *deployment < config.deployments.len())
        else {
            // Envoy has a retry left but the chain does not (a cascade
            // skipped links): answer here rather than send a request no
            // deployment was prepared for. The router turns it into the
            // error naming the attempts made.
            log::warn!("attempt {number} has no planned deployment: the chain is over");
            host::send_error(&GatewayError::Internal {
                message: "The failover chain is exhausted.".into(),
            });
            return Action::Pause;
        };
        if let Some(next) = attempts::next_cluster(config, &plan, number) {
            host::set_filter_state(contract::NEXT_CLUSTER_STATE, next);
        }
        let now = host::now_ms();
        let in_flight = begin_in_health(config, deployment, now);
        let trial = plan.trial_for(number);
        if trial.is_some() {
            claim_trial(number);
        }
        count_in_deployment_window(config, deployment, now, 1, 0);
        let linked = shared::attempt_began(plan.request);
        let native = attempts::is_native(config, &plan, deployment);
        if !linked {
            log::warn!("attempt {number} has no router in this VM: give both Signalbox filters one vm_config");
        }
        self.attempt = Some(Attempt {
            plan,
            number,
            link_shift,
            deployment,
            headers,
            request_body: Vec::new(),
            started_ms: now,
            prepare_us: None,
            lease: AttemptLease { in_flight, trial },
            never_sent: false,
            linked,
            native,
        });
        if end_of_stream {
            Action::Continue
        } else {
            Action::Pause
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let (Some(state), Some(attempt)) = (self.state.clone(), self.attempt.as_mut()) else {
            return Action::Continue;
        };
        if !end_of_stream {
            return Action::Pause;
        }
        let Some(body) = host::request_body(body_size) else {
            return Action::Continue;
        };
        let started = Instant::now();
        let now_s = host::now_ms() / 1000;
        let prepared = if attempt.native {
            match shared::native(attempt.plan.request) {
                Some(native) => attempts::prepare_native_attempt(
                    &state.config,
                    &attempt.plan,
                    attempt.number,
                    &body,
                    &native.body,
                    &native.headers,
                    now_s,
                ),
                None => Err(GatewayError::Internal {
                    message: "The client's own body is not in this VM.".into(),
                }),
            }
        } else {
            attempts::prepare_attempt(&state.config, &attempt.plan, attempt.number, &body, now_s)
        };
        match prepared {
            Ok(prepared) => {
                if !prepared.dropped.is_empty() {
                    log::info!(
                        "attempt {} drops fields its provider cannot express: {}",
                        attempt.number,
                        prepared.dropped.join(", ")
                    );
                }
                host::apply_request_edits(&prepared.request_headers, &attempt.headers);
                host::replace_request_body(body_size, &prepared.body);
            }
            Err(err) => {
                // The router plans only links that can be prepared, so this is
                // a bug; still, a request meant for another provider (with its
                // path, body or credentials) must never leave: answer here.
                log::warn!("cannot prepare attempt {}: {err}", attempt.number);
                attempt.never_sent = true;
                host::send_error(&err);
                return Action::Pause;
            }
        }
        attempt.prepare_us = Some(elapsed_us(started));
        attempt.request_body = body;
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.response_complete |= end_of_stream;
        let (Some(state), Some(attempt)) = (self.state.clone(), self.attempt.as_ref()) else {
            return Action::Continue;
        };
        if attempt.never_sent {
            // Our own local reply on its way out: nothing to translate or record.
            return Action::Continue;
        }
        let headers = host::response_headers();
        let status = headers
            .get(":status")
            .and_then(|status| status.parse().ok())
            .unwrap_or(0);
        self.status = Some(status);
        Self::append_trail(attempt, status);
        let pairs = headers.to_pairs();
        if let Some(kept) = providers::client_response_headers(&pairs) {
            host::replace_response_headers(&kept);
        }
        if response::is_stream(&attempt.plan, status) && !end_of_stream {
            let call = attempts::call_for(&state.config, &attempt.plan, attempt.deployment, host::now_ms() / 1000);
            self.answer = Answer::Streaming {
                translator: response::stream_reader(&state.config, &attempt.plan, attempt.deployment, &call),
                held_output: Some(Vec::new()),
                hold_tokens: response::stream_tokens_held(
                    &state.config,
                    &attempt.plan,
                    attempt.number,
                    attempt.deployment,
                ),
            };
            host::set_response_header("content-type", "text/event-stream");
            host::remove_response_header("content-length");
            return Action::Pause;
        }
        if end_of_stream {
            return self.finish_and_mark(None, status, &pairs, &[], false);
        }
        let success = (200..300).contains(&status);
        let hold_until = attempt.hold_until();
        // The body may be rewritten whatever happens to the headers.
        if success {
            host::remove_response_header("content-length");
        }
        let released = success && host::now_ms() >= hold_until;
        let watched = success && !released;
        self.answer = Answer::Buffered {
            status,
            headers: pairs,
            released,
            watched,
            collected: Vec::new(),
        };
        if released {
            return Action::Continue;
        }
        if watched {
            shared::hold(self.context_id, hold_until);
        }
        Action::Pause
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.response_complete |= end_of_stream;
        match &mut self.answer {
            Answer::Pending => Action::Continue,
            Answer::Streaming { .. } => self.stream_chunk(body_size, end_of_stream),
            Answer::Buffered { collected, .. } if !end_of_stream => {
                // Keep Envoy's buffer empty (see `collected`).
                if let Some(chunk) = host::response_body(body_size) {
                    collected.extend_from_slice(&chunk);
                    host::replace_response_body(body_size, b"");
                }
                Action::Pause
            }
            Answer::Buffered {
                status,
                headers,
                released,
                watched,
                collected,
            } => {
                let (status, headers) = (*status, std::mem::take(headers));
                let mut body = std::mem::take(collected);
                // Released by the root while the body was slow: the headers
                // are the client's already.
                let released = *released || (*watched && !shared::unhold(self.context_id));
                body.extend_from_slice(&host::response_body(body_size).unwrap_or_default());
                self.finish_and_mark(Some(body_size), status, &headers, &body, released)
            }
        }
    }
}
