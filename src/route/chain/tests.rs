use std::cell::RefCell;
use std::collections::HashMap;

use super::*;
use crate::config::Config;
use crate::failure::FailureKind;
use crate::health::{AttemptOutcome, BreakerState, LeaseToken};

const CONFIG: &str = r#"{
  "providers": {
    "multi": {"cluster": "m", "api_keys": [
      {"name": "k1", "key": "sk-1", "weight": 1},
      {"name": "k2", "key": "sk-2", "weight": 1},
      {"name": "k3", "key": "sk-3", "weight": 0}
    ]},
    "single": {"cluster": "s", "api_key": "sk-s"}
  },
  "models": {
    "a": {"provider": "multi"},
    "b": {"provider": "single"},
    "c": {"provider": "single"}
  },
  "tiers": [{"name": "all", "models": ["a", "b", "c"]}],
  "resilience": {"max_attempts": 3, "breaker": {"half_open_trials": 1}}
}"#;

fn config() -> Config {
    Config::parse(CONFIG.as_bytes(), &|_| None).unwrap()
}

/// Health kept in a map; trials are claimed like the shared-data version.
struct FakeHealth<'a> {
    config: &'a Config,
    records: RefCell<HashMap<DeploymentId, DeploymentHealth>>,
    now_ms: u64,
}

impl<'a> FakeHealth<'a> {
    fn new(config: &'a Config) -> Self {
        FakeHealth {
            config,
            records: RefCell::default(),
            now_ms: 10_000,
        }
    }

    fn set(&self, deployment: &str, health: DeploymentHealth) {
        let id = self
            .config
            .deployments
            .iter()
            .position(|d| d.name == deployment)
            .unwrap();
        self.records.borrow_mut().insert(id, health);
    }
}

impl HealthView for FakeHealth<'_> {
    fn health(&self, deployment: DeploymentId) -> DeploymentHealth {
        self.records.borrow().get(&deployment).copied().unwrap_or_default()
    }
    fn claim_trial(&self, deployment: DeploymentId) -> Option<LeaseToken> {
        let mut records = self.records.borrow_mut();
        records
            .entry(deployment)
            .or_default()
            .claim_trial(self.now_ms, &self.config.resilience.health)
    }
    fn now_ms(&self) -> u64 {
        self.now_ms
    }
}

fn names(config: &Config, chain: &Chain) -> Vec<String> {
    chain
        .deployments
        .iter()
        .map(|d| config.deployments[*d].name.clone())
        .collect()
}

fn models(config: &Config, names: &[&str]) -> Vec<ModelId> {
    names.iter().map(|name| config.model_named(name).unwrap()).collect()
}

fn open_until(until_ms: u64) -> DeploymentHealth {
    DeploymentHealth {
        breaker: BreakerState::Open { until_ms },
        ..Default::default()
    }
}

#[test]
fn the_primary_model_brings_two_keys_and_the_next_model_follows() {
    let config = config();
    let health = FakeHealth::new(&config);
    let chain = build(&config, &models(&config, &["a", "b", "c"]), &health, 0);
    let names = names(&config, &chain);
    assert_eq!(names.len(), 3);
    assert!(
        names[0].starts_with("a@") && names[1].starts_with("a@") && names[0] != names[1],
        "{names:?}"
    );
    assert_eq!(names[2], "b");
    assert!(!chain.degraded);
}

#[test]
fn a_zero_weight_key_is_never_used() {
    let config = config();
    let health = FakeHealth::new(&config);
    for draw in 0..200 {
        let chain = build(&config, &models(&config, &["a", "b", "c"]), &health, derive(draw, 1));
        assert!(!names(&config, &chain).contains(&"a@k3".to_string()));
    }
}

#[test]
fn keys_share_the_primary_slot_by_weight() {
    let config = config();
    let health = FakeHealth::new(&config);
    let first_k1 = (0..2_000u64)
        .filter(|draw| {
            names(
                &config,
                &build(&config, &models(&config, &["a"]), &health, derive(*draw, 5)),
            )[0] == "a@k1"
        })
        .count();
    assert!((800..=1_200).contains(&first_k1), "{first_k1}");
}

#[test]
fn open_and_cooling_deployments_are_skipped() {
    let config = config();
    let health = FakeHealth::new(&config);
    health.set("a@k1", open_until(60_000));
    health.set(
        "a@k2",
        DeploymentHealth {
            cooldown_until_ms: 20_000,
            ..Default::default()
        },
    );
    let chain = build(&config, &models(&config, &["a", "b", "c"]), &health, 0);
    assert_eq!(names(&config, &chain), ["b", "c"]);
}

#[test]
fn an_expired_open_period_needs_a_trial_slot() {
    let config = config();
    let health = FakeHealth::new(&config);
    health.set("b", open_until(5_000));
    let first = build(&config, &models(&config, &["b", "c"]), &health, 0);
    assert_eq!(names(&config, &first), ["b", "c"], "the trial slot was won");
    let second = build(&config, &models(&config, &["b", "c"]), &health, 0);
    assert_eq!(names(&config, &second), ["c"], "the only slot is taken");
}

