//! The `cache` section and each tenant's `cache` override: whether answers
//! are kept and replayed, for how long, which requests count as repeatable,
//! and how many bytes of shared data the cache may hold. Resolved into one
//! [`CachePolicy`] per tenant, so the request path asks
//! [`Cache::policy`] and never merges settings itself. Absent: no caching.
//! The semantic cache (`cache.semantic`, off by default) resolves into
//! [`Semantic`]: the embedding model and each tenant's threshold.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::within;
use super::ModelId;
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
    #[serde(default)]
    pub semantic: Option<RawSemantic>,
    /// Per tier (by name): whether its answers are cached, and for how long.
    #[serde(default)]
    pub tiers: BTreeMap<String, RawTierCache>,
}

/// `cache.tiers.<name>`: a tier's own setting, over every tenant's policy.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTierCache {
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
}

/// A tier's own cache setting: off (its answers are never cached, such as
/// a tier of fast-changing data), or another TTL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TierCache {
    pub enabled: bool,
    pub ttl_ms: Option<u64>,
}

/// Resolves `cache.tiers` by tier id (`tier_named` finds a configured tier).
pub fn resolve_tiers(
    raw: Option<&RawCache>,
    tier_count: usize,
    tier_named: &dyn Fn(&str) -> Option<usize>,
) -> Result<Vec<Option<TierCache>>, ConfigError> {
    let mut tiers = vec![None; tier_count];
    for (name, tier) in raw.iter().flat_map(|raw| &raw.tiers) {
        let path = format!("cache.tiers.{name}");
        let id = tier_named(name).ok_or_else(|| ConfigError::new(path.clone(), format!("unknown tier `{name}`")))?;
        let ttl_ms = tier
            .ttl_seconds
            .map(|seconds| ttl_ms(format!("{path}.ttl_seconds"), seconds))
            .transpose()?;
        if let Some(slot) = tiers.get_mut(id) {
            *slot = Some(TierCache {
                enabled: tier.enabled.unwrap_or(true),
                ttl_ms,
            });
        }
    }
    Ok(tiers)
}

/// `cache.semantic`: near-duplicate questions answered from the cache.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSemantic {
    /// The default of every tenant whose exact cache is on.
    #[serde(default)]
    pub enabled: bool,
    /// A configured model that embeds text.
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub threshold: Option<f64>,
    #[serde(default)]
    pub max_entries: Option<u64>,
}

/// `governance.tenants.<name>.cache.semantic`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTenantSemantic {
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub threshold: Option<f64>,
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
    #[serde(default)]
    pub semantic: Option<RawTenantSemantic>,
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
    /// `None`: no tenant has a semantic cache.
    pub semantic: Option<Semantic>,
    /// By tier id: the tier's own setting, if it has one.
    pub tiers: Vec<Option<TierCache>>,
}

/// The resolved semantic cache.
#[derive(Debug, Clone, PartialEq)]
pub struct Semantic {
    /// The model that embeds the last user turn.
    pub model: ModelId,
    /// Index records kept per tenant.
    pub max_entries: usize,
    untenanted: Option<f32>,
    /// Each tenant's threshold, by tenant id; `None`: off.
    tenants: Vec<Option<f32>>,
}

impl Cache {
    /// The policy for a request of `tenant`; `None` when it is not cached.
    pub fn policy(&self, tenant: Option<TenantId>) -> Option<&CachePolicy> {
        match tenant {
            None => self.untenanted.as_ref(),
            Some(id) => self.tenants.get(id)?.as_ref(),
        }
    }

