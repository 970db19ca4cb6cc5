//! Numbers written with digits: payment cards, US SSNs, Aadhaar numbers,
//! phone numbers and IPv4 addresses.
//!
//! A [`DigitRun`] is read once from its first digit (or a leading `+` or
//! `(`): groups of digits joined by single separators (space, `-`, `.`, `/`,
//! parentheses). Then the longest run of whole groups that validates as
//! something wins, left to right, so two phone numbers written side by side
//! are two findings. Whatever validates nothing (dates, versions, amounts,
//! order numbers, timestamps) is left alone.

use super::checksum::{luhn, verhoeff};
use super::scan::{is_word_byte, keyword_before, Scan};
use super::Category;

/// Groups read per run; longer runs are read as several.
const MAX_GROUPS: usize = 12;
/// Longest run of groups one value may span (`1 415 555 0132`, `4111 1111
/// 1111 1111 111`).
const MAX_SPAN_GROUPS: usize = 6;
/// Most digits any value here has (a 19-digit card).
const MAX_DIGITS: usize = 19;
/// How far before a number its context words are looked for.
const CONTEXT_WINDOW: usize = 40;

const PHONE_WORDS: &[&str] = &[
    "phone", "tel", "mobile", "cell", "call", "whatsapp", "fax", "contact", "sms", "text me", "reach me", "dial",
];
const SSN_WORDS: &[&str] = &["ssn", "social security", "ss#"];
const AADHAAR_WORDS: &[&str] = &["aadhaar", "aadhar", "uidai", "uid"];
const VERSION_WORDS: &[&str] = &["version", "release", "build"];

/// What joins two digit groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gap {
    Space,
    Dash,
    Dot,
    Slash,
    /// `(415) 555`, `+44 (0)20`.
    Paren,
}

#[derive(Debug)]
struct DigitRun {
    /// First byte: a digit, `+` or `(`.
    start: usize,
    plus: bool,
    open_paren: bool,
    /// Byte ranges of the digit groups.
    groups: [(usize, usize); MAX_GROUPS],
    /// `gaps[k]` joins group `k` to group `k + 1`.
    gaps: [Gap; MAX_GROUPS],
    count: usize,
}

/// Finds and validates every digit run that starts inside the token.
pub(super) fn detect(scan: &mut Scan<'_>, token_start: usize, token_end: usize) {
    let mut cursor = token_start.max(scan.digits_read_to);
    while cursor < token_end {
        let byte = scan.byte(cursor);
        let starts_run = match byte {
            b'0'..=b'9' => true,
            b'+' | b'(' => scan.byte(cursor + 1).is_ascii_digit(),
            _ => false,
        };
        if !starts_run || !clear_on_the_left(scan, cursor) {
            cursor += 1;
            continue;
        }
        let run = read_run(scan.bytes, cursor);
        let run_end = run.groups[run.count - 1].1;
        if clear_on_the_right(scan, run_end) {
            classify_run(scan, &run);
        }
        cursor = run_end.max(cursor + 1);
        scan.digits_read_to = cursor;
    }
}

/// A run may not continue a word, a larger token (`a1-4111…`, a UUID's
/// last group, `v1.2`) or follow a currency sign.
fn clear_on_the_left(scan: &Scan<'_>, start: usize) -> bool {
    let before = scan.byte_before(start);
    if is_word_byte(before) || before == b'$' {
        return false;
    }
    if matches!(before, b'-' | b'.' | b'/' | b',' | b'_' | b'+') && is_word_byte(scan.byte_before(start - 1)) {
        return false;
    }
    // `€`, `£`, `¥`, `₹` end in these bytes.
    !(matches!(before, 0xAC | 0xA3 | 0xA5 | 0xB9)
        && scan
            .text
            .get(..start)
            .and_then(|head| head.chars().next_back())
            .is_some_and(|sign| "€£¥₹".contains(sign)))
}

/// Nor may it run into letters, an e-mail's `@`, a decimal comma, a time's
/// `:` or a percent sign.
fn clear_on_the_right(scan: &Scan<'_>, end: usize) -> bool {
    let after = scan.byte(end);
    if is_word_byte(after) || matches!(after, b'@' | b'%' | b'_') {
        return false;
    }
    !(matches!(after, b',' | b':' | b'.' | b'-' | b'/') && is_word_byte(scan.byte(end + 1)))
}

