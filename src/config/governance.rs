//! The `governance` section: tenants and their policies, virtual keys (as
//! SHA-256 digests), and where soft-limit alerts go. Absent means no
//! authentication and no spend control (the gateway trusts its network).

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

use super::guardrails::{self, Guardrails};
use super::{check_name, ModelId, TierId};
use crate::error::ConfigError;
use crate::keys::{parse_digest, KeyRing, VirtualKey};
use crate::policy::{Caps, Period, Quota, RateLimits};

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
    /// The fleet ledger (Redis behind an HTTP adapter): limits, quotas and
    /// the ledger shared by every replica. Absent: each Envoy keeps its own
    /// in shared data.
    #[serde(default)]
    pub store: Option<RawStore>,
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
    /// What the tenant's requests get while the fleet store cannot answer.
    #[serde(default)]
    pub on_store_failure: RawStoreFailure,
    /// OpenAI built-in tools (`web_search`, `image_generation`, ...) the
    /// tenant's Responses requests may use; their own charges and models are
    /// outside the gateway's price table and `allowed_models`.
    #[serde(default)]
    pub allowed_builtin_tools: Vec<String>,
    /// The tenant's own guardrails, in place of the top-level ones.
    #[serde(default)]
    pub guardrails: Option<super::guardrails::RawGuardrails>,
    /// The tenant's own response-cache settings (see `cache`).
    #[serde(default)]
    pub cache: Option<super::cache::RawTenantCache>,
    /// Compare a sample of its cheaper answers with a reference model's.
    #[serde(default)]
    pub shadow: Option<super::shadow::RawShadow>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    /// Envoy cluster of the store's HTTP adapter (webdis in front of Redis).
    pub cluster: String,
    /// `:authority` of the calls (default: the cluster name).
    #[serde(default)]
    pub authority: Option<String>,
    /// Longest a call may hold a request (default 100 ms).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Envoy replicas sharing the store: while it is down, limits that fall
    /// back to this Envoy's own counters are each cap divided by this.
    pub replicas: u64,
    /// How long a reservation stays open before the store charges it in
    /// full (its Envoy is presumed gone). Default: the request deadline
    /// (`resilience.deadline_ms`) plus one minute.
    #[serde(default)]
    pub reservation_ttl_ms: Option<u64>,
}

/// `closed`: refuse (503) while the store is down; `local`: count in this
/// Envoy's own shared data, at the cap divided by `store.replicas`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailMode {
    Closed,
    Local,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStoreFailure {
    /// Daily/monthly quotas and budgets (default `closed`: money is never
    /// spent without the ledger).
    #[serde(default = "closed")]
    pub budgets: FailMode,
    /// Per-minute request and token limits (default `local`).
    #[serde(default = "local")]
    pub rate_limits: FailMode,
}

fn closed() -> FailMode {
    FailMode::Closed
}

fn local() -> FailMode {
    FailMode::Local
}

impl Default for RawStoreFailure {
    fn default() -> Self {
        RawStoreFailure {
            budgets: FailMode::Closed,
            rate_limits: FailMode::Local,
        }
    }
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
    /// While the fleet store is down: (budgets, rate limits).
    pub on_store_failure: (FailMode, FailMode),
    /// OpenAI built-in tool types the tenant may use (none unless listed).
    pub allowed_builtin_tools: Vec<String>,
    /// The tenant's own guardrails (`None`: the top-level ones).
    pub guardrails: Option<Guardrails>,
    /// Shadow evaluation of its answers.
    pub shadow: Option<super::shadow::Shadow>,
}

impl Tenant {
    /// This tenant's policy for one Envoy of `replicas` while the fleet
    /// store is down: every limit and cap divided by the replicas (at least
    /// 1), so the fleet together stays near the whole.
    pub fn share_of(&self, replicas: u64) -> Tenant {
        let share = |value: Option<u64>| value.map(|value| (value / replicas.max(1)).max(1));
        let rates = |limits: RateLimits| RateLimits {
            requests_per_minute: share(limits.requests_per_minute),
            tokens_per_minute: share(limits.tokens_per_minute),
        };
        Tenant {
            limits: rates(self.limits),
            user_limits: rates(self.user_limits),
            quotas: self
                .quotas
                .iter()
                .map(|quota| Quota {
                    period: quota.period,
                    caps: Caps {
                        requests: share(quota.caps.requests),
                        tokens: share(quota.caps.tokens),
                        cost_micros: share(quota.caps.cost_micros),
                    },
                })
                .collect(),
            ..self.clone()
        }
    }

