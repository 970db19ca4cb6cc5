//! Admission and settlement of one request against its tenant's limits,
//! quotas and budgets, in shared data.
//!
//! Admission books the request in the tenant's account (its sliding minute
//! and every quota, one compare-and-swap: all or nothing), then in the
//! user's sliding minute; if the user's refuses, the account's booking is
//! undone, so a refused request leaves no trace. Settlement, when the
//! response has ended (or failed, or was aborted), replaces each estimate by
//! the actual usage, adds to the cost ledger, and reports soft alerts.

use crate::config::governance::{Governance, Tenant};
use crate::config::ModelId;
use crate::state::{ensure, update, Store};

use super::account::{Account, AccountBooking, Refusal};
use super::keys::{Identity, TenantId};
use super::ledger::{cost_micros, Consumption, LedgerRecord};
use super::quota::{Amounts, Period, QuotaRecord, SoftAlert};
use super::window::{RateLimits, RateStanding, RateWindow};
use crate::config::Config;
use crate::providers::TokenUsage;

const PREFIX: &str = "signalbox/v1/";

pub fn account_key(tenant: &Tenant) -> String {
    format!("{PREFIX}account/{}", tenant.name)
}

pub fn user_window_key(tenant: &Tenant, user: &str) -> String {
    format!("{PREFIX}rate/user/{}/{user}", tenant.name)
}

/// The records of `tenant`'s quotas as shared data holds them, one per
/// configured quota (fresh ones where there is none yet).
pub fn quota_records(store: &dyn Store, tenant: &Tenant) -> Vec<QuotaRecord> {
    let account = crate::state::read::<Account>(store, &account_key(tenant)).unwrap_or_default();
    (0..tenant.quotas.len()).map(|index| account.quota(index)).collect()
}

pub fn ledger_key(tenant: &Tenant, model: &str) -> String {
    format!("{PREFIX}ledger/{}/{model}", tenant.name)
}

/// Creates every record admission and settlement will update — each
/// tenant's account, user's window and ledger per model — before traffic.
/// A write to a missing shared-data key ignores compare-and-swap, so two
/// workers creating the same record at once could both pass a cap of one.
pub fn ensure_records(config: &Config, governance: &Governance, store: &dyn Store) {
    for (id, tenant) in governance.tenants.iter().enumerate() {
        ensure::<Account>(store, &account_key(tenant));
        for key in governance.keys.keys().filter(|key| key.tenant == id) {
            if let Some(user) = &key.user {
                ensure::<RateWindow>(store, &user_window_key(tenant, user));
            }
        }
        for model in &config.models {
            ensure::<LedgerRecord>(store, &ledger_key(tenant, &model.name));
        }
    }
}

/// What admission booked in the user's window, to settle later.
#[derive(Debug, Clone, PartialEq, Eq)]
struct UserBooking {
    key: String,
    minute: u64,
}

/// An admitted request: what it booked, and where the tenant stands.
#[derive(Debug, Clone, PartialEq)]
pub struct Admission {
    pub tenant: TenantId,
    pub estimate: Amounts,
    /// None when the tenant has neither limits nor quotas.
    account: Option<AccountBooking>,
    user: Option<UserBooking>,
    /// The tightest window after admission, for `x-ratelimit-*` headers.
    pub standing: Option<(RateLimits, RateStanding)>,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum Denial {
    /// Over a per-minute limit (`scope`: "tenant" or "user"); `None`: the
    /// request alone is over the limit and never fits.
    Rate {
        scope: &'static str,
        retry_after_ms: Option<u64>,
        limits: RateLimits,
        standing: RateStanding,
    },
    /// A quota or budget is used up until its period ends.
    Quota {
        period: Period,
        dimension: &'static str,
        retry_after_ms: u64,
    },
    /// Shared data could not be updated (contention beyond the retry bound).
    Busy,
}

/// What a planned request may consume, from which its reservation is made.
#[derive(Debug, Clone, Copy)]
pub struct Bounds<'a> {
    /// The model of each link of its failover chain, in order.
    pub links: &'a [ModelId],
    pub prompt_tokens: u64,
    /// The client's `max_tokens`, or the tenant's cap sent in its place.
    pub output_limit: Option<u64>,
    /// Answers asked for (`n`).
    pub choices: u64,
    /// What the `prediction` may add to each answer's output, beyond
    /// `output_limit` (the provider bills rejected prediction tokens).
    pub predicted_output: u64,
    pub stream: bool,
    /// The link a cascade escalates weak answers to: that request may
    /// consume two answers by design, the cheap one and this link's.
    pub escalation_link: Option<usize>,
}

