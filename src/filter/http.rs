//! The router's per-request HTTP context. Chat requests are held at the
//! headers, buffered until the body is complete, planned by the core, and
//! released with the plan in filter state for the route's matcher and the
//! upstream filter. On the way back it names the deployment that answered,
//! and turns an exhausted chain into one OpenAI-style error. Every path ends
//! in exactly one outcome: the request continues upstream, or the client
//! gets one local reply.

use std::rc::Rc;
use std::time::Instant;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use super::host::{self, elapsed_us, HostStore};
use super::root::Loaded;
use super::spend::Spend;
use crate::config::Config;
use crate::error::GatewayError;
use crate::headers::HeaderMap;
use crate::route::attempts::{self, AttemptPlan, AttemptTrail};
use crate::route::chain::StoreHealth;
use crate::route::response::{decode_usage, FIRST_CONTENT_STATE, USAGE_STATE};
use crate::route::{self, ClientHints, Endpoint, RequestPlan, RoutingDecision, Situation, CLIENT_HEADER_PREFIX};
use crate::telemetry::access_log::{self, AuditContent};
use crate::telemetry::report::RequestReport;
use crate::telemetry::Outcome;

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

/// Raw answer bytes kept for an audited tenant's access-log line.
const AUDIT_CAPTURE_BYTES: usize = 256 * 1024;

/// The prompt and the answer so far, for tenants with `audit_content`.
struct Audit {
    prompt: Option<String>,
    answer: Vec<u8>,
}

pub struct ChatFilter {
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
    /// Every attempt failed: the response body becomes this error.
    replacement: Option<Vec<u8>>,
    /// When the request arrived (epoch ms).
    started_ms: u64,
    /// Time spent in this filter's request callbacks.
    routing_us: u64,
    request_id: Option<String>,
    outcome: Option<Outcome>,
    audit: Option<Audit>,
    /// The access-log fields of the routing decision are written.
    request_fields_written: bool,
}

impl ChatFilter {
    pub fn new(state: Option<Rc<Loaded>>) -> ChatFilter {
        ChatFilter {
            state,
            phase: Phase::PassThrough,
            endpoint: Endpoint::Other,
            headers: HeaderMap::default(),
            hints: ClientHints::default(),
            routed: None,
            spend: None,
            replacement: None,
            started_ms: 0,
            routing_us: 0,
            request_id: None,
            outcome: None,
            audit: None,
            request_fields_written: false,
        }
    }

    fn reply_error(&mut self, error: &GatewayError) -> Action {
        self.outcome = Some(Outcome::of_error(error));
        // Before the reply ends the request (and its tracing span).
        self.write_request_fields();
        host::send_error(error);
        self.phase = Phase::Replied;
        Action::Pause
    }

    fn reply_json(&mut self, body: &[u8]) -> Action {
        host::send_json(200, &[], body);
        self.phase = Phase::Replied;
        Action::Pause
    }

    fn apply(&mut self, plan: RequestPlan) -> Action {
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
        let identity = self.spend.as_ref().map(Spend::identity);
        RequestReport {
            request_id: self.request_id.as_deref(),
            tenant: identity.map(|identity| identity.tenant),
            user: identity.and_then(|identity| identity.user.as_deref()),
            key_name: identity.map(|identity| identity.key_name.as_str()),
            endpoint: match self.endpoint {
                Endpoint::Embeddings => "embeddings",
                _ => "chat.completions",
            },
            requested_model: self.routed.as_ref().map(|routed| routed.requested_model.as_str()),
            decision: self.routed.as_ref().map(|routed| &routed.decision),
            trail,
            outcome: self.outcome,
            routing_us: Some(self.routing_us),
            ..Default::default()
        }
    }

