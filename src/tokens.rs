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

/// Estimated tokens of `text`: four ASCII bytes a token, but never fewer
/// than its pieces — a tokenizer does not merge across a space or a
/// punctuation mark, so `a a a a` or `[0,0,0]` cost about a token per
/// letter, digit run or mark, not a quarter of their bytes.
pub fn estimate(text: &str) -> u32 {
    let bytes = text.as_bytes();
    let (ascii, non_ascii_chars) = count_ascii_and_chars(bytes);
    from_counts(ascii, non_ascii_chars).max(u32::try_from(count_pieces(bytes)).unwrap_or(u32::MAX))
}

/// Runs of letters and digits (non-ASCII bytes included) plus ASCII
/// punctuation marks: a floor of what a BPE tokenizer makes of `bytes`.
fn count_pieces(bytes: &[u8]) -> usize {
    let mut pieces = 0usize;
    let mut in_word = false;
    for &byte in bytes {
        let word = byte.is_ascii_alphanumeric() || byte >= 0x80;
        pieces += usize::from((word && !in_word) || (!word && !byte.is_ascii_whitespace()));
        in_word = word;
    }
    pieces
}

/// Estimate from separately gathered counts (see [`count_ascii_and_chars`]).
pub fn from_counts(ascii_bytes: usize, non_ascii_chars: usize) -> u32 {
    let tokens = ascii_bytes.div_ceil(4) + (non_ascii_chars * 4).div_ceil(5);
    u32::try_from(tokens).unwrap_or(u32::MAX)
}

/// ASCII bytes and non-ASCII characters (UTF-8 lead bytes) in `bytes`.
pub fn count_ascii_and_chars(bytes: &[u8]) -> (usize, usize) {
    if bytes.is_ascii() {
        return (bytes.len(), 0);
    }
    // Branch-free sums over fixed chunks: the compiler vectorizes these.
    let mut ascii = 0usize;
    let mut leads = 0usize;
    for chunk in bytes.chunks(192) {
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
    fn short_words_and_marks_cost_at_least_a_token_each() {
        assert_eq!(estimate(&"a ".repeat(100)), 100);
        assert_eq!(estimate(&format!("[{}0]", "0,".repeat(99))), 201);
        // Ordinary prose stays at about four characters a token.
        assert_eq!(estimate("The quick brown fox jumps over the lazy dog."), 11);
    }

    #[test]
    fn empty_text_costs_nothing() {
        assert_eq!(estimate(""), 0);
    }
}
