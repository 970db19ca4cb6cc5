//! The router's per-request HTTP context. Chat requests are held at the
//! headers, buffered until the body is complete, planned by the core, and
//! released with the plan in filter state for the route's matcher and the
//! upstream filter. On the way back it names the deployment that answered,
//! and turns an exhausted chain into one OpenAI-style error. Every path ends
//! in exactly one outcome: the request continues upstream, or the client
//! gets one local reply.

mod admission;
mod answer;
mod ended;
pub(super) mod feedback;
mod response_cache;
mod shadow;
mod spend_view;

use std::rc::Rc;
use std::time::Instant;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use super::host::{self, elapsed_us, HostStore};
use super::root::Loaded;
use super::shared;
use super::spend::Spend;
use crate::cache;
use crate::cache::assemble::AnswerCapture;
use crate::cache::plan::CacheTicket;
use crate::cache::semantic::{ContextKey, Quantised};
use crate::config::{Config, DeploymentId};
use crate::contract::{self, CLIENT_GONE_STATE, TRIALS_BEGUN_STATE};
use crate::error::GatewayError;
use crate::govern::keys::Identity;
use crate::govern::keys::TenantId;
use crate::guard::{AnswerRestorer, Vault};
use crate::headers::HeaderMap;
use crate::health::DeploymentHealth;
use crate::ingress::messages;
use crate::ingress::relay::Relay;
use crate::route::attempts::{AttemptPlan, AttemptTrail, NativeApi};
use crate::route::chain::StoreHealth;
use crate::route::response;
use crate::route::screen::Screening;
use crate::route::{self, ClientHints, Endpoint, RequestPlan, RoutingDecision, Situation, CLIENT_HEADER_PREFIX};
use crate::state;
use crate::status::{self, View};
use crate::telemetry::access_log;
use crate::telemetry::report::{CacheReport, RequestReport};
use crate::telemetry::Outcome;
use crate::telemetry::{Family, Label, Sample};
use response_cache::{CacheStep, Replayed, SemanticWait};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not a request Signalbox handles.
    PassThrough,
    /// Chat request held until its body is complete.
    AwaitingBody,
    /// Plan applied; the request is on its way upstream.
    Routed,
    /// A local reply was sent.
    Replied,
}