    /// Writes the decision's access-log fields as soon as it is made, so
    /// that tracing's custom tags (read when the span ends, before
    /// `on_log`) see them too.
    fn write_request_fields(&mut self) {
        let Some(state) = self.state.clone() else { return };
        let chat_or_embeddings = matches!(self.endpoint, Endpoint::ChatCompletions | Endpoint::Embeddings);
        if !chat_or_embeddings || !state.config.observability.access_log || self.request_fields_written {
            return;
        }
        for (field, value) in access_log::request_fields(&state.config, &self.report(AttemptTrail::default())) {
            host::set_filter_state(&format!("signalbox.{field}"), &value);
        }
        self.request_fields_written = true;
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
            let health = StoreHealth {
                store: &HostStore,
                config,
                now_ms: host::now_ms(),
            };
            return self.reply_json(&crate::status::health_report(config, &health));
        }
        if method == "GET" && config.spend_path.as_deref() == Some(bare_path) {
            return self.reply_json(&crate::status::spend_report(config, &HostStore, host::now_ms()));
        }
        self.endpoint = route::endpoint(path);
        // Before any reply: even a 405 is logged with its id and duration.
        self.started_ms = host::now_ms();
        self.request_id = headers.get("x-request-id").map(str::to_string);
        match self.endpoint {
            Endpoint::Other => return Action::Continue,
            Endpoint::Models if method == "GET" => return self.reply_json(&state.models_json),
            Endpoint::Models => return self.reply_error(&GatewayError::MethodNotAllowed { allowed: "GET" }),
            Endpoint::ChatCompletions | Endpoint::Embeddings if method != "POST" => {
                return self.reply_error(&GatewayError::MethodNotAllowed { allowed: "POST" });
            }
            Endpoint::ChatCompletions | Endpoint::Embeddings => {}
        }
        if let Some(governance) = &config.governance {
            match Spend::authenticate(governance, &headers) {
                Ok(spend) => self.spend = Some(spend),
                Err(error) => return self.reply_error(&error),
            }
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
        let Some(body) = host::request_body(body_size) else {
            return self.reply_error(&GatewayError::Internal {
                message: "The gateway could not read the request body.".into(),
            });
        };
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
            },
            _ => Situation::open(&health, draw),
        };
        let planned = match self.endpoint {
            Endpoint::Embeddings => route::plan_embeddings(config, &body, &self.headers, &situation),
            _ => route::plan_chat(config, &body, &self.headers, &self.hints, &situation),
        };
        let plan = match planned {
            Ok(plan) => plan,
            Err(error) => return self.reply_error(&error),
        };
        if let (Some(governance), Some(spend)) = (governance, self.spend.as_mut()) {
            if let Err(error) = spend.admit(config, governance, &plan.decision, &state.metrics) {
                return self.reply_error(&error);
            }
            let audited = spend.policy(governance).audit_content;
            if audited && state.audits_content {
                let max_chars = config.observability.audit_max_chars;
                self.audit = Some(Audit {
                    prompt: access_log::audited_prompt(&body, max_chars),
                    answer: Vec::new(),
                });
            }
        }
        self.apply(plan)
    }
}

impl Context for ChatFilter {}

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
        let (Some(state), Some(routed)) = (self.state.clone(), self.routed.as_ref()) else {
            return Action::Continue;
        };
        let config = &state.config;
        let trail = read_trail(config);
        let status = host::response_status();
        for (name, value) in routed.decision_headers.iter().chain(&route::attempt_headers(
            config,
            &routed.attempts,
            &trail,
            routed.explain,
        )) {
            host::set_response_header(name, value);
        }
        let served_by = trail.last().map(|record| config.deployments[record.deployment].model);
        if let (Some(governance), Some(spend)) = (&config.governance, &self.spend) {
            let usage = host::filter_state(USAGE_STATE).and_then(|text| decode_usage(&text));
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
                self.replacement = Some(error.to_json());
            }
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if let Some(replacement) = &self.replacement {
            let value: &[u8] = if end_of_stream { replacement } else { b"" };
            host::replace_response_body(body_size, value);
        } else if let Some(audit) = self
            .audit
            .as_mut()
            .filter(|audit| audit.answer.len() < AUDIT_CAPTURE_BYTES)
        {
            if let Some(chunk) = host::response_body(body_size) {
                let room = AUDIT_CAPTURE_BYTES - audit.answer.len();
                audit.answer.extend_from_slice(chunk.get(..room).unwrap_or(&chunk));
            }
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        let Some(state) = self.state.clone() else { return };
        if !matches!(self.endpoint, Endpoint::ChatCompletions | Endpoint::Embeddings) {
            return;
        }
        let config = &state.config;
        // Read again rather than keep the response headers' copy: an attempt
        // without a response records itself when Envoy destroys it, and
        // nothing promises that comes before the client's headers.
        let trail = read_trail(config);
        // Usage means an attempt succeeded; it was written by the attempt that answered.
        let usage = host::filter_state(USAGE_STATE).and_then(|text| decode_usage(&text));
        if let (Some(governance), Some(spend)) = (&config.governance, self.spend.as_mut()) {
            let served_by = usage
                .and(trail.last())
                .map(|record| config.deployments[record.deployment].model);
            spend.settle(config, governance, served_by, usage, &state.metrics);
        }
        let observability = config.observability;
        if !observability.metrics && !observability.access_log {
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
        let report = RequestReport {
            usage,
            first_token_ms,
            duration_ms: host::now_ms().saturating_sub(self.started_ms),
            ..self.report(trail)
        };
        state.metrics.emit(config, &report.samples(config));
        if !observability.access_log {
            return;
        }
        for (field, value) in access_log::result_fields(config, &report, content.as_ref()) {
            host::set_filter_state(&format!("signalbox.{field}"), &value);
        }
    }
}

/// The attempts the upstream role recorded for this request, keeping only
/// records that name a deployment of this config (they are indexed with it).
fn read_trail(config: &Config) -> AttemptTrail {
    let mut trail = AttemptTrail::decode(&host::filter_state(attempts::TRAIL_STATE).unwrap_or_default());
    trail.0.retain(|record| record.deployment < config.deployments.len());
    trail
}