/// The most output tokens `model` can produce for the request: its
/// [`Config::output_limit`], else `default_output` (a guess, not a bound),
/// for each of the `choices` answers.
pub fn output_bound(
    config: &Config,
    model: ModelId,
    output_limit: Option<u64>,
    choices: u64,
    default_output: u64,
) -> u64 {
    if config.models.get(model).is_none() {
        return 0;
    }
    config
        .output_limit(model, output_limit)
        .unwrap_or(default_output)
        .saturating_mul(choices.max(1))
}

/// The reservation of a request: an upper bound of what it can consume.
/// Its cost bounds the whole failover chain, for budgets in money must
/// hold: every link may be billed its prompt (an attempt that timed out was
/// still read by its provider), and a whole (non-streamed) answer is
/// generated even when its attempt times out or its client leaves, so each
/// link may also be billed its whole output; of a stream, only the attempt
/// whose content reached the client produces output. Costs are each link's
/// own prices. Its tokens bound one attempt (the largest link): rate limits
/// and token quotas measure volume, and reserving every link's prompt would
/// refuse a large prompt that fits the tokens-per-minute limit once — but a
/// cascading request adds its escalation link's, for it answers twice when
/// it works as designed.
pub fn estimate(config: &Config, bounds: &Bounds<'_>, default_output: u64) -> Amounts {
    let mut estimate = Amounts {
        requests: 1,
        ..Amounts::default()
    };
    let mut dearest_output = 0u64;
    let mut escalation_tokens = 0u64;
    for (position, &model) in bounds.links.iter().enumerate() {
        let Some(price) = config.models.get(model).map(|model| &model.price) else {
            continue;
        };
        let output = output_bound(config, model, bounds.output_limit, bounds.choices, default_output)
            .saturating_add(bounds.predicted_output.saturating_mul(bounds.choices.max(1)));
        let prompt_cost = cost_micros(
            price,
            &TokenUsage {
                input: bounds.prompt_tokens,
                ..TokenUsage::default()
            },
        );
        let output_cost = cost_micros(
            price,
            &TokenUsage {
                output,
                ..TokenUsage::default()
            },
        );
        let attempt_tokens = bounds.prompt_tokens.saturating_add(output);
        if bounds.escalation_link == Some(position) {
            escalation_tokens = attempt_tokens;
        } else {
            estimate.tokens = estimate.tokens.max(attempt_tokens);
        }
        estimate.cost_micros = estimate.cost_micros.saturating_add(prompt_cost);
        // A cascading stream may produce the start of a weak answer and
        // then the stronger link's: reserved as whole answers are.
        if bounds.stream && bounds.escalation_link.is_none() {
            dearest_output = dearest_output.max(output_cost);
        } else {
            estimate.cost_micros = estimate.cost_micros.saturating_add(output_cost);
        }
    }
    estimate.cost_micros = estimate.cost_micros.saturating_add(dearest_output);
    estimate.tokens = estimate.tokens.saturating_add(escalation_tokens);
    estimate
}

/// Whether the tenant's soft threshold is crossed in any quota (read only):
/// with `downgrade_tier`, requests then go to the cheaper tier.
pub fn past_soft_threshold(store: &dyn Store, tenant: &Tenant, now_ms: u64) -> bool {
    let records = quota_records(store, tenant);
    tenant
        .quotas
        .iter()
        .zip(records)
        .any(|(quota, record)| record.share(quota.period, now_ms, &quota.caps) >= tenant.alert_at)
}

