//! The router's part in user feedback: remembering each answered request
//! in its slot of the feedback ring (and, with the fleet store, queueing it
//! for Redis), and counting a rating posted to the feedback path (asking
//! Redis first, with the fleet store; a call whose answer is lost is
//! settled later, `crate::filter::unsettled`). The rules are
//! `crate::feedback`'s and `crate::fleet::feedback`'s; this moves bytes.

use proxy_wasm::types::Action;

use super::count_store_call;
use super::{ChatFilter, Phase};
use crate::error::GatewayError;
use crate::feedback::{self, Rated, Rating, Served};
use crate::filter::fleet;
use crate::filter::host::{self, HostStore};
use crate::filter::root::Loaded;
use crate::filter::spend::Spend;
use crate::filter::unsettled;
use crate::fleet::feedback::{parse_rated, FleetRated, RateCall, UnsettledRating};
use crate::fleet::{ScriptCall, StoreFailure};
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
    /// its id names, if this caller's tenant got that answer. With the
    /// fleet store, Redis decides (the request waits for it, at most the
    /// store's timeout); this Envoy's slots decide when Redis cannot.
    pub(super) fn take_feedback(&mut self, state: &Loaded, tenant: Option<TenantId>, body: &[u8]) -> Action {
        let config = &state.config;
        let Some(settings) = &config.feedback else {
            return Action::Continue;
        };
        let rating = match Rating::parse(body) {
            Ok(rating) => rating,
            Err(error) => return self.reply_error(&error),
        };
        if state.config.fleet_store().is_some() {
            let tenant = tenant_name(state, tenant).to_string();
            let key = feedback::slot_key(&tenant, &rating.request_id, settings.remember);
            // Until Redis has the answer, this Envoy's copy goes along.
            let local = state::read::<Served>(&HostStore, &key).filter(|slot| {
                slot.request_id == rating.request_id && slot.tenant == tenant && !slot.rated && !slot.in_fleet
            });
            let call = RateCall {
                tenant,
                request_id: rating.request_id.clone(),
                local,
                keep_ms: settings.keep_ms,
                call_id: unsettled::next_call_id(state),
            };
            return self.send_rating(
                state,
                FleetRating {
                    call,
                    rating,
                    token: 0,
                    with_text: false,
                    sent_at: host::now_ms(),
                },
            );
        }
        self.rate_here(state, tenant_name(state, tenant).to_string(), rating)
    }

    /// Counts a rating in this Envoy's slots only.
    fn rate_here(&mut self, state: &Loaded, tenant: String, rating: Rating) -> Action {
        match rate_in_slots(state, &tenant, &rating.request_id) {
            Ok(Rated::Counted(served)) => self.counted(state, &served, &rating),
            Ok(Rated::Unknown) => self.reply_error(&GatewayError::RequestNotFound),
            Ok(Rated::Again) => self.reply_error(&GatewayError::AlreadyRated),
            Err(()) => self.reply_error(&GatewayError::Internal {
                message: "The gateway could not record the feedback; retry shortly.".into(),
            }),
        }
    }

    /// The fleet store did not answer a rating: this Envoy's slots decide
    /// if they hold the answer (and Redis learns it was rated once it is
    /// back); if not, only Redis could know: the client is asked to retry.
    /// A call that `may_still_run` in Redis (it was sent) may count it there: it is queued to be settled (if Redis
    /// counted it, this Envoy does once it hears); and an answer Redis has
    /// is then left to Redis, since another replica's call may be the one
    /// that counts.
    fn rate_without_store(&mut self, state: &Loaded, waiting: FleetRating, may_still_run: bool) -> Action {
        let FleetRating { call, rating, .. } = waiting;
        if may_still_run && held_by_fleet(state, &call.tenant, &rating.request_id) {
            unsettled::enqueue(UnsettledRating::new(&call, rating, host::now_ms()));
            return self.reply_error(&GatewayError::LedgerUnavailable);
        }
        match rate_in_slots(state, &call.tenant, &rating.request_id) {
            Ok(Rated::Counted(served)) => {
                crate::filter::remember::enqueue(
                    Served {
                        rated: true,
                        ..served.clone()
                    },
                    host::now_ms(),
                );
                self.counted(state, &served, &rating)
            }
            Ok(Rated::Again) => self.reply_error(&GatewayError::AlreadyRated),
            Ok(Rated::Unknown) | Err(()) => {
                if may_still_run {
                    unsettled::enqueue(UnsettledRating::new(&call, rating, host::now_ms()));
                }
                self.reply_error(&GatewayError::LedgerUnavailable)
            }
        }
    }

    /// The client left while its rating's call was out: Redis may still
    /// count it, so it is settled later like a call whose reply was lost.
    pub(super) fn abandon_rating(&mut self) {
        if let Some(waiting) = self.feedback_wait.take() {
            unsettled::enqueue(UnsettledRating::new(&waiting.call, waiting.rating, host::now_ms()));
        }
    }

    /// A rating counted once for the answer `served`: metrics, the log
    /// line, and the client's reply.
    fn counted(&mut self, state: &Loaded, served: &Served, rating: &Rating) -> Action {
        count_rating(state, served, rating);
        let body = serde_json::json!({"counted": true, "model": served.model});
        self.reply_json(&body.to_string().into_bytes())
    }

    fn send_rating(&mut self, state: &Loaded, mut waiting: FleetRating) -> Action {
        let (Some(store), Some(names)) = (state.config.fleet_store(), state.script_names.as_ref()) else {
            return self.rate_here(state, waiting.call.tenant, waiting.rating);
        };
        let request = waiting
            .call
            .request(names, fleet::invocation(waiting.with_text), &store.authority);
        match fleet::send(store, &request) {
            Some(token) => {
                waiting.token = token;
                self.feedback_wait = Some(waiting);
                Action::Pause
            }
            None => {
                count_store_call(state, "rate", "unavailable", 0);
                self.rate_without_store(state, waiting, false)
            }
        }
    }

    /// Redis answered a rating (or did not: then this Envoy's slots decide).
    pub(super) fn rating_answered(&mut self, state: &Loaded, status: u32, body: &[u8]) -> Action {
        let Some(waiting) = self.feedback_wait.take() else {
            return Action::Pause;
        };
        let elapsed = host::now_ms().saturating_sub(waiting.sent_at);
        match parse_rated(status, body) {
            Ok(FleetRated::Counted(served)) => {
                count_store_call(state, "rate", "counted", elapsed);
                // This Envoy's slot, if it holds the answer, is rated too.
                let _ = rate_in_slots(state, &waiting.call.tenant, &waiting.call.request_id);
                self.counted(state, &served, &waiting.rating)
            }
            Ok(FleetRated::Again) => {
                count_store_call(state, "rate", "again", elapsed);
                // Rated at another replica: this Envoy's copy agrees now.
                let _ = rate_in_slots(state, &waiting.call.tenant, &waiting.call.request_id);
                self.reply_error(&GatewayError::AlreadyRated)
            }
            Ok(FleetRated::Unknown) => {
                count_store_call(state, "rate", "unknown", elapsed);
                self.reply_error(&GatewayError::RequestNotFound)
            }
            Err(StoreFailure::NoScript) if !waiting.with_text => {
                count_store_call(state, "rate", "noscript", elapsed);
                self.send_rating(
                    state,
                    FleetRating {
                        with_text: true,
                        sent_at: host::now_ms(),
                        ..waiting
                    },
                )
            }
            Err(failure) => {
                count_store_call(state, "rate", "unavailable", elapsed);
                log::warn!("the fleet store could not count a rating ({failure:?}); this Envoy's answers decide");
                // Envoy answers a call that timed out itself (504), as webdis
                // answers for a Redis it cannot reach: a sent call that failed
                // may still run in Redis.
                self.rate_without_store(state, waiting, true)
            }
        }
    }
}