/// What the response path needs from the plan.
struct Routed {
    attempts: AttemptPlan,
    explain: bool,
    decision_headers: Vec<(&'static str, String)>,
    decision: RoutingDecision,
    requested_model: String,
}

/// The prompt and the answer so far, for tenants with `audit_content`.
struct Audit {
    prompt: Option<String>,
    answer: Vec<u8>,
}

pub struct ChatFilter {
    /// This request's id in the VM (its attempts find it by it).
    context_id: u32,
    state: Option<Rc<Loaded>>,
    phase: Phase,
    /// The API the held request calls (chat or embeddings).
    endpoint: Endpoint,
    /// Request headers as they arrived (one host call), for planning.
    headers: HeaderMap,
    hints: ClientHints,
    routed: Option<Routed>,
    /// The caller's key and admission, when governance is on.
    spend: Option<Spend>,
    /// Who is calling (kept apart: the spend control may be handed over).
    identity: Option<Identity>,
    /// The fleet ledger's answer is awaited for this planned request.
    pending: Option<admission::PendingAdmission>,
    /// The spend view being gathered from the fleet ledger.
    spend_view: Option<spend_view::FleetSpendView>,
    /// Every attempt failed: the response body becomes this error.
    replacement: Option<Vec<u8>>,
    /// A translated request's answer on its way back in the client's format.
    relay: Option<Relay>,
    /// The client's Messages body, kept for native attempts until routed.
    native_body: Option<Vec<u8>>,
    /// What the guardrails found and did (without the masked body).
    screening: Option<Screening>,
    /// The masked request's placeholders, until its answer comes.
    vault: Option<Vault>,
    /// Puts the placeholders back into the answer.
    restorer: Option<AnswerRestorer>,
    /// The response cache's part: the ticket whose answer may be kept, the
    /// answer's bytes so far, and what the cache did.
    cache_ticket: Option<CacheTicket>,
    cache_capture: Option<AnswerCapture>,
    cache_report: Option<CacheReport>,
    /// A request answered from the cache: its plan, for reports.
    replayed: Option<Replayed>,
    /// The embeddings call of a semantic lookup, awaited.
    semantic_wait: Option<SemanticWait>,
    /// What to index the kept answer under for later near-duplicates.
    semantic_fill: Option<(ContextKey, Quantised)>,
    /// When the request arrived (epoch ms).
    started_ms: u64,
    /// Time spent in this filter's request callbacks.
    routing_us: u64,
    request_id: Option<String>,
    outcome: Option<Outcome>,
    audit: Option<Audit>,
    /// The access-log fields of the routing decision are written.
    request_fields_written: bool,
    /// The answer's access-log fields as written when it was complete
    /// (`on_log` writes only those that changed since).
    answer_fields: Vec<(&'static str, String)>,
    /// The deployment whose answer the client gets (the trail's last record
    /// when the response headers came: no attempt starts after them).
    answered_by: Option<DeploymentId>,
    /// The response reached its end (or a local reply was sent).
    response_complete: bool,
    /// A rating posted to the feedback path, by this tenant (none without governance).
    feedback_from: Option<Option<TenantId>>,
    /// That rating, while the fleet store decides whether it counts.
    feedback_wait: Option<feedback::FleetRating>,
    /// A request sampled for shadow evaluation, and its answer so far.
    shadow: Option<shadow::ShadowCapture>,
}

impl ChatFilter {
    pub fn new(state: Option<Rc<Loaded>>, context_id: u32) -> ChatFilter {
        ChatFilter {
            context_id,
            state,
            phase: Phase::PassThrough,
            endpoint: Endpoint::Other,
            headers: HeaderMap::default(),
            hints: ClientHints::default(),
            routed: None,
            spend: None,
            identity: None,
            pending: None,
            spend_view: None,
            replacement: None,
            relay: None,
            native_body: None,
            screening: None,
            vault: None,
            restorer: None,
            cache_ticket: None,
            cache_capture: None,
            cache_report: None,
            replayed: None,
            semantic_wait: None,
            semantic_fill: None,
            started_ms: 0,
            routing_us: 0,
            request_id: None,
            outcome: None,
            audit: None,
            request_fields_written: false,
            answer_fields: Vec::new(),
            answered_by: None,
            response_complete: false,
            feedback_from: None,
            feedback_wait: None,
            shadow: None,
        }
    }

    fn reply_error(&mut self, error: &GatewayError) -> Action {
        self.outcome = Some(Outcome::of_error(error));
        if self.screening.is_none() {
            self.screening = Screening::of_refusal(error);
        }
        // Before the reply ends the request (and its tracing span).
        self.write_request_fields();
        host::send_json(error.status(), &error.headers(), &self.error_body(error));
        self.phase = Phase::Replied;
        Action::Pause
    }

    /// A gateway error's body in the shape of the API the client calls.
    fn error_body(&self, error: &GatewayError) -> Vec<u8> {
        self.endpoint
            .ingress()
            .map_or_else(|| error.to_json(), |ingress| ingress.error_body(error))
    }

    fn reply_json(&mut self, body: &[u8]) -> Action {
        host::send_json(200, &[], body);
        self.phase = Phase::Replied;
        Action::Pause
    }

    fn apply(&mut self, mut plan: RequestPlan) -> Action {
        plan.attempts.request = self.context_id;
        if let (false, Some(state)) = (plan.attempts.stream, &self.state) {
            // Envoy's route timeout (sent as x-envoy-upstream-rq-timeout-ms) starts about now.
            plan.attempts.deadline_at_ms = host::now_ms().saturating_add(state.config.resilience.deadline_ms);
        }
        shared::register(self.context_id);
        if let Some(body) = self.native_body.take() {
            let headers = messages::NATIVE_HEADERS
                .iter()
                .filter_map(|name| Some((*name, self.headers.get(name)?)))
                .collect();
            shared::set_native(self.context_id, shared::NativeRequest { body, headers });
        }
        host::apply_request_edits(&plan.request_headers, &self.headers);
        host::set_filter_state(contract::PLAN_STATE, &plan.attempts.encode());
        if let Some(state) = &self.state {
            let first = plan
                .attempts
                .chain
                .first()
                .map(|deployment| &state.config.deployments[*deployment]);
            if let Some(deployment) = first {
                host::set_filter_state(
                    contract::NEXT_CLUSTER_STATE,
                    &state.config.models[deployment.model].cluster,
                );
            }
        }
        host::clear_route_cache();
        self.routed = Some(Routed {
            attempts: plan.attempts,
            explain: plan.explain,
            decision_headers: plan.response_headers,
            decision: plan.decision,
            requested_model: plan.requested_model,
        });
        self.phase = Phase::Routed;
        self.write_request_fields();
        Action::Continue
    }

