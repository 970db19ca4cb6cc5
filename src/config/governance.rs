//! The `governance` section: tenants and their policies, virtual keys (as
//! SHA-256 digests), and where soft-limit alerts go. Absent means no
//! authentication and no spend control (the gateway trusts its network).

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

use super::{check_name, ModelId, TierId};
use crate::error::ConfigError;
use crate::govern::keys::{parse_digest, KeyRing, VirtualKey};
use crate::govern::quota::{Caps, Period, Quota};
use crate::govern::window::RateLimits;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGovernance {
    pub tenants: BTreeMap<String, RawTenant>,
    pub keys: Vec<RawVirtualKey>,
    #[serde(default)]
    pub alerts: Option<RawAlerts>,
    /// Output tokens reserved for a request that sets no `max_tokens`.
    #[serde(default)]
    pub default_output_reservation: Option<u64>,
    /// Test-only, and only in a module built with the `test-clock` feature
    /// (the shipped module rejects the field): a request header whose value
    /// (ms since the epoch) replaces the clock for quota periods and rate
    /// windows.
    #[cfg(feature = "test-clock")]
    #[serde(default)]
    pub test_clock_header: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTenant {
    #[serde(default)]
    pub allowed_models: Option<Vec<String>>,
    #[serde(default)]
    pub allowed_tiers: Option<Vec<String>>,
    /// Requests scored above this tier are served by it.
    #[serde(default)]
    pub max_tier: Option<String>,
    /// Larger `max_tokens` is refused; a request without one gets this one.
    #[serde(default)]
    pub max_tokens_per_request: Option<u64>,
    #[serde(default)]
    pub limits: RawRate,
    /// Limits of each user (the `user` of a virtual key) within the tenant.
    #[serde(default)]
    pub user_limits: RawRate,
    #[serde(default)]
    pub quotas: Vec<RawQuota>,
    /// Share of a quota at which the soft alert fires (default 0.8).
    #[serde(default)]
    pub alert_at: Option<f64>,
    /// Past `alert_at`, route to this (cheaper) tier instead of the scored one.
    #[serde(default)]
    pub downgrade_tier: Option<String>,
    /// Add `x-signalbox-cost-usd` and token counts to responses.
    #[serde(default)]
    pub show_usage: bool,
    /// Put the (PII-redacted) prompt and answer into the access-log fields.
    #[serde(default)]
    pub audit_content: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRate {
    #[serde(default)]
    pub rpm: Option<u64>,
    #[serde(default)]
    pub tpm: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawPeriod {
    Day,
    Month,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQuota {
    pub window: RawPeriod,
    #[serde(default)]
    pub requests: Option<u64>,
    #[serde(default)]
    pub tokens: Option<u64>,
    /// A budget: USD per window.
    #[serde(default)]
    pub cost_usd: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVirtualKey {
    /// Hex SHA-256 of the key (`printf %s "$KEY" | sha256sum`).
    pub sha256: String,
    pub tenant: String,
    #[serde(default)]
    pub user: Option<String>,
    pub name: String,
    #[serde(default)]
    pub disabled: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlerts {
    /// Envoy cluster of the webhook.
    pub cluster: String,
    #[serde(default = "default_alert_path")]
    pub path: String,
    #[serde(default)]
    pub authority: Option<String>,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

fn default_alert_path() -> String {
    "/".to_string()
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tenant {
    pub name: String,
    /// Allowed models by model id (`None`: all).
    pub allowed_models: Option<Vec<bool>>,
    pub max_tier: Option<TierId>,
    pub max_tokens_per_request: Option<u64>,
    pub limits: RateLimits,
    pub user_limits: RateLimits,
    pub quotas: Vec<Quota>,
    pub alert_at: f64,
    pub downgrade_tier: Option<TierId>,
    pub show_usage: bool,
    pub audit_content: bool,
}

impl Tenant {
    pub fn allows(&self, model: ModelId) -> bool {
        self.allowed_models
            .as_ref()
            .is_none_or(|allowed| allowed.get(model).copied().unwrap_or(false))
    }
}

/// A key's configured digest, or the error naming `{path}.sha256`.
pub fn key_digest(path: &str, sha256: &str) -> Result<[u8; 32], ConfigError> {
    parse_digest(&sha256.to_ascii_lowercase()).ok_or_else(|| {
        ConfigError::new(
            format!("{path}.sha256"),
            "must be 64 hex characters (the key's SHA-256)",
        )
    })
}

#[derive(Debug, Clone, PartialEq)]
pub struct AlertSink {
    pub cluster: String,
    pub path: String,
    pub authority: String,
    pub timeout_ms: u64,
}

#[derive(Debug, Clone)]
pub struct Governance {
    pub tenants: Vec<Tenant>,
    pub keys: KeyRing,
    pub alerts: Option<AlertSink>,
    pub default_output_reservation: u64,
    pub test_clock_header: Option<String>,
}

impl PartialEq for Governance {
    fn eq(&self, other: &Self) -> bool {
        self.tenants == other.tenants && self.alerts == other.alerts
    }
}

const PATH: &str = "governance";

fn tier_named(
    path: String,
    name: &str,
    tier_by_name: &HashMap<String, TierId, ahash::RandomState>,
) -> Result<TierId, ConfigError> {
    tier_by_name
        .get(name)
        .copied()
        .ok_or_else(|| ConfigError::new(path, format!("unknown tier `{name}`")))
}

pub fn rate_limits(path: &str, raw: &RawRate) -> Result<RateLimits, ConfigError> {
    for (field, value) in [("rpm", raw.rpm), ("tpm", raw.tpm)] {
        if value == Some(0) {
            return Err(ConfigError::new(
                format!("{path}.{field}"),
                "must be greater than 0 (omit it for no limit)",
            ));
        }
    }
    Ok(RateLimits {
        requests_per_minute: raw.rpm,
        tokens_per_minute: raw.tpm,
    })
}

fn resolve_tenant(
    name: &str,
    raw: &RawTenant,
    model_by_name: &HashMap<String, ModelId, ahash::RandomState>,
    model_count: usize,
    tier_by_name: &HashMap<String, TierId, ahash::RandomState>,
    tier_models: &[Vec<ModelId>],
) -> Result<Tenant, ConfigError> {
    let path = format!("{PATH}.tenants.{name}");
    check_name(path.clone(), name)?;
    let mut allowed: Option<Vec<bool>> = None;
    if let Some(models) = &raw.allowed_models {
        let allowed = allowed.get_or_insert_with(|| vec![false; model_count]);
        for (position, model) in models.iter().enumerate() {
            let id = *model_by_name.get(model).ok_or_else(|| {
                ConfigError::new(
                    format!("{path}.allowed_models[{position}]"),
                    format!("unknown model `{model}`"),
                )
            })?;
            allowed[id] = true;
        }
    }
    if let Some(tiers) = &raw.allowed_tiers {
        let allowed = allowed.get_or_insert_with(|| vec![false; model_count]);
        for (position, tier) in tiers.iter().enumerate() {
            let id = tier_named(format!("{path}.allowed_tiers[{position}]"), tier, tier_by_name)?;
            tier_models[id].iter().for_each(|model| allowed[*model] = true);
        }
    }
    let max_tier = raw
        .max_tier
        .as_deref()
        .map(|tier| tier_named(format!("{path}.max_tier"), tier, tier_by_name))
        .transpose()?;
    let downgrade_tier = raw
        .downgrade_tier
        .as_deref()
        .map(|tier| tier_named(format!("{path}.downgrade_tier"), tier, tier_by_name))
        .transpose()?;
    if raw.max_tokens_per_request == Some(0) {
        return Err(ConfigError::new(
            format!("{path}.max_tokens_per_request"),
            "must be greater than 0",
        ));
    }
    let alert_at = raw.alert_at.unwrap_or(0.8);
    if !(alert_at > 0.0 && alert_at <= 1.0) {
        return Err(ConfigError::new(format!("{path}.alert_at"), "must be in (0, 1]"));
    }
    let mut quotas = Vec::with_capacity(raw.quotas.len());
    for (position, quota) in raw.quotas.iter().enumerate() {
        let quota_path = format!("{path}.quotas[{position}]");
        let cost_micros = match quota.cost_usd {
            Some(usd) if !(usd.is_finite() && usd > 0.0) => {
                return Err(ConfigError::new(
                    format!("{quota_path}.cost_usd"),
                    "must be a positive number of USD",
                ));
            }
            Some(usd) => Some((usd * 1e6).round() as u64),
            None => None,
        };
        if quota.requests == Some(0) || quota.tokens == Some(0) {
            return Err(ConfigError::new(
                quota_path,
                "caps must be greater than 0 (omit one for no cap)",
            ));
        }
        if quota.requests.is_none() && quota.tokens.is_none() && cost_micros.is_none() {
            return Err(ConfigError::new(
                quota_path,
                "give at least one of requests, tokens, cost_usd",
            ));
        }
        let period = match quota.window {
            RawPeriod::Day => Period::Day,
            RawPeriod::Month => Period::Month,
        };
        // One quota per window keeps its usage one series in the metrics.
        if quotas.iter().any(|earlier: &Quota| earlier.period == period) {
            return Err(ConfigError::new(
                format!("{quota_path}.window"),
                format!("a second `{}` quota: put all its caps in one", period.name()),
            ));
        }
        quotas.push(Quota {
            period,
            caps: Caps {
                requests: quota.requests,
                tokens: quota.tokens,
                cost_micros,
            },
        });
    }
    Ok(Tenant {
        name: name.to_string(),
        allowed_models: allowed,
        max_tier,
        max_tokens_per_request: raw.max_tokens_per_request,
        limits: rate_limits(&format!("{path}.limits"), &raw.limits)?,
        user_limits: rate_limits(&format!("{path}.user_limits"), &raw.user_limits)?,
        quotas,
        alert_at,
        downgrade_tier,
        show_usage: raw.show_usage,
        audit_content: raw.audit_content,
    })
}

pub fn resolve(
    raw: &RawGovernance,
    model_by_name: &HashMap<String, ModelId, ahash::RandomState>,
    model_count: usize,
    tier_by_name: &HashMap<String, TierId, ahash::RandomState>,
    tier_models: &[Vec<ModelId>],
) -> Result<Governance, ConfigError> {
    if raw.tenants.is_empty() {
        return Err(ConfigError::new(
            format!("{PATH}.tenants"),
            "at least one tenant is required",
        ));
    }
    let mut tenants = Vec::with_capacity(raw.tenants.len());
    let mut tenant_by_name = HashMap::new();
    for (name, tenant) in &raw.tenants {
        tenant_by_name.insert(name.as_str(), tenants.len());
        tenants.push(resolve_tenant(
            name,
            tenant,
            model_by_name,
            model_count,
            tier_by_name,
            tier_models,
        )?);
    }
    let mut keys = Vec::with_capacity(raw.keys.len());
    for (position, key) in raw.keys.iter().enumerate() {
        let path = format!("{PATH}.keys[{position}]");
        check_name(format!("{path}.name"), &key.name)?;
        let digest = key_digest(&path, &key.sha256)?;
        if keys.iter().any(|known: &VirtualKey| known.digest == digest) {
            return Err(ConfigError::new(
                format!("{path}.sha256"),
                "the same key is listed twice",
            ));
        }
        let tenant = *tenant_by_name
            .get(key.tenant.as_str())
            .ok_or_else(|| ConfigError::new(format!("{path}.tenant"), format!("unknown tenant `{}`", key.tenant)))?;
        if let Some(user) = &key.user {
            check_name(format!("{path}.user"), user)?;
        }
        keys.push(VirtualKey {
            digest,
            tenant,
            user: key.user.clone(),
            name: key.name.clone(),
            disabled: key.disabled,
        });
    }
    let alerts = match &raw.alerts {
        None => None,
        Some(alerts) => {
            check_name(format!("{PATH}.alerts.cluster"), &alerts.cluster)?;
            if !alerts.path.starts_with('/') {
                return Err(ConfigError::new(
                    format!("{PATH}.alerts.path"),
                    "must be an absolute path",
                ));
            }
            Some(AlertSink {
                cluster: alerts.cluster.clone(),
                path: alerts.path.clone(),
                authority: alerts.authority.clone().unwrap_or_else(|| alerts.cluster.clone()),
                timeout_ms: alerts.timeout_ms.unwrap_or(5_000).max(1),
            })
        }
    };
    #[cfg(feature = "test-clock")]
    let test_clock_header = match &raw.test_clock_header {
        Some(header) => {
            super::check_header_name(&format!("{PATH}.test_clock_header"), header)?;
            Some(header.clone())
        }
        None => None,
    };
    #[cfg(not(feature = "test-clock"))]
    let test_clock_header = None;
    Ok(Governance {
        tenants,
        keys: KeyRing::new(keys),
        alerts,
        default_output_reservation: raw.default_output_reservation.unwrap_or(1_024).max(1),
        test_clock_header,
    })
}
