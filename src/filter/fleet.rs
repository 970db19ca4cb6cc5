//! The fleet ledger from the filter's side. Admissions are sent by the
//! router's HTTP context (the request waits, at most the store timeout);
//! settlements must not depend on a request that may already be gone, so
//! they are queued here, in this VM, and sent by the router's root context
//! (which lives as long as the VM) on its next tick, then retried until the
//! store has them or their reservation has expired (the store then charges
//! it in full).

use std::cell::RefCell;
use std::time::Duration;

use super::host;
use crate::config::governance::{Governance, StoreSettings};
use crate::config::{Config, ModelId};
use crate::fleet::{Charge, Invocation, LedgerEntry, ScriptCall, ScriptNames, SettleCall, StoreRequest};
use crate::govern::keys::TenantId;
use crate::govern::ledger::Consumption;
use crate::govern::quota::Amounts;
use crate::providers::TokenUsage;

/// One settlement waiting to reach the store.
#[derive(Debug, Clone)]
pub struct SettleJob {
    pub tenant: TenantId,
    pub user: Option<String>,
    pub reservation_id: String,
    pub test_clock_ms: Option<u64>,
    pub actual: Amounts,
    /// (model, usage, cost, estimated) per attempt that consumed.
    pub ledger: Vec<(ModelId, TokenUsage, u64, bool)>,
    /// Redis lost its scripts: send the text (EVAL), not the name.
    pub with_text: bool,
    pub retries: u32,
    /// Not before this time (a retry's back-off).
    pub due_ms: u64,
    /// The reservation's expiry: after it the store has charged it in full.
    pub give_up_ms: u64,
}

impl SettleJob {
    /// A settlement of `consumption` (empty: release the reservation).
    pub fn new(
        config: &Config,
        tenant: TenantId,
        user: Option<String>,
        reservation_id: String,
        consumption: &Consumption,
        now_ms: u64,
        give_up_ms: u64,
    ) -> SettleJob {
        let usage = consumption.usage().unwrap_or_default();
        SettleJob {
            tenant,
            user,
            reservation_id,
            test_clock_ms: None,
            actual: Amounts {
                requests: 1,
                tokens: usage.prompt_total().saturating_add(usage.output),
                cost_micros: consumption.cost_micros(config),
            },
            ledger: consumption
                .0
                .iter()
                .map(|consumed| {
                    (
                        consumed.model,
                        consumed.usage,
                        consumed.cost_micros(config),
                        consumed.estimated,
                    )
                })
                .collect(),
            with_text: false,
            retries: 0,
            due_ms: now_ms,
            give_up_ms,
        }
    }

    /// The HTTP request of this settlement.
    pub fn request(&self, config: &Config, governance: &Governance, names: &ScriptNames) -> Option<StoreRequest> {
        let store = governance.store.as_ref()?;
        let tenant = governance.tenants.get(self.tenant)?;
        let ledger: Vec<LedgerEntry<'_>> = self
            .ledger
            .iter()
            .filter_map(|(model, usage, cost_micros, estimated)| {
                Some(LedgerEntry {
                    model: &config.models.get(*model)?.name,
                    usage: *usage,
                    cost_micros: *cost_micros,
                    estimated: *estimated,
                })
            })
            .collect();
        let call = SettleCall {
            tenant,
            user: self.user.as_deref(),
            reservation_id: &self.reservation_id,
            test_clock_ms: self.test_clock_ms,
            actual: self.actual,
            ledger: &ledger,
            charge: Charge::Reserved,
        };
        Some(call.request(names, invocation(self.with_text), &store.authority))
    }
}

pub fn invocation(with_text: bool) -> Invocation {
    if with_text {
        Invocation::WithText
    } else {
        Invocation::BySha
    }
}

thread_local! {
    static OUTBOX: RefCell<Vec<SettleJob>> = const { RefCell::new(Vec::new()) };
    /// Each tenant's highest quota share as the ledger last said (for the
    /// downgrade tier, which is decided before the admission call).
    static SHARES: RefCell<Vec<f64>> = const { RefCell::new(Vec::new()) };
}

thread_local! {
    /// When each tenant's store outage was last logged by this VM.
    static LOGGED: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// How often a tenant's decisions without the store are logged (per VM).
const LOG_PERIOD_MS: u64 = 60_000;

/// Whether to log tenant `tenant`'s decision without the store now: one
/// line per tenant and period; the metric counts every decision.
pub fn should_log(tenant: TenantId, now_ms: u64) -> bool {
    LOGGED.with(|logged| {
        let mut logged = logged.borrow_mut();
        if logged.len() <= tenant {
            logged.resize(tenant + 1, 0);
        }
        match logged.get_mut(tenant) {
            Some(last) if *last == 0 || now_ms.saturating_sub(*last) >= LOG_PERIOD_MS => {
                *last = now_ms.max(1);
                true
            }
            _ => false,
        }
    })
}

pub fn remember_share(tenant: TenantId, share: f64) {
    SHARES.with(|shares| {
        let mut shares = shares.borrow_mut();
        if shares.len() <= tenant {
            shares.resize(tenant + 1, 0.0);
        }
        if let Some(slot) = shares.get_mut(tenant) {
            *slot = share;
        }
    });
}

pub fn last_share(tenant: TenantId) -> f64 {
    SHARES.with(|shares| shares.borrow().get(tenant).copied().unwrap_or(0.0))
}

/// Queues a settlement for the root to send.
pub fn enqueue(job: SettleJob) {
    OUTBOX.with(|outbox| outbox.borrow_mut().push(job));
}

/// The settlements due at `now_ms`, taken off the queue.
pub fn take_due(now_ms: u64) -> Vec<SettleJob> {
    OUTBOX.with(|outbox| {
        let mut outbox = outbox.borrow_mut();
        let (due, waiting): (Vec<SettleJob>, Vec<SettleJob>) = outbox.drain(..).partition(|job| job.due_ms <= now_ms);
        *outbox = waiting;
        due
    })
}

/// Sends a store request; the answer goes to whichever context is current.
pub fn send(store: &StoreSettings, request: &StoreRequest) -> Option<u32> {
    let headers: Vec<(&str, &str)> = request
        .headers
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect();
    host::dispatch(
        &store.cluster,
        headers,
        &request.body,
        Duration::from_millis(store.timeout_ms),
    )
}
