//! Token estimates without a tokenizer.
//!
//! BPE vocabularies average about four characters of English per token, while
//! CJK and other non-Latin scripts cost close to one token per character. The
//! estimate counts ASCII bytes and non-ASCII characters separately so a
//! Chinese prompt is not under-counted fourfold against a context window.

/// Tokens a chat message costs beyond its text (role, separators).
pub const PER_MESSAGE_OVERHEAD: u32 = 4;

/// Tokens an image costs, whatever its size: a conservative fixed cost
/// (Anthropic's and OpenAI's largest standard images cost about 1,600
/// tokens; a low-detail one far less). The base64 bytes are not text and
/// are not counted.
pub const IMAGE_TOKENS: u32 = 1_600;

/// Tokens an audio input part costs, whatever its length: a fixed cost like
/// an image's (about a minute of speech at OpenAI's input rates). A longer
/// clip is under-counted; its bytes still count against `max_body_bytes`.
pub const AUDIO_TOKENS: u32 = 1_600;

/// Tokens a document costs when its pages are unknown: about three pages
/// of text and page images.
pub const DOCUMENT_TOKENS: u32 = 6_000;

/// Estimated tokens of `text`.
pub fn estimate(text: &str) -> u32 {
    let (ascii, non_ascii_chars) = count_ascii_and_chars(text.as_bytes());
    from_counts(ascii, non_ascii_chars)
}

/// Estimate from separately gathered counts (see [`count_ascii_and_chars`]).
pub fn from_counts(ascii_bytes: usize, non_ascii_chars: usize) -> u32 {
    let tokens = ascii_bytes.div_ceil(4) + (non_ascii_chars * 4).div_ceil(5);
    u32::try_from(tokens).unwrap_or(u32::MAX)
}

/// ASCII bytes and non-ASCII characters (UTF-8 lead bytes) in `bytes`.
pub fn count_ascii_and_chars(bytes: &[u8]) -> (usize, usize) {
    // Branch-free sums over fixed chunks: the compiler vectorizes these.
    let mut ascii = 0usize;
    let mut leads = 0usize;
    for chunk in bytes.chunks(255) {
        let (chunk_ascii, chunk_leads) = chunk.iter().fold((0u8, 0u8), |(a, l), &b| {
            (a + u8::from(b < 0x80), l + u8::from(b >= 0xC0))
        });
        ascii += usize::from(chunk_ascii);
        leads += usize::from(chunk_leads);
    }
    (ascii, leads)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn english_is_about_four_characters_a_token() {
        assert_eq!(estimate("abcd".repeat(100).as_str()), 100);
    }

    #[test]
    fn cjk_costs_nearly_a_token_per_character() {
        let text = "路由器".repeat(10);
        assert_eq!(estimate(&text), 24);
    }

    #[test]
    fn empty_text_costs_nothing() {
        assert_eq!(estimate(""), 0);
    }
}
