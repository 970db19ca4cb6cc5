//! Health of one model deployment (provider + model + key), shared by every
//! worker through [`crate::state`].
//!
//! A [`DeploymentHealth`] record holds decayed success and failure counts by
//! kind, latency and time-to-first-token histograms ([`histogram`]), the
//! in-flight count, a retry-after cooldown and the circuit breaker
//! ([`breaker`]). In-flight attempts and half-open trials are leases
//! ([`leases`]): they end when their holder says so or, if it never does,
//! on their own. Attempts begin and finish with one compare-and-swap each;
//! the router reads records to order candidates. All functions take the time
//! as an argument so tests control the clock.

pub mod breaker;
pub mod histogram;
pub mod leases;

use crate::failure::{FailureKind, FAILURE_KINDS};
use crate::state::codec::{Reader, Writer};
use crate::state::Record;
pub use breaker::{BreakerSettings, BreakerState, Transition};
use histogram::{DecayedHistogram, BUCKETS};
pub use leases::{LeaseToken, LeasedCount};

/// Tuning shared by every deployment's record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HealthSettings {
    /// Half-life of the decayed counts and histograms.
    pub half_life_ms: u64,
    pub breaker: BreakerSettings,
    /// p95 latency above which the health score starts to drop.
    pub slow_ms: u64,
    /// How long an in-flight attempt or a half-open trial counts at most
    /// when its holder never ends it (the per-try timeout).
    pub lease_ms: u64,
}

impl Default for HealthSettings {
    fn default() -> Self {
        HealthSettings {
            half_life_ms: 60_000,
            breaker: BreakerSettings::default(),
            slow_ms: 10_000,
            lease_ms: 30_000,
        }
    }
}

/// How one attempt ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttemptOutcome {
    pub failure: Option<FailureKind>,
    /// From `retry-after` and friends on a 429/503.
    pub retry_after_ms: Option<u64>,
    pub latency_ms: u64,
    pub first_token_ms: Option<u64>,
}

/// What an attempt holds while it runs, to give back when it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptLease {
    pub in_flight: LeaseToken,
    /// The half-open trial slot this attempt was planned on, if any.
    pub trial: Option<LeaseToken>,
}

/// Whether a deployment may take a request now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    Available,
    /// Honouring a provider's retry-after.
    CoolingDown {
        until_ms: u64,
    },
    Open {
        until_ms: u64,
    },
    /// The open period is over: a trial slot must be claimed first.
    NeedsTrial,
    /// Half-open with every trial slot taken.
    TrialsBusy,
}

