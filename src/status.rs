//! The JSON operator views, as every worker sees them in shared data:
//! health (`GET /signalbox/health` by default) — per deployment its circuit,
//! availability, score, decayed counts by outcome, latency and
//! time-to-first-token percentiles, in-flight attempts; and spend
//! (`GET /signalbox/spend`) — per tenant its quotas (used, reserved, caps,
//! share) and cost ledger per model.
//!
//! Both are closed by default: an admin key (`admin_keys`) sees everything;
//! a tenant's virtual key sees only its own tenant's spend; anyone else
//! gets 401 (403 for a tenant key asking for health).

use serde_json::{json, Map, Value};

use crate::canary::{self, CanaryRecord, Phase, Side};
use crate::config::canary::Rollout;
use crate::config::governance::Tenant;
use crate::config::{Config, ModelId};
use crate::error::GatewayError;
use crate::failure::FailureKind;
use crate::govern::admission::{ledger_key, quota_records};
use crate::govern::auth_error;
use crate::govern::keys::{admin_named, KeyRing, TenantId};
use crate::govern::ledger::LedgerRecord;
use crate::govern::quota::Amounts;
use crate::headers::HeaderMap;
use crate::health::histogram::DecayedHistogram;
use crate::health::{Availability, BreakerState};
use crate::route::HealthView;
use crate::state::{read, Store};

/// Who may see an operator view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Viewer {
    Admin,
    /// A tenant's virtual key: its own spend only.
    Tenant(TenantId),
}

/// The operator views.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Health,
    Spend,
}

/// Who is asking for `view`, or the error to answer: no or an unknown key
/// is a 401, a tenant key asking for health a 403.
pub fn viewer(config: &Config, headers: &HeaderMap, view: View) -> Result<Viewer, GatewayError> {
    let presented = KeyRing::presented(headers).map_err(auth_error)?;
    if admin_named(&config.admin_keys, presented).is_some() {
        return Ok(Viewer::Admin);
    }
    let governance = config
        .governance
        .as_ref()
        .ok_or_else(|| auth_error(crate::govern::keys::AuthFailure::Unknown))?;
    let identity = governance.keys.authenticate(headers).map_err(auth_error)?;
    match view {
        View::Spend => Ok(Viewer::Tenant(identity.tenant)),
        View::Health => Err(GatewayError::Forbidden {
            message: "The health view needs an admin key.".into(),
        }),
    }
}

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
                BreakerState::HalfOpen => "half_open",
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
                "in_flight": record.in_flight(now, settings),
                "trials_in_flight": record.trials.count(now, settings.lease_ms),
                "consecutive_failures": record.consecutive_failures,
            })
        })
        .collect();
    let canaries: Vec<Value> = config
        .tiers
        .iter()
        .enumerate()
        .filter_map(|(id, tier)| {
            let canary = tier.canary.as_ref()?;
            let rollout = canary.rollout.as_ref()?;
            let record = health.canary_record(id).unwrap_or_default();
            Some(canary_view(config, &tier.name, canary.model, rollout, &record, now))
        })
        .collect();
    json!({"time_ms": now, "deployments": deployments, "canaries": canaries})
        .to_string()
        .into_bytes()
}

/// A canary rollout as the health view shows it: where it stands, what
/// this window saw on each side, and its last move.
fn canary_view(
    config: &Config,
    tier: &str,
    model: ModelId,
    rollout: &Rollout,
    record: &CanaryRecord,
    now: u64,
) -> Value {
    let fresh = record.fingerprint != canary::fingerprint(rollout);
    let phase = if fresh { Phase::Observing(0) } else { record.phase };
    let (state, step, breach) = match phase {
        Phase::Observing(step) => ("observing", Some(step), None),
        Phase::RolledBack(breach) => ("rolled_back", None, Some(breach.name())),
        Phase::Promoted => ("promoted", None, None),
    };
    let side = |side: &Side| {
        json!({
            "attempts": side.attempts,
            "failures": side.failures,
            "error_rate": (side.error_rate() * 1000.0).round() / 1000.0,
            "p95_ms": side.p95_ms(),
            "assessed": side.assessed,
            "escalated": side.escalated,
        })
    };
    let started = (!fresh && record.window_started_ms != 0).then_some(record.window_started_ms);
    json!({
        "tier": tier,
        "model": config.models[model].name,
        "state": state,
        "step": step,
        "steps": rollout.steps,
        "share": record.share(rollout),
        "breach": breach,
        "window_started_ms": started,
        "window_ends_in_ms": started.map(|started| started.saturating_add(rollout.window_ms).saturating_sub(now)),
        "canary": side(&record.canary),
        "baseline": side(&record.baseline),
        "moves": record.moves,
        "last_move_ms": (record.moves > 0).then_some(record.last_move_ms),
    })
}