fn read_run(bytes: &[u8], start: usize) -> DigitRun {
    let at = |index: usize| bytes.get(index).copied().unwrap_or(0);
    let mut run = DigitRun {
        start,
        plus: false,
        open_paren: false,
        groups: [(0, 0); MAX_GROUPS],
        gaps: [Gap::Space; MAX_GROUPS],
        count: 0,
    };
    let mut cursor = start;
    if at(cursor) == b'+' {
        run.plus = true;
        cursor += 1;
    }
    if at(cursor) == b'(' {
        run.open_paren = true;
        cursor += 1;
    }
    loop {
        let group_start = cursor;
        while at(cursor).is_ascii_digit() {
            cursor += 1;
        }
        run.groups[run.count] = (group_start, cursor);
        run.count += 1;
        if run.count == MAX_GROUPS {
            return run;
        }
        let (gap, width) = match (at(cursor), at(cursor + 1), at(cursor + 2)) {
            (b' ', b'(', next) | (b')', b' ', next) if next.is_ascii_digit() => (Gap::Paren, 2),
            (b'(' | b')', next, _) if next.is_ascii_digit() => (Gap::Paren, 1),
            (b' ', next, _) if next.is_ascii_digit() => (Gap::Space, 1),
            (b'-', next, _) if next.is_ascii_digit() => (Gap::Dash, 1),
            (b'.', next, _) if next.is_ascii_digit() => (Gap::Dot, 1),
            (b'/', next, _) if next.is_ascii_digit() => (Gap::Slash, 1),
            _ => return run,
        };
        run.gaps[run.count - 1] = gap;
        cursor += width;
    }
}

/// Left to right, the longest span of whole groups that validates; a span
/// inside the run must be cut at a space or slash, never inside `415-555`.
fn classify_run(scan: &mut Scan<'_>, run: &DigitRun) {
    let cuttable = |gap: Gap| matches!(gap, Gap::Space | Gap::Slash);
    let mut phone_context = None;
    let mut first = 0;
    while first < run.count {
        if first > 0 && !cuttable(run.gaps[first - 1]) {
            first += 1;
            continue;
        }
        let longest = (first + MAX_SPAN_GROUPS).min(run.count);
        let found = (first + 1..=longest).rev().find_map(|end| {
            if end < run.count && !cuttable(run.gaps[end - 1]) {
                return None;
            }
            classify_span(scan, run, first, end, &mut phone_context)
                .filter(|category| {
                    whole_group_run(run, first, end) || !matches!(category, Category::Card | Category::Aadhaar)
                })
                .map(|category| (category, end))
        });
        match found {
            Some((category, end)) => {
                // A leading `+` or `(` belongs to a phone number only.
                let span_start = if first == 0 && category == Category::Phone {
                    run.start
                } else {
                    run.groups[first].0
                };
                scan.found(category, span_start, run.groups[end - 1].1);
                first = end;
            }
            None => first += 1,
        }
    }
}

/// Cards and Aadhaar numbers are not cut out of a longer row of
/// four-digit groups: `6011 6059 6802 4373` failing Luhn holds no Aadhaar.
fn whole_group_run(run: &DigitRun, first: usize, end: usize) -> bool {
    let four_digits = |index: usize| run.groups.get(index).is_some_and(|(start, end)| end - start == 4);
    let before = first > 0 && four_digits(first - 1);
    let after = end < run.count && four_digits(end);
    !before && !after
}

/// The groups `first..end` of a run as one candidate.
struct Span<'r> {
    lengths: [usize; MAX_SPAN_GROUPS],
    gaps: &'r [Gap],
    digits: [u8; MAX_DIGITS],
    count: usize,
    plus: bool,
    open_paren: bool,
}

