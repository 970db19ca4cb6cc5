//! The answer on its way back: the routing decision's headers, an
//! exhausted chain's error, the guardrails' placeholders put back, a
//! translated request's answer in its client's format, and the bytes the
//! audit line and the cache keep.

use proxy_wasm::types::Action;

use super::{read_trail, Audit, ChatFilter};
use crate::cache::assemble::AnswerCapture;
use crate::contract;
use crate::error::GatewayError;
use crate::filter::host::{self, HostStore};
use crate::filter::root::Loaded;
use crate::filter::shared;
use crate::guard::AnswerRestorer;
use crate::ingress::relay::{self, Relay};
use crate::route;
use crate::route::attempts::{self, AttemptTrail};
use crate::route::chain::StoreHealth;
use crate::telemetry::Outcome;

/// Raw answer bytes kept for an audited tenant's access-log line.
const AUDIT_CAPTURE_BYTES: usize = 256 * 1024;

impl ChatFilter {
    pub(super) fn answer_headers(&mut self, end_of_stream: bool) -> Action {
        self.response_complete |= end_of_stream;
        // The id a client rates the answer by (`feedback`), on every answer.
        if let Some(request_id) = self.request_id.as_deref().filter(|_| self.endpoint.is_routed()) {
            host::set_response_header("x-request-id", request_id);
        }
        let (Some(state), Some(routed)) = (self.state.clone(), self.routed.as_ref()) else {
            return Action::Continue;
        };
        let config = &state.config;
        let trail = read_trail(config, self.context_id);
        let status = host::response_status();
        let cascade = trail
            .escalated()
            .then(|| host::filter_state(contract::CASCADE_STATE))
            .flatten();
        // The attempts' and the spend's headers, after the decision's.
        let mut added = route::attempt_headers(config, &routed.attempts, &trail, routed.explain, cascade.as_deref());
        self.answered_by = trail.last().map(|record| record.deployment);
        let served_by = trail.last().map(|record| config.deployments[record.deployment].model);
        if let (Some(governance), Some(spend)) = (&config.governance, &self.spend) {
            let usage = shared::answer_usage(self.context_id);
            added.extend(spend.response_headers(config, governance, served_by, usage));
        }
        self.outcome = Some(if route::is_exhausted(status) {
            Outcome::Unavailable
        } else {
            Outcome::of_status(status)
        });
        if route::is_exhausted(status) && end_of_stream {
            let mut headers = routed.decision_headers.clone();
            headers.extend(added);
            return self.reply_exhausted_error(&state, status, &trail, headers);
        }
        for (name, value) in routed.decision_headers.iter().chain(&added) {
            host::set_response_header(name, value);
        }
        if route::is_exhausted(status) {
            self.replace_with_exhausted_error(&state, status, &trail);
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

    /// Every attempt failed: the answer becomes one OpenAI-style error that
    /// names them (its body replaces the last provider's).
    fn replace_with_exhausted_error(&mut self, state: &Loaded, status: u16, trail: &AttemptTrail) {
        let Some(error) = self.exhausted_error(state, status, trail) else {
            return;
        };
        host::set_response_header(":status", &error.status().to_string());
        host::set_response_header("content-type", "application/json");
        host::remove_response_header("content-length");
        for (name, value) in error.headers() {
            host::set_response_header(name, &value);
        }
        self.replacement = Some(self.error_body(&error));
    }

    /// The same error when the last answer had no body (a bare 502 from a
    /// load balancer): there is no buffer to write it into, so Envoy sends
    /// this reply in its place, with the headers the answer would have had.
    fn reply_exhausted_error(
        &mut self,
        state: &Loaded,
        status: u16,
        trail: &AttemptTrail,
        mut headers: Vec<(&'static str, String)>,
    ) -> Action {
        let Some(error) = self.exhausted_error(state, status, trail) else {
            return Action::Continue;
        };
        headers.extend(error.headers());
        headers.extend(self.request_id.clone().map(|id| ("x-request-id", id)));
        host::send_json(error.status(), &headers, &self.error_body(&error));
        Action::Pause
    }

    fn exhausted_error(&self, state: &Loaded, status: u16, trail: &AttemptTrail) -> Option<GatewayError> {
        let (config, routed) = (&state.config, self.routed.as_ref()?);
        let health = StoreHealth::new(&HostStore, config, host::now_ms());
        let last = route::FinalResponse {
            status,
            retry_after_ms: attempts::retry_after_ms(&host::response_headers()),
        };
        Some(route::exhausted_error(config, &routed.attempts, trail, last, &health))
    }

    pub(super) fn answer_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
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
}

/// Keeps what fits of an answer's (chat-format) bytes for the audit line.
pub(super) fn capture(audit: Option<&mut Audit>, chunk: &[u8]) {
    let Some(audit) = audit else { return };
    let room = AUDIT_CAPTURE_BYTES.saturating_sub(audit.answer.len());
    audit.answer.extend_from_slice(chunk.get(..room).unwrap_or(chunk));
}