/// One quota of a tenant as the spend view shows it, in its current period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuotaStanding {
    pub used: Amounts,
    pub reserved: Amounts,
    pub alerted: bool,
}

/// One tenant's spend, from this Envoy's shared data or the fleet ledger.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TenantSpend {
    /// In the order of the tenant's quotas.
    pub quotas: Vec<QuotaStanding>,
    /// Per model that has spent, by name.
    pub ledger: Vec<(String, LedgerRecord)>,
    /// "shared-data" or "fleet".
    pub source: &'static str,
}

/// The tenants `viewer` may see: every tenant for an admin, its own for a tenant.
pub fn visible_tenants(config: &Config, viewer: Viewer) -> Vec<TenantId> {
    let count = config
        .governance
        .as_ref()
        .map_or(0, |governance| governance.tenants.len());
    (0..count)
        .filter(|id| viewer == Viewer::Admin || viewer == Viewer::Tenant(*id))
        .collect()
}

/// A tenant's spend as this Envoy's shared data holds it.
pub fn local_spend(config: &Config, store: &dyn Store, now_ms: u64, tenant: &Tenant) -> TenantSpend {
    let quotas = tenant
        .quotas
        .iter()
        .zip(quota_records(store, tenant))
        .map(|(quota, record)| {
            if record.period_index >= quota.period.index(now_ms) {
                QuotaStanding {
                    used: record.used,
                    reserved: record.reserved,
                    alerted: record.alerted,
                }
            } else {
                QuotaStanding::default()
            }
        })
        .collect();
    let ledger = ledger_lines(config, tenant)
        .into_iter()
        .filter_map(|name| {
            let record = read(store, &ledger_key(tenant, &name))?;
            Some((name, record))
        })
        // Records exist from configuration on: list the models that were used.
        .filter(|(_, record): &(String, LedgerRecord)| *record != LedgerRecord::default())
        .collect();
    TenantSpend {
        quotas,
        ledger,
        source: "shared-data",
    }
}

/// The lines of a tenant's ledger: one per model, and the shadow calls kept
/// apart under `shadow:<reference model>` and `shadow-judge:<judge model>`.
pub fn ledger_lines(config: &Config, tenant: &Tenant) -> Vec<String> {
    let shadow = tenant
        .shadow
        .map(|shadow| crate::shadow::ledger_names(config, &shadow))
        .unwrap_or_default();
    config
        .models
        .iter()
        .map(|model| model.name.clone())
        .chain(shadow)
        .collect()
}

/// A tenant's spend as the fleet ledger answered it; `models` are the
/// names the call asked for, in the order of the answer.
pub fn fleet_spend(spend: &crate::fleet::Spend, models: &[&str]) -> TenantSpend {
    let quotas = spend
        .quotas
        .iter()
        .map(|quota| QuotaStanding {
            used: quota.used,
            reserved: quota.reserved,
            alerted: quota.alerted,
        })
        .collect();
    let ledger = models
        .iter()
        .zip(&spend.models)
        .filter(|(_, model)| model.requests > 0)
        .map(|(name, model)| {
            let record = LedgerRecord {
                requests: model.requests,
                usage: crate::providers::TokenUsage {
                    input: model.input,
                    cached_input: model.cached_input,
                    cache_write: model.cache_write,
                    output: model.output,
                },
                cost_micros: model.cost_micros,
                estimated: model.estimated,
            };
            (name.to_string(), record)
        })
        .collect();
    TenantSpend {
        quotas,
        ledger,
        source: "fleet",
    }
}