impl Span<'_> {
    fn lengths(&self) -> &[usize] {
        self.lengths.get(..self.gaps.len() + 1).unwrap_or_default()
    }

    fn digits(&self) -> &[u8] {
        self.digits.get(..self.count).unwrap_or_default()
    }

    fn number(&self, range: std::ops::Range<usize>) -> u32 {
        self.digits()
            .get(range)
            .unwrap_or_default()
            .iter()
            .fold(0, |value, &digit| value * 10 + u32::from(digit))
    }

    fn gaps_all(&self, allowed: &[Gap]) -> bool {
        self.gaps.iter().all(|gap| allowed.contains(gap))
    }

    fn one_kind_of_gap(&self) -> bool {
        self.gaps.windows(2).all(|pair| pair[0] == pair[1])
    }

    fn all_same_digit(&self) -> bool {
        self.digits().windows(2).all(|pair| pair[0] == pair[1])
    }
}

/// `phone_context` caches, per run, whether a phone word precedes it.
fn classify_span(
    scan: &Scan<'_>,
    run: &DigitRun,
    first: usize,
    end: usize,
    phone_context: &mut Option<bool>,
) -> Option<Category> {
    let groups = run.groups.get(first..end)?;
    let mut span = Span {
        lengths: [0; MAX_SPAN_GROUPS],
        gaps: run.gaps.get(first..end - 1)?,
        digits: [0; MAX_DIGITS],
        count: 0,
        plus: run.plus && first == 0,
        open_paren: run.open_paren && first == 0,
    };
    for (slot, &(group_start, group_end)) in span.lengths.iter_mut().zip(groups) {
        *slot = group_end - group_start;
        for &byte in scan.bytes.get(group_start..group_end)? {
            *span.digits.get_mut(span.count)? = byte - b'0';
            span.count += 1;
        }
    }
    let start = groups.first()?.0;
    if is_ipv4(&span) {
        let versioned = keyword_before(scan.bytes, start, 12, VERSION_WORDS);
        return (!versioned).then_some(Category::IpAddress);
    }
    if span.plus || (span.open_paren && is_phone(scan, &span, run.start, phone_context)) {
        return is_phone(scan, &span, run.start, phone_context).then_some(Category::Phone);
    }
    span.open_paren = false;
    if is_ssn(scan, &span, start) {
        return Some(Category::UsSsn);
    }
    if is_card(&span) {
        return Some(Category::Card);
    }
    if is_aadhaar(scan, &span, start) {
        return Some(Category::Aadhaar);
    }
    is_phone(scan, &span, run.start, phone_context).then_some(Category::Phone)
}

fn is_ipv4(span: &Span<'_>) -> bool {
    let lengths = span.lengths();
    if span.plus || span.open_paren || lengths.len() != 4 || !span.gaps_all(&[Gap::Dot]) {
        return false;
    }
    let mut offset = 0;
    lengths.iter().all(|&length| {
        let octet = span.number(offset..offset + length);
        let leading_zero = length > 1 && span.digits().get(offset) == Some(&0);
        offset += length;
        (1..=3).contains(&length) && octet <= 255 && !leading_zero
    })
}

/// Area 001–899 but not 666, group 01–99, serial 0001–9999. Written
/// `123-45-6789` or `123 45 6789`; nine bare digits only after "SSN".
fn is_ssn(scan: &Scan<'_>, span: &Span<'_>, start: usize) -> bool {
    let shaped = match span.lengths() {
        [3, 2, 4] => span.one_kind_of_gap() && span.gaps_all(&[Gap::Dash, Gap::Space]),
        [9] => keyword_before(scan.bytes, start, CONTEXT_WINDOW, SSN_WORDS),
        _ => false,
    };
    let area = span.number(0..3);
    shaped && area != 0 && area != 666 && area < 900 && span.number(3..5) != 0 && span.number(5..9) != 0
}

/// 13–19 digits in one block or in groups of four (Amex and Diners 4-6-5
/// and 4-6-4), an issuer prefix that exists at that length, and Luhn.
fn is_card(span: &Span<'_>) -> bool {
    let length = span.count;
    if !(13..=19).contains(&length) || !span.one_kind_of_gap() || !span.gaps_all(&[Gap::Space, Gap::Dash]) {
        return false;
    }
    let grouped = match span.lengths() {
        [_] | [4, 6, 5] | [4, 6, 4] => true,
        [fours @ .., last] => fours.len() >= 3 && fours.iter().all(|&n| n == 4) && (1..=4).contains(last),
        [] => false,
    };
    grouped && issuer_accepts(span, length) && !span.all_same_digit() && luhn(span.digits())
}