    /// Whether the store being down refuses this tenant's requests (its
    /// budgets or rate limits fail closed), rather than counting them here.
    pub fn refused_without_store(&self) -> bool {
        let (budgets, rate_limits) = self.on_store_failure;
        let has_budgets = !self.quotas.is_empty();
        let has_rate_limits = !self.limits.is_unlimited() || !self.user_limits.is_unlimited();
        (has_budgets && budgets == FailMode::Closed) || (has_rate_limits && rate_limits == FailMode::Closed)
    }

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

/// Where the fleet ledger is and how long a call may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSettings {
    pub cluster: String,
    pub authority: String,
    pub timeout_ms: u64,
    pub replicas: u64,
    pub reservation_ttl_ms: u64,
}

#[derive(Debug, Clone)]
pub struct Governance {
    pub tenants: Vec<Tenant>,
    /// Each tenant's share of its limits for one replica, used while the
    /// fleet store is down (same order as `tenants`; empty without a store).
    pub local_shares: Vec<Tenant>,
    pub keys: KeyRing,
    pub alerts: Option<AlertSink>,
    pub default_output_reservation: u64,
    pub store: Option<StoreSettings>,
    pub test_clock_header: Option<String>,
}

impl Governance {
    /// The time (epoch ms) a test sets in `test_clock_header`, in modules
    /// built for tests; `None` everywhere else.
    pub fn test_now(&self, headers: &crate::headers::HeaderMap) -> Option<u64> {
        self.test_clock_header
            .as_deref()
            .and_then(|name| headers.get(name))
            .and_then(|value| value.trim().parse().ok())
    }
}

impl PartialEq for Governance {
    fn eq(&self, other: &Self) -> bool {
        self.tenants == other.tenants && self.alerts == other.alerts && self.store == other.store
    }
}

const PATH: &str = "governance";

/// The models and tiers a tenant's policy names, resolved before it.
pub struct Catalog<'a> {
    pub model_by_name: &'a HashMap<String, ModelId, ahash::RandomState>,
    pub model_count: usize,
    pub tier_by_name: &'a HashMap<String, TierId, ahash::RandomState>,
    /// Each tier's models, by tier id.
    pub tier_models: &'a [Vec<ModelId>],
}

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

fn resolve_tenant(name: &str, raw: &RawTenant, catalog: &Catalog) -> Result<Tenant, ConfigError> {
    let path = format!("{PATH}.tenants.{name}");
    check_name(path.clone(), name)?;
    let allowed = allowed_models(&path, raw, catalog)?;
    let max_tier = raw
        .max_tier
        .as_deref()
        .map(|tier| tier_named(format!("{path}.max_tier"), tier, catalog.tier_by_name))
        .transpose()?;
    let downgrade_tier = raw
        .downgrade_tier
        .as_deref()
        .map(|tier| tier_named(format!("{path}.downgrade_tier"), tier, catalog.tier_by_name))
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
    let quotas = resolve_quotas(&path, &raw.quotas)?;
    let shadow = super::shadow::resolve(&path, raw.shadow.as_ref(), catalog.model_by_name)?;
    if let (Some(shadow), Some(allowed)) = (shadow, &allowed) {
        check_shadow_allowed(&path, shadow, allowed)?;
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
        on_store_failure: (raw.on_store_failure.budgets, raw.on_store_failure.rate_limits),
        allowed_builtin_tools: builtin_tools(&path, &raw.allowed_builtin_tools)?,
        shadow,
        guardrails: raw
            .guardrails
            .as_ref()
            .map(|raw| guardrails::resolve(&format!("{path}.guardrails"), raw, catalog.model_by_name))
            .transpose()?,
    })
}

