//! The `affinity` section: which request facts name a conversation, so that
//! its turns keep one deployment (model and key) and the provider's prompt
//! cache stays warm, and (with `pin_tier`) its tier. Absent means no
//! affinity: weighted splits, canaries and key choice are drawn at random
//! per request, and each turn is scored on its own.

use serde::Deserialize;

use super::{check_header_name, within};
use crate::error::ConfigError;

/// What can name a conversation, tried in the configured order; the first
/// one a request carries decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AffinitySource {
    /// The value of `session_header`.
    SessionHeader,
    /// OpenAI's `prompt_cache_key` (Codex sends its session id there).
    PromptCacheKey,
    /// OpenAI's `user`, Anthropic's `metadata.user_id` (Claude Code puts its
    /// session in it), the Responses API's `user` or `safety_identifier`.
    User,
    /// The conversation's opening: its system prompt and first user message.
    Prefix,
}

impl AffinitySource {
    pub fn name(self) -> &'static str {
        match self {
            AffinitySource::SessionHeader => "session_header",
            AffinitySource::PromptCacheKey => "prompt_cache_key",
            AffinitySource::User => "user",
            AffinitySource::Prefix => "prefix",
        }
    }
}

const DEFAULT_SOURCES: [AffinitySource; 4] = [
    AffinitySource::SessionHeader,
    AffinitySource::PromptCacheKey,
    AffinitySource::User,
    AffinitySource::Prefix,
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAffinity {
    #[serde(default)]
    pub sources: Option<Vec<AffinitySource>>,
    #[serde(default)]
    pub session_header: Option<String>,
    #[serde(default)]
    pub pin_tier: Option<RawTierPinning>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTierPinning {
    #[serde(default)]
    pub margin: Option<f64>,
    #[serde(default)]
    pub remember: Option<u32>,
    #[serde(default)]
    pub idle_s: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Affinity {
    pub sources: Vec<AffinitySource>,
    /// Lowercase header name read for `session_header`.
    pub session_header: String,
    pub pin_tier: Option<TierPinning>,
}

/// A conversation keeps the tier its turns were routed to: a later turn
/// scored for a lower tier stays, one scored for a higher tier moves up only
/// when its score clears the pinned tier's bound by `margin`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TierPinning {
    pub margin: f64,
    /// Conversations remembered per Envoy (a ring of shared-data slots).
    pub remember: u32,
    /// A conversation idle this long is scored afresh.
    pub idle_ms: u64,
}

const DEFAULT_MARGIN: f64 = 0.1;
const DEFAULT_REMEMBER: u32 = 8192;
const MAX_REMEMBER: u64 = 1 << 20;
const DEFAULT_IDLE_S: u64 = 3600;
const MAX_IDLE_S: u64 = 7 * 86_400;

fn resolve_pinning(raw: Option<&RawTierPinning>) -> Result<Option<TierPinning>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    let margin = raw.margin.unwrap_or(DEFAULT_MARGIN);
    if !(0.0..=1.0).contains(&margin) {
        return Err(ConfigError::new("affinity.pin_tier.margin", "must be between 0 and 1"));
    }
    let remember = within(
        "affinity.pin_tier.remember",
        u64::from(raw.remember.unwrap_or(DEFAULT_REMEMBER)),
        (1, MAX_REMEMBER),
    )?;
    let idle_s = within(
        "affinity.pin_tier.idle_s",
        raw.idle_s.unwrap_or(DEFAULT_IDLE_S),
        (1, MAX_IDLE_S),
    )?;
    Ok(Some(TierPinning {
        margin,
        remember: u32::try_from(remember).unwrap_or(u32::MAX),
        idle_ms: idle_s * 1000,
    }))
}

const DEFAULT_SESSION_HEADER: &str = "x-session-id";

pub fn resolve(raw: Option<&RawAffinity>) -> Result<Option<Affinity>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let sources = raw.sources.clone().unwrap_or_else(|| DEFAULT_SOURCES.to_vec());
    if sources.is_empty() {
        return Err(ConfigError::new(
            "affinity.sources",
            "must name at least one source (leave `affinity` out to turn it off)",
        ));
    }
    for (position, source) in sources.iter().enumerate() {
        if sources[..position].contains(source) {
            return Err(ConfigError::new(
                format!("affinity.sources[{position}]"),
                format!("`{}` is listed twice", source.name()),
            ));
        }
    }
    let session_header = raw.session_header.as_deref().unwrap_or(DEFAULT_SESSION_HEADER);
    check_header_name("affinity.session_header", session_header)?;
    if raw.session_header.is_some() && !sources.contains(&AffinitySource::SessionHeader) {
        return Err(ConfigError::new(
            "affinity.session_header",
            "is set but `session_header` is not in `affinity.sources`",
        ));
    }
    Ok(Some(Affinity {
        sources,
        session_header: session_header.to_string(),
        pin_tier: resolve_pinning(raw.pin_tier.as_ref())?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Option<Affinity>, ConfigError> {
        let raw: RawAffinity = serde_json::from_str(json).unwrap();
        resolve(Some(&raw))
    }

    #[test]
    fn tier_pinning_has_defaults_and_refuses_bad_values_by_name() {
        let pinned = parse(r#"{"pin_tier": {}}"#).unwrap().unwrap();
        assert_eq!(
            pinned.pin_tier,
            Some(TierPinning {
                margin: 0.1,
                remember: 8192,
                idle_ms: 3_600_000
            })
        );
        assert_eq!(parse("{}").unwrap().unwrap().pin_tier, None);
        for (json, path) in [
            (r#"{"pin_tier": {"margin": -0.1}}"#, "affinity.pin_tier.margin"),
            (r#"{"pin_tier": {"margin": 1.5}}"#, "affinity.pin_tier.margin"),
            (r#"{"pin_tier": {"remember": 0}}"#, "affinity.pin_tier.remember"),
            (r#"{"pin_tier": {"idle_s": 0}}"#, "affinity.pin_tier.idle_s"),
        ] {
            assert_eq!(parse(json).unwrap_err().path, path, "{json}");
        }
    }
}
