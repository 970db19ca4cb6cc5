//! What the router and the per-attempt filter of one request share, kept in
//! this Wasm VM. Both roles of a request run in the same VM, on the worker
//! that holds the request (they share one `vm_config`, as every shipped
//! Envoy config has it), so a thread-local map keyed by the router's context
//! id links them without host calls.
//!
//! It carries what only the attempts know — the trail of their statuses,
//! when the answer's first content came, what each attempt consumed at its
//! provider, the answer's usage — and settles the order in
//! which a request's parts end: normally the last attempt ends before the
//! router logs the request, but when the client leaves first the router
//! logs while an attempt is still running. The router then hands its spend
//! control over, and the last attempt to end settles the request with what
//! every attempt consumed.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use super::spend::Spend;
use crate::govern::ledger::{Consumed, Consumption};
use crate::headers::HeaderMap;
use crate::providers::TokenUsage;
use crate::route::attempts::{AttemptRecord, AttemptTrail};

#[derive(Default)]
struct SharedRequest {
    live_attempts: u32,
    /// Each attempt's status, in the order their answers (or ends) came.
    trail: AttemptTrail,
    /// When the client's first content came (its time to first token).
    first_content_ms: Option<u64>,
    consumption: Consumption,
    /// Usage the answering attempt reported (for `show_usage` headers).
    answer_usage: Option<TokenUsage>,
    /// The router's spend control, handed over because the request ended
    /// while an attempt was still running.
    orphan: Option<Spend>,
    /// The client's Anthropic Messages body and headers, for native
    /// attempts (the request's body is the chat translation, and an earlier
    /// translated attempt removes the Anthropic headers).
    native: Option<Rc<NativeRequest>>,
}

thread_local! {
    static REQUESTS: RefCell<HashMap<u32, SharedRequest>> = RefCell::new(HashMap::new());
    /// Successes whose headers an attempt holds for their body: (its
    /// context, when to release them at the latest).
    static HELD_ANSWERS: RefCell<Vec<(u32, u64)>> = const { RefCell::new(Vec::new()) };
}

/// Attempt context `context` holds a success's headers until its body is
/// complete, or `until_ms` at the latest (before Envoy's per-try timeout).
pub fn hold(context: u32, until_ms: u64) {
    HELD_ANSWERS.with(|held| held.borrow_mut().push((context, until_ms)));
}

/// Stops watching `context`'s held headers; false when the root released
/// them already (they went to the client).
pub fn unhold(context: u32) -> bool {
    HELD_ANSWERS.with(|held| {
        let mut held = held.borrow_mut();
        let before = held.len();
        held.retain(|(holder, _)| *holder != context);
        held.len() != before
    })
}

/// The contexts whose held headers are due for release at `now_ms` (they
/// are no longer watched).
pub fn overdue_answers(now_ms: u64) -> Vec<u32> {
    HELD_ANSWERS.with(|held| {
        let mut held = held.borrow_mut();
        let due: Vec<u32> = held
            .iter()
            .filter(|(_, until)| *until <= now_ms)
            .map(|(context, _)| *context)
            .collect();
        held.retain(|(_, until)| *until > now_ms);
        due
    })
}

fn with<R>(request: u32, change: impl FnOnce(&mut SharedRequest) -> R) -> Option<R> {
    REQUESTS.with(|requests| requests.borrow_mut().get_mut(&request).map(change))
}

/// The router routed request `request`: its attempts may begin.
pub fn register(request: u32) {
    REQUESTS.with(|requests| {
        requests.borrow_mut().insert(request, SharedRequest::default());
    });
}

/// An attempt of `request` begins; false when the router of this request is
/// not in this VM (the two roles were given different VMs: nothing links them).
pub fn attempt_began(request: u32) -> bool {
    with(request, |shared| {
        shared.live_attempts = shared.live_attempts.saturating_add(1)
    })
    .is_some()
}

/// What a native attempt sends: the client's own Messages request.
pub struct NativeRequest {
    pub body: Vec<u8>,
    pub headers: HeaderMap,
}

/// Keeps the client's Messages request of routed request `request` for
/// its native attempts.
pub fn set_native(request: u32, native: NativeRequest) {
    with(request, |shared| shared.native = Some(Rc::new(native)));
}

pub fn native(request: u32) -> Option<Rc<NativeRequest>> {
    with(request, |shared| shared.native.clone()).flatten()
}

/// Adds an attempt's record to `request`'s trail.
pub fn append_attempt(request: u32, record: AttemptRecord) {
    with(request, |shared| shared.trail.0.push(record));
}

/// A cascade judged the last attempt of `request` weak.
pub fn mark_last_escalated(request: u32) {
    with(request, |shared| {
        if let Some(last) = shared.trail.0.last_mut() {
            last.escalated = true;
        }
    });
}

/// The attempts of `request` so far.
pub fn trail(request: u32) -> AttemptTrail {
    with(request, |shared| shared.trail.clone()).unwrap_or_default()
}

/// The client got the first content of `request`'s answer at `at_ms`.
pub fn set_first_content(request: u32, at_ms: u64) {
    with(request, |shared| shared.first_content_ms = Some(at_ms));
}

pub fn first_content(request: u32) -> Option<u64> {
    with(request, |shared| shared.first_content_ms).flatten()
}

/// The answering attempt's reported usage.
pub fn set_answer_usage(request: u32, usage: TokenUsage) {
    with(request, |shared| shared.answer_usage = Some(usage));
}

pub fn answer_usage(request: u32) -> Option<TokenUsage> {
    with(request, |shared| shared.answer_usage).flatten()
}

/// An attempt of `request` ended, having consumed `consumed` at its
/// provider. When the router already handed the request over and this was
/// its last attempt, returns the spend control and everything consumed:
/// the caller settles.
pub fn attempt_ended(request: u32, consumed: Option<Consumed>) -> Option<(Spend, Consumption)> {
    REQUESTS.with(|requests| {
        let mut requests = requests.borrow_mut();
        let shared = requests.get_mut(&request)?;
        shared.live_attempts = shared.live_attempts.saturating_sub(1);
        shared.consumption.0.extend(consumed);
        if shared.live_attempts > 0 || shared.orphan.is_none() {
            return None;
        }
        let shared = requests.remove(&request)?;
        Some((shared.orphan?, shared.consumption))
    })
}

/// How the router's end of a request went. A return value moved once per
/// request: boxing the spend would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub enum RequestEnd {
    /// Every attempt has ended: settle with what they consumed.
    Settle(Option<Spend>, Consumption),
    /// An attempt still runs (the client left): it settles when it ends.
    HandedOver(Consumption),
}

/// The router logs `request`: either everything is known, or an attempt is
/// still running and takes over `spend`.
pub fn request_ended(request: u32, spend: Option<Spend>) -> RequestEnd {
    REQUESTS.with(|requests| {
        let mut requests = requests.borrow_mut();
        match requests.get_mut(&request) {
            Some(shared) if shared.live_attempts > 0 && spend.is_some() => {
                shared.orphan = spend;
                RequestEnd::HandedOver(shared.consumption.clone())
            }
            Some(_) => {
                let consumption = requests
                    .remove(&request)
                    .map(|shared| shared.consumption)
                    .unwrap_or_default();
                RequestEnd::Settle(spend, consumption)
            }
            None => RequestEnd::Settle(spend, Consumption::default()),
        }
    })
}