/// A rating waiting for the fleet store's answer.
pub(in crate::filter) struct FleetRating {
    call: RateCall,
    rating: Rating,
    pub(in crate::filter) token: u32,
    with_text: bool,
    sent_at: u64,
}

/// A rating counted once for the answer `served`: metrics and the log line.
fn count_rating(state: &Loaded, served: &Served, rating: &Rating) {
    let config = &state.config;
    let report = FeedbackReport {
        tier: served.tier.as_deref().and_then(|tier| config.tier_named(tier)),
        model: config.model_named(&served.model),
        kind: served.kind,
        rating,
    };
    state.metrics.emit(config, &report.samples());
    log::info!("feedback {}", feedback::log_line(served, rating));
}

/// A rating whose rate call's answer was lost, which Redis says that call
/// counted: it counts here now (and this Envoy's slot, if it holds the
/// answer, is rated too).
pub(in crate::filter) fn count_settled_rating(state: &Loaded, served: &Served, rating: &Rating) {
    let _ = rate_in_slots(state, &served.tenant, &rating.request_id);
    count_rating(state, served, rating);
}

/// Whether this Envoy's slot holds the answer and Redis has it too (then
/// Redis alone decides whether a rating counts).
fn held_by_fleet(state: &Loaded, tenant: &str, request_id: &str) -> bool {
    feedback::slot_of(&state.config, tenant, request_id)
        .and_then(|key| state::read::<Served>(&HostStore, &key))
        .is_some_and(|slot| slot.request_id == request_id && slot.tenant == tenant && slot.in_fleet)
}

/// Rates the answer `request_id` of `tenant` in this Envoy's slots.
fn rate_in_slots(state: &Loaded, tenant: &str, request_id: &str) -> Result<Rated, ()> {
    let key = feedback::slot_of(&state.config, tenant, request_id).ok_or(())?;
    state::update::<Served, _>(&HostStore, &key, |slot| feedback::rate(slot, request_id, tenant))
        .map(|(_, rated)| rated)
        .map_err(|err| log::warn!("cannot record feedback in {key}: {err:?}"))
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
        in_fleet: false,
    };
    let key = feedback::slot_key(tenant, request_id, settings.remember);
    if let Err(err) = HostStore.set(&key, &state::Record::encode(&served), None) {
        log::warn!("cannot remember an answer for feedback: {err:?}");
    }
    if state.config.fleet_store().is_some() {
        crate::filter::remember::enqueue(served, now_ms);
    }
}

/// The name a tenant is remembered by (empty without governance).
fn tenant_name(state: &Loaded, tenant: Option<TenantId>) -> &str {
    tenant
        .and_then(|tenant| state.config.governance.as_ref()?.tenants.get(tenant))
        .map_or("", |tenant| tenant.name.as_str())
}
