//! When every attempt of a chain failed: the single error the client gets
//! instead of the last provider's answer, and when to retry.

use crate::config::Config;
use crate::error::GatewayError;
use crate::health::Availability;

use super::{AttemptPlan, AttemptTrail, HealthView};

/// Whether a final response means every attempt failed: the client then gets
/// one OpenAI-style error instead of the last provider's (or Envoy's) answer.
pub fn is_exhausted(status: u16) -> bool {
    status == 429 || status >= 500
}

/// The final response of an exhausted chain: its status and the wait the
/// last provider asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FinalResponse {
    pub status: u16,
    pub retry_after_ms: Option<u64>,
}

/// The error for a request whose every attempt failed. `retry-after` is the
/// soonest moment a deployment of the chain leaves its cooldown or open
/// state, or the wait the last provider asked for.
pub fn exhausted_error(
    config: &Config,
    plan: &AttemptPlan,
    trail: &AttemptTrail,
    last: FinalResponse,
    health: &dyn HealthView,
) -> GatewayError {
    let now = health.now_ms();
    let status = last.status;
    let settings = &config.resilience.health;
    let ready_at = plan
        .chain
        .iter()
        .filter_map(
            |deployment| match health.health(*deployment).availability(now, settings) {
                Availability::CoolingDown { until_ms } | Availability::Open { until_ms } => Some(until_ms),
                _ => None,
            },
        )
        .chain(last.retry_after_ms.map(|wait| now.saturating_add(wait)))
        .min();
    let rate_limited = status == 429 && trail.0.iter().all(|record| record.status == 429);
    let attempts = trail.describe(config);
    GatewayError::ProvidersUnavailable {
        attempts,
        rate_limited,
        retry_after_secs: ready_at.map(|until| until.saturating_sub(now).div_ceil(1000).max(1)),
    }
}
