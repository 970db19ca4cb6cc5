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

use super::host::{self, HostStore};
use super::http::ChatFilter;
use super::metrics::{count_config_load, Metrics};
use super::upstream::AttemptFilter;
use crate::config::{Config, DeploymentId};
use crate::health::{DeploymentHealth, Transition};
use crate::pii::Redactor;
use crate::route::chain::StoreHealth;
use crate::route::models_listing;
use crate::telemetry::gauges;
use crate::{probe, state};

pub const UPSTREAM_ROOT_ID: &str = "signalbox_upstream";

/// The validated config and what is derived from it once per VM.
pub struct Loaded {
    pub config: Config,
    /// `GET /v1/models` body.
    pub models_json: Vec<u8>,
    /// This VM's random generator (weighted, canary and key draws).
    pub rng: RefCell<SplitMix>,
    pub metrics: Metrics,
    /// Present when some tenant has its prompts and answers audited.
    pub redactor: Option<Redactor>,
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
    role: Role,
    state: Option<Rc<Loaded>>,
    /// Random id of this VM, for the probe lease.
    vm_owner_id: u64,
    /// Probes in flight: call token → (deployment, sent at).
    probes: HashMap<u32, (DeploymentId, u64)>,
    /// When the probes and the gauges are next due.
    next_probes_ms: u64,
    next_gauges_ms: u64,
}

impl Default for SignalboxRoot {
    fn default() -> Self {
        SignalboxRoot {
            role: Role::Router,
            state: None,
            vm_owner_id: SplitMix::seeded().next().max(1),
            probes: HashMap::new(),
            next_probes_ms: 0,
            next_gauges_ms: 0,
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

/// Whether a job run every `interval_ms` is due, and if so schedules the
/// next run. Ticks may come a little early, so 10% early counts as on time.
fn due(next_ms: &mut u64, now: u64, interval_ms: u64) -> bool {
    if now.saturating_add(interval_ms / 10) < *next_ms {
        return false;
    }
    *next_ms = now.saturating_add(interval_ms);
    true
}

impl SignalboxRoot {
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
            let headers = request
                .headers
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str()))
                .collect();
            let timeout = Duration::from_millis(settings.timeout_ms);
            if let Some(token) = host::dispatch(&request.cluster, headers, &request.body, timeout) {
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
        let health = StoreHealth {
            store: &HostStore,
            config: &state.config,
            now_ms: now,
        };
        let samples = gauges::state_gauges(&state.config, &HostStore, &health);
        state.metrics.emit(&state.config, &samples);
    }
}

impl Context for SignalboxRoot {
    fn on_http_call_response(&mut self, token_id: u32, _num_headers: usize, _body_size: usize, _num_trailers: usize) {
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
        self.role = match host::property(vec!["plugin_root_id"]).as_deref() {
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
        // Health records exist before traffic, so later writers never race
        // to create them (a missing key ignores compare-and-swap).
        for deployment in &config.deployments {
            state::ensure::<DeploymentHealth>(&HostStore, &deployment.health_key);
        }
        if self.role == Role::Router {
            let probes = config.resilience.probes.map(|probes| probes.interval_ms);
            let gauges = config
                .observability
                .metrics
                .then_some(config.observability.gauge_interval_ms);
            if let Some(period) = probes.into_iter().chain(gauges).min() {
                host::set_tick_period(Duration::from_millis(period));
            }
        }
        let models_json = models_listing(&config);
        let audited = config
            .governance
            .as_ref()
            .is_some_and(|governance| governance.tenants.iter().any(|tenant| tenant.audit_content));
        let redactor = if audited && config.observability.access_log {
            match Redactor::new() {
                Ok(redactor) => Some(redactor),
                Err(err) => {
                    log::error!("cannot build the PII redactor: {err}");
                    return false;
                }
            }
        } else {
            None
        };
        self.state = Some(Rc::new(Loaded {
            metrics: Metrics::new(&config),
            config,
            models_json,
            rng: RefCell::new(SplitMix::seeded()),
            redactor,
        }));
        true
    }

    fn on_tick(&mut self) {
        if let Some(state) = self.state.clone() {
            let now = host::now_ms();
            self.send_probes(&state, now);
            self.publish_gauges(&state, now);
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let context: Box<dyn HttpContext> = match self.role {
            Role::Router => Box::new(ChatFilter::new(self.state.clone())),
            Role::Upstream => Box::new(AttemptFilter::new(self.state.clone())),
        };
        #[cfg(feature = "hostcall-stats")]
        let context = Box::new(super::hostcall_stats::Counted::new(self.role.stat_label(), context));
        Some(context)
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
