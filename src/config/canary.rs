//! A tier's `canary`: a model taking a share of the tier's traffic first. The
//! share is fixed (`share`), or a rollout (`steps`) that moves up one step
//! after each clean observation window and back to zero on a breach of its
//! limits against the tier's other models (see `src/canary.rs`).

use std::collections::HashMap;

use serde::Deserialize;

use super::ModelId;
use crate::error::ConfigError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCanary {
    pub model: String,
    /// A fixed share of requests, between 0 and 1.
    #[serde(default)]
    pub share: Option<f64>,
    /// Shares of a rollout, in order.
    #[serde(default)]
    pub steps: Option<Vec<f64>>,
    #[serde(default)]
    pub window_s: Option<u64>,
    #[serde(default)]
    pub min_requests: Option<u32>,
    #[serde(default)]
    pub max_error_rate_increase: Option<f64>,
    #[serde(default)]
    pub max_latency_ratio: Option<f64>,
    #[serde(default)]
    pub max_cascade_rate_increase: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Canary {
    pub model: ModelId,
    /// The share when there is no rollout; the first step's otherwise.
    pub share: f64,
    pub rollout: Option<Rollout>,
}

/// How a canary's share moves by itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollout {
    /// Shares in (0, 1], increasing.
    pub steps: Vec<f64>,
    /// How long each step is observed before it moves up.
    pub window_ms: u64,
    /// Canary attempts a window needs before it is judged.
    pub min_requests: u32,
    /// The canary's error rate may exceed the baseline's by this much.
    pub max_error_rate_increase: f64,
    /// The canary's p95 latency (time to first token for streams) may be
    /// this many times the baseline's.
    pub max_latency_ratio: f64,
    /// The canary's cascade escalation rate may exceed the baseline's by
    /// this much (only checked when set, on a cascading tier).
    pub max_cascade_rate_increase: Option<f64>,
}

const DEFAULT_WINDOW_S: u64 = 300;
const DEFAULT_MIN_REQUESTS: u32 = 20;
const DEFAULT_MAX_ERROR_RATE_INCREASE: f64 = 0.02;
const DEFAULT_MAX_LATENCY_RATIO: f64 = 1.5;
/// More steps than this is not a rollout anyone waits for.
const MAX_STEPS: usize = 32;
/// A window longer than a week is a typo, not a rollout.
const MAX_WINDOW_S: u64 = 7 * 24 * 3600;

fn rate(path: String, value: Option<f64>, default: Option<f64>) -> Result<Option<f64>, ConfigError> {
    match value.or(default) {
        Some(rate) if !(0.0..=1.0).contains(&rate) => Err(ConfigError::new(path, "must be between 0 and 1")),
        rate => Ok(rate),
    }
}

pub fn resolve(
    path: &str,
    raw: &RawCanary,
    model_by_name: &HashMap<String, ModelId, ahash::RandomState>,
) -> Result<Canary, ConfigError> {
    let path = format!("{path}.canary");
    let model = *model_by_name
        .get(&raw.model)
        .ok_or_else(|| ConfigError::new(format!("{path}.model"), format!("unknown model `{}`", raw.model)))?;
    let Some(steps) = &raw.steps else {
        return fixed_share(&path, raw, model);
    };
    if raw.share.is_some() {
        return Err(ConfigError::new(
            format!("{path}.share"),
            "set either a fixed `share` or rollout `steps`, not both",
        ));
    }
    check_steps(&path, steps)?;
    Ok(Canary {
        model,
        share: steps[0],
        rollout: Some(resolve_rollout(&path, raw, steps)?),
    })
}

/// A canary without `steps`: its fixed `share`, and none of the rollout settings.
fn fixed_share(path: &str, raw: &RawCanary, model: ModelId) -> Result<Canary, ConfigError> {
    let rollout_keys = [
        raw.window_s.is_some(),
        raw.min_requests.is_some(),
        raw.max_error_rate_increase.is_some(),
        raw.max_latency_ratio.is_some(),
        raw.max_cascade_rate_increase.is_some(),
    ];
    if rollout_keys.contains(&true) {
        return Err(ConfigError::new(
            format!("{path}.steps"),
            "required with the rollout settings (window_s, min_requests, max_*)",
        ));
    }
    let share = raw
        .share
        .ok_or_else(|| ConfigError::new(format!("{path}.share"), "required (or `steps` for a rollout)"))?;
    if !(share > 0.0 && share < 1.0) {
        return Err(ConfigError::new(
            format!("{path}.share"),
            "must be between 0 and 1 (exclusive)",
        ));
    }
    Ok(Canary {
        model,
        share,
        rollout: None,
    })
}

/// A rollout's shares: 1 to `MAX_STEPS` of them, increasing, in (0, 1].
fn check_steps(path: &str, steps: &[f64]) -> Result<(), ConfigError> {
    if steps.is_empty() || steps.len() > MAX_STEPS {
        return Err(ConfigError::new(
            format!("{path}.steps"),
            format!("needs 1 to {MAX_STEPS} shares"),
        ));
    }
    for (index, step) in steps.iter().enumerate() {
        if !(*step > 0.0 && *step <= 1.0) {
            return Err(ConfigError::new(
                format!("{path}.steps[{index}]"),
                "must be above 0 and at most 1",
            ));
        }
        if index > 0 && *step <= steps[index - 1] {
            return Err(ConfigError::new(
                format!("{path}.steps[{index}]"),
                "must be greater than the step before it",
            ));
        }
    }
    Ok(())
}