/// The models the tenant may use, by id: those of `allowed_models` and of
/// every tier in `allowed_tiers` (`None`: neither is given, all models).
fn allowed_models(path: &str, raw: &RawTenant, catalog: &Catalog) -> Result<Option<Vec<bool>>, ConfigError> {
    let mut allowed: Option<Vec<bool>> = None;
    if let Some(models) = &raw.allowed_models {
        let allowed = allowed.get_or_insert_with(|| vec![false; catalog.model_count]);
        for (position, model) in models.iter().enumerate() {
            let id = *catalog.model_by_name.get(model).ok_or_else(|| {
                ConfigError::new(
                    format!("{path}.allowed_models[{position}]"),
                    format!("unknown model `{model}`"),
                )
            })?;
            allowed[id] = true;
        }
    }
    if let Some(tiers) = &raw.allowed_tiers {
        let allowed = allowed.get_or_insert_with(|| vec![false; catalog.model_count]);
        for (position, tier) in tiers.iter().enumerate() {
            let id = tier_named(format!("{path}.allowed_tiers[{position}]"), tier, catalog.tier_by_name)?;
            catalog.tier_models[id].iter().for_each(|model| allowed[*model] = true);
        }
    }
    Ok(allowed)
}

/// The tenant's quotas, at most one per window.
fn resolve_quotas(path: &str, raw: &[RawQuota]) -> Result<Vec<Quota>, ConfigError> {
    let mut quotas: Vec<Quota> = Vec::with_capacity(raw.len());
    for (position, quota) in raw.iter().enumerate() {
        let quota_path = format!("{path}.quotas[{position}]");
        let quota = resolve_quota(&quota_path, quota)?;
        // One quota per window keeps its usage one series in the metrics.
        if quotas.iter().any(|earlier| earlier.period == quota.period) {
            return Err(ConfigError::new(
                format!("{quota_path}.window"),
                format!("a second `{}` quota: put all its caps in one", quota.period.name()),
            ));
        }
        quotas.push(quota);
    }
    Ok(quotas)
}

fn resolve_quota(path: &str, raw: &RawQuota) -> Result<Quota, ConfigError> {
    let cost_micros = match raw.cost_usd {
        Some(usd) if !(usd.is_finite() && usd > 0.0) => {
            return Err(ConfigError::new(
                format!("{path}.cost_usd"),
                "must be a positive number of USD",
            ));
        }
        Some(usd) => Some((usd * 1e6).round() as u64),
        None => None,
    };
    if raw.requests == Some(0) || raw.tokens == Some(0) {
        return Err(ConfigError::new(
            path,
            "caps must be greater than 0 (omit one for no cap)",
        ));
    }
    if raw.requests.is_none() && raw.tokens.is_none() && cost_micros.is_none() {
        return Err(ConfigError::new(
            path,
            "give at least one of requests, tokens, cost_usd",
        ));
    }
    let period = match raw.window {
        RawPeriod::Day => Period::Day,
        RawPeriod::Month => Period::Month,
    };
    Ok(Quota {
        period,
        caps: Caps {
            requests: raw.requests,
            tokens: raw.tokens,
            cost_micros,
        },
    })
}

/// A tenant limited to some models keeps its shadow comparisons within
/// them: the reference and the judge see its prompts.
fn check_shadow_allowed(path: &str, shadow: super::shadow::Shadow, allowed: &[bool]) -> Result<(), ConfigError> {
    if !allowed.get(shadow.reference).copied().unwrap_or(false) {
        return Err(ConfigError::new(
            format!("{path}.shadow.reference"),
            "must be one of the tenant's allowed_models: its prompts would go to a model it may not use",
        ));
    }
    if let Some(judge) = shadow.judge {
        if !allowed.get(judge).copied().unwrap_or(false) {
            return Err(ConfigError::new(
                format!("{path}.shadow.judge"),
                "must be one of the tenant's allowed_models: its prompts and answers would go to a model it may not use",
            ));
        }
    }
    Ok(())
}

