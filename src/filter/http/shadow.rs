//! The router's part in shadow evaluation: sampling a request when it is
//! planned, keeping its answer, and queueing the reference call when the
//! request ended well (the root sends it: the client never waits). The
//! rules are `crate::shadow`'s; this moves bytes.

use std::rc::Rc;

use super::ChatFilter;
use crate::config::shadow::Shadow;
use crate::filter::host::{self, HostStore};
use crate::filter::root::Loaded;
use crate::filter::shadow as queue;
use crate::govern::window::RateWindow;
use crate::keys::TenantId;
use crate::policy::RateLimits;
use crate::providers::Operation;
use crate::route::{select, RequestPlan};
use crate::shadow::{self, ShadowJob};
use crate::state;
use crate::telemetry::report::RequestReport;
use crate::telemetry::Outcome;

/// A sampled request: what the reference will be asked, and the served
/// answer as it comes.
pub(super) struct ShadowCapture {
    request: Vec<u8>,
    answer: Vec<u8>,
}

impl ChatFilter {
    /// Samples a planned request of a shadowed tenant: a whole chat answer
    /// expected from a tier below the reference's. `request` is the chat
    /// body the providers get (masked, translated).
    pub(super) fn sample_shadow(&self, state: &Loaded, plan: &RequestPlan, request: &[u8]) -> Option<ShadowCapture> {
        let config = &state.config;
        let settings = self.spend.as_ref()?.policy(config.governance.as_ref()?).shadow?;
        // A request the guardrails confined to a private model never goes elsewhere.
        let planned = !plan.attempts.stream
            && plan.attempts.operation == Operation::ChatCompletions
            && plan.screening.private_model.is_none();
        if !planned || !shadow::eligible(config, &settings, plan.decision.tier) {
            return None;
        }
        let draw = crate::route::strategy::unit(state.rng.borrow_mut().next());
        if !shadow::sampled(&settings, draw) || !within_budget(state, self.identity.as_ref()?.tenant, settings) {
            return None;
        }
        Some(ShadowCapture {
            request: shadow::reference_request(request, plan.attempts.max_tokens),
            answer: Vec::new(),
        })
    }

    /// Keeps the next piece of a sampled request's (chat-format) answer.
    pub(super) fn capture_shadow(&mut self, body_size: usize) {
        let Some(capture) = self.shadow.as_mut() else { return };
        let room = shadow::MAX_ANSWER_BYTES.saturating_sub(capture.answer.len());
        if room == 0 {
            return;
        }
        if let Some(chunk) = host::response_body(body_size) {
            capture.answer.extend_from_slice(chunk.get(..room).unwrap_or(&chunk));
        }
    }
}

/// The request ended: queue its reference call if it was answered by a
/// model below the reference's tier (not the reference itself after a
/// failover or a cascade, not the cache).
pub(super) fn queue_shadow(state: &Rc<Loaded>, capture: ShadowCapture, report: &RequestReport<'_>) {
    let config = &state.config;
    let (Some(governance), Some(tenant)) = (config.governance.as_ref(), report.tenant) else {
        return;
    };
    let Some(settings) = governance.tenants.get(tenant).and_then(|policy| policy.shadow) else {
        return;
    };
    let (Some(decision), Some(served)) = (report.decision, report.served_by(config)) else {
        return;
    };
    let below_reference = select::rank(config, served) < select::rank(config, settings.reference);
    if report.outcome() != Outcome::Ok || report.route() == "cache" || !below_reference {
        return;
    }
    let (Some(tier), Some(answer)) = (decision.tier, shadow::answer_text(&capture.answer)) else {
        return;
    };
    let job = ShadowJob {
        tenant,
        request_id: report.request_id.map(str::to_string),
        tier,
        kind: decision
            .classification
            .as_ref()
            .map(|classification| classification.kind),
        served,
        reference: settings.reference,
        judge: settings.judge,
        request: capture.request,
        answer,
    };
    let queued = queue::Queued {
        state: Rc::clone(state),
        job,
    };
    if !queue::enqueue(queued) {
        log::warn!("shadow queue full: a sampled answer is not compared");
    }
}

/// Takes a sample's calls (its reference call, and its judge call when a
/// judge model scores it) from the tenant's shadow budget for this minute
/// (taken when sampling, so no request body is copied past the budget).
fn within_budget(state: &Loaded, tenant: TenantId, settings: Shadow) -> bool {
    let Some(policy) = state
        .config
        .governance
        .as_ref()
        .and_then(|governance| governance.tenants.get(tenant))
    else {
        return false;
    };
    // The window's token count counts calls: a sample takes one or two.
    let budget = RateLimits {
        requests_per_minute: None,
        tokens_per_minute: Some(u64::from(settings.max_per_minute)),
    };
    let calls = settings.calls_per_sample();
    let key = shadow::budget_key(&policy.name);
    match state::update::<RateWindow, _>(&HostStore, &key, |window| {
        window.try_admit(host::now_ms(), calls, &budget)
    }) {
        Ok((_, admitted)) => admitted.is_ok(),
        Err(err) => {
            log::warn!("cannot count a shadow call: {err:?}");
            false
        }
    }
}
