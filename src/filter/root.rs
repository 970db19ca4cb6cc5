//! The root context: loads and validates the configuration once per plugin
//! and VM, and creates the HTTP contexts of its role. The same module runs
//! twice per request path: as the router (HTTP filter chain, `root_id:
//! signalbox`) and as the upstream filter (router's `upstream_http_filters`,
//! `root_id: signalbox_upstream`), sharing one VM and one shared-data map.
//! The router's root also runs the active probes.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;

use super::fleet::{self, SettleJob, SettleKind};
use super::host::{self, HostStore};
use super::http::ChatFilter;
use super::metrics::{count_config_load, Metrics};
use super::remember;
use super::rollouts;
use super::shadow;
use super::shared;
use super::spend::raise_alert;
use super::unsettled;
use super::upstream::AttemptFilter;
use crate::config::{Config, DeploymentId};
use crate::fleet::{ScriptNames, SettleOutcome};
use crate::govern::admission;
use crate::govern::admission::CrossedAlert;
use crate::govern::ledger::LedgerRecord;
use crate::govern::quota::SoftAlert;
use crate::govern::window::RateWindow;
use crate::health::{DeploymentHealth, Transition};
use crate::route::chain::{deployment_window_key, StoreHealth};
use crate::route::models_listing;
use crate::telemetry::gauges;
use crate::{cache, probe, state};

pub const UPSTREAM_ROOT_ID: &str = "signalbox_upstream";

/// The validated config and what is derived from it once per VM.
pub struct Loaded {
    pub config: Config,
    /// `GET /v1/models` body.
    pub models_json: Vec<u8>,
    /// This VM's random generator (weighted, canary and key draws).
    pub rng: RefCell<SplitMix>,
    /// This root's random id (the one its leases and rollout calls carry).
    pub vm_id: u64,
    pub metrics: Metrics,
    /// Some tenant has its prompts and answers audited, and the access log
    /// is on to record them.
    pub audits_content: bool,
    /// The fleet ledger's script names, when the ledger is configured.
    pub script_names: Option<ScriptNames>,
    /// Where the response cache lives in shared data, when some tenant uses it.
    pub cache_layout: Option<cache::Layout>,
    /// Where the semantic cache's indexes live, when it is configured.
    pub semantic_layout: Option<cache::semantic::SemanticLayout>,
}

impl Loaded {
    /// A new id for a fleet ledger call (a reservation, or a charge's
    /// tombstone): 128 bits of this VM's generator.
    pub fn fresh_reservation_id(&self) -> String {
        let mut random = [0u8; 16];
        for chunk in random.chunks_mut(8) {
            chunk.copy_from_slice(&self.rng.borrow_mut().next().to_le_bytes());
        }
        crate::fleet::reservation_id(random)
    }
}

/// SplitMix64: small, fast, and good enough to spread traffic; seeded per VM.
pub struct SplitMix(u64);

impl SplitMix {
    fn seeded() -> SplitMix {
        let mut seed = [0u8; 8];
        if getrandom::fill(&mut seed).is_err() {
            log::warn!("no random seed from the host; draws fall back to the clock");
            seed = host::now_ms().to_le_bytes();
        }
        SplitMix(u64::from_le_bytes(seed))
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        crate::route::strategy::derive(self.0, 0)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Router,
    Upstream,
}

#[cfg(feature = "hostcall-stats")]
impl Role {
    fn stat_label(self) -> &'static str {
        match self {
            Role::Router => "router",
            Role::Upstream => "upstream",
        }
    }
}

pub struct SignalboxRoot {
    /// This root's context id (to act on an HTTP context's stream and come back).
    context_id: u32,
    role: Role,
    state: Option<Rc<Loaded>>,
    /// Random id of this VM, for the probe lease.
    vm_owner_id: u64,
    /// Probes in flight: call token → (deployment, sent at).
    probes: HashMap<u32, (DeploymentId, u64)>,
    /// Settlements sent to the fleet ledger: call token → (job, sent at).
    settlements: HashMap<u32, (SettleJob, u64)>,
    /// Shadow calls (to a reference or a judge model) in flight by call token.
    shadows: HashMap<u32, shadow::InFlight>,
    /// Calls at the fleet's rollout records.
    rollouts: rollouts::Rollouts,
    /// Answers being remembered in the fleet store for feedback, by call token.
    remembered: HashMap<u32, remember::Batch>,
    /// Settle calls of ratings whose rate call went unanswered, by call token.
    unsettled: HashMap<u32, unsettled::Asking>,
    /// When the probes and the gauges are next due.
    next_probes_ms: u64,
    next_gauges_ms: u64,
    next_cache_sweep_ms: u64,
    next_rollout_turn_ms: u64,
    /// The cache shard the next sweep frees dead entries in.
    cache_sweep_shard: u32,
}

