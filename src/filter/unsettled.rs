//! Ratings whose rate call went out but got no answer that reads, where
//! this Envoy's slots could not decide either: Redis may still have counted
//! them (`crate::fleet::feedback` says how that is settled). The router
//! queues them when the call fails; the router's root asks Redis about each
//! on its tick, counts a rating Redis says this call counted, and forgets
//! the others. The queue is per VM and bounded (the oldest is dropped and
//! counted); an Envoy restart loses it.

use std::cell::{Cell, RefCell};

use super::fleet;
use super::http::feedback::count_settled_rating;
use super::http::{count_store_call, count_store_calls};
use super::root::Loaded;
use crate::fleet::feedback::{call_id, settle_step, SettleStep, UnsettledRating, UnsettledRatings};
use crate::fleet::ScriptCall;

/// The `op` of these calls in `signalbox_store_calls_total`.
const OP: &str = "rate_settle";

thread_local! {
    static QUEUE: RefCell<UnsettledRatings> = const { RefCell::new(UnsettledRatings::new()) };
    /// Rate calls this VM made (the number in their ids): it outlives a
    /// reloaded configuration, so no id is used twice.
    static CALLS: Cell<u64> = const { Cell::new(0) };
}

/// A fresh id for a rate call of this VM.
pub fn next_call_id(state: &Loaded) -> String {
    let number = CALLS.with(|calls| {
        let number = calls.get().saturating_add(1);
        calls.set(number);
        number
    });
    call_id(state.vm_id, number)
}

pub fn enqueue(entry: UnsettledRating) {
    QUEUE.with(|queue| queue.borrow_mut().push(entry));
}

/// One settle call in flight.
pub struct Asking {
    entry: UnsettledRating,
    sent_at: u64,
}

/// Sends a settle call for each entry due; the calls in flight by token.
pub fn send_due(state: &Loaded, now: u64) -> Vec<(u32, Asking)> {
    let dropped = QUEUE.with(|queue| queue.borrow_mut().take_dropped());
    if dropped > 0 {
        log::warn!("the unsettled ratings queue is full: {dropped} dropped (if Redis counted them, no replica did)");
        count_store_calls(state, OP, "dropped", dropped);
    }
    let due = QUEUE.with(|queue| queue.borrow_mut().take_due(now));
    due.into_iter().filter_map(|entry| send(state, entry, now)).collect()
}

fn send(state: &Loaded, mut entry: UnsettledRating, now: u64) -> Option<(u32, Asking)> {
    let (Some(store), Some(names)) = (state.config.fleet_store(), state.script_names.as_ref()) else {
        log::warn!(
            "no fleet store configured any more: unsettled rate call {} dropped",
            entry.call_id
        );
        count_store_call(state, OP, "dropped", 0);
        return None;
    };
    let request = entry.request(names, fleet::invocation(entry.with_text), &store.authority);
    match fleet::send(store, &request) {
        Some(token) => Some((token, Asking { entry, sent_at: now })),
        None => {
            count_store_call(state, OP, "unavailable", 0);
            entry.retry(now);
            enqueue(entry);
            None
        }
    }
}

/// The calls a root had in flight when it went away (a reload): their
/// answers will never come, so they are asked again from the queue.
pub fn requeue(in_flight: impl IntoIterator<Item = Asking>) {
    for asking in in_flight {
        enqueue(asking.entry);
    }
}

/// Redis answered a settle call (`status`, `body`), or did not; returns
/// the call when it must be sent again at once, with the script's text.
pub fn answered(state: &Loaded, asking: Asking, status: u32, body: &[u8], now: u64) -> Option<(u32, Asking)> {
    let step = settle_step(asking.entry, status, body, now);
    count_store_call(state, OP, step.result(), now.saturating_sub(asking.sent_at));
    match step {
        SettleStep::Count { served, rating } => count_settled_rating(state, &served, &rating),
        SettleStep::Fenced => {}
        SettleStep::Resend(entry) => return send(state, entry, now),
        SettleStep::Retry { entry, reason } => {
            log::debug!("rate call {} not settled yet: {reason}", entry.call_id);
            enqueue(entry);
        }
    }
    None
}