    /// What the request and its routing are, for reports and the access log.
    fn report(&self, trail: AttemptTrail) -> RequestReport<'_> {
        let identity = self.identity.as_ref();
        RequestReport {
            request_id: self.request_id.as_deref(),
            tenant: identity.map(|identity| identity.tenant),
            user: identity.and_then(|identity| identity.user.as_deref()),
            key_name: identity.map(|identity| identity.key_name.as_str()),
            endpoint: self.endpoint.name(),
            requested_model: self
                .routed
                .as_ref()
                .map(|routed| routed.requested_model.as_str())
                .or(self.replayed.as_ref().map(|replayed| replayed.requested_model.as_str())),
            decision: self
                .routed
                .as_ref()
                .map(|routed| &routed.decision)
                .or(self.replayed.as_ref().map(|replayed| &replayed.decision)),
            trail,
            outcome: self.outcome,
            routing_us: Some(self.routing_us),
            screening: self.screening.as_ref(),
            cache: self.cache_report,
            ..Default::default()
        }
    }

    /// Writes the decision's access-log fields as soon as it is made, so
    /// that tracing's custom tags (read when the span ends, before
    /// `on_log`) see them too.
    fn write_request_fields(&mut self) {
        let Some(state) = self.state.clone() else { return };
        if !self.endpoint.is_routed() || !state.config.observability.access_log || self.request_fields_written {
            return;
        }
        for (field, value) in access_log::request_fields(&state.config, &self.report(AttemptTrail::default())) {
            host::set_access_log_field(field, &value);
        }
        self.request_fields_written = true;
    }

    /// Writes what the complete answer gives (served model, provider,
    /// usage) before the span ends, for tracing's GenAI tags.
    fn write_answer_fields(&mut self) {
        let Some(state) = self.state.as_ref() else { return };
        let config = &state.config;
        if !self.endpoint.is_routed() || !config.observability.access_log {
            return;
        }
        let usage = shared::answer_usage(self.context_id);
        let fields = access_log::answer_fields(config, self.answered_by, usage);
        for (field, value) in &fields {
            host::set_access_log_field(field, value);
        }
        self.answer_fields = fields;
    }

    /// When the request ends before its response did because the client
    /// left, the attempt still in flight (its end comes after this) must not
    /// blame its provider: say so in filter state.
    fn mark_client_gone(&self) {
        if self.phase == Phase::Routed && !self.response_complete {
            let details = host::property(&["response", "code_details"]);
            if details.as_deref().is_some_and(response::ended_by_client) {
                host::set_filter_state(CLIENT_GONE_STATE, "1");
            }
        }
    }

    /// Gives back the half-open trial slots claimed for links that no
    /// attempt began (the request was served, or ended, before them).
    fn release_unbegun_trials(&self, config: &Config) {
        let Some(routed) = self.routed.as_ref().filter(|routed| !routed.attempts.trials.is_empty()) else {
            return;
        };
        let begun = host::filter_state(TRIALS_BEGUN_STATE).unwrap_or_default();
        for (deployment, lease) in routed.attempts.unbegun_trials(&begun) {
            let Some(target) = config.deployments.get(deployment) else {
                continue;
            };
            if let Err(err) = state::update::<DeploymentHealth, _>(&HostStore, &target.health_key, |health| {
                health.release_trial(lease)
            }) {
                log::warn!("cannot give back a trial slot of {}: {err:?}", target.name);
            }
        }
    }