impl SignalboxRoot {
    pub fn new(context_id: u32) -> Self {
        let vm_owner_id = SplitMix::seeded().next().max(1);
        SignalboxRoot {
            context_id,
            role: Role::Router,
            state: None,
            vm_owner_id,
            probes: HashMap::new(),
            settlements: HashMap::new(),
            shadows: HashMap::new(),
            rollouts: rollouts::Rollouts::new(vm_owner_id),
            remembered: HashMap::new(),
            unsettled: HashMap::new(),
            next_probes_ms: 0,
            next_gauges_ms: 0,
            next_cache_sweep_ms: 0,
            next_rollout_turn_ms: 0,
            cache_sweep_shard: 0,
        }
    }
}

/// Logs a circuit transition; only the worker whose write won reports it.
pub fn log_transition(config: &Config, deployment: DeploymentId, transition: Option<Transition>) {
    let name = &config.deployments[deployment].name;
    match transition {
        Some(Transition::Opened { until_ms }) => {
            log::warn!(
                "deployment {name}: circuit opened for {} ms",
                until_ms.saturating_sub(host::now_ms())
            )
        }
        Some(Transition::Closed) => log::info!("deployment {name}: circuit closed"),
        None => {}
    }
}

/// How often queued settlements are sent to the fleet ledger: the delay a
/// reservation stays open after its request ended.
const SETTLEMENT_FLUSH_MS: u64 = 50;
/// How soon a queued shadow call is sent (it never delays a client).
const SHADOW_FLUSH_MS: u64 = 200;

/// How often held successes are checked for release: often enough that one
/// is released well before the per-try timeout it is held against.
fn release_check_ms(per_try_timeout_ms: u64) -> u64 {
    (per_try_timeout_ms / 10).clamp(50, 1_000)
}

/// Whether a job run every `interval_ms` is due, and if so schedules the
/// next run. Ticks may come a little early, so 10% early counts as on time.
const CACHE_SWEEP_MS: u64 = 1000;
const CACHE_SWEEP_LEASE: &str = "signalbox/v1/lease/cache-sweep";

fn due(next_ms: &mut u64, now: u64, interval_ms: u64) -> bool {
    if now.saturating_add(interval_ms / 10) < *next_ms {
        return false;
    }
    *next_ms = now.saturating_add(interval_ms);
    true
}

impl SignalboxRoot {
    /// Lets the headers of whole successes whose body is slow go to the
    /// client before Envoy's per-try timeout would cut the answer and replay
    /// the request elsewhere (each attempt context in this VM is resumed in
    /// its own name).
    fn release_slow_answers(&self, now: u64) {
        let overdue = shared::overdue_answers(now);
        if overdue.is_empty() {
            return;
        }
        for context in overdue {
            host::resume_response_of(context, self.context_id);
        }
    }

    /// Sends the settlements queued in this VM to the fleet ledger.
    fn send_settlements(&mut self, state: &Loaded, now: u64) {
        let (Some(governance), Some(names)) = (state.config.governance.as_ref(), state.script_names.as_ref()) else {
            return;
        };
        let Some(store) = &governance.store else { return };
        let dropped = fleet::take_dropped();
        if dropped > 0 {
            log::warn!(
                "the settlement queue is full: {dropped} settlements dropped (the fleet ledger never gets them)"
            );
            super::http::count_store_calls(state, "settle", "dropped", dropped);
        }
        for job in fleet::take_due(now) {
            let sent = job
                .request(governance, names, now)
                .and_then(|request| fleet::send(store, &request));
            match sent {
                Some(token) => {
                    self.settlements.insert(token, (job, now));
                }
                None => self.retry_settlement(state, job, now, "the store's cluster cannot be called"),
            }
        }
    }