    /// The similarity a semantic hit of `tenant` needs; `None` when the
    /// tenant has no semantic cache (it always has an exact one then).
    pub fn semantic_threshold(&self, tenant: Option<TenantId>) -> Option<f32> {
        let semantic = self.semantic.as_ref()?;
        match tenant {
            None => semantic.untenanted,
            Some(id) => *semantic.tenants.get(id)?,
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
/// Measured on the bag-of-words mock embedder and the labelled pairs in
/// `tests/data/paraphrases.jsonl` (docs/cache.md, "Semantic cache"): strict,
/// because a wrong answer costs more than a provider call. Real embedding
/// models spread scores differently; tune per model and tenant.
pub const DEFAULT_SEMANTIC_THRESHOLD: f64 = 0.95;
pub const DEFAULT_SEMANTIC_MAX_ENTRIES: u64 = 1000;
/// A lookup compares against up to this many vectors of up to 4096
/// dimensions (`cache::semantic::index`), on the request path.
const SEMANTIC_ENTRIES: (u64, u64) = (16, 4096);

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

fn threshold(path: String, value: f64) -> Result<f32, ConfigError> {
    if value.is_finite() && value > 0.0 && value <= 1.0 {
        Ok(value as f32)
    } else {
        Err(ConfigError::new(path, "must be a number above 0 and at most 1"))
    }
}

fn usize_of(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

/// `tenants`: each tenant's name and raw override, in tenant-id order;
/// `model_named` finds a configured model.
pub fn resolve(
    raw: Option<&RawCache>,
    tenants: &[(&str, Option<&RawTenantCache>)],
    model_named: &dyn Fn(&str) -> Option<ModelId>,
) -> Result<Cache, ConfigError> {
    let default_section = RawCache::default();
    let raw = raw.unwrap_or(&default_section);
    let max_bytes = within(
        "cache.max_bytes",
        raw.max_bytes.unwrap_or(DEFAULT_MAX_BYTES),
        TOTAL_BYTES,
    )?;
    let max_entry_bytes = within(
        "cache.max_entry_bytes",
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
            "cache.max_request_bytes",
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
    let untenanted = raw.enabled.then_some(section);
    let semantic = resolve_semantic(
        raw.semantic.as_ref(),
        untenanted.is_some(),
        tenants,
        &policies,
        model_named,
    )?;
    Ok(Cache {
        max_bytes,
        max_entry_bytes: usize_of(max_entry_bytes),
        untenanted,
        tenants: policies,
        semantic,
        tiers: Vec::new(),
    })
}

/// Each tenant's semantic threshold: only where its exact cache is on (a
/// semantic hit is answered from an exact entry).
fn resolve_semantic(
    raw: Option<&RawSemantic>,
    untenanted_cached: bool,
    tenants: &[(&str, Option<&RawTenantCache>)],
    policies: &[Option<CachePolicy>],
    model_named: &dyn Fn(&str) -> Option<ModelId>,
) -> Result<Option<Semantic>, ConfigError> {
    let default_section = RawSemantic::default();
    let raw = raw.unwrap_or(&default_section);
    let section_threshold = threshold(
        "cache.semantic.threshold".into(),
        raw.threshold.unwrap_or(DEFAULT_SEMANTIC_THRESHOLD),
    )?;
    let max_entries = within(
        "cache.semantic.max_entries",
        raw.max_entries.unwrap_or(DEFAULT_SEMANTIC_MAX_ENTRIES),
        SEMANTIC_ENTRIES,
    )?;
    let mut thresholds = Vec::with_capacity(tenants.len());
    for ((name, tenant), policy) in tenants.iter().zip(policies) {
        let path = format!("governance.tenants.{name}.cache.semantic");
        let own = tenant.and_then(|tenant| tenant.semantic.as_ref());
        let enabled = own.and_then(|own| own.enabled).unwrap_or(raw.enabled);
        let value = match own.and_then(|own| own.threshold) {
            Some(value) => threshold(format!("{path}.threshold"), value)?,
            None => section_threshold,
        };
        if enabled && policy.is_none() && own.and_then(|own| own.enabled) == Some(true) {
            return Err(ConfigError::new(
                format!("{path}.enabled"),
                "needs the tenant's cache enabled (a semantic hit is answered from a cached entry)",
            ));
        }
        thresholds.push((enabled && policy.is_some()).then_some(value));
    }
    let untenanted = (raw.enabled && untenanted_cached).then_some(section_threshold);
    let used = untenanted.is_some() || thresholds.iter().any(Option::is_some);
    let model =
        match raw.model.as_deref() {
            Some(name) => Some(model_named(name).ok_or_else(|| {
                ConfigError::new("cache.semantic.model", format!("`{name}` is not a configured model"))
            })?),
            None if used => {
                return Err(ConfigError::new(
                    "cache.semantic.model",
                    "is required when the semantic cache is enabled (a model that embeds text)",
                ))
            }
            None => None,
        };
    Ok(match model {
        Some(model) if used => Some(Semantic {
            model,
            max_entries: usize_of(max_entries),
            untenanted,
            tenants: thresholds,
        }),
        _ => None,
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

    fn no_models(_: &str) -> Option<ModelId> {
        None
    }

    fn embedder(name: &str) -> Option<ModelId> {
        (name == "embed").then_some(4)
    }

    #[test]
    fn absent_means_off_with_the_documented_defaults() {
        let cache = resolve(None, &[("team", None)], &no_models).unwrap();
        assert!(!cache.is_used());
        assert_eq!(cache.policy(None), None);
        assert_eq!(cache.policy(Some(0)), None);
        assert_eq!(cache.max_bytes, 64 << 20);
        let on = resolve(Some(&section(r#"{"enabled": true}"#)), &[], &no_models).unwrap();
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
        let cache = resolve(
            Some(&raw),
            &[("a", None), ("b", Some(&quiet)), ("c", Some(&long))],
            &no_models,
        )
        .unwrap();
        assert_eq!(cache.policy(Some(0)).map(|p| p.ttl_ms), Some(60_000));
        assert_eq!(cache.policy(Some(1)), None);
        let c = cache.policy(Some(2)).unwrap();
        assert_eq!((c.ttl_ms, c.max_temperature, c.max_entry_bytes), (3_600_000, 0.5, 4096));
        assert_eq!(cache.policy(Some(3)), None, "an unknown tenant id is not cached");
    }

    #[test]
    fn a_tenant_can_turn_on_what_the_section_leaves_off() {
        let eager = tenant(r#"{"enabled": true, "max_temperature": 0.3}"#);
        let cache = resolve(None, &[("a", None), ("b", Some(&eager))], &no_models).unwrap();
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
            let error = resolve(Some(&section(json)), &[], &no_models).expect_err(json);
            assert_eq!(error.path, path, "{json}");
        }
        let raw = section(r#"{"max_entry_bytes": 8192}"#);
        for (json, field) in [
            (r#"{"ttl_seconds": 0}"#, "ttl_seconds"),
            (r#"{"max_temperature": 3}"#, "max_temperature"),
            (r#"{"max_entry_bytes": 16384}"#, "max_entry_bytes"),
        ] {
            let error = resolve(Some(&raw), &[("t", Some(&tenant(json)))], &no_models).expect_err(json);
            assert_eq!(error.path, format!("governance.tenants.t.cache.{field}"));
        }
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(serde_json::from_str::<RawCache>(r#"{"enable": true}"#).is_err());
        assert!(serde_json::from_str::<RawTenantCache>(r#"{"max_bytes": 1}"#).is_err());
    }

    #[test]
    fn the_semantic_cache_is_off_unless_enabled_and_follows_the_exact_cache() {
        let off = resolve(Some(&section(r#"{"enabled": true}"#)), &[("a", None)], &no_models).unwrap();
        assert_eq!(off.semantic, None);
        assert_eq!(off.semantic_threshold(None), None);
        let raw = section(r#"{"enabled": true, "semantic": {"enabled": true, "model": "embed"}}"#);
        let strict = tenant(r#"{"semantic": {"threshold": 0.99}}"#);
        let opted_out = tenant(r#"{"semantic": {"enabled": false}}"#);
        let uncached = tenant(r#"{"enabled": false}"#);
        let cache = resolve(
            Some(&raw),
            &[
                ("a", None),
                ("b", Some(&strict)),
                ("c", Some(&opted_out)),
                ("d", Some(&uncached)),
            ],
            &embedder,
        )
        .unwrap();
        let semantic = cache.semantic.as_ref().unwrap();
        assert_eq!((semantic.model, semantic.max_entries), (4, 1000));
        assert_eq!(cache.semantic_threshold(None), Some(0.95));
        assert_eq!(cache.semantic_threshold(Some(0)), Some(0.95));
        assert_eq!(cache.semantic_threshold(Some(1)), Some(0.99));
        assert_eq!(cache.semantic_threshold(Some(2)), None);
        assert_eq!(
            cache.semantic_threshold(Some(3)),
            None,
            "no exact cache, no semantic one"
        );
        assert_eq!(cache.semantic_threshold(Some(4)), None);
    }

    #[test]
    fn a_tenant_can_turn_the_semantic_cache_on_alone() {
        let raw = section(r#"{"semantic": {"model": "embed", "max_entries": 64}}"#);
        let eager = tenant(r#"{"enabled": true, "semantic": {"enabled": true, "threshold": 0.9}}"#);
        let cache = resolve(Some(&raw), &[("a", None), ("b", Some(&eager))], &embedder).unwrap();
        assert_eq!(cache.semantic.as_ref().map(|s| s.max_entries), Some(64));
        assert_eq!(cache.semantic_threshold(Some(0)), None);
        assert_eq!(cache.semantic_threshold(Some(1)), Some(0.9));
        assert_eq!(cache.semantic_threshold(None), None);
    }

    #[test]
    fn bad_semantic_settings_are_refused_with_their_path() {
        let cases = [
            (
                r#"{"enabled": true, "semantic": {"enabled": true}}"#,
                "cache.semantic.model",
            ),
            (r#"{"semantic": {"model": "nope"}}"#, "cache.semantic.model"),
            (
                r#"{"semantic": {"model": "embed", "threshold": 0}}"#,
                "cache.semantic.threshold",
            ),
            (
                r#"{"semantic": {"model": "embed", "threshold": 1.01}}"#,
                "cache.semantic.threshold",
            ),
            (
                r#"{"semantic": {"model": "embed", "max_entries": 5000}}"#,
                "cache.semantic.max_entries",
            ),
            (
                r#"{"semantic": {"model": "embed", "max_entries": 1}}"#,
                "cache.semantic.max_entries",
            ),
        ];
        for (json, path) in cases {
            let error = resolve(Some(&section(json)), &[], &embedder).expect_err(json);
            assert_eq!(error.path, path, "{json}");
        }
        let raw = section(r#"{"semantic": {"model": "embed"}}"#);
        for (json, field) in [
            (r#"{"enabled": true, "semantic": {"threshold": -1}}"#, "threshold"),
            (r#"{"semantic": {"enabled": true}}"#, "enabled"),
        ] {
            let error = resolve(Some(&raw), &[("t", Some(&tenant(json)))], &embedder).expect_err(json);
            assert_eq!(error.path, format!("governance.tenants.t.cache.semantic.{field}"));
        }
        assert!(serde_json::from_str::<RawSemantic>(r#"{"treshold": 0.9}"#).is_err());
        assert!(serde_json::from_str::<RawTenantSemantic>(r#"{"model": "x"}"#).is_err());
    }
}
