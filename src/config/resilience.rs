//! The `resilience` section: attempts and timeouts, how a deployment's
//! health is scored, when its circuit breaker opens, and the probes that
//! check an open one.

use serde::Deserialize;

use super::within;
use crate::error::ConfigError;
use crate::health::{BreakerSettings, HealthSettings};

/// 50 tokens a second: slower than the models a gateway usually fronts,
/// so a legitimately long answer is not taken for a silent provider.
const DEFAULT_OUTPUT_TOKEN_MS: u64 = 20;

/// Failover, health and circuit-breaker tuning.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResilience {
    /// Deployments tried per request, primary included.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// Must match the route's `retry_policy.per_try_timeout`: an attempt with
    /// no response after this long counts as a timeout, sooner as a reset.
    #[serde(default)]
    pub per_try_timeout_ms: Option<u64>,
    /// Overall deadline for non-streaming requests (all attempts).
    #[serde(default)]
    pub deadline_ms: Option<u64>,
    /// Extra per-try time per output token a whole answer may have (0: none).
    #[serde(default)]
    pub output_token_ms: Option<u64>,
    #[serde(default)]
    pub health_half_life_ms: Option<u64>,
    /// p95 latency above which a deployment's health score drops.
    #[serde(default)]
    pub slow_ms: Option<u64>,
    #[serde(default)]
    pub breaker: RawBreaker,
    #[serde(default)]
    pub probes: Option<RawProbes>,
    /// A context-length error moves the request to the next candidate with
    /// a larger window instead of failing.
    #[serde(default)]
    pub context_length_fallback: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBreaker {
    #[serde(default)]
    pub consecutive_failures: Option<u16>,
    #[serde(default)]
    pub failure_rate: Option<f32>,
    #[serde(default)]
    pub min_requests: Option<f32>,
    #[serde(default)]
    pub open_ms: Option<u64>,
    #[serde(default)]
    pub max_open_ms: Option<u64>,
    #[serde(default)]
    pub half_open_trials: Option<u8>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProbes {
    pub interval_ms: u64,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbeSettings {
    pub interval_ms: u64,
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Resilience {
    pub max_attempts: usize,
    pub per_try_timeout_ms: u64,
    pub deadline_ms: u64,
    /// Time allowed per output token on top of the per-try timeout for a
    /// whole (non-streamed) answer, whose headers come only once it is
    /// generated.
    pub output_token_ms: u64,
    pub health: HealthSettings,
    pub probes: Option<ProbeSettings>,
    pub context_length_fallback: bool,
}

/// `value`, or `default` when unset; an explicit 0 is an error naming `path`.
fn positive(path: &str, value: Option<u64>, default: u64) -> Result<u64, ConfigError> {
    match value {
        Some(0) => Err(ConfigError::new(path, "must be greater than 0")),
        Some(value) => Ok(value),
        None => Ok(default),
    }
}

pub(super) fn resolve(raw: &RawResilience) -> Result<Resilience, ConfigError> {
    let defaults = HealthSettings::default();
    let max_attempts = within(
        "resilience.max_attempts",
        u64::from(raw.max_attempts.unwrap_or(3)),
        (1, 8),
    )?;
    let breaker = resolve_breaker(&raw.breaker)?;
    let probes = raw.probes.as_ref().map(resolve_probes).transpose()?;
    let per_try_timeout_ms = positive("resilience.per_try_timeout_ms", raw.per_try_timeout_ms, 30_000)?;
    Ok(Resilience {
        max_attempts: max_attempts as usize,
        per_try_timeout_ms,
        deadline_ms: positive("resilience.deadline_ms", raw.deadline_ms, 300_000)?,
        output_token_ms: raw.output_token_ms.unwrap_or(DEFAULT_OUTPUT_TOKEN_MS),
        health: HealthSettings {
            half_life_ms: positive(
                "resilience.health_half_life_ms",
                raw.health_half_life_ms,
                defaults.half_life_ms,
            )?,
            breaker,
            slow_ms: positive("resilience.slow_ms", raw.slow_ms, defaults.slow_ms)?,
            // An attempt or trial whose holder never ends it stops counting
            // once the attempt would have timed out anyway.
            lease_ms: per_try_timeout_ms,
        },
        probes,
        context_length_fallback: raw.context_length_fallback,
    })
}

fn resolve_breaker(raw: &RawBreaker) -> Result<BreakerSettings, ConfigError> {
    let defaults = BreakerSettings::default();
    let failure_rate = raw.failure_rate.unwrap_or(defaults.failure_rate);
    if !(failure_rate > 0.0 && failure_rate <= 1.0) {
        return Err(ConfigError::new("resilience.breaker.failure_rate", "must be in (0, 1]"));
    }
    let open_ms = positive("resilience.breaker.open_ms", raw.open_ms, defaults.open_ms)?;
    let max_open_ms = positive(
        "resilience.breaker.max_open_ms",
        raw.max_open_ms,
        defaults.max_open_ms.max(open_ms),
    )?;
    if max_open_ms < open_ms {
        return Err(ConfigError::new(
            "resilience.breaker.max_open_ms",
            "must be at least open_ms",
        ));
    }
    let consecutive_failures = positive(
        "resilience.breaker.consecutive_failures",
        raw.consecutive_failures.map(u64::from),
        u64::from(defaults.consecutive_failures),
    )?;
    let half_open_trials = positive(
        "resilience.breaker.half_open_trials",
        raw.half_open_trials.map(u64::from),
        u64::from(defaults.half_open_trials),
    )?;
    let min_requests = match raw.min_requests {
        None => defaults.min_requests,
        Some(value) if value.is_finite() && value >= 1.0 => value,
        Some(_) => {
            return Err(ConfigError::new(
                "resilience.breaker.min_requests",
                "must be a number of at least 1",
            ))
        }
    };
    Ok(BreakerSettings {
        consecutive_failures: u16::try_from(consecutive_failures).unwrap_or(u16::MAX),
        failure_rate,
        min_requests,
        open_ms,
        max_open_ms,
        half_open_trials: u8::try_from(half_open_trials).unwrap_or(u8::MAX),
    })
}

fn resolve_probes(raw: &RawProbes) -> Result<ProbeSettings, ConfigError> {
    if raw.interval_ms < 1_000 {
        return Err(ConfigError::new(
            "resilience.probes.interval_ms",
            "must be at least 1000",
        ));
    }
    Ok(ProbeSettings {
        interval_ms: raw.interval_ms,
        timeout_ms: positive("resilience.probes.timeout_ms", raw.timeout_ms, 5_000)?,
    })
}
