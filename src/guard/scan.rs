//! The single pass that drives every PII and secret detector.
//!
//! The text is skipped eight bytes at a time to the next trigger byte (a
//! digit, a capital, `:;<=>?@`, `-` or `_`): lower-case prose costs almost
//! nothing. Around a trigger the whitespace-separated token is read and the
//! byte classes it holds are OR-ed together; that mask wakes only the
//! detectors that can start there. A detector validates its candidate (check digits,
//! number plans, entropy) and may read past the token (a card written in
//! groups, an address). Overlapping findings are settled at the end: the
//! earliest wins, then the longest.
//!
//! Work is linear: each detector reads a bounded window from its trigger,
//! and a token that no detector wants costs one table lookup per byte.

use super::{address, identifiers, numbers, secrets, Category, CategorySet, Finding};

/// Byte classes, OR-ed per token to decide which detectors to wake.
pub(super) const DIGIT: u8 = 1;
pub(super) const UPPER: u8 = 1 << 1;
const AT: u8 = 1 << 2;
const COLON: u8 = 1 << 3;
/// `-` and `_`: inside key prefixes (`sk-`, `ghp_`) and PEM armour.
const JOINER: u8 = 1 << 4;
const EQUALS: u8 = 1 << 5;
const SPACE: u8 = 1 << 6;
const LOWER: u8 = 1 << 7;

const CLASSES: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut byte = 0;
    while byte < 256 {
        table[byte] = match byte as u8 {
            b'0'..=b'9' => DIGIT,
            b'A'..=b'Z' => UPPER,
            b'a'..=b'z' => LOWER,
            b'@' => AT,
            b':' => COLON,
            b'-' | b'_' => JOINER,
            b'=' => EQUALS,
            b' ' | b'\t' | b'\n' | b'\r' => SPACE,
            _ => 0,
        };
        byte += 1;
    }
    table
};

/// What a detector sees: the text, which categories are wanted, and where
/// findings go.
pub(super) struct Scan<'t> {
    pub text: &'t str,
    pub bytes: &'t [u8],
    wanted: CategorySet,
    findings: Vec<Finding>,
    /// Digit runs are read across spaces; a token inside one already read
    /// must not start a new run (`1111 1111` of a card is no Aadhaar).
    pub digits_read_to: usize,
    /// End of the last private-key block found.
    pub inside_private_key_until: usize,
}

impl<'t> Scan<'t> {
    /// Records a finding; spans always fall on character boundaries because
    /// detectors start and stop on ASCII bytes.
    pub fn found(&mut self, category: Category, start: usize, end: usize) {
        if self.wanted.contains(category)
            && start < end
            && self.text.is_char_boundary(start)
            && self.text.is_char_boundary(end)
        {
            self.findings.push(Finding {
                category,
                span: start..end,
            });
        }
    }

    pub fn byte(&self, index: usize) -> u8 {
        self.bytes.get(index).copied().unwrap_or(b' ')
    }

    /// The byte before `index`, a space at the start of the text.
    pub fn byte_before(&self, index: usize) -> u8 {
        index.checked_sub(1).map_or(b' ', |before| self.byte(before))
    }
}

/// Every finding of the `wanted` categories in `text`, sorted by position
/// and never overlapping.
pub fn scan(text: &str, wanted: CategorySet) -> Vec<Finding> {
    if wanted.is_empty() {
        return Vec::new();
    }
    let mut scan = Scan {
        text,
        bytes: text.as_bytes(),
        wanted,
        findings: Vec::new(),
        digits_read_to: 0,
        inside_private_key_until: 0,
    };
    let bytes = scan.bytes;
    let mut cursor = 0;
    while let Some(hit) = next_trigger(bytes, cursor) {
        let mut start = hit;
        while start > cursor && !is_space(bytes.get(start - 1)) {
            start -= 1;
        }
        let mut end = hit;
        let mut mask = 0u8;
        while let Some(&byte) = bytes.get(end) {
            let class = CLASSES[usize::from(byte)];
            if class & SPACE != 0 {
                break;
            }
            mask |= class;
            end += 1;
        }
        inspect_token(&mut scan, start, end, mask);
        cursor = end;
    }
    settle(scan.findings)
}

