//! The `affinity` section: which request facts name a conversation, so that
//! its turns keep one deployment (model and key) and the provider's prompt
//! cache stays warm. Absent means no affinity: weighted splits, canaries and
//! key choice are drawn at random per request.

use serde::Deserialize;

use super::check_header_name;
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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Affinity {
    pub sources: Vec<AffinitySource>,
    /// Lowercase header name read for `session_header`.
    pub session_header: String,
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
    }))
}