/// Whether some card network issues numbers with this prefix and length.
fn issuer_accepts(span: &Span<'_>, length: usize) -> bool {
    let two = span.number(0..2);
    let three = span.number(0..3);
    let four = span.number(0..4);
    match two {
        40..=49 => matches!(length, 13 | 16 | 19), // Visa
        51..=55 | 81 | 82 => length == 16,         // Mastercard, RuPay
        50 | 56..=59 | 60..=69 => length >= 13,    // Maestro, Discover, UnionPay, RuPay
        22..=27 => ((2200..=2204).contains(&four) || (2221..=2720).contains(&four)) && length == 16, // Mir, Mastercard
        34 | 37 => length == 15,                   // American Express
        36 | 38 | 39 => length >= 14,              // Diners Club
        30 => (300..=305).contains(&three) && length >= 14, // Diners Club
        35 => (3528..=3589).contains(&four) && length >= 16, // JCB
        _ => false,
    }
}

/// Twelve digits, the first 2–9, Verhoeff's check; written 4-4-4, or bare
/// after "Aadhaar".
fn is_aadhaar(scan: &Scan<'_>, span: &Span<'_>, start: usize) -> bool {
    let shaped = match span.lengths() {
        [4, 4, 4] => span.one_kind_of_gap() && span.gaps_all(&[Gap::Space, Gap::Dash]),
        [12] => keyword_before(scan.bytes, start, CONTEXT_WINDOW, AADHAAR_WORDS),
        _ => false,
    };
    shaped
        && span.digits().first().is_some_and(|&first| first >= 2)
        && !span.all_same_digit()
        && verhoeff(span.digits())
}

/// International (`+` or `00` and 8–15 digits), North American (NPA-NXX-XXXX),
/// national with a trunk `0` (9–11 digits in groups), Indian mobiles
/// (`98765 43210`), or 7–15 digits after a word like "phone" or "call".
fn is_phone(scan: &Scan<'_>, span: &Span<'_>, start: usize, phone_context: &mut Option<bool>) -> bool {
    let digits = span.digits();
    let length = span.count;
    let Some(&first) = digits.first() else {
        return false;
    };
    if span.plus {
        return (8..=15).contains(&length) && first != 0;
    }
    if !span.gaps_all(&[Gap::Space, Gap::Dash, Gap::Dot, Gap::Paren, Gap::Slash]) {
        return false;
    }
    let lengths = span.lengths();
    let parens_fit = !span.open_paren || span.gaps.first() == Some(&Gap::Paren);
    let north_american = |offset: usize| {
        digits.get(offset).is_some_and(|&area| area >= 2)
            && digits.get(offset + 3).is_some_and(|&exchange| exchange >= 2)
    };
    let international = digits.starts_with(&[0, 0]) && (11..=17).contains(&length) && lengths.len() >= 2;
    let nanp = match lengths {
        [3, 3, 4] => north_american(0),
        [1, 3, 3, 4] => first == 1 && north_american(1),
        _ => false,
    } && !span.gaps.contains(&Gap::Slash);
    let trunk = first == 0
        && digits.get(1).is_some_and(|&second| second != 0)
        && (length >= 10 || lengths.len() >= 3)
        && (9..=11).contains(&length)
        && lengths.len() >= 2
        && lengths.iter().all(|&n| n >= 2)
        && lengths.first().is_some_and(|&n| n <= 5);
    let indian_mobile = lengths == [5, 5] && first >= 6 && span.gaps_all(&[Gap::Space, Gap::Dash]);
    let mut after_a_phone_word = || {
        (7..=15).contains(&length)
            && *phone_context.get_or_insert_with(|| keyword_before(scan.bytes, start, CONTEXT_WINDOW, PHONE_WORDS))
    };
    parens_fit && (international || nanp || trunk || indian_mobile || after_a_phone_word())
}