fn builtin_tools(path: &str, names: &[String]) -> Result<Vec<String>, ConfigError> {
    for (position, name) in names.iter().enumerate() {
        let field = format!("{path}.allowed_builtin_tools[{position}]");
        check_name(field.clone(), name)?;
        if names[..position].contains(name) {
            return Err(ConfigError::new(field, format!("`{name}` is listed twice")));
        }
    }
    Ok(names.to_vec())
}

/// Longest a store call may take (a request waits for it).
const MAX_STORE_TIMEOUT_MS: u64 = 5_000;

fn resolve_store(raw: &RawStore, deadline_ms: u64) -> Result<StoreSettings, ConfigError> {
    let path = format!("{PATH}.store");
    check_name(format!("{path}.cluster"), &raw.cluster)?;
    let timeout_ms = raw.timeout_ms.unwrap_or(100);
    if timeout_ms == 0 || timeout_ms > MAX_STORE_TIMEOUT_MS {
        return Err(ConfigError::new(
            format!("{path}.timeout_ms"),
            format!("must be between 1 and {MAX_STORE_TIMEOUT_MS}"),
        ));
    }
    if raw.replicas == 0 {
        return Err(ConfigError::new(format!("{path}.replicas"), "must be at least 1"));
    }
    let reservation_ttl_ms = raw.reservation_ttl_ms.unwrap_or(deadline_ms.saturating_add(60_000));
    if reservation_ttl_ms < deadline_ms {
        return Err(ConfigError::new(
            format!("{path}.reservation_ttl_ms"),
            format!("must be at least resilience.deadline_ms ({deadline_ms}): a request may still be running"),
        ));
    }
    Ok(StoreSettings {
        cluster: raw.cluster.clone(),
        authority: raw.authority.clone().unwrap_or_else(|| raw.cluster.clone()),
        timeout_ms,
        replicas: raw.replicas,
        reservation_ttl_ms,
    })
}

pub fn resolve(raw: &RawGovernance, catalog: &Catalog, deadline_ms: u64) -> Result<Governance, ConfigError> {
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
        tenants.push(resolve_tenant(name, tenant, catalog)?);
    }
    let keys = resolve_virtual_keys(&raw.keys, &tenant_by_name)?;
    let alerts = raw.alerts.as_ref().map(resolve_alerts).transpose()?;
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
    let store = raw
        .store
        .as_ref()
        .map(|store| resolve_store(store, deadline_ms))
        .transpose()?;
    let local_shares = match &store {
        Some(store) => tenants.iter().map(|tenant| tenant.share_of(store.replicas)).collect(),
        None => Vec::new(),
    };
    Ok(Governance {
        tenants,
        local_shares,
        store,
        keys: KeyRing::new(keys),
        alerts,
        default_output_reservation: match raw.default_output_reservation.unwrap_or(1_024) {
            0 => {
                return Err(ConfigError::new(
                    "governance.default_output_reservation",
                    "must be greater than 0",
                ))
            }
            tokens => tokens,
        },
        test_clock_header,
    })
}

/// Virtual keys, each naming a known tenant and listed once.
fn resolve_virtual_keys(
    raw: &[RawVirtualKey],
    tenant_by_name: &HashMap<&str, usize>,
) -> Result<Vec<VirtualKey>, ConfigError> {
    let mut keys = Vec::with_capacity(raw.len());
    for (position, key) in raw.iter().enumerate() {
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
    Ok(keys)
}

fn resolve_alerts(raw: &RawAlerts) -> Result<AlertSink, ConfigError> {
    check_name(format!("{PATH}.alerts.cluster"), &raw.cluster)?;
    if !raw.path.starts_with('/') {
        return Err(ConfigError::new(
            format!("{PATH}.alerts.path"),
            "must be an absolute path",
        ));
    }
    Ok(AlertSink {
        cluster: raw.cluster.clone(),
        path: raw.path.clone(),
        authority: raw.authority.clone().unwrap_or_else(|| raw.cluster.clone()),
        timeout_ms: match raw.timeout_ms.unwrap_or(5_000) {
            timeout @ 1..=60_000 => timeout,
            _ => {
                return Err(ConfigError::new(
                    "governance.alerts.timeout_ms",
                    "must be between 1 and 60000",
                ))
            }
        },
    })
}
