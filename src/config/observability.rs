//! The `observability` section: Envoy stats, access-log filter state, and
//! how much of an audited prompt or answer is kept.

use serde::Deserialize;

use crate::contract::ACCESS_LOG_FIELDS;
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
    /// Which of those fields to write (default: every one). Each write is a
    /// host call and a filter-state object per request: an access log or a
    /// tracing tag that reads five fields needs only those five.
    #[serde(default)]
    pub access_log_fields: Option<Vec<String>>,
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
            access_log_fields: None,
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
    /// The access-log fields written (none when `access_log` is off).
    pub access_log_fields: FieldSet,
    pub gauge_interval_ms: u64,
    pub audit_max_chars: usize,
}

/// A set of access-log fields: bit `i` is `ACCESS_LOG_FIELDS[i]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSet(u64);

impl FieldSet {
    pub const ALL: FieldSet = FieldSet((1 << ACCESS_LOG_FIELDS.len()) - 1);
    pub const NONE: FieldSet = FieldSet(0);

    /// The set of the fields named, or the first name that is not a field.
    pub fn of_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<FieldSet, &'a str> {
        let mut bits = 0;
        for name in names {
            let index = ACCESS_LOG_FIELDS.iter().position(|field| *field == name).ok_or(name)?;
            bits |= 1 << index;
        }
        Ok(FieldSet(bits))
    }

    pub fn contains(self, field: &str) -> bool {
        ACCESS_LOG_FIELDS
            .iter()
            .position(|known| *known == field)
            .is_some_and(|index| self.0 & (1 << index) != 0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
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
    let access_log_fields = match (&raw.access_log_fields, raw.access_log) {
        (None, true) => FieldSet::ALL,
        (None, false) => FieldSet::NONE,
        (Some(_), false) => {
            return Err(ConfigError::new(
                "observability.access_log_fields",
                "is set while access_log is false: no field is written",
            ))
        }
        (Some(names), true) if names.is_empty() => {
            return Err(ConfigError::new(
                "observability.access_log_fields",
                "is empty: to write no field, set access_log to false",
            ))
        }
        (Some(names), true) => FieldSet::of_names(names.iter().map(String::as_str)).map_err(|unknown| {
            ConfigError::new(
                "observability.access_log_fields",
                format!(
                    "`{unknown}` is not an access-log field; the fields are {}",
                    ACCESS_LOG_FIELDS.join(", ")
                ),
            )
        })?,
    };
    Ok(Observability {
        metrics: raw.metrics,
        access_log: raw.access_log,
        access_log_fields,
        gauge_interval_ms: raw.gauge_interval_ms,
        audit_max_chars: raw.audit_max_chars,
    })
}
