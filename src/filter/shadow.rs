//! Shadow calls between the router (which samples an answer and queues its
//! job when the request ends) and the root context (which sends the
//! reference call on its tick and judges the answer when it comes): a
//! VM-local queue, bounded so a slow reference cannot grow it. Each job
//! travels with the configuration it was made under (its ids are that
//! configuration's; a reload in between must not change what they name).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use super::host::{self, HostStore};
use super::root::Loaded;
use crate::config::DeploymentId;
use crate::govern::admission::ledger_key;
use crate::govern::ledger::{cost_micros, LedgerRecord};
use crate::probe;
use crate::providers;
use crate::route::attempts::call_for;
use crate::route::chain::keys_in_order;
use crate::shadow::{self, ShadowJob};
use crate::state;
use crate::telemetry::report::ShadowReport;

/// Jobs waiting for the next tick, per VM.
const MAX_QUEUED: usize = 64;

/// A shadow job with the configuration it was made under.
pub struct Queued {
    pub state: Rc<Loaded>,
    pub job: ShadowJob,
}

thread_local! {
    static QUEUE: RefCell<Vec<Queued>> = const { RefCell::new(Vec::new()) };
}

/// Queues a sampled answer's reference call; false when the queue is full.
pub fn enqueue(queued: Queued) -> bool {
    QUEUE.with(|queue| {
        let mut queue = queue.borrow_mut();
        if queue.len() >= MAX_QUEUED {
            return false;
        }
        queue.push(queued);
        true
    })
}

/// Sends every queued reference call; returns the calls in flight by token.
pub fn send_queued(now_ms: u64, draw: u64) -> Vec<(u32, Queued, DeploymentId)> {
    let jobs = QUEUE.with(|queue| std::mem::take(&mut *queue.borrow_mut()));
    let mut sent = Vec::with_capacity(jobs.len());
    for queued in jobs {
        let (config, job) = (&queued.state.config, &queued.job);
        let Some(&deployment) = keys_in_order(config, job.reference, draw).first() else {
            continue;
        };
        let request = match probe::own_request(config, deployment, &job.request, "signalbox-shadow", now_ms / 1000) {
            Ok(request) => request,
            Err(err) => {
                log::warn!("cannot build a shadow call: {err}");
                continue;
            }
        };
        let timeout = Duration::from_millis(config.resilience.per_try_timeout_ms);
        if let Some(token) = host::dispatch_own(&request, timeout) {
            sent.push((token, queued, deployment));
        }
    }
    sent
}

/// A reference call answered (or failed: status 0): judge, meter, log, and
/// charge its usage to the tenant's `shadow:<model>` ledger line.
pub fn answered(queued: &Queued, deployment: DeploymentId, body_size: usize, now_ms: u64) {
    let (state, job) = (&queued.state, &queued.job);
    let config = &state.config;
    let status = host::call_response_status();
    let body = host::call_response_body(body_size).unwrap_or_default();
    let plan = probe::own_plan(config, deployment);
    let translated =
        providers::translate_response(&call_for(config, &plan, deployment, now_ms / 1000), status, &[], &body);
    let reference = ((200..300).contains(&translated.status) && translated.failure.is_none())
        .then(|| shadow::answer_text(&translated.body))
        .flatten();
    let agreement = reference.map(|reference| shadow::agreement(&job.answer, &reference, job.kind));
    state.metrics.emit(config, &ShadowReport { job, agreement }.samples());
    log::info!("shadow {}", shadow::log_line(config, job, agreement));
    let (Some(usage), Some(governance)) = (translated.usage, config.governance.as_ref()) else {
        return;
    };
    let Some(tenant) = governance.tenants.get(job.tenant) else {
        return;
    };
    let cost = cost_micros(&config.models[job.reference].price, &usage);
    let key = ledger_key(tenant, &shadow::ledger_name(config, job.reference));
    if let Err(err) = state::update::<LedgerRecord, _>(&HostStore, &key, |record| record.add(&usage, cost, false)) {
        log::warn!("cannot charge a shadow call to {key}: {err:?}");
    }
}
