//! Token usage in one provider-neutral shape, and its OpenAI rendering.
//!
//! Providers split a prompt differently: OpenAI and Gemini report a total
//! that includes cached tokens, Anthropic and Bedrock report fresh, cached
//! and cache-write tokens separately. [`TokenUsage`] keeps the three apart
//! because they are priced apart.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

/// Tokens one answer cost.
///
/// `input` is the *uncached* prompt only: it excludes both `cached_input`
/// (tokens read from a prompt cache) and `cache_write` (tokens written to
/// one). The whole prompt is `input + cached_input + cache_write`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenUsage {
    pub input: u64,
    pub cached_input: u64,
    pub cache_write: u64,
    pub output: u64,
}

impl TokenUsage {
    /// Every prompt token, cached or not (OpenAI's `prompt_tokens`).
    pub fn prompt_total(&self) -> u64 {
        self.input
            .saturating_add(self.cached_input)
            .saturating_add(self.cache_write)
    }

    pub fn total(&self) -> u64 {
        self.prompt_total().saturating_add(self.output)
    }

    /// From OpenAI's counts, where `prompt_tokens` includes the cached part.
    pub(crate) fn from_openai(usage: &OpenAiUsage) -> TokenUsage {
        let cached = usage
            .prompt_tokens_details
            .as_ref()
            .and_then(|details| details.cached_tokens)
            .unwrap_or(0);
        TokenUsage {
            input: usage.prompt_tokens.saturating_sub(cached),
            cached_input: cached.min(usage.prompt_tokens),
            cache_write: 0,
            output: usage.completion_tokens,
        }
    }

    /// The OpenAI `usage` object for this usage.
    pub(crate) fn to_openai(self) -> OpenAiUsage {
        OpenAiUsage {
            prompt_tokens: self.prompt_total(),
            completion_tokens: self.output,
            total_tokens: self.total(),
            prompt_tokens_details: Some(PromptDetails {
                cached_tokens: Some(self.cached_input),
            }),
        }
    }
}

/// A provider's usage object, or `None` when it cannot be read (a negative,
/// fractional or quoted count): the answer is still the client's, and the
/// request is billed its estimate, as when a provider reports no usage.
/// For `#[serde(default, deserialize_with = ...)]` on a usage field.
pub(crate) fn unreadable_as_none<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    let Some(raw) = Option::<Box<serde_json::value::RawValue>>::deserialize(deserializer)? else {
        return Ok(None);
    };
    match serde_json::from_str(raw.get()) {
        Ok(usage) => Ok(usage),
        Err(err) => {
            log::warn!("a provider's usage is unreadable ({err}): the request is billed its estimate");
            Ok(None)
        }
    }
}

/// OpenAI's `usage` object, read from OpenAI-family answers and written for
/// translated ones.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OpenAiUsage {
    /// `input_tokens` in the Responses API's answers, read alike.
    #[serde(default, alias = "input_tokens")]
    pub prompt_tokens: u64,
    #[serde(default, alias = "output_tokens")]
    pub completion_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
    #[serde(default, alias = "input_tokens_details", skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PromptDetails {
    #[serde(default)]
    pub cached_tokens: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_prompt_tokens_include_the_cached_ones() {
        let usage: OpenAiUsage = serde_json::from_str(
            r#"{"prompt_tokens":100,"completion_tokens":7,"total_tokens":107,"prompt_tokens_details":{"cached_tokens":60}}"#,
        )
        .unwrap();
        let usage = TokenUsage::from_openai(&usage);
        assert_eq!(
            usage,
            TokenUsage {
                input: 40,
                cached_input: 60,
                cache_write: 0,
                output: 7
            }
        );
        assert_eq!(usage.prompt_total(), 100);
    }

    #[test]
    fn cached_tokens_larger_than_the_prompt_never_underflow() {
        let usage: OpenAiUsage =
            serde_json::from_str(r#"{"prompt_tokens":5,"prompt_tokens_details":{"cached_tokens":9}}"#).unwrap();
        let usage = TokenUsage::from_openai(&usage);
        assert_eq!((usage.input, usage.cached_input), (0, 5));
    }

    #[test]
    fn the_openai_rendering_counts_every_prompt_token() {
        let usage = TokenUsage {
            input: 10,
            cached_input: 20,
            cache_write: 30,
            output: 4,
        };
        let json = serde_json::to_value(usage.to_openai()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"prompt_tokens": 60, "completion_tokens": 4, "total_tokens": 64,
                "prompt_tokens_details": {"cached_tokens": 20}})
        );
    }
}
