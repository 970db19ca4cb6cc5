//! Answers waiting to be remembered in the fleet store for feedback: queued
//! by the router when a request ends, sent by the router's root on its tick
//! in batches per tenant (`crate::fleet::feedback::batches`), retried for a minute
//! while the store does not answer. The queue is per VM and bounded; an
//! answer that never reaches Redis can still be rated at the Envoy that
//! served it, from that Envoy's own slots.

use std::cell::RefCell;
use std::collections::VecDeque;

use super::fleet;
use super::host::HostStore;
use super::root::Loaded;
use crate::feedback::{self, Served};
use crate::fleet::feedback::{batches, parse_remembered, RememberCall};
use crate::fleet::{invocation, ScriptCall, StoreFailure};
use crate::state;

/// Answers queued at most per VM: the oldest goes first when it is full.
const MAX_QUEUED: usize = 1024;
/// How long an answer is retried while the store does not answer.
const RETRY_FOR_MS: u64 = 60_000;

struct Queued {
    served: Served,
    queued_at: u64,
}

thread_local! {
    static QUEUE: RefCell<VecDeque<Queued>> = const { RefCell::new(VecDeque::new()) };
    static DROPPED: RefCell<u64> = const { RefCell::new(0) };
}

pub fn enqueue(served: Served, now_ms: u64) {
    QUEUE.with(|queue| {
        let mut queue = queue.borrow_mut();
        if queue.len() >= MAX_QUEUED {
            queue.pop_front();
            DROPPED.with(|dropped| *dropped.borrow_mut() += 1);
        }
        queue.push_back(Queued {
            served,
            queued_at: now_ms,
        });
    });
}

/// One remember call in flight.
pub struct Batch {
    call: RememberCall,
    queued_at: Vec<u64>,
    with_text: bool,
    sent_at: u64,
}

/// Sends what is queued, a call per tenant and `MAX_BATCH` answers; the
/// calls in flight by token.
pub fn send_queued(state: &Loaded, now: u64) -> Vec<(u32, Batch)> {
    let dropped = DROPPED.with(|dropped| std::mem::take(&mut *dropped.borrow_mut()));
    if dropped > 0 {
        super::http::count_store_calls(state, "remember", "dropped", dropped);
    }
    let Some(settings) = &state.config.feedback else {
        return Vec::new();
    };
    let mut queued: Vec<Queued> = QUEUE.with(|queue| queue.borrow_mut().drain(..).collect());
    let mut sent = Vec::new();
    while let Some(first) = queued.first() {
        let tenant = first.served.tenant.clone();
        let (batch, rest): (Vec<Queued>, Vec<Queued>) =
            queued.into_iter().partition(|entry| entry.served.tenant == tenant);
        queued = rest;
        let answers: Vec<Served> = batch.iter().map(|entry| rated_here(state, &entry.served)).collect();
        for range in batches(&tenant, &answers) {
            let batch = Batch {
                call: RememberCall {
                    tenant: tenant.clone(),
                    answers: answers[range.clone()].to_vec(),
                    keep_ms: settings.keep_ms,
                },
                queued_at: batch[range].iter().map(|entry| entry.queued_at).collect(),
                with_text: false,
                sent_at: now,
            };
            sent.extend(send(state, batch, now));
        }
    }
    sent
}

/// The answer as this Envoy's slot has it now: a rating counted here while
/// it waited goes to Redis with it.
fn rated_here(state: &Loaded, served: &Served) -> Served {
    let Some(key) = feedback::slot_of(&state.config, &served.tenant, &served.request_id) else {
        return served.clone();
    };
    let rated = state::read::<Served>(&HostStore, &key)
        .is_some_and(|slot| slot.rated && slot.request_id == served.request_id && slot.tenant == served.tenant);
    Served {
        rated,
        ..served.clone()
    }
}

fn send(state: &Loaded, batch: Batch, now: u64) -> Option<(u32, Batch)> {
    let store = state.config.fleet_store()?;
    let names = state.script_names.as_ref()?;
    let request = batch.call.request(names, invocation(batch.with_text), &store.authority);
    match fleet::send(store, &request) {
        Some(token) => Some((token, batch)),
        None => {
            requeue(state, batch, now);
            None
        }
    }
}

/// The store answered a batch (`status`, `body`); returns it when it must
/// be sent again at once, with the script's text.
pub fn answered(state: &Loaded, batch: Batch, status: u32, body: &[u8], now: u64) -> Option<(u32, Batch)> {
    let elapsed = now.saturating_sub(batch.sent_at);
    match parse_remembered(status, body) {
        Ok(_) => {
            super::http::count_store_call(state, "remember", "stored", elapsed);
            mark_in_fleet(state, &batch.call.answers);
        }
        Err(StoreFailure::NoScript) if !batch.with_text => {
            super::http::count_store_call(state, "remember", "noscript", elapsed);
            let batch = Batch {
                with_text: true,
                sent_at: now,
                ..batch
            };
            return send(state, batch, now);
        }
        Err(failure) => {
            super::http::count_store_call(state, "remember", "unavailable", elapsed);
            log::debug!("answers not remembered in the fleet store yet: {failure:?}");
            requeue(state, batch, now);
        }
    }
    None
}

/// Notes in this Envoy's slots that Redis has these answers: from now on a
/// rating here is Redis's to decide alone, so an answer Redis has forgotten
/// (`keep_s` passed, or a flush) cannot be counted again from this copy.
fn mark_in_fleet(state: &Loaded, answers: &[Served]) {
    for served in answers {
        let Some(key) = feedback::slot_of(&state.config, &served.tenant, &served.request_id) else {
            return;
        };
        let marked = state::update::<Served, _>(&HostStore, &key, |slot| {
            if slot.request_id == served.request_id && slot.tenant == served.tenant {
                slot.in_fleet = true;
            }
        });
        if let Err(err) = marked {
            log::warn!("cannot mark an answer remembered by the fleet in {key}: {err:?}");
        }
    }
}

/// Puts a batch's answers back for the next tick, but those queued longer
/// than a minute ago: those are dropped (and counted).
fn requeue(state: &Loaded, batch: Batch, now: u64) {
    let mut expired = 0;
    for (served, queued_at) in batch.call.answers.into_iter().zip(batch.queued_at) {
        if now.saturating_sub(queued_at) >= RETRY_FOR_MS {
            expired += 1;
        } else {
            enqueue(served, queued_at);
        }
    }
    if expired > 0 {
        super::http::count_store_calls(state, "remember", "dropped", expired);
    }
}