    /// A translated request's answer came (headers): its body will be the
    /// client format's, so its length and type change; a whole answer's
    /// headers wait for its body (its status may change with it).
    fn relay_answer(&mut self, status: u16, end_of_stream: bool, event_stream: bool) -> Action {
        let (Some(ingress), Some(routed)) = (self.endpoint.ingress(), self.routed.as_ref()) else {
            return Action::Continue;
        };
        if end_of_stream {
            // Nothing to translate (an answer without a body).
            return Action::Continue;
        }
        let relay = Relay::for_answer(
            ingress,
            status,
            event_stream,
            &routed.requested_model,
            host::now_ms() / 1000,
        );
        host::set_response_header("content-type", relay.content_type());
        host::remove_response_header("content-length");
        let action = match relay {
            Relay::Whole { .. } => Action::Pause,
            Relay::Stream(_) => Action::Continue,
        };
        self.relay = Some(relay);
        action
    }

    /// Answers Signalbox's own paths, authenticates, holds chat and
    /// embeddings requests for their body.
    fn request_headers(&mut self, end_of_stream: bool) -> Action {
        let Some(state) = self.state.clone() else {
            return self.reply_error(&GatewayError::Internal {
                message: "Signalbox is not configured.".into(),
            });
        };
        let config = &state.config;
        let headers = host::request_headers();
        let method = headers.get(":method").unwrap_or_default();
        let path = headers.get(":path").unwrap_or_default();
        let bare_path = path.split('?').next().unwrap_or_default();
        if let Some(action) = self.own_path(&state, &headers, method, bare_path, end_of_stream) {
            return action;
        }
        self.endpoint = route::endpoint(path);
        // Before any reply: even a 405 is logged with its id and duration.
        self.started_ms = host::now_ms();
        self.request_id = headers.get("x-request-id").map(str::to_string);
        match self.endpoint {
            Endpoint::Other => return Action::Continue,
            Endpoint::Models if method == "GET" => return self.reply_json(&state.models_json),
            Endpoint::Models => return self.reply_error(&GatewayError::MethodNotAllowed { allowed: "GET" }),
            _ if method != "POST" => {
                return self.reply_error(&GatewayError::MethodNotAllowed { allowed: "POST" });
            }
            Endpoint::ChatCompletions
            | Endpoint::Embeddings
            | Endpoint::Messages
            | Endpoint::CountTokens
            | Endpoint::Responses => {}
        }
        if let Some(governance) = &config.governance {
            match Spend::authenticate(governance, &headers) {
                Ok(spend) => {
                    self.identity = Some(spend.identity().clone());
                    self.spend = Some(spend);
                }
                Err(error) => return self.reply_error(&error),
            }
        }
        if let Err(error) = route::check_body_headers(&headers) {
            return self.reply_error(&error);
        }
        self.hints = route::client_hints(config, &headers);
        for name in headers.names().filter(|name| name.starts_with(CLIENT_HEADER_PREFIX)) {
            host::remove_request_header(name);
        }
        let declared_length = headers
            .get("content-length")
            .and_then(|value| value.trim().parse::<u64>().ok());
        self.headers = headers;
        if declared_length.is_some_and(|length| length > config.max_body_bytes as u64) {
            return self.reply_error(&GatewayError::BodyTooLarge {
                limit: config.max_body_bytes,
            });
        }
        if end_of_stream {
            return self.reply_error(&GatewayError::invalid("A JSON request body is required."));
        }
        self.phase = Phase::AwaitingBody;
        Action::Pause
    }

