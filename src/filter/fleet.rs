//! The fleet ledger from the filter's side. Admissions are sent by the
//! router's HTTP context (the request waits, at most the store timeout);
//! settlements must not depend on a request that may already be gone, so
//! they are queued here, in this VM, and sent by the router's root context
//! (which lives as long as the VM) on its next tick, then retried until the
//! store has them or retrying is pointless (`crate::fleet::outbox` says
//! which job is kept how long, and how the queue is bounded).

use std::cell::RefCell;
use std::time::Duration;

use super::host;
use crate::config::governance::StoreSettings;
use crate::fleet::{Outbox, StoreRequest};
use crate::govern::keys::TenantId;

pub use crate::fleet::{invocation, SettleJob, SettleKind};

thread_local! {
    static OUTBOX: RefCell<Outbox> = const { RefCell::new(Outbox::new()) };
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

/// Queues a settlement for the root to send (bounded: see [`Outbox::push`]).
pub fn enqueue(job: SettleJob) {
    OUTBOX.with(|outbox| outbox.borrow_mut().push(job));
}

/// The settlements due at `now_ms`, taken off the queue.
pub fn take_due(now_ms: u64) -> Vec<SettleJob> {
    OUTBOX.with(|outbox| outbox.borrow_mut().take_due(now_ms))
}

/// How many settlements the full queue dropped since the last call.
pub fn take_dropped() -> u64 {
    OUTBOX.with(|outbox| outbox.borrow_mut().take_dropped())
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