fn is_space(byte: Option<&u8>) -> bool {
    byte.is_some_and(|&byte| CLASSES[usize::from(byte)] & SPACE != 0)
}

/// Bytes that can start or mark a finding: digits, `:;<=>?@`, capitals
/// (the ASCII range `0`..=`Z`), `-` and `_`. Everything else, lower-case
/// prose above all, is skipped eight bytes at a time.
fn is_trigger(byte: u8) -> bool {
    (b'0'..=b'Z').contains(&byte) || byte == b'-' || byte == b'_'
}

/// Index of the first trigger byte at or after `from`.
fn next_trigger(bytes: &[u8], from: usize) -> Option<usize> {
    const LOW: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut cursor = from;
    while let Some(chunk) = bytes.get(cursor..cursor + 8) {
        let word = u64::from_le_bytes(chunk.try_into().ok()?);
        let ascii = word & !HIGH;
        // High bit of each lane set when `0x30 <= byte <= 0x5A` (ASCII only).
        let in_range = (ascii + LOW * (0x80 - 0x30)) & !(ascii + LOW * (0x80 - 0x5B)) & !word & HIGH;
        // Any lane equal to `-` or `_` (may over-report; the bytes are checked below).
        let dash = word ^ (LOW * u64::from(b'-'));
        let underscore = word ^ (LOW * u64::from(b'_'));
        let joiner = (dash.wrapping_sub(LOW) & !dash | underscore.wrapping_sub(LOW) & !underscore) & HIGH;
        if in_range | joiner != 0 {
            if let Some(offset) = chunk.iter().position(|&byte| is_trigger(byte)) {
                return Some(cursor + offset);
            }
        }
        cursor += 8;
    }
    let tail = bytes.get(cursor..)?;
    tail.iter()
        .position(|&byte| is_trigger(byte))
        .map(|offset| cursor + offset)
}

/// Wakes the detectors a token's byte classes allow.
fn inspect_token(scan: &mut Scan<'_>, start: usize, end: usize, mask: u8) {
    if mask & !(LOWER | SPACE) == 0 {
        return;
    }
    let length = end - start;
    let digits = mask & DIGIT != 0;
    if digits {
        numbers::detect(scan, start, end);
        address::detect_numbered(scan, start, end);
    }
    if mask & AT != 0 {
        identifiers::detect_emails(scan, start, end);
    }
    if mask & UPPER != 0 {
        // IBANs, PANs and GSTINs all hold digits.
        if digits {
            identifiers::detect_upper_identifiers(scan, start, end);
        }
        address::detect_named(scan, start, end);
    }
    if mask & COLON != 0 {
        identifiers::detect_ipv6(scan, start, end);
    }
    if mask & (COLON | EQUALS) != 0 {
        secrets::detect_assignment(scan, start, end);
    }
    if mask & JOINER != 0 && scan.byte(start) == b'-' {
        secrets::detect_private_key(scan, start);
    }
    if length >= secrets::SHORTEST_KNOWN_FORMAT {
        secrets::detect_token(scan, start, end, digits);
    }
    if length == secrets::BEARER.len() || length >= secrets::SHORTEST_BEARER_TOKEN {
        secrets::detect_bearer(scan, start, end);
    }
}

/// Sorts findings and drops any that overlaps one kept before it: the
/// earliest start wins, then the longest span.
fn settle(mut findings: Vec<Finding>) -> Vec<Finding> {
    findings.sort_by(|a, b| a.span.start.cmp(&b.span.start).then(b.span.end.cmp(&a.span.end)));
    let mut kept: Vec<Finding> = Vec::with_capacity(findings.len());
    for finding in findings {
        if kept.last().is_none_or(|last| last.span.end <= finding.span.start) {
            kept.push(finding);
        }
    }
    kept
}

/// Letters, digits and any byte of a non-ASCII character: what a value
/// must not touch on either side to count as a whole token.
pub(super) fn is_word_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte >= 0x80
}

