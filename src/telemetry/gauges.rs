//! Gauges read from shared state: each deployment's health score, circuit
//! and attempts in flight, and each tenant quota's usage and cap. State
//! changes on every worker, so rather than have each worker nudge a gauge
//! (and race the others), one VM per process periodically sets every gauge
//! to what shared data holds. A quota from an earlier period reads as 0,
//! the same lazy reset admission applies.

use super::{window_label, Family, Label, Sample};
use crate::cache::store::Occupancy;
use crate::config::Config;
use crate::govern::admission::quota_records;
use crate::health::BreakerState;
use crate::route::HealthView;
use crate::state::Store;

/// Shared-data lease naming the VM that publishes the gauges.
pub const LEASE_KEY: &str = "signalbox/v1/lease/gauges";

/// The response cache's size, as its shard indexes account for it.
pub fn cache_gauges(occupancy: Occupancy) -> [Sample; 2] {
    [
        Sample::new(Family::CacheBytes, &[], occupancy.bytes),
        Sample::new(Family::CacheEntries, &[], occupancy.entries as u64),
    ]
}

pub fn state_gauges(config: &Config, store: &dyn Store, health: &dyn HealthView) -> Vec<Sample> {
    let now = health.now_ms();
    let settings = &config.resilience.health;
    let mut samples = Vec::with_capacity(config.deployments.len() * 3);
    for deployment in 0..config.deployments.len() {
        let record = health.health(deployment);
        let label = [Label::Deployment(deployment)];
        let score = (f64::from(record.score(now, settings)) * 100.0).round() as u64;
        let circuit = match record.breaker {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open { .. } => 2,
        };
        samples.push(Sample::new(Family::HealthScore, &label, score));
        samples.push(Sample::new(Family::CircuitState, &label, circuit));
        samples.push(Sample::new(
            Family::InFlight,
            &label,
            u64::from(record.in_flight(now, settings)),
        ));
    }
    let Some(governance) = &config.governance else {
        return samples;
    };
    for (tenant_id, tenant) in governance.tenants.iter().enumerate() {
        for (quota, record) in tenant.quotas.iter().zip(quota_records(store, tenant)) {
            let record = Some(record)
                .filter(|record| record.period_index >= quota.period.index(now))
                .unwrap_or_default();
            let caps = [
                ("requests", quota.caps.requests, record.used.requests),
                ("tokens", quota.caps.tokens, record.used.tokens),
                ("cost_micro_usd", quota.caps.cost_micros, record.used.cost_micros),
            ];
            for (resource, cap, used) in caps {
                let Some(cap) = cap else { continue };
                let labels = [
                    Label::Tenant(Some(tenant_id)),
                    Label::Fixed("window", window_label(quota.period)),
                    Label::Fixed("resource", resource),
                ];
                samples.push(Sample::new(Family::QuotaUsed, &labels, used));
                samples.push(Sample::new(Family::QuotaLimit, &labels, cap));
            }
        }
    }
    samples
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::chain::NoHistory;
    use crate::state::MemoryStore;
    use crate::testing::{finished_request, governed_config};

    const DAY_MS: u64 = 86_400_000;

    fn gauge(config: &Config, samples: &[Sample], name: &str) -> Option<u64> {
        samples
            .iter()
            .find(|sample| sample.series.stat_name(config) == name)
            .map(|sample| sample.value)
    }

    #[test]
    fn quota_gauges_show_settled_usage_until_the_period_ends() {
        let config = governed_config();
        let store = MemoryStore::default();
        let now = 1_795_521_600_000;
        finished_request(&config, &store, 300, 40, 2, now);
        let used = "signalbox_quota_used;tenant=.=research;.;;window=.=day;.;;resource=.=tokens;.;";
        let limit = "signalbox_quota_limit;tenant=.=research;.;;window=.=day;.;;resource=.=tokens;.;";
        let today = state_gauges(&config, &store, &NoHistory { now_ms: now });
        assert_eq!(gauge(&config, &today, used), Some(42));
        assert_eq!(gauge(&config, &today, limit), Some(5_000));
        // No requests cap on that quota: no series for it.
        assert_eq!(
            gauge(
                &config,
                &today,
                "signalbox_quota_used;tenant=.=research;.;;window=.=day;.;;resource=.=requests;.;"
            ),
            None
        );
        let tomorrow = state_gauges(&config, &store, &NoHistory { now_ms: now + DAY_MS });
        assert_eq!(gauge(&config, &tomorrow, used), Some(0));
    }

    #[test]
    fn every_deployment_reports_score_circuit_and_in_flight() {
        let config = governed_config();
        let samples = state_gauges(&config, &MemoryStore::default(), &NoHistory { now_ms: 1_000 });
        let deployment = &config.deployments[0];
        let model = &config.models[deployment.model];
        let labels = format!(
            "deployment=.={};.;;provider=.={};.;;model=.={};.;",
            deployment.name, config.providers[model.provider].name, model.name
        );
        assert_eq!(
            gauge(
                &config,
                &samples,
                &format!("signalbox_deployment_health_percent;{labels}")
            ),
            Some(50)
        );
        assert_eq!(
            gauge(
                &config,
                &samples,
                &format!("signalbox_deployment_circuit_state;{labels}")
            ),
            Some(0)
        );
        assert_eq!(
            gauge(&config, &samples, &format!("signalbox_deployment_in_flight;{labels}")),
            Some(0)
        );
    }
}
