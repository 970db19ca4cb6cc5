//! The router's part in user feedback: remembering each answered request
//! in its slot of the feedback ring, and counting a rating posted to the
//! feedback path. The rules are `crate::feedback`'s; this moves bytes.

use proxy_wasm::types::Action;

use super::{ChatFilter, Phase};
use crate::error::GatewayError;
use crate::feedback::{self, Rated, Rating, Served};
use crate::filter::host::HostStore;
use crate::filter::root::Loaded;
use crate::filter::spend::Spend;
use crate::headers::HeaderMap;
use crate::keys::TenantId;
use crate::state::{self, Store};
use crate::telemetry::report::{FeedbackReport, RequestReport};
use crate::telemetry::Outcome;

impl ChatFilter {
    /// A request to the feedback path: authenticated by the tenant's key
    /// (when governance is on), then held for its body.
    pub(super) fn feedback_headers(&mut self, state: &Loaded, headers: &HeaderMap, end_of_stream: bool) -> Action {
        if headers.get(":method") != Some("POST") {
            return self.reply_error(&GatewayError::MethodNotAllowed { allowed: "POST" });
        }
        let tenant = match &state.config.governance {
            Some(governance) => match Spend::authenticate(governance, headers) {
                Ok(spend) => Some(spend.identity().tenant),
                Err(error) => return self.reply_error(&error),
            },
            None => None,
        };
        if end_of_stream {
            return self.reply_error(&GatewayError::invalid("A JSON feedback body is required."));
        }
        self.feedback_from = Some(tenant);
        self.phase = Phase::AwaitingBody;
        Action::Pause
    }

    /// The whole feedback body is in: count the rating once for the answer
    /// its id names, if this caller's tenant got that answer.
    pub(super) fn take_feedback(&mut self, state: &Loaded, tenant: Option<TenantId>, body: &[u8]) -> Action {
        let config = &state.config;
        let Some(settings) = &config.feedback else {
            return Action::Continue;
        };
        let rating = match Rating::parse(body) {
            Ok(rating) => rating,
            Err(error) => return self.reply_error(&error),
        };
        let tenant = tenant_name(state, tenant);
        let key = feedback::slot_key(tenant, &rating.request_id, settings.remember);
        let rated = state::update::<Served, _>(&HostStore, &key, |slot| {
            feedback::rate(slot, &rating.request_id, tenant)
        });
        match rated {
            Ok((_, Rated::Counted(served))) => {
                let report = FeedbackReport {
                    tier: served.tier.as_deref().and_then(|tier| config.tier_named(tier)),
                    model: config.model_named(&served.model),
                    kind: served.kind,
                    rating: &rating,
                };
                state.metrics.emit(config, &report.samples());
                log::info!("feedback {}", feedback::log_line(&served, &rating));
                let body = serde_json::json!({"counted": true, "model": served.model});
                self.reply_json(&body.to_string().into_bytes())
            }
            Ok((_, Rated::Unknown)) => self.reply_error(&GatewayError::RequestNotFound),
            Ok((_, Rated::Again)) => self.reply_error(&GatewayError::AlreadyRated),
            Err(err) => {
                log::warn!("cannot record feedback: {err:?}");
                self.reply_error(&GatewayError::Internal {
                    message: "The gateway could not record the feedback; retry shortly.".into(),
                })
            }
        }
    }
}

/// Remembers an answered request in its feedback slot (a newer answer
/// takes an older one's place), when feedback is on and the request has an id.
pub(super) fn remember_answer(state: &Loaded, report: &RequestReport<'_>, now_ms: u64) {
    let config = &state.config;
    let Some(settings) = &config.feedback else { return };
    let (Some(request_id), Some(model)) = (report.request_id, report.served_by(config)) else {
        return;
    };
    if report.outcome() != Outcome::Ok || request_id.len() > feedback::MAX_REQUEST_ID_BYTES {
        return;
    }
    let classification = report.decision.and_then(|decision| decision.classification.as_ref());
    let tenant = tenant_name(state, report.tenant);
    let served = Served {
        request_id: request_id.to_string(),
        tenant: tenant.to_string(),
        model: config.models[model].name.clone(),
        tier: report
            .decision
            .and_then(|decision| decision.tier)
            .map(|tier| config.tiers[tier].name.clone()),
        kind: classification.map(|classification| classification.kind),
        score_milli: classification.map(|classification| (classification.score.clamp(0.0, 1.0) * 1000.0) as u16),
        at_ms: now_ms,
        rated: false,
    };
    let key = feedback::slot_key(tenant, request_id, settings.remember);
    if let Err(err) = HostStore.set(&key, &state::Record::encode(&served), None) {
        log::warn!("cannot remember an answer for feedback: {err:?}");
    }
}

/// The name a tenant is remembered by (empty without governance).
fn tenant_name(state: &Loaded, tenant: Option<TenantId>) -> &str {
    tenant
        .and_then(|tenant| state.config.governance.as_ref()?.tenants.get(tenant))
        .map_or("", |tenant| tenant.name.as_str())
}
