//! A tier's `cascade`: its whole (non-streamed) chat answers are assessed
//! (see `src/assess.rs`), and one judged weak is not returned but re-sent
//! to the first link of a stronger tier in the request's chain. Absent means
//! the tier's answers go to the client as they come.

use serde::Deserialize;

use crate::error::ConfigError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCascade {
    #[serde(default)]
    pub threshold: Option<f64>,
    #[serde(default)]
    pub min_mean_logprob: Option<f64>,
    #[serde(default)]
    pub stream_tokens: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cascade {
    /// An answer whose assessed quality is below this escalates.
    pub threshold: f64,
    /// An answer whose tokens' mean log-probability (when the provider
    /// returned logprobs) is below this is of low confidence.
    pub min_mean_logprob: f64,
    /// Streams too: their first this many output tokens are held and
    /// assessed before the client sees any (0: streams are not assessed).
    pub stream_tokens: u32,
}

const DEFAULT_THRESHOLD: f64 = 0.5;
const DEFAULT_MIN_MEAN_LOGPROB: f64 = -1.0;
/// Enough for the longest refusal opening to be whole in the held start,
/// however the stream's bytes happen to be cut.
const MIN_STREAM_TOKENS: u32 = 16;
const MAX_STREAM_TOKENS: u32 = 512;

/// The cascade of tier `path`; `is_last` tiers have nothing to escalate to.
pub fn resolve(path: &str, raw: Option<&RawCascade>, is_last: bool) -> Result<Option<Cascade>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    if is_last {
        return Err(ConfigError::new(
            format!("{path}.cascade"),
            "the last tier has no stronger tier to escalate to",
        ));
    }
    let threshold = raw.threshold.unwrap_or(DEFAULT_THRESHOLD);
    if !(threshold > 0.0 && threshold <= 1.0) {
        return Err(ConfigError::new(
            format!("{path}.cascade.threshold"),
            "must be above 0 and at most 1",
        ));
    }
    let min_mean_logprob = raw.min_mean_logprob.unwrap_or(DEFAULT_MIN_MEAN_LOGPROB);
    if !(min_mean_logprob.is_finite() && min_mean_logprob < 0.0) {
        return Err(ConfigError::new(
            format!("{path}.cascade.min_mean_logprob"),
            "must be a negative number (a log-probability)",
        ));
    }
    let stream_tokens = raw.stream_tokens.unwrap_or(0);
    if stream_tokens != 0 && !(MIN_STREAM_TOKENS..=MAX_STREAM_TOKENS).contains(&stream_tokens) {
        return Err(ConfigError::new(
            format!("{path}.cascade.stream_tokens"),
            format!(
                "must be 0 (streams not assessed) or {MIN_STREAM_TOKENS} to {MAX_STREAM_TOKENS}: \
                 a refusal's opening must fit, and the client waits for them"
            ),
        ));
    }
    Ok(Some(Cascade {
        threshold,
        min_mean_logprob,
        stream_tokens,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(threshold: Option<f64>, min_mean_logprob: Option<f64>) -> RawCascade {
        RawCascade {
            threshold,
            min_mean_logprob,
            stream_tokens: None,
        }
    }

    #[test]
    fn defaults_fill_an_empty_cascade() {
        assert_eq!(
            resolve("tiers[0]", Some(&raw(None, None)), false).unwrap(),
            Some(Cascade {
                threshold: DEFAULT_THRESHOLD,
                min_mean_logprob: DEFAULT_MIN_MEAN_LOGPROB,
                stream_tokens: 0,
            })
        );
        assert_eq!(resolve("tiers[0]", None, false).unwrap(), None);
    }

    #[test]
    fn out_of_range_settings_and_a_cascade_on_the_last_tier_are_refused() {
        let refused =
            |cascade: RawCascade, is_last: bool| resolve("tiers[1]", Some(&cascade), is_last).unwrap_err().path;
        assert_eq!(refused(raw(None, None), true), "tiers[1].cascade");
        for threshold in [0.0, -0.1, 1.5, f64::NAN] {
            assert_eq!(refused(raw(Some(threshold), None), false), "tiers[1].cascade.threshold");
        }
        for floor in [0.0, 0.5, f64::NEG_INFINITY] {
            assert_eq!(
                refused(raw(None, Some(floor)), false),
                "tiers[1].cascade.min_mean_logprob"
            );
        }
    }
}
