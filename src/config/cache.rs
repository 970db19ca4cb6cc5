//! The `cache` section and each tenant's `cache` override: whether answers
//! are kept and replayed, for how long, which requests count as repeatable,
//! and how many bytes of shared data the cache may hold. Resolved into one
//! [`CachePolicy`] per tenant, so the request path asks
//! [`Cache::policy`] and never merges settings itself. Absent: no caching.

use serde::Deserialize;

use crate::error::ConfigError;
use crate::keys::TenantId;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    /// The default of every tenant (and of requests without one).
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
    #[serde(default)]
    pub max_temperature: Option<f64>,
    #[serde(default)]
    pub max_entry_bytes: Option<u64>,
    #[serde(default)]
    pub max_request_bytes: Option<u64>,
    #[serde(default)]
    pub max_bytes: Option<u64>,
}

/// A tenant's own settings; what it leaves out comes from the section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTenantCache {
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
    #[serde(default)]
    pub max_temperature: Option<f64>,
    #[serde(default)]
    pub max_entry_bytes: Option<u64>,
}

/// What one tenant's requests may cache.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CachePolicy {
    /// How long an entry answers hits.
    pub ttl_ms: u64,
    /// Requests sampling hotter than this are not cached; a request without
    /// `temperature` counts as 1.0 (the providers' default).
    pub max_temperature: f64,
    /// Largest answer body kept.
    pub max_entry_bytes: usize,
    /// Largest request body keyed (canonicalising and hashing cost).
    pub max_request_bytes: usize,
}

/// The resolved section.
#[derive(Debug, Clone, PartialEq)]
pub struct Cache {
    /// Total bytes of entries kept in shared data.
    pub max_bytes: u64,
    /// The largest entry any policy keeps: sizes the store's shards.
    pub max_entry_bytes: usize,
    /// Requests that have no tenant (no `governance`).
    untenanted: Option<CachePolicy>,
    /// By tenant id (position in `governance.tenants`); `None`: off.
    tenants: Vec<Option<CachePolicy>>,
}

impl Cache {
    /// The policy for a request of `tenant`; `None` when it is not cached.
    pub fn policy(&self, tenant: Option<TenantId>) -> Option<&CachePolicy> {
        match tenant {
            None => self.untenanted.as_ref(),
            Some(id) => self.tenants.get(id)?.as_ref(),
        }
    }

    /// Whether any request can be cached (else the glue skips the cache).
    pub fn is_used(&self) -> bool {
        self.untenanted.is_some() || self.tenants.iter().any(Option::is_some)
    }
}

/// Five minutes: long enough for the repeats of a retrying client, a test
/// suite or a dashboard, short enough that a changed upstream is seen soon.
pub const DEFAULT_TTL_SECONDS: u64 = 300;
const MAX_TTL_SECONDS: u64 = 7 * 24 * 3600;
/// Only requests that explicitly ask for greedy decoding by default: at a
/// higher temperature the client asked for variety, and a replayed answer
/// would quietly take it away (a "try again" would get the same text).
pub const DEFAULT_MAX_TEMPERATURE: f64 = 0.0;
pub const DEFAULT_MAX_ENTRY_BYTES: u64 = 256 << 10;
const ENTRY_BYTES: (u64, u64) = (1 << 10, 16 << 20);
pub const DEFAULT_MAX_REQUEST_BYTES: u64 = 1 << 20;
const REQUEST_BYTES: (u64, u64) = (1 << 10, 256 << 20);
pub const DEFAULT_MAX_BYTES: u64 = 64 << 20;
/// Shared data lives in every Envoy process's memory; a gigabyte is more
/// than a gateway's cache should ever take from it.
const TOTAL_BYTES: (u64, u64) = (1 << 20, 1 << 30);

fn within(path: String, value: u64, (low, high): (u64, u64)) -> Result<u64, ConfigError> {
    if (low..=high).contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::new(path, format!("must be between {low} and {high}")))
    }
}

