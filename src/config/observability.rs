//! The `observability` section: Envoy stats, access-log filter state, and
//! how much of an audited prompt or answer is kept.

use serde::Deserialize;

use crate::error::ConfigError;

/// Metrics and access-log fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawObservability {
    /// Export Envoy stats (`signalbox_*` in `/stats/prometheus`).
    #[serde(default = "enabled")]
    pub metrics: bool,
    /// Write per-request filter state (`wasm.signalbox.*`) for access logs.
    #[serde(default = "enabled")]
    pub access_log: bool,
    /// How often one VM per process refreshes the health and quota gauges.
    #[serde(default = "default_gauge_interval_ms")]
    pub gauge_interval_ms: u64,
    /// Longest prompt or answer (in characters) kept for tenants with `audit_content`.
    #[serde(default = "default_audit_max_chars")]
    pub audit_max_chars: usize,
}

impl Default for RawObservability {
    fn default() -> Self {
        RawObservability {
            metrics: true,
            access_log: true,
            gauge_interval_ms: default_gauge_interval_ms(),
            audit_max_chars: default_audit_max_chars(),
        }
    }
}

fn enabled() -> bool {
    true
}

fn default_gauge_interval_ms() -> u64 {
    5_000
}

fn default_audit_max_chars() -> usize {
    2_000
}

/// Metrics and access-log settings (see [`RawObservability`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observability {
    pub metrics: bool,
    pub access_log: bool,
    pub gauge_interval_ms: u64,
    pub audit_max_chars: usize,
}

pub(super) fn resolve(raw: &RawObservability) -> Result<Observability, ConfigError> {
    if !(100..=3_600_000).contains(&raw.gauge_interval_ms) {
        return Err(ConfigError::new(
            "observability.gauge_interval_ms",
            "must be between 100 and 3600000",
        ));
    }
    if !(1..=65_536).contains(&raw.audit_max_chars) {
        return Err(ConfigError::new(
            "observability.audit_max_chars",
            "must be between 1 and 65536",
        ));
    }
    Ok(Observability {
        metrics: raw.metrics,
        access_log: raw.access_log,
        gauge_interval_ms: raw.gauge_interval_ms,
        audit_max_chars: raw.audit_max_chars,
    })
}
