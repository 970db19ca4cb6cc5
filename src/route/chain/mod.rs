//! The failover chain of one request: the deployments (model + key) its
//! attempts go to, in order, at most `max_attempts` of them.
//!
//! Models come ordered by the strategy; each model's keys are ordered by a
//! weighted draw. The first model contributes up to two keys (a 429 or 401
//! is often about the key), the others one each; remaining keys fill any
//! room left. Deployments with an open circuit, a retry-after cooldown or
//! busy trial slots are skipped; one whose open period is over joins only if
//! it wins a half-open trial slot. When nothing is available the least-bad
//! deployment (the one ready soonest) is tried rather than failing blind.

use std::cell::RefCell;

use crate::canary::CanaryRecord;
use crate::config::{Config, DeploymentId, ModelId, TierId, STATE_PREFIX};
use crate::govern::window::RateWindow;
use crate::health::{Availability, DeploymentHealth, LeaseToken};
use crate::route::pin::{self, PinnedTier};
use crate::state::{read, update, Record, Store};

use super::strategy::{derive, weighted_index};

/// Health as the router sees it.
pub trait HealthView {
    fn health(&self, deployment: DeploymentId) -> DeploymentHealth;
    /// Tries to take a half-open trial slot (a lease); its token when taken.
    fn claim_trial(&self, deployment: DeploymentId) -> Option<LeaseToken>;
    fn now_ms(&self) -> u64;
    /// At its configured requests/tokens per minute: skipped like an
    /// unhealthy deployment, so traffic spills over to the others.
    fn at_rate_limit(&self, _deployment: DeploymentId) -> bool {
        false
    }
    /// The record of `tier`'s canary rollout; `None` for a fixed share
    /// (or nothing to read).
    fn canary_record(&self, _tier: TierId) -> Option<CanaryRecord> {
        None
    }
    /// The tier a conversation (its affinity hash) is pinned to, if any.
    fn pinned_tier(&self, _conversation: u64) -> Option<TierId> {
        None
    }
    /// Pins a conversation to `tier` (and marks it seen now).
    fn pin_tier(&self, _conversation: u64, _tier: TierId) {}
}

/// Shared-data key of a deployment's sliding-minute window.
pub fn deployment_window_key(config: &Config, deployment: DeploymentId) -> String {
    format!("{STATE_PREFIX}rate/deployment/{}", config.deployments[deployment].name)
}

/// Health read from (and trial slots claimed in) shared data, as of one
/// moment: made for one plan (or one report), it reads each deployment's
/// record once. A plan reads a record for the strategy's ordering and again
/// for the chain, and each read is a host call and a decode.
pub struct StoreHealth<'a> {
    store: &'a dyn Store,
    config: &'a Config,
    now_ms: u64,
    /// Records read so far (a handful: linear search beats hashing).
    read: RefCell<Vec<(DeploymentId, DeploymentHealth)>>,
}

impl<'a> StoreHealth<'a> {
    pub fn new(store: &'a dyn Store, config: &'a Config, now_ms: u64) -> Self {
        StoreHealth {
            store,
            config,
            now_ms,
            read: RefCell::new(Vec::new()),
        }
    }
}

impl HealthView for StoreHealth<'_> {
    fn health(&self, deployment: DeploymentId) -> DeploymentHealth {
        if let Some((_, record)) = self.read.borrow().iter().find(|(seen, _)| *seen == deployment) {
            return *record;
        }
        let record: DeploymentHealth =
            read(self.store, &self.config.deployments[deployment].health_key).unwrap_or_default();
        self.read.borrow_mut().push((deployment, record));
        record
    }

    fn claim_trial(&self, deployment: DeploymentId) -> Option<LeaseToken> {
        let settings = &self.config.resilience.health;
        // The claim rewrites the record: a later read must see the slot taken.
        self.read.borrow_mut().retain(|(seen, _)| *seen != deployment);
        update::<DeploymentHealth, _>(self.store, &self.config.deployments[deployment].health_key, |health| {
            health.claim_trial(self.now_ms, settings)
        })
        .ok()
        .and_then(|(_, claimed)| claimed)
    }

    fn now_ms(&self) -> u64 {
        self.now_ms
    }

    fn canary_record(&self, tier: TierId) -> Option<CanaryRecord> {
        let canary = self.config.tiers.get(tier)?.canary.as_ref()?;
        canary.rollout.as_ref()?;
        let key = crate::canary::record_key(self.config, tier, canary.model);
        Some(read::<CanaryRecord>(self.store, &key).unwrap_or_default())
    }

    fn pinned_tier(&self, conversation: u64) -> Option<TierId> {
        let pinning = self.config.affinity.as_ref()?.pin_tier?;
        read::<PinnedTier>(self.store, &pin::slot_key(conversation, pinning.remember))?.tier_of(
            self.config,
            conversation,
            self.now_ms,
            pinning.idle_ms,
        )
    }

    fn pin_tier(&self, conversation: u64, tier: TierId) {
        let Some(pinning) = self.config.affinity.as_ref().and_then(|affinity| affinity.pin_tier) else {
            return;
        };
        let pinned = PinnedTier {
            conversation,
            tier: self.config.tiers[tier].name.clone(),
            at_ms: self.now_ms,
        };
        // A plain write: the newest turn of whichever conversation owns the slot wins.
        let _ = self
            .store
            .set(&pin::slot_key(conversation, pinning.remember), &pinned.encode(), None);
    }

    fn at_rate_limit(&self, deployment: DeploymentId) -> bool {
        let limits = &self.config.models[self.config.deployments[deployment].model].limits;
        !limits.is_unlimited()
            && read::<RateWindow>(self.store, &deployment_window_key(self.config, deployment))
                .is_some_and(|window| window.is_over(self.now_ms, limits))
    }
}