    /// Answers Signalbox's own paths (health, feedback, spend), if this is one.
    fn own_path(
        &mut self,
        state: &Loaded,
        headers: &HeaderMap,
        method: &str,
        bare_path: &str,
        end_of_stream: bool,
    ) -> Option<Action> {
        let config = &state.config;
        if method == "GET" && config.health_path.as_deref() == Some(bare_path) {
            if let Err(error) = status::viewer(config, headers, View::Health) {
                return Some(self.reply_error(&error));
            }
            let health = StoreHealth::new(&HostStore, config, host::now_ms());
            return Some(self.reply_json(&status::health_report(config, &health)));
        }
        if config
            .feedback
            .as_ref()
            .is_some_and(|feedback| feedback.path == bare_path)
        {
            return Some(self.feedback_headers(state, headers, end_of_stream));
        }
        if method == "GET" && config.spend_path.as_deref() == Some(bare_path) {
            return Some(match status::viewer(config, headers, View::Spend) {
                Ok(viewer) => self.spend_view(state, viewer),
                Err(error) => self.reply_error(&error),
            });
        }
        None
    }

    /// Reads the body once complete, plans the request, admits it, applies the plan.
    fn request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.phase != Phase::AwaitingBody {
            return if self.phase == Phase::Replied {
                Action::Pause
            } else {
                Action::Continue
            };
        }
        let Some(state) = self.state.clone() else {
            return Action::Continue;
        };
        let config = &state.config;
        if body_size > config.max_body_bytes {
            return self.reply_error(&GatewayError::BodyTooLarge {
                limit: config.max_body_bytes,
            });
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let Some(mut body) = host::request_body(body_size) else {
            return self.reply_error(&GatewayError::Internal {
                message: "The gateway could not read the request body.".into(),
            });
        };
        if let Some(tenant) = self.feedback_from {
            return self.take_feedback(&state, tenant, &body);
        }
        if self.endpoint == Endpoint::CountTokens {
            return match messages::count_tokens(&body) {
                Ok(count) => self.reply_json(&count),
                Err(error) => self.reply_error(&error),
            };
        }
        let mut dropped: Vec<&'static str> = Vec::new();
        let planned = self.plan(&state, &mut body, body_size, &mut dropped);
        let mut plan = match planned {
            Ok(plan) => plan,
            Err(error) => return self.reply_error(&error),
        };
        // Translated requests come with their (masked) chat body in place.
        let masked = plan.screening.masked_body.take();
        if let Some(masked) = &masked {
            host::replace_request_body(body_size, masked);
            host::remove_request_header("content-length");
        }
        self.shadow = self.sample_shadow(&state, &plan, masked.as_deref().unwrap_or(&body));
        let tenant = self.identity.as_ref().map(|identity| identity.tenant);
        let cache_step = cache::plan::plan(config, tenant, self.endpoint, &plan, &body, &self.headers, &dropped);
        self.vault = plan.screening.vault.take();
        self.screening = Some(std::mem::take(&mut plan.screening));
        self.audit = self.start_audit(&state, &body);
        match self.consult_cache(&state, plan, cache_step) {
            CacheStep::Answered(action) => action,
            CacheStep::Proceed(plan) => self.admit(&state, *plan),
        }
    }

    /// Plans the request for its endpoint. A translated request's body
    /// becomes its chat form (`body`, and Envoy's); `dropped` gets what the
    /// translation lost, which its chat body alone does not say.
    fn plan(
        &mut self,
        state: &Loaded,
        body: &mut Vec<u8>,
        body_size: usize,
        dropped: &mut Vec<&'static str>,
    ) -> Result<RequestPlan, GatewayError> {
        let config = &state.config;
        let health = StoreHealth::new(&HostStore, config, host::now_ms());
        let draw = state.rng.borrow_mut().next();
        let governance = config.governance.as_ref();
        let situation = match (governance, &self.spend) {
            (Some(governance), Some(spend)) => Situation {
                health: &health,
                draw,
                policy: Some(spend.policy(governance)),
                downgrade: spend.downgrade(governance),
                ..Situation::open(&health, draw)
            },
            _ => Situation::open(&health, draw),
        };
        match (self.endpoint, self.endpoint.ingress()) {
            (Endpoint::Embeddings, _) => route::plan_embeddings(config, body, &self.headers, &situation),
            (_, Some(ingress)) => {
                route::plan_translated(config, ingress, body, &self.headers, &self.hints, &situation).map(
                    |translated| {
                        // The chat pipeline takes it from here: the body the
                        // attempts see is the chat request.
                        if !translated.dropped.is_empty() {
                            log::info!(
                                "a {} request drops what chat cannot express: {}",
                                self.endpoint.name(),
                                translated.dropped.join(", ")
                            );
                        }
                        *dropped = translated.dropped;
                        host::replace_request_body(body_size, &translated.chat_body);
                        host::remove_request_header("content-length");
                        let client_body = std::mem::replace(body, translated.chat_body);
                        if translated.plan.attempts.native != NativeApi::None {
                            self.native_body = Some(client_body);
                        }
                        translated.plan
                    },
                )
            }
            _ => route::plan_chat(config, body, &self.headers, &self.hints, &situation),
        }
    }