/// Books `estimate` for `identity` everywhere `tenant` (its policy) asks,
/// or refuses.
pub fn admit(
    tenant: &Tenant,
    store: &dyn Store,
    identity: &Identity,
    estimate: Amounts,
    now_ms: u64,
) -> Result<Admission, Denial> {
    let mut admission = Admission {
        tenant: identity.tenant,
        estimate,
        account: None,
        user: None,
        standing: None,
    };
    if !tenant.limits.is_unlimited() || !tenant.quotas.is_empty() {
        let booked = update::<Account, _>(store, &account_key(tenant), |account| {
            account.book(tenant, estimate, now_ms)
        });
        let (booking, standing) = match booked {
            Ok((_, Ok(booked))) => booked,
            Ok((_, Err(Refusal::Rate { wait_ms, standing }))) => {
                return Err(Denial::Rate {
                    scope: "tenant",
                    retry_after_ms: wait_ms,
                    limits: tenant.limits,
                    standing,
                })
            }
            Ok((_, Err(Refusal::Quota { index, dimension }))) => {
                let period = tenant.quotas.get(index).map_or(Period::Day, |quota| quota.period);
                return Err(Denial::Quota {
                    period,
                    dimension,
                    retry_after_ms: period.remaining_ms(now_ms),
                });
            }
            Err(_) => return Err(Denial::Busy),
        };
        admission.standing = standing.map(|standing| (tenant.limits, standing));
        admission.account = Some(booking);
    }
    let limits = tenant.user_limits;
    let user_key = identity.user.as_deref().map(|user| user_window_key(tenant, user));
    let Some(key) = user_key.filter(|_| !limits.is_unlimited()) else {
        return Ok(admission);
    };
    let booked = update::<RateWindow, _>(store, &key, |window| {
        window
            .try_admit(now_ms, estimate.tokens, &limits)
            .map(|()| window.minute)
    });
    match booked {
        Ok((window, Ok(minute))) => {
            let standing = window.standing(now_ms, &limits);
            let tighter = admission
                .standing
                .is_none_or(|(_, known)| standing.requests_remaining < known.requests_remaining);
            if tighter {
                admission.standing = Some((limits, standing));
            }
            admission.user = Some(UserBooking { key, minute });
            Ok(admission)
        }
        Ok((window, Err(wait_ms))) => {
            undo(tenant, store, &admission, now_ms);
            Err(Denial::Rate {
                scope: "user",
                retry_after_ms: wait_ms,
                limits,
                standing: window.standing(now_ms, &limits),
            })
        }
        Err(_) => {
            undo(tenant, store, &admission, now_ms);
            Err(Denial::Busy)
        }
    }
}

/// Takes back the account's booking of an admission (the user's window
/// refused it).
fn undo(tenant: &Tenant, store: &dyn Store, admission: &Admission, now_ms: u64) {
    let Some(booking) = &admission.account else { return };
    let key = account_key(tenant);
    if let Err(err) = update::<Account, _>(store, &key, |account| {
        account.undo(tenant, booking, admission.estimate, now_ms)
    }) {
        log::warn!("cannot undo a booking at {key}: {err:?}");
    }
}

/// A soft threshold crossed by this settlement (reported once per period:
/// only the settlement that set the record's flag sees it).
#[derive(Debug, Clone, PartialEq)]
pub struct CrossedAlert {
    pub tenant: String,
    pub period: Period,
    pub alert: SoftAlert,
}

/// Replaces the estimate by what the request consumed (nothing when no
/// attempt reached a provider), and records each attempt's part in the cost
/// ledger of its model. Returns the cost and any soft alerts crossed.
pub fn settle(
    config: &Config,
    tenant: &Tenant,
    store: &dyn Store,
    admission: &Admission,
    consumption: &Consumption,
    now_ms: u64,
) -> (u64, Vec<CrossedAlert>) {
    let usage = consumption.usage().unwrap_or_default();
    let cost = consumption.cost_micros(config);
    let actual = Amounts {
        requests: 1,
        tokens: usage.prompt_total().saturating_add(usage.output),
        cost_micros: cost,
    };
    let estimate = admission.estimate;
    let mut alerts = Vec::new();
    if let Some(booking) = &admission.account {
        let key = account_key(tenant);
        match update::<Account, _>(store, &key, |account| {
            account.settle(tenant, booking, estimate, actual, now_ms)
        }) {
            Ok((_, crossed)) => alerts.extend(crossed.into_iter().filter_map(|(index, alert)| {
                Some(CrossedAlert {
                    tenant: tenant.name.clone(),
                    period: tenant.quotas.get(index)?.period,
                    alert,
                })
            })),
            Err(err) => log::warn!("cannot settle a booking at {key}: {err:?}"),
        }
    }
    if let Some(UserBooking { key, minute }) = &admission.user {
        if let Err(err) = update::<RateWindow, _>(store, key, |window| {
            window.settle_tokens(now_ms, *minute, estimate.tokens, actual.tokens)
        }) {
            log::warn!("cannot settle a booking at {key}: {err:?}");
        }
    }
    for consumed in &consumption.0 {
        let Some(model) = config.models.get(consumed.model) else {
            continue;
        };
        let key = ledger_key(tenant, &model.name);
        let part = consumed.cost_micros(config);
        if let Err(err) = update::<LedgerRecord, _>(store, &key, |ledger| {
            ledger.add(&consumed.usage, part, consumed.estimated)
        }) {
            log::warn!("cannot record spend at {key}: {err:?}");
        }
    }
    (cost, alerts)
}

#[cfg(test)]
mod tests;
