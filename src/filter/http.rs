//! The router's per-request HTTP context. Chat requests are held at the
//! headers, buffered until the body is complete, planned by the core, and
//! released with the plan in filter state for the route's matcher and the
//! upstream filter. On the way back it names the deployment that answered,
//! and turns an exhausted chain into one OpenAI-style error. Every path ends
//! in exactly one outcome: the request continues upstream, or the client
//! gets one local reply.

pub(super) mod feedback;
mod response_cache;
mod shadow;

use std::rc::Rc;
use std::time::Instant;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use super::fleet;
use super::host::{self, elapsed_us, HostStore};
use super::root::Loaded;
use super::shared;
use super::spend::Spend;
use crate::cache;
use crate::cache::assemble::AnswerCapture;
use crate::cache::plan::CacheTicket;
use crate::cache::semantic::{ContextKey, Quantised};
use crate::config::Config;
use crate::error::GatewayError;
use crate::fleet::{AdmitOutcome, Invocation, ScriptCall, SpendCall};
use crate::govern::keys::Identity;
use crate::govern::keys::TenantId;
use crate::govern::quota::Amounts;
use crate::guard::{AnswerRestorer, Vault};
use crate::headers::HeaderMap;
use crate::health::DeploymentHealth;
use crate::ingress::messages;
use crate::ingress::relay::{self, Relay};
use crate::route::attempts::{self, AttemptPlan, AttemptTrail, NativeApi};
use crate::route::chain::StoreHealth;
use crate::route::response::{self, CLIENT_GONE_STATE, FIRST_CONTENT_STATE, TRIALS_BEGUN_STATE};
use crate::route::screen::Screening;
use crate::route::{self, ClientHints, Endpoint, RequestPlan, RoutingDecision, Situation, CLIENT_HEADER_PREFIX};
use crate::state;
use crate::status::{self, TenantSpend, View, Viewer};
use crate::telemetry::access_log::{self, AuditContent};
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

/// A planned request waiting for the fleet ledger's admission.
struct PendingAdmission {
    plan: RequestPlan,
    estimate: Amounts,
    reservation_id: String,
    /// Sent as EVAL (Redis had lost its scripts).
    with_text: bool,
    token: u32,
    sent_ms: u64,
}

/// The spend view's calls to the fleet ledger, one per visible tenant.
struct FleetSpendView {
    waiting: Vec<(u32, TenantId)>,
    gathered: Vec<(TenantId, TenantSpend)>,
    sent_ms: u64,
}