/// The spend view of `tenants` (ids with their spend), at `now_ms`.
pub fn spend_report(config: &Config, now_ms: u64, tenants: &[(TenantId, TenantSpend)]) -> Vec<u8> {
    let Some(governance) = &config.governance else {
        return json!({"tenants": []}).to_string().into_bytes();
    };
    let amounts = |amounts: Amounts| json!({"requests": amounts.requests, "tokens": amounts.tokens, "cost_usd": amounts.cost_micros as f64 / 1e6});
    let tenants: Vec<Value> = tenants
        .iter()
        .filter_map(|(id, spend)| Some((governance.tenants.get(*id)?, spend)))
        .map(|(tenant, spend)| {
            let quotas: Vec<Value> = tenant
                .quotas
                .iter()
                .zip(&spend.quotas)
                .map(|(quota, standing)| {
                    json!({
                        "window": quota.period.name(),
                        "caps": {
                            "requests": quota.caps.requests,
                            "tokens": quota.caps.tokens,
                            "cost_usd": quota.caps.cost_micros.map(|micros| micros as f64 / 1e6),
                        },
                        "used": amounts(standing.used),
                        "reserved": amounts(standing.reserved),
                        "share": (quota.caps.usage_share(standing.used) * 1000.0).round() / 1000.0,
                        "alerted": standing.alerted,
                        "resets_in_ms": quota.period.remaining_ms(now_ms),
                    })
                })
                .collect();
            let ledger: Map<String, Value> = spend
                .ledger
                .iter()
                .map(|(model, record)| {
                    (
                        model.clone(),
                        json!({
                            "requests": record.requests,
                            "input_tokens": record.usage.input + record.usage.cache_write,
                            "cached_input_tokens": record.usage.cached_input,
                            "output_tokens": record.usage.output,
                            "cost_usd": record.cost_micros as f64 / 1e6,
                            "estimated_requests": record.estimated,
                        }),
                    )
                })
                .collect();
            json!({"tenant": tenant.name, "source": spend.source, "quotas": quotas, "ledger": ledger})
        })
        .collect();
    json!({"time_ms": now_ms, "tenants": tenants}).to_string().into_bytes()
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

#[cfg(test)]
mod spend_tests {
    use super::*;
    use crate::state::MemoryStore;
    use crate::testing::{finished_request, governed_config};

    #[test]
    fn the_spend_report_shows_quotas_and_the_ledger() {
        let config = governed_config();
        let store = MemoryStore::default();
        let now = 1_795_521_600_000;
        finished_request(&config, &store, 100, 10, 5, now);
        let tenants: Vec<(TenantId, TenantSpend)> = visible_tenants(&config, Viewer::Admin)
            .into_iter()
            .map(|id| {
                (
                    id,
                    local_spend(&config, &store, now, &config.governance.as_ref().unwrap().tenants[id]),
                )
            })
            .collect();
        let report: Value = serde_json::from_slice(&spend_report(&config, now, &tenants)).unwrap();
        let research = report["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["tenant"] == "research")
            .unwrap();
        assert_eq!(research["quotas"][0]["used"]["tokens"], 15);
        assert_eq!(research["quotas"][0]["reserved"]["tokens"], 0);
        assert_eq!(research["ledger"]["small"]["requests"], 1);
        assert_eq!(research["ledger"]["small"]["output_tokens"], 5);
    }

    fn asking_with(key: Option<&str>) -> HeaderMap {
        let header = key.map(|key| format!("Bearer {key}"));
        header.iter().map(|value| ("authorization", value.as_str())).collect()
    }

    #[test]
    fn the_views_are_closed_to_strangers_and_a_tenant_sees_only_itself() {
        let mut config = governed_config();
        config.admin_keys = vec![crate::govern::keys::AdminKey {
            name: "ops".into(),
            digest: crate::govern::keys::digest_of("sk-admin-secret"),
        }];
        let viewer_of = |key: Option<&str>, view| viewer(&config, &asking_with(key), view);
        assert_eq!(viewer_of(None, View::Spend).unwrap_err().status(), 401);
        assert_eq!(
            viewer_of(Some("sk-not-a-key-at-all"), View::Health)
                .unwrap_err()
                .status(),
            401
        );
        assert_eq!(viewer_of(Some("sk-admin-secret"), View::Health), Ok(Viewer::Admin));
        assert_eq!(viewer_of(Some("sk-intern"), View::Health).unwrap_err().status(), 403);
        let intern = viewer_of(Some("sk-intern"), View::Spend).unwrap();
        let visible = visible_tenants(&config, intern);
        let governance = config.governance.as_ref().unwrap();
        let names: Vec<&str> = visible.iter().map(|id| governance.tenants[*id].name.as_str()).collect();
        assert_eq!(names, ["interns"]);
        assert_eq!(visible_tenants(&config, Viewer::Admin).len(), governance.tenants.len());
    }
}
