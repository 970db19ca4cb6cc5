//! Shadow calls between the router (which samples an answer and queues its
//! job when the request ends) and the root context (which sends the
//! reference call on its tick, then, for a tenant with a judge model, the
//! judge call when the reference answers, and judges): a VM-local queue,
//! bounded so a slow reference cannot grow it. Each job travels with the
//! configuration it was made under (its ids are that configuration's; a
//! reload in between must not change what they name).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use super::fleet::{self, SettleJob};
use super::host::{self, HostStore};
use super::root::Loaded;
use crate::config::{Config, DeploymentId, ModelId};
use crate::govern::admission::ledger_key;
use crate::govern::ledger::{cost_micros, LedgerRecord};
use crate::probe;
use crate::providers;
use crate::route::attempts::call_for;
use crate::route::chain::keys_in_order;
use crate::shadow::{self, JudgeFailure, Judged, ShadowJob};
use crate::state;
use crate::telemetry::report::ShadowReport;

/// Jobs waiting for the next tick, per VM.
const MAX_QUEUED: usize = 64;

/// A shadow job with the configuration it was made under.
pub struct Queued {
    pub state: Rc<Loaded>,
    pub job: ShadowJob,
}

/// A shadow call in flight.
pub struct InFlight {
    pub queued: Queued,
    pub deployment: DeploymentId,
    pub stage: Stage,
}