/// Whether one of `keywords` (lower-case ASCII) starts a word,
/// case-insensitively, in the `window` bytes before `start`. Keywords may be
/// stems: "call" also finds "calling", but not "recall".
pub(super) fn keyword_before(bytes: &[u8], start: usize, window: usize, keywords: &[&str]) -> bool {
    let mut lowered = [0u8; 64];
    let from = start.saturating_sub(window.min(lowered.len()));
    let Some(before) = bytes.get(from..start) else {
        return false;
    };
    for (slot, byte) in lowered.iter_mut().zip(before) {
        *slot = byte.to_ascii_lowercase();
    }
    let lowered = lowered.get(..before.len()).unwrap_or_default();
    // Windows are a few dozen bytes: a plain search beats building a
    // substring finder per keyword.
    keywords.iter().any(|keyword| {
        let keyword = keyword.as_bytes();
        lowered.windows(keyword.len()).enumerate().any(|(at, window)| {
            window.first() == keyword.first()
                && window == keyword
                && (at == 0 || lowered.get(at - 1).is_none_or(|byte| !byte.is_ascii_alphabetic()))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::super::found;
    use super::*;

    #[test]
    fn empty_and_plain_text_have_no_findings() {
        assert!(found("").is_empty());
        assert!(found("   \n\t").is_empty());
        assert!(found("the quick brown fox jumps over the lazy dog").is_empty());
    }

    #[test]
    fn triggers_are_found_in_every_lane_and_in_the_tail() {
        let text = "abcdefghijklmnopqrstuvwxyz";
        for (index, trigger) in
            (0..text.len()).flat_map(|index| [(index, 'Q'), (index, '7'), (index, '-'), (index, '_'), (index, '@')])
        {
            let mut probe: Vec<u8> = text.bytes().collect();
            probe[index] = trigger as u8;
            assert_eq!(next_trigger(&probe, 0), Some(index), "{trigger} at {index}");
        }
        assert_eq!(next_trigger(text.as_bytes(), 0), None);
        assert_eq!(next_trigger("é日本語 ünïcödé".as_bytes(), 0), None);
    }

    #[test]
    fn only_wanted_categories_are_reported() {
        let text = "mail jane@example.com, card 4111 1111 1111 1111";
        let wanted: CategorySet = [Category::Card].into_iter().collect();
        let findings = scan(text, wanted);
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].category, Category::Card);
        assert!(scan(text, CategorySet::NONE).is_empty());
    }

    #[test]
    fn overlapping_findings_keep_the_earliest_then_the_longest() {
        let finding = |category, span| Finding { category, span };
        let settled = settle(vec![
            finding(Category::Phone, 5..9),
            finding(Category::StreetAddress, 0..20),
            finding(Category::Email, 0..4),
            finding(Category::Card, 25..30),
        ]);
        assert_eq!(
            settled,
            vec![finding(Category::StreetAddress, 0..20), finding(Category::Card, 25..30)]
        );
    }

    #[test]
    fn any_utf8_and_odd_bytes_never_panic() {
        let samples = [
            "é@ü.de 4111\u{200b}1111 ＋１ ４１５",
            "@@@@ :::: ---- ____ ==== ++++ (((( ))))",
            "+",
            "(",
            "sk-",
            "-----BEGIN",
            "eyJ.eyJ.",
            "DE89",
            "1",
            "日本語のテキスト 090-1234-5678 です",
        ];
        for sample in samples {
            for end in 0..=sample.len() {
                if let Some(prefix) = sample.get(..end) {
                    let _ = found(prefix);
                }
            }
        }
    }

    #[test]
    fn keywords_are_found_before_a_position_case_insensitively() {
        let text = b"my API_KEY is: abc";
        assert!(keyword_before(text, 15, 32, &["key"]));
        assert!(!keyword_before(text, 15, 32, &["secret"]));
        assert!(!keyword_before(text, 0, 32, &["key"]));
        assert!(!keyword_before(b"please recall 12", 14, 32, &["call"]));
    }
}