#[test]
fn when_nothing_is_available_the_soonest_ready_is_tried() {
    let config = config();
    let health = FakeHealth::new(&config);
    health.set("b", open_until(90_000));
    health.set("c", open_until(30_000));
    let chain = build(&config, &models(&config, &["b", "c"]), &health, 0);
    assert_eq!(names(&config, &chain), ["c"]);
    assert!(chain.degraded);
}

#[test]
fn the_chain_is_cut_at_max_attempts() {
    let config = config();
    let health = FakeHealth::new(&config);
    let chain = build(&config, &models(&config, &["b", "c", "a"]), &health, 0);
    assert_eq!(chain.deployments.len(), 3);
    assert_eq!(names(&config, &chain)[..2], ["b", "c"]);
}

#[test]
fn store_health_reads_and_claims_through_shared_data() {
    let config = config();
    let store = crate::state::MemoryStore::default();
    let b = config.model_named("b").unwrap();
    let deployment = config.models[b].deployments[0];
    let key = &config.deployments[deployment].health_key;
    let failure = AttemptOutcome {
        failure: Some(FailureKind::Server),
        retry_after_ms: None,
        latency_ms: 5,
        first_token_ms: None,
    };
    for now in 0..5 {
        crate::state::update::<DeploymentHealth, _>(&store, key, |h| {
            let in_flight = h.begin_attempt(now, &config.resilience.health);
            let lease = crate::health::AttemptLease { in_flight, trial: None };
            h.finish_attempt(now, lease, Some(&failure), &config.resilience.health)
        })
        .unwrap();
    }
    let view = StoreHealth::new(&store, &config, 10);
    assert!(matches!(view.health(deployment).breaker, BreakerState::Open { .. }));
    assert!(view.claim_trial(deployment).is_none(), "still open");
    let later = StoreHealth::new(&store, &config, 10_000_000);
    let settings = &config.resilience.health;
    let before = later.health(deployment).availability(10_000_000, settings);
    assert!(later.claim_trial(deployment).is_some());
    // The view remembers what it read, but not across its own claim.
    let after = later.health(deployment).availability(10_000_000, settings);
    assert_ne!(before, after, "the claimed slot shows in the next read");
    assert!(later.claim_trial(deployment).is_none());
}

#[test]
fn a_deployment_at_its_rate_limit_spills_traffic_over() {
    let json = CONFIG.replace(
        r#""b": {"provider": "single"}"#,
        r#""b": {"provider": "single", "limits": {"rpm": 2}}"#,
    );
    let config = Config::parse(json.as_bytes(), &|_| None).unwrap();
    let store = crate::state::MemoryStore::default();
    let b = config.models[config.model_named("b").unwrap()].deployments[0];
    let view = StoreHealth::new(&store, &config, 60_000);
    let models = models(&config, &["b", "c"]);
    assert_eq!(names(&config, &build(&config, &models, &view, 0)), ["b", "c"]);
    crate::state::update::<RateWindow, _>(&store, &deployment_window_key(&config, b), |window| {
        window.record(60_000, 2, 0)
    })
    .unwrap();
    assert_eq!(names(&config, &build(&config, &models, &view, 0)), ["c"]);
}

/// A store that counts its reads per key.
#[derive(Default)]
struct CountingStore {
    inner: crate::state::MemoryStore,
    reads: RefCell<HashMap<String, usize>>,
}

impl Store for CountingStore {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        *self.reads.borrow_mut().entry(key.to_string()).or_default() += 1;
        self.inner.get(key)
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), crate::state::StoreError> {
        self.inner.set(key, value, cas)
    }
}

#[test]
fn a_plan_reads_each_deployments_health_once() {
    // Two tiers: the strategy orders the first tier's models by their health,
    // and the chain reads the same records again.
    let json = CONFIG.replace(
        r#""tiers": [{"name": "all", "models": ["a", "b", "c"]}]"#,
        r#""tiers": [{"name": "low", "max_score": 0.99, "models": ["a", "b"], "strategy": "latency"}, {"name": "high", "models": ["c"]}]"#,
    );
    let config = Config::parse(json.as_bytes(), &|_| None).unwrap();
    let store = CountingStore::default();
    let health = StoreHealth::new(&store, &config, 1_000);
    let body = br#"{"model": "auto", "messages": [{"role": "user", "content": "hi"}]}"#;
    let plan = crate::route::plan_chat(
        &config,
        body,
        &crate::headers::HeaderMap::default(),
        &crate::route::ClientHints::default(),
        &crate::route::Situation::open(&health, 0),
    )
    .unwrap();
    assert!(plan.attempts.chain.len() >= 2, "the chain spans several deployments");
    let reads = store.reads.borrow();
    let health_reads: Vec<_> = reads.iter().filter(|(key, _)| key.contains("health")).collect();
    assert!(health_reads.len() >= 3, "{health_reads:?}");
    assert!(health_reads.iter().all(|(_, count)| **count == 1), "{health_reads:?}");
}
