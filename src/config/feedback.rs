//! The `feedback` section: clients rate answers by their request id (see
//! `src/feedback.rs`). Absent means off: no endpoint, and nothing is
//! remembered per request.

use serde::Deserialize;

use super::within;
use crate::error::ConfigError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFeedback {
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub remember: Option<u32>,
    #[serde(default)]
    pub keep_s: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feedback {
    /// Where ratings are posted.
    pub path: String,
    /// How many recent answers can be rated: each Envoy remembers this
    /// many in shared data, a newer answer taking an older one's slot.
    pub remember: u32,
    /// With the fleet store: how long an answer stays ratable fleet-wide.
    pub keep_ms: u64,
}

const DEFAULT_PATH: &str = "/signalbox/feedback";
const DEFAULT_REMEMBER: u32 = 4096;
const MAX_REMEMBER: u64 = 1 << 20;
const DEFAULT_KEEP_S: u64 = 3_600;
const MAX_KEEP_S: u64 = 30 * 86_400;

pub fn resolve(raw: Option<&RawFeedback>) -> Result<Option<Feedback>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let path = raw.path.as_deref().unwrap_or(DEFAULT_PATH);
    if !super::is_request_path(path) {
        return Err(ConfigError::new(
            "feedback.path",
            format!("must be an absolute path such as `{DEFAULT_PATH}`"),
        ));
    }
    let remember = within(
        "feedback.remember",
        u64::from(raw.remember.unwrap_or(DEFAULT_REMEMBER)),
        (1, MAX_REMEMBER),
    )?;
    let keep_s = within(
        "feedback.keep_s",
        raw.keep_s.unwrap_or(DEFAULT_KEEP_S),
        (60, MAX_KEEP_S),
    )?;
    Ok(Some(Feedback {
        path: path.to_string(),
        remember: u32::try_from(remember).unwrap_or(u32::MAX),
        keep_ms: keep_s * 1000,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_refusals() {
        let empty = RawFeedback {
            path: None,
            remember: None,
            keep_s: None,
        };
        assert_eq!(
            resolve(Some(&empty)).unwrap(),
            Some(Feedback {
                path: DEFAULT_PATH.into(),
                remember: DEFAULT_REMEMBER,
                keep_ms: DEFAULT_KEEP_S * 1000,
            })
        );
        assert_eq!(resolve(None).unwrap(), None);
        let relative = RawFeedback {
            path: Some("feedback".into()),
            remember: None,
            keep_s: None,
        };
        assert_eq!(resolve(Some(&relative)).unwrap_err().path, "feedback.path");
        let none = RawFeedback {
            path: None,
            remember: Some(0),
            keep_s: None,
        };
        assert_eq!(resolve(Some(&none)).unwrap_err().path, "feedback.remember");
        for keep_s in [0, 59, 31 * 86_400] {
            let keep = RawFeedback {
                path: None,
                remember: None,
                keep_s: Some(keep_s),
            };
            assert_eq!(resolve(Some(&keep)).unwrap_err().path, "feedback.keep_s", "{keep_s}");
        }
    }
}