    /// The ledger answered a settlement (or did not): done, resend with
    /// the script's text, or retry later.
    fn settlement_answered(&mut self, state: &Loaded, mut job: SettleJob, sent_at: u64, body_size: usize) {
        let config = &state.config;
        let now = host::now_ms();
        let status = u32::from(host::call_response_status());
        let body = host::call_response_body(body_size).unwrap_or_default();
        let outcome = crate::fleet::settle_outcome(status, &body, job.with_text);
        let result = match &outcome {
            SettleOutcome::Done { expired: true, .. } => "expired",
            SettleOutcome::Done { .. } => "settled",
            SettleOutcome::Resend => "noscript",
            SettleOutcome::Retry { .. } => "unavailable",
        };
        super::http::count_store_call(state, "settle", result, now.saturating_sub(sent_at));
        match outcome {
            SettleOutcome::Done { alerts, expired } => {
                if expired {
                    log::warn!(
                        "reservation {} expired before its settlement arrived: the ledger charged it in full",
                        job.reservation_id
                    );
                }
                let Some(governance) = config.governance.as_ref() else {
                    return;
                };
                let Some(tenant) = governance.tenants.get(job.tenant) else {
                    return;
                };
                for alert in alerts {
                    let Some(quota) = tenant.quotas.get(alert.quota) else {
                        continue;
                    };
                    let crossed = CrossedAlert {
                        tenant: tenant.name.clone(),
                        period: quota.period,
                        alert: SoftAlert {
                            period_index: alert.period_index,
                            share: alert.share_permille as f64 / 1000.0,
                        },
                    };
                    raise_alert(config, governance, job.tenant, &crossed, &state.metrics);
                }
            }
            SettleOutcome::Resend => {
                job.with_text = true;
                job.due_ms = now;
                fleet::enqueue(job);
            }
            SettleOutcome::Retry { reason } => self.retry_settlement(state, job, now, &reason),
        }
    }

    fn retry_settlement(&self, _state: &Loaded, mut job: SettleJob, now: u64, reason: &str) {
        if !job.retry(now) {
            let consequence = match job.kind {
                SettleKind::Settle => "it expires and is charged in full",
                SettleKind::Release => "a reservation it would release expires and is charged in full",
                SettleKind::Charge => "spend served on the local fallback is missing from the ledger",
            };
            log::warn!(
                "settlement of reservation {} never reached the ledger ({reason}); {consequence}",
                job.reservation_id
            );
            return;
        }
        if job.retries == 1 {
            log::warn!(
                "cannot settle reservation {} yet ({reason}); retrying",
                job.reservation_id
            );
        }
        fleet::enqueue(job);
    }

    fn send_probes(&mut self, state: &Loaded, now: u64) {
        let Some(settings) = state.config.resilience.probes else {
            return;
        };
        if !due(&mut self.next_probes_ms, now, settings.interval_ms) {
            return;
        }
        if !state::lease::try_acquire(
            &HostStore,
            probe::LEASE_KEY,
            self.vm_owner_id,
            now,
            settings.interval_ms * 3,
        ) {
            return;
        }
        for deployment in 0..state.config.deployments.len() {
            let request = match probe::request(&state.config, deployment, now / 1000) {
                Ok(request) => request,
                Err(err) => {
                    log::warn!(
                        "cannot build a probe for {}: {err}",
                        state.config.deployments[deployment].name
                    );
                    continue;
                }
            };
            let timeout = Duration::from_millis(settings.timeout_ms);
            if let Some(token) = host::dispatch_own(&request, timeout) {
                self.probes.insert(token, (deployment, now));
            }
        }
    }

    /// Sets the health and quota gauges from shared data (one VM per
    /// process does it each interval: the gauges are process-wide).
    fn publish_gauges(&mut self, state: &Loaded, now: u64) {
        let interval = state.config.observability.gauge_interval_ms;
        if !state.config.observability.metrics || !due(&mut self.next_gauges_ms, now, interval) {
            return;
        }
        if !state::lease::try_acquire(&HostStore, gauges::LEASE_KEY, self.vm_owner_id, now, interval * 3) {
            return;
        }
        let health = StoreHealth::new(&HostStore, &state.config, now);
        let mut samples = gauges::state_gauges(&state.config, &HostStore, &health);
        if let Some(layout) = &state.cache_layout {
            samples.extend(gauges::cache_gauges(cache::store::occupancy(&HostStore, layout)));
        }
        state.metrics.emit(&state.config, &samples);
    }