/// Health with no history: every deployment fresh and available, every
/// trial slot free (benchmarks, tests, tools).
pub struct NoHistory {
    pub now_ms: u64,
}

impl HealthView for NoHistory {
    fn health(&self, _: DeploymentId) -> DeploymentHealth {
        DeploymentHealth::default()
    }

    fn claim_trial(&self, _: DeploymentId) -> Option<LeaseToken> {
        Some(0)
    }

    fn now_ms(&self) -> u64 {
        self.now_ms
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub deployments: Vec<DeploymentId>,
    /// Nothing was available: this is the least-bad choice.
    pub degraded: bool,
    /// Half-open trial slots claimed for links of the chain: (position in
    /// the chain, lease). Whoever ends that link's part gives it back.
    pub trials: Vec<(usize, LeaseToken)>,
}

/// A model's usable deployments: the primary key by weighted draw, then the
/// others in configured order. Keys with weight 0 are left out.
pub fn keys_in_order(config: &Config, model: ModelId, draw: u64) -> Vec<DeploymentId> {
    let deployments = &config.models[model].deployments;
    let weights: Vec<u32> = deployments
        .iter()
        .map(|&deployment| config.key_of(deployment).weight)
        .collect();
    let primary = weighted_index(&weights, derive(draw, model as u64 + 16));
    let mut ordered = Vec::with_capacity(deployments.len());
    ordered.extend(deployments.get(primary).copied());
    ordered.extend(
        deployments
            .iter()
            .zip(&weights)
            .filter(|(_, weight)| **weight > 0)
            .map(|(deployment, _)| *deployment),
    );
    ordered.dedup();
    ordered.retain(|deployment| config.key_of(*deployment).weight > 0);
    ordered
}

/// Builds the chain for `models` (already in strategy order).
pub fn build(config: &Config, models: &[ModelId], health: &dyn HealthView, draw: u64) -> Chain {
    let max = config.resilience.max_attempts;
    let settings = &config.resilience.health;
    let now = health.now_ms();
    let keyed: Vec<Vec<DeploymentId>> = models.iter().map(|&model| keys_in_order(config, model, draw)).collect();

    let mut chain: Vec<DeploymentId> = Vec::with_capacity(max);
    let mut trials: Vec<(usize, LeaseToken)> = Vec::new();
    // Soonest-ready deployment seen unavailable: (ready at, score) for the least-bad fallback.
    let mut least_bad: Option<(DeploymentId, u64, f32)> = None;
    let mut considered: Vec<DeploymentId> = Vec::new();
    // Adds `deployment` to the chain if it can take traffic; true when added.
    let mut consider = |deployment: DeploymentId, chain: &mut Vec<DeploymentId>, trials: &mut Vec<_>| -> bool {
        if chain.len() >= max || considered.contains(&deployment) {
            return false;
        }
        considered.push(deployment);
        let record = health.health(deployment);
        let availability = record.availability(now, settings);
        let usable = match availability {
            _ if health.at_rate_limit(deployment) => false,
            Availability::Available => true,
            Availability::NeedsTrial => match health.claim_trial(deployment) {
                Some(lease) => {
                    trials.push((chain.len(), lease));
                    true
                }
                None => false,
            },
            _ => false,
        };
        if usable {
            chain.push(deployment);
            return true;
        }
        let ready_at = match availability {
            Availability::CoolingDown { until_ms } | Availability::Open { until_ms } => until_ms,
            _ => now,
        };
        let score = record.score(now, settings);
        if least_bad.is_none_or(|(_, best_ready, best_score)| (ready_at, -score) < (best_ready, -best_score)) {
            least_bad = Some((deployment, ready_at, score));
        }
        false
    };

    // First pass: two usable keys of the primary model, one of each other model.
    for (position, keys) in keyed.iter().enumerate() {
        let share = if position == 0 { 2 } else { 1 };
        let mut taken = 0;
        for &deployment in keys {
            if taken == share {
                break;
            }
            taken += usize::from(consider(deployment, &mut chain, &mut trials));
        }
    }
    // Second pass: remaining keys, in model order.
    for keys in &keyed {
        for &deployment in keys {
            consider(deployment, &mut chain, &mut trials);
        }
    }
    if chain.is_empty() {
        if let Some((deployment, _, _)) = least_bad {
            return Chain {
                deployments: vec![deployment],
                degraded: true,
                trials: Vec::new(),
            };
        }
    }
    Chain {
        deployments: chain,
        degraded: false,
        trials,
    }
}

#[cfg(test)]
mod tests;
