//! The request is over (Envoy's log callback): release what it held,
//! settle what it consumed, and report it (metrics, access-log fields,
//! feedback slot, shadow queue).

use super::{feedback, read_trail, shadow, ChatFilter};
use crate::filter::host;
use crate::filter::shared;
use crate::filter::spend::Spend;
use crate::telemetry::access_log::{self, AuditContent};
use crate::telemetry::report::RequestReport;

impl ChatFilter {
    pub(super) fn request_ended(&mut self) {
        self.mark_client_gone();
        self.abandon_rating();
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
        let trail = read_trail(config, self.context_id);
        // Before the request's shared record goes (`request_ended`).
        let first_content_ms = shared::first_content(self.context_id);
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
        let first_token_ms = first_content_ms.map(|at| at.saturating_sub(self.started_ms));
        let shadowed = self.shadow.take();
        let now = host::now_ms();
        let report = RequestReport {
            consumption,
            first_token_ms,
            duration_ms: now.saturating_sub(self.started_ms),
            ..self.report(trail)
        };
        state.metrics.emit(config, &report.samples(config));
        feedback::remember_answer(&state, &report, now);
        if let Some(capture) = shadowed {
            shadow::queue_shadow(&state, capture, &report);
        }
        if !observability.access_log {
            return;
        }
        for (field, value) in access_log::result_fields(config, &report, content.as_ref()) {
            if !self
                .answer_fields
                .iter()
                .any(|(written, old)| *written == field && *old == value)
            {
                host::set_access_log_field(field, &value);
            }
        }
    }
}