    /// Frees the dead and orphaned entries of one cache shard a second, in
    /// one VM per process (a lease): a full pass takes a minute at most.
    fn sweep_cache(&mut self, state: &Loaded, now: u64) {
        let Some(layout) = &state.cache_layout else { return };
        if !due(&mut self.next_cache_sweep_ms, now, CACHE_SWEEP_MS)
            || !state::lease::try_acquire(&HostStore, CACHE_SWEEP_LEASE, self.vm_owner_id, now, CACHE_SWEEP_MS * 3)
        {
            return;
        }
        self.cache_sweep_shard = (self.cache_sweep_shard + 1) % layout.shards().max(1);
        cache::sweep(&HostStore, layout, self.cache_sweep_shard, now);
    }
}

impl SignalboxRoot {
    /// This Envoy's turn at the fleet's rollout records, from one VM (a lease).
    fn take_rollout_turns(&mut self, state: &Loaded, now: u64) {
        if !rollouts::shared_by_fleet(&state.config)
            || !due(&mut self.next_rollout_turn_ms, now, rollouts::TURN_MS)
            || !state::lease::try_acquire(
                &HostStore,
                rollouts::LEASE_KEY,
                self.vm_owner_id,
                now,
                rollouts::TURN_MS * 3,
            )
        {
            return;
        }
        self.rollouts.take_turns(state, now);
    }
}

impl Context for SignalboxRoot {
    fn on_done(&mut self) -> bool {
        unsettled::requeue(self.unsettled.drain().map(|(_, asking)| asking));
        true
    }

    fn on_http_call_response(&mut self, token_id: u32, _num_headers: usize, body_size: usize, _num_trailers: usize) {
        if let (Some((job, sent_at)), Some(state)) = (self.settlements.remove(&token_id), self.state.clone()) {
            self.settlement_answered(&state, job, sent_at, body_size);
            return;
        }
        if self.rollouts.is_waiting_for(token_id)
            || self.remembered.contains_key(&token_id)
            || self.unsettled.contains_key(&token_id)
        {
            let Some(state) = self.state.clone() else { return };
            let status = u32::from(host::call_response_status());
            let body = host::call_response_body(body_size).unwrap_or_default();
            let now = host::now_ms();
            if let Some(batch) = self.remembered.remove(&token_id) {
                self.remembered
                    .extend(remember::answered(&state, batch, status, &body, now));
            } else if let Some(asking) = self.unsettled.remove(&token_id) {
                self.unsettled
                    .extend(unsettled::answered(&state, asking, status, &body, now));
            } else {
                self.rollouts.answered(&state, token_id, status, &body, now);
            }
            return;
        }
        if let Some(call) = self.shadows.remove(&token_id) {
            if let Some((token, next)) = shadow::answered(call, body_size, host::now_ms()) {
                self.shadows.insert(token, next);
            }
            return;
        }
        let (Some((deployment, sent_at)), Some(state)) = (self.probes.remove(&token_id), self.state.clone()) else {
            return;
        };
        let now = host::now_ms();
        let outcome = probe::outcome(host::call_response_status(), now.saturating_sub(sent_at));
        let settings = &state.config.resilience.health;
        let key = &state.config.deployments[deployment].health_key;
        match state::update::<DeploymentHealth, _>(&HostStore, key, |health| {
            health.record_probe(now, &outcome, settings)
        }) {
            Ok((_, transition)) => log_transition(&state.config, deployment, transition),
            Err(err) => log::warn!("cannot record a probe result: {err:?}"),
        }
    }
}