/// Raw answer bytes kept for an audited tenant's access-log line.
const AUDIT_CAPTURE_BYTES: usize = 256 * 1024;

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
    pending: Option<PendingAdmission>,
    /// The spend view being gathered from the fleet ledger.
    spend_view: Option<FleetSpendView>,
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
        host::set_filter_state(attempts::PLAN_STATE, &plan.attempts.encode());
        if let Some(state) = &self.state {
            let first = plan
                .attempts
                .chain
                .first()
                .map(|deployment| &state.config.deployments[*deployment]);
            if let Some(deployment) = first {
                host::set_filter_state(
                    attempts::NEXT_CLUSTER_STATE,
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
            host::set_filter_state(&format!("signalbox.{field}"), &value);
        }
        self.request_fields_written = true;
    }

    /// Writes what the complete answer gives (served model, provider,
    /// usage) before the span ends, for tracing's GenAI tags.
    fn write_answer_fields(&self) {
        let Some(state) = self.state.as_ref() else { return };
        let config = &state.config;
        if !self.endpoint.is_routed() || !config.observability.access_log {
            return;
        }
        let served = read_trail(config).last().map(|record| record.deployment);
        let usage = shared::answer_usage(self.context_id);
        for (field, value) in access_log::answer_fields(config, served, usage) {
            host::set_filter_state(&format!("signalbox.{field}"), &value);
        }
    }

    /// When the request ends before its response did because the client
    /// left, the attempt still in flight (its end comes after this) must not
    /// blame its provider: say so in filter state.
    fn mark_client_gone(&self) {
        if self.phase == Phase::Routed && !self.response_complete {
            let details = host::property(vec!["response", "code_details"]);
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
        if method == "GET" && config.health_path.as_deref() == Some(bare_path) {
            if let Err(error) = status::viewer(config, &headers, View::Health) {
                return self.reply_error(&error);
            }
            let health = StoreHealth {
                store: &HostStore,
                config,
                now_ms: host::now_ms(),
            };
            return self.reply_json(&status::health_report(config, &health));
        }
        if config
            .feedback
            .as_ref()
            .is_some_and(|feedback| feedback.path == bare_path)
        {
            return self.feedback_headers(&state, &headers, end_of_stream);
        }
        if method == "GET" && config.spend_path.as_deref() == Some(bare_path) {
            return match status::viewer(config, &headers, View::Spend) {
                Ok(viewer) => self.spend_view(&state, viewer),
                Err(error) => self.reply_error(&error),
            };
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
        let health = StoreHealth {
            store: &HostStore,
            config,
            now_ms: host::now_ms(),
        };
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
        // What a translated request lost: its chat body alone does not say
        // what the answer depends on.
        let mut dropped: Vec<&'static str> = Vec::new();
        let planned = match (self.endpoint, self.endpoint.ingress()) {
            (Endpoint::Embeddings, _) => route::plan_embeddings(config, &body, &self.headers, &situation),
            (_, Some(ingress)) => {
                route::plan_translated(config, ingress, &body, &self.headers, &self.hints, &situation).map(
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
                        dropped = translated.dropped;
                        host::replace_request_body(body_size, &translated.chat_body);
                        host::remove_request_header("content-length");
                        let client_body = std::mem::replace(&mut body, translated.chat_body);
                        if translated.plan.attempts.native != NativeApi::None {
                            self.native_body = Some(client_body);
                        }
                        translated.plan
                    },
                )
            }
            _ => route::plan_chat(config, &body, &self.headers, &self.hints, &situation),
        };
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
        if let (Some(governance), Some(spend)) = (governance, self.spend.as_ref()) {
            let audited = spend.policy(governance).audit_content;
            if audited && state.audits_content {
                let max_chars = config.observability.audit_max_chars;
                self.audit = Some(Audit {
                    prompt: access_log::audited_prompt(&body, max_chars),
                    answer: Vec::new(),
                });
            }
        }
        match self.consult_cache(&state, plan, cache_step) {
            CacheStep::Answered(action) => action,
            CacheStep::Proceed(plan) => self.admit(&state, *plan),
        }
    }

    /// Admits a planned request (when governed) and sends it on. With a
    /// fleet ledger the request waits for the ledger's answer.
    fn admit(&mut self, state: &Loaded, plan: RequestPlan) -> Action {
        let config = &state.config;
        let (Some(governance), Some(spend)) = (config.governance.as_ref(), self.spend.as_mut()) else {
            return self.apply(plan);
        };
        let estimate = Spend::estimate(config, governance, &plan);
        if governance.store.is_none() {
            return match spend.admit_locally(config, governance, estimate, None, &state.metrics) {
                Ok(()) => self.apply(plan),
                Err(error) => self.reply_error(&error),
            };
        }
        self.pending = Some(PendingAdmission {
            plan,
            estimate,
            reservation_id: state.fresh_reservation_id(),
            with_text: false,
            token: 0,
            sent_ms: host::now_ms(),
        });
        self.send_admission(state)
    }

    /// Sends the pending admission to the fleet ledger; the request waits.
    fn send_admission(&mut self, state: &Loaded) -> Action {
        let config = &state.config;
        let (Some(governance), Some(spend), Some(pending), Some(names)) = (
            config.governance.as_ref(),
            self.spend.as_ref(),
            self.pending.as_mut(),
            state.script_names.as_ref(),
        ) else {
            return self.without_store(state, "no pending admission");
        };
        let invocation = fleet::invocation(pending.with_text);
        let sent = spend
            .admit_request(governance, names, &pending.reservation_id, pending.estimate, invocation)
            .zip(governance.store.as_ref())
            .and_then(|(request, store)| fleet::send(store, &request));
        match sent {
            Some(token) => {
                pending.token = token;
                pending.sent_ms = host::now_ms();
                Action::Pause
            }
            None => self.without_store(state, "the store's cluster cannot be called"),
        }
    }

    /// The fleet ledger did not decide: the tenant's requests are refused
    /// (its budgets fail closed) or counted here at the replica's share.
    /// Any reservation the ledger may still make under the pending id is
    /// released if the request is refused; if it is served, the ledger is
    /// charged under that id when it ends (settling that reservation if a
    /// late admission made one).
    fn without_store(&mut self, state: &Loaded, reason: &str) -> Action {
        let config = &state.config;
        let (Some(governance), Some(spend), Some(pending)) =
            (config.governance.as_ref(), self.spend.as_mut(), self.pending.take())
        else {
            return self.reply_error(&GatewayError::LedgerUnavailable);
        };
        let identity = spend.identity().clone();
        let tenant = spend.policy(governance);
        let refused = tenant.refused_without_store();
        let result = if refused { "refused" } else { "local" };
        let labels = [Label::Tenant(Some(identity.tenant)), Label::Fixed("result", result)];
        state
            .metrics
            .emit(config, &[Sample::new(Family::StoreFallbacks, &labels, 1)]);
        if fleet::should_log(identity.tenant, host::now_ms()) {
            log::warn!(
                "fleet ledger unavailable ({reason}): tenant {}'s requests are {}",
                tenant.name,
                if refused {
                    "refused"
                } else {
                    "counted locally at this replica's share"
                }
            );
        }
        if refused {
            Spend::release_unanswered(config, governance, &identity, pending.reservation_id);
            return self.reply_error(&GatewayError::LedgerUnavailable);
        }
        let fallback = Some(pending.reservation_id.clone());
        match spend.admit_locally(config, governance, pending.estimate, fallback, &state.metrics) {
            Ok(()) => self.apply(pending.plan),
            Err(error) => {
                Spend::release_unanswered(config, governance, &identity, pending.reservation_id);
                self.reply_error(&error)
            }
        }
    }

    /// The admission answer came: route, refuse, resend or do without.
    fn admission_answered(&mut self, state: &Loaded, status: u32, body: &[u8]) -> Action {
        let config = &state.config;
        let (Some(governance), Some(spend), Some(pending)) =
            (config.governance.as_ref(), self.spend.as_mut(), self.pending.take())
        else {
            return Action::Pause;
        };
        let outcome = crate::fleet::admit_outcome(status, body, spend.policy(governance), pending.with_text);
        let result = match &outcome {
            AdmitOutcome::Admitted(_) => "admitted",
            AdmitOutcome::Refused(_) => "refused",
            AdmitOutcome::Resend => "noscript",
            AdmitOutcome::StoreDown { .. } => "unavailable",
        };
        count_store_call(state, "admit", result, host::now_ms().saturating_sub(pending.sent_ms));
        match outcome {
            AdmitOutcome::Admitted(admitted) => {
                spend.admitted_by_fleet(governance, pending.reservation_id, &admitted);
                self.apply(pending.plan)
            }
            AdmitOutcome::Refused(denial) => {
                let error = spend.refusal(config, governance, denial, &state.metrics);
                self.reply_error(&error)
            }
            AdmitOutcome::Resend => {
                self.pending = Some(PendingAdmission {
                    with_text: true,
                    ..pending
                });
                self.send_admission(state)
            }
            AdmitOutcome::StoreDown { reason } => {
                self.pending = Some(pending);
                self.without_store(state, &reason)
            }
        }
    }

    /// The spend view: this Envoy's shared data, or the fleet ledger (one
    /// call per tenant the viewer may see, answered once all are in).
    fn spend_view(&mut self, state: &Loaded, viewer: Viewer) -> Action {
        let config = &state.config;
        let tenants = status::visible_tenants(config, viewer);
        let Some(governance) = config.governance.as_ref() else {
            return self.reply_json(&status::spend_report(config, host::now_ms(), &[]));
        };
        let (Some(store), Some(names)) = (&governance.store, &state.script_names) else {
            let now = host::now_ms();
            let spends: Vec<(TenantId, TenantSpend)> = tenants
                .into_iter()
                .map(|id| {
                    (
                        id,
                        status::local_spend(config, &HostStore, now, &governance.tenants[id]),
                    )
                })
                .collect();
            return self.reply_json(&status::spend_report(config, now, &spends));
        };
        let mut waiting = Vec::with_capacity(tenants.len());
        for id in tenants {
            let tenant = &governance.tenants[id];
            let lines = status::ledger_lines(config, tenant);
            let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
            let call = SpendCall {
                tenant,
                test_clock_ms: None,
                models: &lines,
            };
            match fleet::send(store, &call.request(names, Invocation::WithText, &store.authority)) {
                Some(token) => waiting.push((token, id)),
                None => return self.reply_error(&GatewayError::LedgerUnavailable),
            }
        }
        if waiting.is_empty() {
            return self.reply_json(&status::spend_report(config, host::now_ms(), &[]));
        }
        self.spend_view = Some(FleetSpendView {
            waiting,
            gathered: Vec::new(),
            sent_ms: host::now_ms(),
        });
        Action::Pause
    }

    /// One tenant's spend came from the fleet ledger.
    fn spend_answered(&mut self, state: &Loaded, token: u32, status: u32, body: &[u8]) {
        let config = &state.config;
        let Some(view) = self.spend_view.as_mut() else { return };
        let Some(position) = view.waiting.iter().position(|(waiting, _)| *waiting == token) else {
            return;
        };
        let (_, id) = view.waiting.swap_remove(position);
        let Some(tenant) = config
            .governance
            .as_ref()
            .and_then(|governance| governance.tenants.get(id))
        else {
            self.spend_view = None;
            self.reply_error(&GatewayError::LedgerUnavailable);
            return;
        };
        let lines = status::ledger_lines(config, tenant);
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let parsed = crate::fleet::parse_spend(status, body, tenant.quotas.len(), lines.len());
        count_store_call(
            state,
            "spend",
            if parsed.is_ok() { "ok" } else { "unavailable" },
            host::now_ms().saturating_sub(view.sent_ms),
        );
        let Ok(spend) = parsed else {
            self.spend_view = None;
            self.reply_error(&GatewayError::LedgerUnavailable);
            return;
        };
        view.gathered.push((id, status::fleet_spend(&spend, &lines)));
        if view.waiting.is_empty() {
            let mut gathered = std::mem::take(&mut view.gathered);
            gathered.sort_by_key(|(id, _)| *id);
            self.spend_view = None;
            self.reply_json(&status::spend_report(config, host::now_ms(), &gathered));
        }
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
        self.response_complete |= end_of_stream;
        // The id a client rates the answer by (`feedback`), on every answer.
        if let Some(request_id) = self.request_id.as_deref().filter(|_| self.endpoint.is_routed()) {
            host::set_response_header("x-request-id", request_id);
        }
        let (Some(state), Some(routed)) = (self.state.clone(), self.routed.as_ref()) else {
            return Action::Continue;
        };
        let config = &state.config;
        let trail = read_trail(config);
        let status = host::response_status();
        let cascade = trail
            .escalated()
            .then(|| host::filter_state(response::CASCADE_STATE))
            .flatten();
        for (name, value) in routed.decision_headers.iter().chain(&route::attempt_headers(
            config,
            &routed.attempts,
            &trail,
            routed.explain,
            cascade.as_deref(),
        )) {
            host::set_response_header(name, value);
        }
        let served_by = trail.last().map(|record| config.deployments[record.deployment].model);
        if let (Some(governance), Some(spend)) = (&config.governance, &self.spend) {
            let usage = shared::answer_usage(self.context_id);
            for (name, value) in spend.response_headers(config, governance, served_by, usage) {
                host::set_response_header(name, &value);
            }
        }
        self.outcome = Some(if route::is_exhausted(status) {
            Outcome::Unavailable
        } else {
            Outcome::of_status(status)
        });
        if route::is_exhausted(status) {
            let health = StoreHealth {
                store: &HostStore,
                config,
                now_ms: host::now_ms(),
            };
            let last = route::FinalResponse {
                status,
                retry_after_ms: attempts::retry_after_ms(&host::response_headers()),
            };
            let error = route::exhausted_error(config, &routed.attempts, &trail, last, &health);
            host::set_response_header(":status", &error.status().to_string());
            host::set_response_header("content-type", "application/json");
            host::remove_response_header("content-length");
            for (name, value) in error.headers() {
                host::set_response_header(name, &value);
            }
            if end_of_stream {
                log::warn!("an exhausted request's response has no body to replace");
            } else {
                self.replacement = Some(self.error_body(&error));
            }
            return Action::Continue;
        }
        // An Anthropic answer to an Anthropic client goes back as it came.
        let native = trail
            .last()
            .is_some_and(|record| attempts::is_native(config, &routed.attempts, record.deployment));
        if native {
            return Action::Continue;
        }
        let event_stream = routed.attempts.stream
            && host::response_headers()
                .get("content-type")
                .is_some_and(|value| value.trim().starts_with(relay::EVENT_STREAM));
        if self.cache_ticket.is_some() && status == 200 && routed.attempts.stream == event_stream {
            self.cache_capture = Some(AnswerCapture::new(event_stream));
        }
        // Only a served answer carries the model's words back.
        let vault = self
            .vault
            .take()
            .filter(|_| (200..300).contains(&status) && !end_of_stream);
        if let Some(vault) = vault {
            host::remove_response_header("content-length");
            self.restorer = Some(AnswerRestorer::new(vault, event_stream));
        }
        let action = self.relay_answer(status, end_of_stream, event_stream);
        if self.restorer.as_ref().is_some_and(AnswerRestorer::wants_whole_body) {
            // Its length is known once the whole answer is restored.
            return Action::Pause;
        }
        action
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if end_of_stream && !self.response_complete {
            self.write_answer_fields();
        }
        self.response_complete |= end_of_stream;
        if let Some(replacement) = &self.replacement {
            let value: &[u8] = if end_of_stream { replacement } else { b"" };
            host::replace_response_body(body_size, value);
            return Action::Continue;
        }
        self.capture_shadow(body_size);
        let whole = matches!(self.relay, Some(Relay::Whole { .. }))
            || self.restorer.as_ref().is_some_and(AnswerRestorer::wants_whole_body);
        // A whole answer is restored and translated once complete: Envoy buffers it.
        if whole && !end_of_stream {
            return Action::Pause;
        }
        if self.relay.is_none() && self.restorer.is_none() {
            let audited = self.replayed.is_none()
                && self
                    .audit
                    .as_ref()
                    .is_some_and(|audit| audit.answer.len() < AUDIT_CAPTURE_BYTES);
            if audited || self.cache_capture.is_some() {
                // The last call may bring no bytes, only the end.
                let chunk = host::response_body(body_size).unwrap_or_default();
                capture(self.audit.as_mut(), &chunk);
                self.capture_for_cache(&chunk, end_of_stream);
            }
            return Action::Continue;
        }
        let received = host::response_body(body_size).unwrap_or_default();
        let chat = match self.restorer.as_mut() {
            Some(restorer) => restorer.feed(&received, end_of_stream),
            None => received,
        };
        capture(self.audit.as_mut(), &chat);
        self.capture_for_cache(&chat, end_of_stream);
        let body = match self.relay.as_mut() {
            Some(Relay::Whole { ingress, status }) => {
                let (status, body) = relay::whole_answer(*ingress, *status, &chat);
                host::set_response_header(":status", &status.to_string());
                body
            }
            Some(Relay::Stream(encoder)) => {
                let mut events = Vec::with_capacity(chat.len() + 256);
                encoder.push(&chat, &mut events);
                if end_of_stream {
                    encoder.finish(&mut events);
                }
                events
            }
            None => chat,
        };
        if whole {
            host::set_response_header("content-length", &body.len().to_string());
        }
        host::replace_response_body(body_size, &body);
        Action::Continue
    }

    fn on_log(&mut self) {
        self.mark_client_gone();
        let Some(state) = self.state.clone() else { return };
        // The client left while the ledger's answer was awaited.
        if let (Some(pending), Some(governance), Some(identity)) = (
            self.pending.take(),
            state.config.governance.as_ref(),
            self.identity.as_ref(),
        ) {
            Spend::release_unanswered(&state.config, governance, identity, pending.reservation_id);
        }
        if !self.endpoint.is_routed() {
            return;
        }
        let config = &state.config;
        self.release_unbegun_trials(config);
        // Read again rather than keep the response headers' copy: an attempt
        // without a response records itself when Envoy destroys it, and
        // nothing promises that comes before the client's headers.
        let trail = read_trail(config);
        // Normally every attempt has ended and told what it consumed; when
        // the client left first, the attempt still running settles.
        let consumption = match shared::request_ended(self.context_id, self.spend.take()) {
            shared::RequestEnd::Settle(Some(mut spend), consumption) => {
                if let Some(governance) = &config.governance {
                    spend.settle(config, governance, &consumption, &state.metrics);
                }
                consumption
            }
            shared::RequestEnd::Settle(None, consumption) | shared::RequestEnd::HandedOver(consumption) => consumption,
        };
        let observability = config.observability;
        if !observability.metrics && !observability.access_log && config.feedback.is_none() && self.shadow.is_none() {
            return;
        }
        let content = if observability.access_log {
            // A request that ended before routing without an error reply
            // (a client that went away) still logs who it was.
            self.write_request_fields();
            self.audit.take().map(|audit| {
                let stream = self.routed.as_ref().is_some_and(|routed| routed.attempts.stream);
                let answer = access_log::audited_answer(&audit.answer, stream, observability.audit_max_chars);
                AuditContent {
                    prompt: audit.prompt,
                    answer,
                }
            })
        } else {
            None
        };
        let first_token_ms = host::filter_state(FIRST_CONTENT_STATE)
            .and_then(|at| at.parse::<u64>().ok())
            .map(|at| at.saturating_sub(self.started_ms));
        let shadowed = self.shadow.take();
        let report = RequestReport {
            consumption,
            first_token_ms,
            duration_ms: host::now_ms().saturating_sub(self.started_ms),
            ..self.report(trail)
        };
        state.metrics.emit(config, &report.samples(config));
        feedback::remember_answer(&state, &report, host::now_ms());
        if let Some(capture) = shadowed {
            shadow::queue_shadow(&state, capture, &report);
        }
        if !observability.access_log {
            return;
        }
        for (field, value) in access_log::result_fields(config, &report, content.as_ref()) {
            host::set_filter_state(&format!("signalbox.{field}"), &value);
        }
    }
}

/// Keeps what fits of an answer's (chat-format) bytes for the audit line.
fn capture(audit: Option<&mut Audit>, chunk: &[u8]) {
    let Some(audit) = audit else { return };
    let room = AUDIT_CAPTURE_BYTES.saturating_sub(audit.answer.len());
    audit.answer.extend_from_slice(chunk.get(..room).unwrap_or(chunk));
}

/// The attempts the upstream role recorded for this request, keeping only
/// records that name a deployment of this config (they are indexed with it).
fn read_trail(config: &Config) -> AttemptTrail {
    let mut trail = AttemptTrail::decode(&host::filter_state(attempts::TRAIL_STATE).unwrap_or_default());
    trail.0.retain(|record| record.deployment < config.deployments.len());
    trail
}