#[cfg(test)]
mod tests {
    use super::super::found;
    use super::*;

    #[test]
    fn a_card_number_in_groups_or_one_block_is_found() {
        assert_eq!(
            found("card 4111 1111 1111 1111."),
            [(Category::Card, "4111 1111 1111 1111")]
        );
        assert_eq!(
            found("pay with 5500-0000-0000-0004"),
            [(Category::Card, "5500-0000-0000-0004")]
        );
        assert_eq!(found("amex 378282246310005"), [(Category::Card, "378282246310005")]);
        assert_eq!(found("amex 3782 822463 10005"), [(Category::Card, "3782 822463 10005")]);
    }

    #[test]
    fn a_card_number_failing_luhn_is_left_alone() {
        assert!(found("order 4111111111111112 shipped").is_empty());
        assert!(found("ref 4111 1111 1111 1112").is_empty());
    }

    #[test]
    fn a_luhn_valid_number_without_a_real_issuer_prefix_is_left_alone() {
        // Passes Luhn, but no network issues 16-digit numbers starting with 1.
        assert!(found("id 1000000000000008").is_empty());
    }

    #[test]
    fn ssns_follow_the_area_group_and_serial_rules() {
        assert_eq!(found("ssn 123-45-6789"), [(Category::UsSsn, "123-45-6789")]);
        assert!(found("ssn 666-45-6789, 000-12-3456, 912-34-5678, 123-00-4567").is_empty());
        assert_eq!(found("SSN: 123456789"), [(Category::UsSsn, "123456789")]);
        assert!(found("part 123456789").is_empty());
    }

    #[test]
    fn aadhaar_needs_verhoeff_and_a_grouped_shape_or_its_name() {
        assert_eq!(found("aadhaar 2341 2341 2346"), [(Category::Aadhaar, "2341 2341 2346")]);
        assert_eq!(
            found("my Aadhaar is 234123412346"),
            [(Category::Aadhaar, "234123412346")]
        );
        assert!(found("id 2341 2341 2347").is_empty());
        assert!(found("invoice 234123412346").is_empty());
    }

    #[test]
    fn phone_numbers_in_common_formats_are_found() {
        for phone in [
            "+1 415-555-0132",
            "(415) 555-0132",
            "415.555.0132",
            "+44 20 7946 0958",
            "+44 (0)20 7946 0958",
            "020 7946 0958",
            "01 23 45 67 89",
            "98765 43210",
            "+919876543210",
            "0049 30 1234567",
        ] {
            assert_eq!(
                found(&format!("call {phone} today")),
                [(Category::Phone, phone)],
                "{phone}"
            );
        }
        assert_eq!(found("phone: 5550132"), [(Category::Phone, "5550132")]);
    }

    #[test]
    fn two_phone_numbers_side_by_side_are_two_findings() {
        assert_eq!(
            found("415-555-0132 415-555-0199"),
            [(Category::Phone, "415-555-0132"), (Category::Phone, "415-555-0199")]
        );
    }

    #[test]
    fn dates_versions_amounts_and_times_are_not_phone_numbers() {
        for text in [
            "on 2024-01-15 at 10:30",
            "released 15.01.2024",
            "version 1.2.3 and 10.15.7",
            "costs $4155550132 or €1 234 567",
            "it grew 1,234,567 units",
            "timestamp 1700000000",
            "uuid 123e4567-e89b-12d3-a456-426614174000",
            "sha 9f86d081884c7d659a2feaa0c55ad015",
            "take 3 5 7 9",
            "score +5",
            "version 1.2.3.4",
        ] {
            assert!(found(text).is_empty(), "{text}: {:?}", found(text));
        }
    }

    #[test]
    fn ipv4_addresses_are_found_and_bad_octets_are_not() {
        assert_eq!(found("from 10.0.12.7 to"), [(Category::IpAddress, "10.0.12.7")]);
        assert_eq!(found("net 192.168.1.0/24"), [(Category::IpAddress, "192.168.1.0")]);
        assert!(found("not 256.1.1.1 nor 1.2.3").is_empty());
    }
}