impl RootContext for SignalboxRoot {
    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        self.role = match host::property(&["plugin_root_id"]).as_deref() {
            Some(UPSTREAM_ROOT_ID) => Role::Upstream,
            _ => Role::Router,
        };
        let Some(raw) = host::plugin_configuration(plugin_configuration_size) else {
            return false;
        };
        let config = match Config::parse(&raw, &|name| std::env::var(name).ok()) {
            Ok(config) => config,
            Err(err) => {
                log::error!("{err}");
                count_config_load(false);
                return false;
            }
        };
        count_config_load(true);
        log::info!(
            "configured {} providers, {} models ({} deployments), {} tiers, {} rules",
            config.providers.len(),
            config.models.len(),
            config.deployments.len(),
            config.tiers.len(),
            config.rules.len()
        );
        ensure_records(&config);
        if self.role == Role::Router {
            if let Some(period) = tick_period_ms(&config) {
                host::set_tick_period(Duration::from_millis(period));
            }
        }
        let cache_layout = config.cache.is_used().then(|| cache::Layout::of(&config.cache));
        if let Some(layout) = &cache_layout {
            cache::store::ensure(&HostStore, layout);
        }
        let semantic_layout = semantic_layout(&config);
        let models_json = models_listing(&config);
        let audited = config
            .governance
            .as_ref()
            .is_some_and(|governance| governance.tenants.iter().any(|tenant| tenant.audit_content));
        let written = config.observability.access_log_fields;
        let audits_content = audited && (written.contains("prompt") || written.contains("answer"));
        let script_names = config.fleet_store().map(|_| ScriptNames::compute());
        self.state = Some(Rc::new(Loaded {
            metrics: Metrics::new(&config),
            script_names,
            config,
            models_json,
            rng: RefCell::new(SplitMix::seeded()),
            vm_id: self.vm_owner_id,
            audits_content,
            cache_layout,
            semantic_layout,
        }));
        true
    }

    fn on_tick(&mut self) {
        if let Some(state) = self.state.clone() {
            let now = host::now_ms();
            self.release_slow_answers(now);
            self.send_settlements(&state, now);
            self.remembered.extend(remember::send_queued(&state, now));
            self.unsettled.extend(unsettled::send_due(&state, now));
            self.send_probes(&state, now);
            let draw = state.rng.borrow_mut().next();
            self.shadows.extend(shadow::send_queued(now, draw));
            self.publish_gauges(&state, now);
            self.sweep_cache(&state, now);
            self.take_rollout_turns(&state, now);
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let context: Box<dyn HttpContext> = match self.role {
            Role::Router => Box::new(ChatFilter::new(self.state.clone(), context_id)),
            Role::Upstream => Box::new(AttemptFilter::new(self.state.clone(), context_id)),
        };
        #[cfg(feature = "hostcall-stats")]
        let context = Box::new(super::hostcall_stats::Counted::new(self.role.stat_label(), context));
        Some(context)
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// Creates every shared record before traffic, so later writers never race
/// to create them (a missing key ignores compare-and-swap).
fn ensure_records(config: &Config) {
    for (id, deployment) in config.deployments.iter().enumerate() {
        state::ensure::<DeploymentHealth>(&HostStore, &deployment.health_key);
        if !config.models[deployment.model].limits.is_unlimited() {
            state::ensure::<RateWindow>(&HostStore, &deployment_window_key(config, id));
        }
    }
    if let Some(governance) = &config.governance {
        admission::ensure_records(config, governance, &HostStore);
        for tenant in &governance.tenants {
            if let Some(shadowed) = &tenant.shadow {
                for name in crate::shadow::ledger_names(config, shadowed) {
                    state::ensure::<LedgerRecord>(&HostStore, &admission::ledger_key(tenant, &name));
                }
                state::ensure::<RateWindow>(&HostStore, &crate::shadow::budget_key(&tenant.name));
            }
        }
    }
    rollouts::ensure_records(config);
}

/// The router's tick: as often as its most frequent duty needs.
fn tick_period_ms(config: &Config) -> Option<u64> {
    let probes = config.resilience.probes.map(|probes| probes.interval_ms);
    let gauges = config
        .observability
        .metrics
        .then_some(config.observability.gauge_interval_ms);
    let watchdog = Some(release_check_ms(config.resilience.per_try_timeout_ms));
    let settlements = config.fleet_store().map(|_| SETTLEMENT_FLUSH_MS);
    let rollout_turns = rollouts::shared_by_fleet(config).then_some(rollouts::TURN_MS);
    let shadows = config
        .governance
        .as_ref()
        .is_some_and(|governance| governance.tenants.iter().any(|tenant| tenant.shadow.is_some()))
        .then_some(SHADOW_FLUSH_MS);
    probes
        .into_iter()
        .chain(gauges)
        .chain(watchdog)
        .chain(settlements)
        .chain(shadows)
        .chain(rollout_turns)
        .min()
}

/// The semantic cache's layout, its per-tenant indexes created.
fn semantic_layout(config: &Config) -> Option<cache::semantic::SemanticLayout> {
    let semantic = config.cache.semantic.as_ref()?;
    let model = &config.models[semantic.model];
    let provider = &config.providers[model.provider].name;
    let layout =
        cache::semantic::SemanticLayout::new(&format!("{provider}/{}", model.upstream_id), semantic.max_entries);
    let tenants = config.governance.iter().flat_map(|governance| &governance.tenants);
    for tenant in std::iter::once(None).chain(tenants.map(|tenant| Some(tenant.name.as_str()))) {
        cache::semantic::index::ensure(&HostStore, &layout, tenant);
    }
    Some(layout)
}