fn ttl_ms(path: String, seconds: u64) -> Result<u64, ConfigError> {
    within(path, seconds, (1, MAX_TTL_SECONDS)).map(|seconds| seconds * 1_000)
}

fn temperature(path: String, value: f64) -> Result<f64, ConfigError> {
    if value.is_finite() && (0.0..=2.0).contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::new(path, "must be a number between 0 and 2"))
    }
}

fn usize_of(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

/// `tenants`: each tenant's name and raw override, in tenant-id order.
pub fn resolve(raw: Option<&RawCache>, tenants: &[(&str, Option<&RawTenantCache>)]) -> Result<Cache, ConfigError> {
    let default_section = RawCache::default();
    let raw = raw.unwrap_or(&default_section);
    let max_bytes = within(
        "cache.max_bytes".into(),
        raw.max_bytes.unwrap_or(DEFAULT_MAX_BYTES),
        TOTAL_BYTES,
    )?;
    let max_entry_bytes = within(
        "cache.max_entry_bytes".into(),
        raw.max_entry_bytes.unwrap_or(DEFAULT_MAX_ENTRY_BYTES),
        (ENTRY_BYTES.0, ENTRY_BYTES.1.min(max_bytes)),
    )?;
    let section = CachePolicy {
        ttl_ms: ttl_ms(
            "cache.ttl_seconds".into(),
            raw.ttl_seconds.unwrap_or(DEFAULT_TTL_SECONDS),
        )?,
        max_temperature: temperature(
            "cache.max_temperature".into(),
            raw.max_temperature.unwrap_or(DEFAULT_MAX_TEMPERATURE),
        )?,
        max_entry_bytes: usize_of(max_entry_bytes),
        max_request_bytes: usize_of(within(
            "cache.max_request_bytes".into(),
            raw.max_request_bytes.unwrap_or(DEFAULT_MAX_REQUEST_BYTES),
            REQUEST_BYTES,
        )?),
    };
    let mut policies = Vec::with_capacity(tenants.len());
    for (name, tenant) in tenants {
        let path = format!("governance.tenants.{name}.cache");
        policies.push(match tenant {
            None => raw.enabled.then_some(section),
            Some(tenant) => tenant_policy(&path, tenant, raw.enabled, &section, max_entry_bytes)?,
        });
    }
    Ok(Cache {
        max_bytes,
        max_entry_bytes: usize_of(max_entry_bytes),
        untenanted: raw.enabled.then_some(section),
        tenants: policies,
    })
}

fn tenant_policy(
    path: &str,
    raw: &RawTenantCache,
    enabled_by_default: bool,
    section: &CachePolicy,
    max_entry_bytes: u64,
) -> Result<Option<CachePolicy>, ConfigError> {
    let policy = CachePolicy {
        ttl_ms: match raw.ttl_seconds {
            Some(seconds) => ttl_ms(format!("{path}.ttl_seconds"), seconds)?,
            None => section.ttl_ms,
        },
        max_temperature: match raw.max_temperature {
            Some(value) => temperature(format!("{path}.max_temperature"), value)?,
            None => section.max_temperature,
        },
        max_entry_bytes: match raw.max_entry_bytes {
            Some(bytes) => usize_of(within(
                format!("{path}.max_entry_bytes"),
                bytes,
                (ENTRY_BYTES.0, max_entry_bytes),
            )?),
            None => section.max_entry_bytes,
        },
        max_request_bytes: section.max_request_bytes,
    };
    Ok(raw.enabled.unwrap_or(enabled_by_default).then_some(policy))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(json: &str) -> RawCache {
        serde_json::from_str(json).unwrap()
    }

    fn tenant(json: &str) -> RawTenantCache {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn absent_means_off_with_the_documented_defaults() {
        let cache = resolve(None, &[("team", None)]).unwrap();
        assert!(!cache.is_used());
        assert_eq!(cache.policy(None), None);
        assert_eq!(cache.policy(Some(0)), None);
        assert_eq!(cache.max_bytes, 64 << 20);
        let on = resolve(Some(&section(r#"{"enabled": true}"#)), &[]).unwrap();
        assert_eq!(
            on.policy(None),
            Some(&CachePolicy {
                ttl_ms: 300_000,
                max_temperature: 0.0,
                max_entry_bytes: 256 << 10,
                max_request_bytes: 1 << 20,
            })
        );
    }

    #[test]
    fn a_tenant_overrides_what_it_names_and_inherits_the_rest() {
        let raw = section(r#"{"enabled": true, "ttl_seconds": 60, "max_temperature": 0.5}"#);
        let quiet = tenant(r#"{"enabled": false}"#);
        let long = tenant(r#"{"ttl_seconds": 3600, "max_entry_bytes": 4096}"#);
        let cache = resolve(Some(&raw), &[("a", None), ("b", Some(&quiet)), ("c", Some(&long))]).unwrap();
        assert_eq!(cache.policy(Some(0)).map(|p| p.ttl_ms), Some(60_000));
        assert_eq!(cache.policy(Some(1)), None);
        let c = cache.policy(Some(2)).unwrap();
        assert_eq!((c.ttl_ms, c.max_temperature, c.max_entry_bytes), (3_600_000, 0.5, 4096));
        assert_eq!(cache.policy(Some(3)), None, "an unknown tenant id is not cached");
    }

    #[test]
    fn a_tenant_can_turn_on_what_the_section_leaves_off() {
        let eager = tenant(r#"{"enabled": true, "max_temperature": 0.3}"#);
        let cache = resolve(None, &[("a", None), ("b", Some(&eager))]).unwrap();
        assert!(cache.is_used());
        assert_eq!(cache.policy(Some(0)), None);
        assert_eq!(cache.policy(Some(1)).map(|p| p.max_temperature), Some(0.3));
        assert_eq!(cache.policy(None), None);
    }

    #[test]
    fn bad_values_are_refused_with_their_path() {
        let cases = [
            (r#"{"ttl_seconds": 0}"#, "cache.ttl_seconds"),
            (r#"{"ttl_seconds": 604801}"#, "cache.ttl_seconds"),
            (r#"{"max_temperature": 2.5}"#, "cache.max_temperature"),
            (r#"{"max_temperature": -0.1}"#, "cache.max_temperature"),
            (r#"{"max_entry_bytes": 100}"#, "cache.max_entry_bytes"),
            (
                r#"{"max_bytes": 2097152, "max_entry_bytes": 4194304}"#,
                "cache.max_entry_bytes",
            ),
            (r#"{"max_bytes": 1000}"#, "cache.max_bytes"),
            (r#"{"max_bytes": 2147483648}"#, "cache.max_bytes"),
            (r#"{"max_request_bytes": 10}"#, "cache.max_request_bytes"),
        ];
        for (json, path) in cases {
            let error = resolve(Some(&section(json)), &[]).expect_err(json);
            assert_eq!(error.path, path, "{json}");
        }
        let raw = section(r#"{"max_entry_bytes": 8192}"#);
        for (json, field) in [
            (r#"{"ttl_seconds": 0}"#, "ttl_seconds"),
            (r#"{"max_temperature": 3}"#, "max_temperature"),
            (r#"{"max_entry_bytes": 16384}"#, "max_entry_bytes"),
        ] {
            let error = resolve(Some(&raw), &[("t", Some(&tenant(json)))]).expect_err(json);
            assert_eq!(error.path, format!("governance.tenants.t.cache.{field}"));
        }
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(serde_json::from_str::<RawCache>(r#"{"enable": true}"#).is_err());
        assert!(serde_json::from_str::<RawTenantCache>(r#"{"max_bytes": 1}"#).is_err());
    }
}
