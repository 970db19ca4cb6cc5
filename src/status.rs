//! The JSON health view (`GET /signalbox/health` by default): per deployment,
//! its circuit, availability, health score, decayed counts by outcome,
//! latency and time-to-first-token percentiles, and in-flight attempts, as
//! every worker sees them in shared data.

use serde_json::{json, Map, Value};

use crate::config::Config;
use crate::health::histogram::DecayedHistogram;
use crate::health::{Availability, BreakerState, FailureKind};
use crate::route::HealthView;

fn percentiles(histogram: &DecayedHistogram) -> Value {
    json!({
        "p50": histogram.quantile_ms(0.50),
        "p95": histogram.quantile_ms(0.95),
        "p99": histogram.quantile_ms(0.99),
    })
}

/// Decayed counts are shown with one decimal.
fn rounded(count: f32) -> f64 {
    (f64::from(count) * 10.0).round() / 10.0
}

pub fn health_report(config: &Config, health: &dyn HealthView) -> Vec<u8> {
    let now = health.now_ms();
    let settings = &config.resilience.health;
    let deployments: Vec<Value> = config
        .deployments
        .iter()
        .enumerate()
        .map(|(id, deployment)| {
            let record = health.health(id);
            let model = &config.models[deployment.model];
            let failures: Map<String, Value> = FailureKind::ALL
                .iter()
                .map(|kind| (kind.name().to_string(), json!(rounded(record.failures_of(*kind)))))
                .collect();
            let circuit = match record.breaker {
                BreakerState::Closed => "closed",
                BreakerState::Open { .. } => "open",
                BreakerState::HalfOpen { .. } => "half_open",
            };
            let (availability, ready_in_ms) = match record.availability(now, settings) {
                Availability::Available => ("available", None),
                Availability::CoolingDown { until_ms } => ("cooling_down", Some(until_ms.saturating_sub(now))),
                Availability::Open { until_ms } => ("open", Some(until_ms.saturating_sub(now))),
                Availability::NeedsTrial => ("needs_trial", None),
                Availability::TrialsBusy => ("trials_busy", None),
            };
            json!({
                "name": deployment.name,
                "model": model.name,
                "provider": config.providers[model.provider].name,
                "key": config.key_of(id).name,
                "circuit": circuit,
                "availability": availability,
                "ready_in_ms": ready_in_ms,
                "score": (f64::from(record.score(now, settings)) * 1000.0).round() / 1000.0,
                "requests": rounded(record.requests()),
                "successes": rounded(record.successes),
                "failures": failures,
                "failure_rate": (f64::from(record.failure_rate()) * 1000.0).round() / 1000.0,
                "latency_ms": percentiles(&record.latency),
                "first_token_ms": percentiles(&record.first_token),
                "in_flight": record.in_flight,
                "consecutive_failures": record.consecutive_failures,
            })
        })
        .collect();
    json!({"time_ms": now, "deployments": deployments})
        .to_string()
        .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{sample_config, ALL_HEALTHY};

    #[test]
    fn the_report_lists_every_deployment() {
        let config = sample_config();
        let report: Value = serde_json::from_slice(&health_report(&config, &ALL_HEALTHY)).unwrap();
        let deployments = report["deployments"].as_array().unwrap();
        assert_eq!(deployments.len(), config.deployments.len());
        let first = &deployments[0];
        assert_eq!(first["circuit"], "closed");
        assert_eq!(first["availability"], "available");
        assert_eq!(first["score"], 0.5);
        assert!(first["failures"]["rate_limited"].is_number());
        assert!(first["latency_ms"]["p95"].is_null());
    }
}