    /// The audit capture of a tenant with `audit_content` (access log on).
    fn start_audit(&self, state: &Loaded, body: &[u8]) -> Option<Audit> {
        let (Some(governance), Some(spend)) = (state.config.governance.as_ref(), self.spend.as_ref()) else {
            return None;
        };
        let audited = spend.policy(governance).audit_content && state.audits_content;
        audited.then(|| Audit {
            prompt: access_log::audited_prompt(body, state.config.observability.audit_max_chars),
            answer: Vec::new(),
        })
    }
}

/// Counts `count` fleet ledger calls that were never sent (no duration).
pub fn count_store_calls(state: &Loaded, op: &'static str, result: &'static str, count: u64) {
    let labels = [Label::Fixed("op", op), Label::Fixed("result", result)];
    state
        .metrics
        .emit(&state.config, &[Sample::new(Family::StoreCalls, &labels, count)]);
}

/// Counts one fleet ledger call and its duration.
pub fn count_store_call(state: &Loaded, op: &'static str, result: &'static str, duration_ms: u64) {
    let config = &state.config;
    state.metrics.emit(
        config,
        &[
            Sample::new(
                Family::StoreCalls,
                &[Label::Fixed("op", op), Label::Fixed("result", result)],
                1,
            ),
            Sample::new(Family::StoreDuration, &[Label::Fixed("op", op)], duration_ms),
        ],
    );
}

impl Context for ChatFilter {
    fn on_http_call_response(&mut self, token_id: u32, _num_headers: usize, body_size: usize, _num_trailers: usize) {
        let Some(state) = self.state.clone() else { return };
        let status = u32::from(host::call_response_status());
        let body = host::call_response_body(body_size).unwrap_or_default();
        if self.semantic_wait.as_ref().is_some_and(|wait| wait.token == token_id) {
            if self.embedding_answered(&state, status as u16, &body) == Action::Continue {
                host::resume_request();
            }
        } else if self
            .feedback_wait
            .as_ref()
            .is_some_and(|waiting| waiting.token == token_id)
        {
            if self.rating_answered(&state, status, &body) == Action::Continue {
                host::resume_request();
            }
        } else if self.pending.as_ref().is_some_and(|pending| pending.token == token_id) {
            if self.admission_answered(&state, status, &body) == Action::Continue {
                host::resume_request();
            }
        } else {
            self.spend_answered(&state, token_id, status, &body);
        }
    }
}

impl HttpContext for ChatFilter {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let started = Instant::now();
        let action = self.request_headers(end_of_stream);
        self.routing_us = self.routing_us.saturating_add(elapsed_us(started));
        action
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let started = Instant::now();
        let action = self.request_body(body_size, end_of_stream);
        self.routing_us = self.routing_us.saturating_add(elapsed_us(started));
        action
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        match self.phase {
            // The body never reported its end: trailers closed the stream.
            Phase::AwaitingBody => self.reply_error(&GatewayError::invalid("Request trailers are not supported.")),
            Phase::Replied => Action::Pause,
            Phase::PassThrough | Phase::Routed => Action::Continue,
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.answer_headers(end_of_stream)
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.answer_body(body_size, end_of_stream)
    }

    fn on_log(&mut self) {
        self.request_ended();
    }
}

/// The attempts the upstream role recorded for request `request`, keeping
/// only records that name a deployment of this config (they are indexed with it).
fn read_trail(config: &Config, request: u32) -> AttemptTrail {
    let mut trail = shared::trail(request);
    trail.0.retain(|record| record.deployment < config.deployments.len());
    trail
}