/// How the rollout moves through `steps`: the window each is observed for
/// and the limits against the baseline that send it back to zero.
fn resolve_rollout(path: &str, raw: &RawCanary, steps: &[f64]) -> Result<Rollout, ConfigError> {
    let window_s = raw.window_s.unwrap_or(DEFAULT_WINDOW_S);
    if !(1..=MAX_WINDOW_S).contains(&window_s) {
        return Err(ConfigError::new(
            format!("{path}.window_s"),
            format!("must be between 1 and {MAX_WINDOW_S} seconds"),
        ));
    }
    let min_requests = raw.min_requests.unwrap_or(DEFAULT_MIN_REQUESTS);
    if min_requests == 0 {
        return Err(ConfigError::new(format!("{path}.min_requests"), "must be at least 1"));
    }
    let max_latency_ratio = raw.max_latency_ratio.unwrap_or(DEFAULT_MAX_LATENCY_RATIO);
    if !(max_latency_ratio.is_finite() && max_latency_ratio >= 1.0) {
        return Err(ConfigError::new(
            format!("{path}.max_latency_ratio"),
            "must be a number of at least 1",
        ));
    }
    Ok(Rollout {
        steps: steps.to_vec(),
        window_ms: window_s * 1000,
        min_requests,
        max_error_rate_increase: rate(
            format!("{path}.max_error_rate_increase"),
            raw.max_error_rate_increase,
            Some(DEFAULT_MAX_ERROR_RATE_INCREASE),
        )?
        .unwrap_or(DEFAULT_MAX_ERROR_RATE_INCREASE),
        max_latency_ratio,
        max_cascade_rate_increase: rate(
            format!("{path}.max_cascade_rate_increase"),
            raw.max_cascade_rate_increase,
            None,
        )?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn models() -> HashMap<String, ModelId, ahash::RandomState> {
        [("a".to_string(), 0), ("b".to_string(), 1)].into_iter().collect()
    }

    fn parse(json: &str) -> Result<Canary, ConfigError> {
        let raw: RawCanary = serde_json::from_str(json).unwrap();
        resolve("tiers[0]", &raw, &models())
    }

    #[test]
    fn a_fixed_share_or_a_rollout_with_defaults() {
        let fixed = parse(r#"{"model": "b", "share": 0.05}"#).unwrap();
        assert_eq!((fixed.model, fixed.share, fixed.rollout), (1, 0.05, None));
        let rollout = parse(r#"{"model": "b", "steps": [0.05, 0.25, 1.0]}"#).unwrap();
        assert_eq!(rollout.share, 0.05);
        let rollout = rollout.rollout.unwrap();
        assert_eq!(rollout.window_ms, 300_000);
        assert_eq!(rollout.min_requests, 20);
        assert_eq!(rollout.max_cascade_rate_increase, None);
    }

    #[test]
    fn bad_rollouts_name_the_field() {
        for (json, path) in [
            (r#"{"model": "z", "share": 0.1}"#, "tiers[0].canary.model"),
            (r#"{"model": "b"}"#, "tiers[0].canary.share"),
            (r#"{"model": "b", "share": 1.0}"#, "tiers[0].canary.share"),
            (
                r#"{"model": "b", "share": 0.1, "steps": [0.1]}"#,
                "tiers[0].canary.share",
            ),
            (
                r#"{"model": "b", "share": 0.1, "window_s": 60}"#,
                "tiers[0].canary.steps",
            ),
            (r#"{"model": "b", "steps": []}"#, "tiers[0].canary.steps"),
            (
                &format!(r#"{{"model": "b", "steps": [{}]}}"#, vec!["1.0"; 33].join(",")),
                "tiers[0].canary.steps",
            ),
            (r#"{"model": "b", "steps": [0.5, 0.25]}"#, "tiers[0].canary.steps[1]"),
            (r#"{"model": "b", "steps": [0.5, 1.5]}"#, "tiers[0].canary.steps[1]"),
            (
                r#"{"model": "b", "steps": [0.1], "window_s": 0}"#,
                "tiers[0].canary.window_s",
            ),
            (
                r#"{"model": "b", "steps": [0.1], "min_requests": 0}"#,
                "tiers[0].canary.min_requests",
            ),
            (
                r#"{"model": "b", "steps": [0.1], "max_error_rate_increase": 2}"#,
                "tiers[0].canary.max_error_rate_increase",
            ),
            (
                r#"{"model": "b", "steps": [0.1], "max_latency_ratio": 0.5}"#,
                "tiers[0].canary.max_latency_ratio",
            ),
            (
                r#"{"model": "b", "steps": [0.1], "max_cascade_rate_increase": -0.1}"#,
                "tiers[0].canary.max_cascade_rate_increase",
            ),
        ] {
            assert_eq!(parse(json).unwrap_err().path, path, "{json}");
        }
    }
}
