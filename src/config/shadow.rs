//! A tenant's `shadow`: a sampled share of its whole chat answers from a
//! tier below the reference model's is also asked of that reference model
//! in the background, and the two answers compared (see `src/shadow.rs`):
//! by rules, or by a judge model when the tenant names one.

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
    #[serde(default)]
    pub judge: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shadow {
    /// The model every sampled answer is compared with.
    pub reference: ModelId,
    /// Share of eligible answers sampled, in (0, 1].
    pub share: f64,
    /// Shadow calls per minute at most, per Envoy: the evaluation's budget.
    pub max_per_minute: u32,
    /// The model that scores the two answers' agreement; `None`: the rules do.
    pub judge: Option<ModelId>,
}

impl Shadow {
    /// Budget units one sampled answer takes: its reference call, and its
    /// judge call when a judge model scores it.
    pub fn calls_per_sample(&self) -> u64 {
        if self.judge.is_some() {
            2
        } else {
            1
        }
    }
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
    let judge = raw
        .judge
        .as_ref()
        .map(|judge| {
            model_by_name
                .get(judge)
                .copied()
                .ok_or_else(|| ConfigError::new(format!("{path}.shadow.judge"), format!("unknown model `{judge}`")))
        })
        .transpose()?;
    let max_per_minute = raw.max_per_minute.unwrap_or(DEFAULT_MAX_PER_MINUTE);
    if max_per_minute == 0 {
        return Err(ConfigError::new(
            format!("{path}.shadow.max_per_minute"),
            "must be at least 1 (leave `shadow` out to turn it off)",
        ));
    }
    if judge.is_some() && max_per_minute < 2 {
        return Err(ConfigError::new(
            format!("{path}.shadow.max_per_minute"),
            "must be at least 2 with a `judge`: each sampled answer takes a reference call and a judge call",
        ));
    }
    Ok(Some(Shadow {
        reference,
        share: raw.share,
        max_per_minute,
        judge,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Option<Shadow>, ConfigError> {
        let models: HashMap<String, ModelId, ahash::RandomState> =
            [("strong".to_string(), 3), ("grader".to_string(), 5)]
                .into_iter()
                .collect();
        let raw: RawShadow = serde_json::from_str(json).unwrap();
        resolve("governance.tenants.t", Some(&raw), &models)
    }

    #[test]
    fn a_shadow_names_a_known_reference_a_share_and_a_budget() {
        let shadow = parse(r#"{"reference": "strong", "share": 0.05}"#).unwrap().unwrap();
        assert_eq!((shadow.reference, shadow.share, shadow.max_per_minute), (3, 0.05, 60));
        assert_eq!((shadow.judge, shadow.calls_per_sample()), (None, 1));
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

    #[test]
    fn a_judge_is_a_known_model_and_each_sample_then_takes_two_calls() {
        let shadow = parse(r#"{"reference": "strong", "share": 0.05, "judge": "grader"}"#)
            .unwrap()
            .unwrap();
        assert_eq!((shadow.judge, shadow.calls_per_sample()), (Some(5), 2));
        for (json, path) in [
            (
                r#"{"reference": "strong", "share": 0.05, "judge": "nope"}"#,
                "governance.tenants.t.shadow.judge",
            ),
            (
                r#"{"reference": "strong", "share": 0.05, "judge": "grader", "max_per_minute": 1}"#,
                "governance.tenants.t.shadow.max_per_minute",
            ),
        ] {
            assert_eq!(parse(json).unwrap_err().path, path, "{json}");
        }
    }
}