/// Which of a job's calls is in flight.
pub enum Stage {
    /// The reference model's answer to the sampled request.
    Reference,
    /// The judge model's score; `rules` is the rules' agreement, which
    /// stands in if the judge gives none.
    Judge { rules: f64 },
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
pub fn send_queued(now_ms: u64, draw: u64) -> Vec<(u32, InFlight)> {
    let jobs = QUEUE.with(|queue| std::mem::take(&mut *queue.borrow_mut()));
    let mut sent = Vec::with_capacity(jobs.len());
    for queued in jobs {
        let (config, job) = (&queued.state.config, &queued.job);
        if let Some((token, deployment)) = send(config, job.reference, &job.request, "signalbox-shadow", now_ms, draw) {
            let stage = Stage::Reference;
            sent.push((
                token,
                InFlight {
                    queued,
                    deployment,
                    stage,
                },
            ));
        }
    }
    sent
}

/// Sends a whole chat request to `model`'s first key (by `draw`), as the
/// gateway's own call; returns its token and the deployment it went to.
fn send(
    config: &Config,
    model: ModelId,
    chat_body: &[u8],
    user_agent: &str,
    now_ms: u64,
    draw: u64,
) -> Option<(u32, DeploymentId)> {
    let &deployment = keys_in_order(config, model, draw).first()?;
    let request = match probe::own_request(config, deployment, chat_body, user_agent, now_ms / 1000) {
        Ok(request) => request,
        Err(err) => {
            log::warn!("cannot build a shadow call: {err}");
            return None;
        }
    };
    let timeout = Duration::from_millis(config.resilience.per_try_timeout_ms);
    host::dispatch_own(&request, timeout).map(|token| (token, deployment))
}

/// A shadow call answered (or failed: status 0). Its usage is charged to
/// the tenant's ledger. A reference answer is scored by the rules and, for
/// a tenant with a judge model, sent on to the judge (returned: the next
/// call in flight); a judge's answer gives the score. A finished
/// comparison is metered and logged.
pub fn answered(call: InFlight, body_size: usize, now_ms: u64) -> Option<(u32, InFlight)> {
    let InFlight {
        queued,
        deployment,
        stage,
    } = call;
    let job = &queued.job;
    let reply = reply_text(&queued, deployment, &stage, body_size, now_ms);
    let (agreement, judged) = match (stage, reply) {
        (Stage::Reference, None) => (None, Judged::Rules),
        (Stage::Reference, Some(reference)) => {
            let rules = shadow::agreement(&job.answer, &reference, job.kind);
            match job.judge {
                Some(judge) => return ask_judge(queued, judge, &reference, rules, now_ms),
                None => (Some(rules), Judged::Rules),
            }
        }
        (Stage::Judge { rules }, reply) => {
            let (agreement, judged) = shadow::judge_verdict(reply.as_deref(), rules);
            (Some(agreement), judged)
        }
    };
    finish(&queued, agreement, judged);
    None
}

/// Sends the judge call for a job whose reference answered `reference`;
/// if it cannot be sent, the rules' agreement stands and the job is done.
fn ask_judge(queued: Queued, judge: ModelId, reference: &str, rules: f64, now_ms: u64) -> Option<(u32, InFlight)> {
    let (config, job) = (&queued.state.config, &queued.job);
    let body = shadow::judge_request(&config.models[judge].name, &job.request, reference, &job.answer);
    let draw = queued.state.rng.borrow_mut().next();
    let Some((token, deployment)) = send(config, judge, &body, "signalbox-shadow-judge", now_ms, draw) else {
        finish(&queued, Some(rules), Judged::RulesInstead(JudgeFailure::NoAnswer));
        return None;
    };
    let stage = Stage::Judge { rules };
    Some((
        token,
        InFlight {
            queued,
            deployment,
            stage,
        },
    ))
}

/// The text of a shadow call's answer (`None`: it failed or had none),
/// after charging its usage to the tenant's ledger line for the call.
fn reply_text(
    queued: &Queued,
    deployment: DeploymentId,
    stage: &Stage,
    body_size: usize,
    now_ms: u64,
) -> Option<String> {
    let (config, job) = (&queued.state.config, &queued.job);
    let status = host::call_response_status();
    let body = host::call_response_body(body_size).unwrap_or_default();
    let plan = probe::own_plan(config, deployment);
    let translated =
        providers::translate_response(&call_for(config, &plan, deployment, now_ms / 1000), status, &[], &body);
    let model = config.deployments[deployment].model;
    let ledger = match stage {
        Stage::Reference => shadow::ledger_name(config, model),
        Stage::Judge { .. } => shadow::judge_ledger_name(config, model),
    };
    if let Some(usage) = &translated.usage {
        charge(&queued.state, job, model, ledger, usage, now_ms);
    }
    ((200..300).contains(&translated.status) && translated.failure.is_none())
        .then(|| shadow::answer_text(&translated.body))
        .flatten()
}

/// Meters and logs a finished comparison.
fn finish(queued: &Queued, agreement: Option<f64>, judged: Judged) {
    let (state, job) = (&queued.state, &queued.job);
    let config = &state.config;
    state
        .metrics
        .emit(config, &ShadowReport { job, agreement, judged }.samples());
    log::info!("shadow {}", shadow::log_line(config, job, agreement, judged));
}

/// Adds a shadow call's usage, at `model`'s price, to the tenant's `ledger`
/// line: in the fleet ledger when there is one (queued like a settlement),
/// else in this Envoy's shared data.
fn charge(state: &Loaded, job: &ShadowJob, model: ModelId, ledger: String, usage: &providers::TokenUsage, now_ms: u64) {
    let config = &state.config;
    let Some(governance) = config.governance.as_ref() else {
        return;
    };
    let Some(tenant) = governance.tenants.get(job.tenant) else {
        return;
    };
    let cost = cost_micros(&config.models[model].price, usage);
    if governance.store.is_some() {
        let id = state.fresh_reservation_id();
        fleet::enqueue(SettleJob::ledger_line(job.tenant, id, ledger, *usage, cost, now_ms));
        return;
    }
    let key = ledger_key(tenant, &ledger);
    if let Err(err) = state::update::<LedgerRecord, _>(&HostStore, &key, |record| record.add(usage, cost, false)) {
        log::warn!("cannot charge a shadow call to {key}: {err:?}");
    }
}