impl Availability {
    pub fn is_available(self) -> bool {
        self == Availability::Available
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DeploymentHealth {
    /// When the decayed values were last brought up to date.
    pub updated_ms: u64,
    pub successes: f32,
    pub failures: [f32; FAILURE_KINDS],
    pub latency: DecayedHistogram,
    pub first_token: DecayedHistogram,
    pub consecutive_failures: u16,
    pub breaker: BreakerState,
    /// Openings in a row without a close in between (for the backoff).
    pub reopenings: u8,
    pub cooldown_until_ms: u64,
    pub in_flight: LeasedCount,
    /// Trial slots taken while half-open.
    pub trials: LeasedCount,
}

impl DeploymentHealth {
    fn decay(&mut self, now_ms: u64, settings: &HealthSettings) {
        let elapsed = now_ms.saturating_sub(self.updated_ms);
        if elapsed > 0 && self.updated_ms > 0 {
            let factor = 0.5f32.powf(elapsed as f32 / settings.half_life_ms.max(1) as f32);
            self.successes *= factor;
            self.failures.iter_mut().for_each(|count| *count *= factor);
            self.latency.scale(factor);
            self.first_token.scale(factor);
        }
        self.updated_ms = now_ms;
    }

    /// Attempts in flight now.
    pub fn in_flight(&self, now_ms: u64, settings: &HealthSettings) -> u32 {
        self.in_flight.count(now_ms, settings.lease_ms)
    }

    /// An attempt is about to be sent; keep the token for [`Self::finish_attempt`].
    pub fn begin_attempt(&mut self, now_ms: u64, settings: &HealthSettings) -> LeaseToken {
        self.in_flight.take(now_ms, settings.lease_ms)
    }

    /// An attempt ended. `outcome` is what it says about the deployment;
    /// `None` when it says nothing (the client left before the provider
    /// answered, or the attempt was never sent): its leases are only given back.
    pub fn finish_attempt(
        &mut self,
        now_ms: u64,
        lease: AttemptLease,
        outcome: Option<&AttemptOutcome>,
        settings: &HealthSettings,
    ) -> Option<Transition> {
        self.in_flight.give_back(lease.in_flight);
        if let Some(trial) = lease.trial {
            self.release_trial(trial);
        }
        outcome.and_then(|outcome| self.record(now_ms, outcome, settings, false))
    }

    /// An active probe finished. A successful probe closes an open circuit:
    /// that is how a recovery is noticed while no traffic flows.
    pub fn record_probe(
        &mut self,
        now_ms: u64,
        outcome: &AttemptOutcome,
        settings: &HealthSettings,
    ) -> Option<Transition> {
        self.record(now_ms, outcome, settings, true)
    }

    fn record(
        &mut self,
        now_ms: u64,
        outcome: &AttemptOutcome,
        settings: &HealthSettings,
        probe: bool,
    ) -> Option<Transition> {
        self.decay(now_ms, settings);
        match outcome.failure {
            None => {
                self.successes += 1.0;
                self.latency.record(outcome.latency_ms);
                if let Some(first_token) = outcome.first_token_ms {
                    self.first_token.record(first_token);
                }
                self.consecutive_failures = 0;
                let was_tripped = self.breaker != BreakerState::Closed;
                let closes = self.breaker == BreakerState::HalfOpen || (probe && was_tripped);
                if closes {
                    self.breaker = BreakerState::Closed;
                    self.trials.clear();
                    self.reopenings = 0;
                    return Some(Transition::Closed);
                }
                None
            }
            Some(kind) => {
                self.failures[kind.index()] += 1.0;
                if let (FailureKind::RateLimited | FailureKind::Overloaded, Some(wait)) = (kind, outcome.retry_after_ms)
                {
                    self.cooldown_until_ms = self.cooldown_until_ms.max(now_ms.saturating_add(wait));
                }
                if !kind.blames_deployment() {
                    return None;
                }
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                self.maybe_open(now_ms, &settings.breaker)
            }
        }
    }

    fn maybe_open(&mut self, now_ms: u64, breaker: &BreakerSettings) -> Option<Transition> {
        let trips = match self.breaker {
            BreakerState::HalfOpen => true,
            BreakerState::Closed => {
                let requests = self.requests();
                self.consecutive_failures >= breaker.consecutive_failures
                    || (requests >= breaker.min_requests && self.failure_rate() >= breaker.failure_rate)
            }
            BreakerState::Open { .. } => false,
        };
        if !trips {
            return None;
        }
        let until_ms = now_ms.saturating_add(breaker.open_period_ms(self.reopenings));
        self.breaker = BreakerState::Open { until_ms };
        self.trials.clear();
        self.reopenings = self.reopenings.saturating_add(1);
        Some(Transition::Opened { until_ms })
    }

    pub fn availability(&self, now_ms: u64, settings: &HealthSettings) -> Availability {
        match self.breaker {
            BreakerState::Open { until_ms } if now_ms < until_ms => Availability::Open { until_ms },
            BreakerState::Open { .. } => Availability::NeedsTrial,
            BreakerState::HalfOpen
                if self.trials.count(now_ms, settings.lease_ms) >= u32::from(settings.breaker.half_open_trials) =>
            {
                Availability::TrialsBusy
            }
            BreakerState::HalfOpen => Availability::NeedsTrial,
            BreakerState::Closed if now_ms < self.cooldown_until_ms => Availability::CoolingDown {
                until_ms: self.cooldown_until_ms,
            },
            BreakerState::Closed => Availability::Available,
        }
    }

    /// Takes a half-open trial slot if one is free (run inside a CAS update).
    /// The slot is a lease: give it back with [`Self::release_trial`] (or by
    /// finishing the attempt made on it), or it expires on its own.
    pub fn claim_trial(&mut self, now_ms: u64, settings: &HealthSettings) -> Option<LeaseToken> {
        if self.availability(now_ms, settings) != Availability::NeedsTrial {
            return None;
        }
        if self.breaker != BreakerState::HalfOpen {
            self.breaker = BreakerState::HalfOpen;
            self.trials.clear();
        }
        Some(self.trials.take(now_ms, settings.lease_ms))
    }

    /// Gives back a trial slot whose attempt was never made.
    pub fn release_trial(&mut self, token: LeaseToken) {
        if self.breaker == BreakerState::HalfOpen {
            self.trials.give_back(token);
        }
    }

    /// Decayed number of finished attempts.
    pub fn requests(&self) -> f32 {
        self.successes + self.failures.iter().sum::<f32>()
    }

    /// Decayed count of failures that blame the deployment.
    fn blamed_failures(&self) -> f32 {
        FailureKind::ALL
            .iter()
            .filter(|kind| kind.blames_deployment())
            .map(|kind| self.failures[kind.index()])
            .sum()
    }

    /// Share of attempts that failed for reasons that blame the deployment.
    pub fn failure_rate(&self) -> f32 {
        let blamed = self.blamed_failures();
        let total = self.successes + blamed;
        if total <= 0.0 {
            0.0
        } else {
            blamed / total
        }
    }

    pub fn failures_of(&self, kind: FailureKind) -> f32 {
        self.failures[kind.index()]
    }

    /// Health in [0, 1]: the Laplace-smoothed success share (a deployment
    /// with no history scores 0.5), scaled down when
    /// p95 latency is above `slow_ms` (to half at four times it), and 0 while
    /// the circuit is open.
    pub fn score(&self, now_ms: u64, settings: &HealthSettings) -> f32 {
        if matches!(self.availability(now_ms, settings), Availability::Open { .. }) {
            return 0.0;
        }
        let success_share = (self.successes + 1.0) / (self.successes + self.blamed_failures() + 2.0);
        let latency_factor = match self.latency.quantile_ms(0.95) {
            Some(p95) if p95 > settings.slow_ms => (settings.slow_ms as f32 / p95 as f32).sqrt(),
            _ => 1.0,
        };
        (success_share * latency_factor).clamp(0.0, 1.0)
    }
}

const VERSION: u8 = 2;

impl Record for DeploymentHealth {
    fn encode(&self) -> Vec<u8> {
        let mut writer = Writer::with_version(VERSION);
        writer.u64(self.updated_ms).f32(self.successes);
        for count in self
            .failures
            .iter()
            .chain(&self.latency.counts)
            .chain(&self.first_token.counts)
        {
            writer.f32(*count);
        }
        writer.u16(self.consecutive_failures);
        match self.breaker {
            BreakerState::Closed => writer.u8(0).u64(0),
            BreakerState::Open { until_ms } => writer.u8(1).u64(until_ms),
            BreakerState::HalfOpen => writer.u8(2).u64(0),
        };
        writer.u8(self.reopenings).u64(self.cooldown_until_ms);
        self.in_flight.encode(&mut writer);
        self.trials.encode(&mut writer);
        writer.finish()
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let mut reader = Reader::with_version(bytes, VERSION)?;
        let mut health = DeploymentHealth {
            updated_ms: reader.u64()?,
            successes: reader.f32()?,
            ..Default::default()
        };
        for count in health.failures.iter_mut() {
            *count = reader.f32()?;
        }
        for bucket in 0..BUCKETS {
            health.latency.counts[bucket] = reader.f32()?;
        }
        for bucket in 0..BUCKETS {
            health.first_token.counts[bucket] = reader.f32()?;
        }
        health.consecutive_failures = reader.u16()?;
        let (tag, value) = (reader.u8()?, reader.u64()?);
        health.breaker = match tag {
            0 => BreakerState::Closed,
            1 => BreakerState::Open { until_ms: value },
            2 => BreakerState::HalfOpen,
            _ => return None,
        };
        health.reopenings = reader.u8()?;
        health.cooldown_until_ms = reader.u64()?;
        health.in_flight = LeasedCount::decode(&mut reader)?;
        health.trials = LeasedCount::decode(&mut reader)?;
        reader.is_done().then_some(health)
    }
}

#[cfg(test)]
mod tests;
