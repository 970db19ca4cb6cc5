//! A tenant's `shadow`: a sampled share of its whole chat answers from a
//! tier below the reference model's is also asked of that reference model
//! in the background, and the two answers compared (see `src/shadow.rs`).

use std::collections::HashMap;

use serde::Deserialize;

use super::ModelId;
use crate::error::ConfigError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawShadow {
    pub reference: String,
    pub share: f64,
    #[serde(default)]
    pub max_per_minute: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shadow {
    /// The model every sampled answer is compared with.
    pub reference: ModelId,
    /// Share of eligible answers sampled, in (0, 1].
    pub share: f64,
    /// Shadow calls per minute at most, per Envoy: the evaluation's budget.
    pub max_per_minute: u32,
}

const DEFAULT_MAX_PER_MINUTE: u32 = 60;

pub fn resolve(
    path: &str,
    raw: Option<&RawShadow>,
    model_by_name: &HashMap<String, ModelId, ahash::RandomState>,
) -> Result<Option<Shadow>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let reference = *model_by_name.get(&raw.reference).ok_or_else(|| {
        ConfigError::new(
            format!("{path}.shadow.reference"),
            format!("unknown model `{}`", raw.reference),
        )
    })?;
    if !(raw.share > 0.0 && raw.share <= 1.0) {
        return Err(ConfigError::new(
            format!("{path}.shadow.share"),
            "must be above 0 and at most 1",
        ));
    }
    let max_per_minute = raw.max_per_minute.unwrap_or(DEFAULT_MAX_PER_MINUTE);
    if max_per_minute == 0 {
        return Err(ConfigError::new(
            format!("{path}.shadow.max_per_minute"),
            "must be at least 1 (leave `shadow` out to turn it off)",
        ));
    }
    Ok(Some(Shadow {
        reference,
        share: raw.share,
        max_per_minute,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Option<Shadow>, ConfigError> {
        let models: HashMap<String, ModelId, ahash::RandomState> = [("strong".to_string(), 3)].into_iter().collect();
        let raw: RawShadow = serde_json::from_str(json).unwrap();
        resolve("governance.tenants.t", Some(&raw), &models)
    }

    #[test]
    fn a_shadow_names_a_known_reference_a_share_and_a_budget() {
        let shadow = parse(r#"{"reference": "strong", "share": 0.05}"#).unwrap().unwrap();
        assert_eq!((shadow.reference, shadow.share, shadow.max_per_minute), (3, 0.05, 60));
        for (json, path) in [
            (
                r#"{"reference": "nope", "share": 0.05}"#,
                "governance.tenants.t.shadow.reference",
            ),
            (
                r#"{"reference": "strong", "share": 0}"#,
                "governance.tenants.t.shadow.share",
            ),
            (
                r#"{"reference": "strong", "share": 1.5}"#,
                "governance.tenants.t.shadow.share",
            ),
            (
                r#"{"reference": "strong", "share": 0.5, "max_per_minute": 0}"#,
                "governance.tenants.t.shadow.max_per_minute",
            ),
        ] {
            assert_eq!(parse(json).unwrap_err().path, path, "{json}");
        }
    }
}
