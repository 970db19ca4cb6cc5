//! Identifiers written with letters and digits: IBANs, India's PAN and
//! GSTIN, e-mail addresses and IPv6 addresses.

use std::net::Ipv6Addr;

use super::checksum::{gstin_check, iban_mod97};
use super::scan::{is_word_byte, Scan};
use super::Category;

/// IBAN length per country (ISO 13616 registry).
const IBAN_LENGTHS: &[(&[u8; 2], usize)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BI", 27),
    (b"BR", 29),
    (b"BY", 28),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DJ", 27),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FK", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HN", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IQ", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LC", 32),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"LY", 25),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MN", 20),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NI", 28),
    (b"NL", 18),
    (b"NO", 15),
    (b"OM", 23),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"RU", 33),
    (b"SA", 24),
    (b"SC", 31),
    (b"SD", 18),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"SO", 23),
    (b"ST", 25),
    (b"SV", 28),
    (b"TL", 23),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VA", 22),
    (b"VG", 24),
    (b"XK", 20),
    (b"YE", 30),
];
const LONGEST_IBAN: usize = 34;

/// The PAN's fourth letter says who holds it: person, company, HUF, firm,
/// association, trust, body of individuals, local authority, artificial
/// juridical person, government.
const PAN_HOLDER_TYPES: &[u8] = b"PCHFATBLJG";

/// GSTIN state codes: 01–38 are states and territories, 97 other
/// territory, 99 the centre's jurisdiction.
fn gstin_state(code: u32) -> bool {
    (1..=38).contains(&code) || code == 97 || code == 99
}

/// Each word of the token that starts with a capital or a digit is tried
/// as an IBAN, a PAN and a GSTIN.
pub(super) fn detect_upper_identifiers(scan: &mut Scan<'_>, token_start: usize, token_end: usize) {
    let mut cursor = token_start;
    while cursor < token_end {
        let word_start = cursor;
        while scan.byte(cursor).is_ascii_alphanumeric() {
            cursor += 1;
        }
        if cursor == word_start {
            cursor += 1;
            continue;
        }
        if is_word_byte(scan.byte_before(word_start)) || is_word_byte(scan.byte(cursor)) {
            continue;
        }
        let word = scan.bytes.get(word_start..cursor).unwrap_or_default();
        if let Some(end) = iban_end(scan.bytes, word_start) {
            scan.found(Category::Iban, word_start, end);
            // Its digit groups are not numbers of their own.
            scan.digits_read_to = scan.digits_read_to.max(end);
            cursor = cursor.max(end);
        } else if is_pan(word) {
            scan.found(Category::IndiaPan, word_start, cursor);
        } else if is_gstin(word) {
            scan.found(Category::Gstin, word_start, cursor);
        }
    }
}

/// End of the IBAN starting at `start`: two capitals, two check digits,
/// then letters and digits (groups of four may be split by single spaces)
/// up to the country's exact length, passing mod 97.
fn iban_end(bytes: &[u8], start: usize) -> Option<usize> {
    let head = bytes.get(start..start + 4)?;
    if !(head[0].is_ascii_uppercase()
        && head[1].is_ascii_uppercase()
        && head[2].is_ascii_digit()
        && head[3].is_ascii_digit())
    {
        return None;
    }
    let length = IBAN_LENGTHS.iter().find(|(country, _)| country[..] == head[..2])?.1;
    let mut compact = [0u8; LONGEST_IBAN];
    let mut taken = 0;
    let mut cursor = start;
    while taken < length {
        match bytes.get(cursor)? {
            byte @ (b'A'..=b'Z' | b'0'..=b'9') => {
                *compact.get_mut(taken)? = *byte;
                taken += 1;
                cursor += 1;
            }
            b' ' if taken % 4 == 0 && bytes.get(cursor + 1).is_some_and(u8::is_ascii_alphanumeric) => cursor += 1,
            _ => return None,
        }
    }
    let complete = !is_word_byte(bytes.get(cursor).copied().unwrap_or(b' '));
    (complete && iban_mod97(compact.get(..length)?)).then_some(cursor)
}

/// Five letters (the fourth a holder type), four digits, a letter.
fn is_pan(word: &[u8]) -> bool {
    let [a, b, c, holder, e, d1, d2, d3, d4, last] = word else {
        return false;
    };
    [a, b, c, holder, e, last].iter().all(|byte| byte.is_ascii_uppercase())
        && [d1, d2, d3, d4].iter().all(|byte| byte.is_ascii_digit())
        && PAN_HOLDER_TYPES.contains(holder)
}

/// State code, the holder's PAN, an entity number, `Z`, and the mod-36
/// check character.
fn is_gstin(word: &[u8]) -> bool {
    let [s1, s2, pan @ .., entity, z, _check] = word else {
        return false;
    };
    s1.is_ascii_digit()
        && s2.is_ascii_digit()
        && gstin_state(u32::from(s1 - b'0') * 10 + u32::from(s2 - b'0'))
        && is_pan(pan)
        && (entity.is_ascii_uppercase() || (b'1'..=b'9').contains(entity))
        && *z == b'Z'
        && gstin_check(word)
}

/// Each `@` of the token with a plausible local part before it and a
/// dotted domain with an alphabetic top-level label after it.
pub(super) fn detect_emails(scan: &mut Scan<'_>, token_start: usize, token_end: usize) {
    let mut from = token_start;
    while let Some(offset) = scan
        .bytes
        .get(from..token_end)
        .and_then(|rest| memchr::memchr(b'@', rest))
    {
        let at = from + offset;
        from = at + 1;
        let is_local = |byte: u8| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'%' | b'+' | b'-');
        let mut start = at;
        while start > 0 && at - start < 64 && is_local(scan.byte(start - 1)) {
            start -= 1;
        }
        while start < at && !scan.byte(start).is_ascii_alphanumeric() {
            start += 1;
        }
        if start == at || is_word_byte(scan.byte_before(start)) {
            continue;
        }
        if let Some(end) = domain_end(scan, at + 1) {
            scan.found(Category::Email, start, end);
            from = end;
        }
    }
}

/// End of a domain name of two or more labels; a trailing dot is the
/// sentence's. A domain followed by `:path` is an SSH remote, not a mailbox.
fn domain_end(scan: &Scan<'_>, start: usize) -> Option<usize> {
    let mut cursor = start;
    let mut labels = 0;
    let mut last_label = start..start;
    loop {
        let label_start = cursor;
        while (scan.byte(cursor).is_ascii_alphanumeric() || scan.byte(cursor) == b'-') && cursor - start < 253 {
            cursor += 1;
        }
        if cursor == label_start {
            return None;
        }
        labels += 1;
        last_label = label_start..cursor;
        if scan.byte(cursor) == b'.' && scan.byte(cursor + 1).is_ascii_alphanumeric() {
            cursor += 1;
        } else {
            break;
        }
    }
    let top = scan.bytes.get(last_label)?;
    let after = scan.byte(cursor);
    let ssh_remote = after == b':' && is_word_byte(scan.byte(cursor + 1));
    (labels >= 2 && top.len() >= 2 && top.iter().all(u8::is_ascii_alphabetic) && !is_word_byte(after) && !ssh_remote)
        .then_some(cursor)
}

/// Longest IPv6 text (`1:2:3:4:5:6:7:8` with an IPv4 tail).
const LONGEST_IPV6: usize = 45;

/// IPv6 addresses around each `:` of the token that sits between hex
/// digits or colons. Parsing is the standard library's; on top, an address
/// must have all eight groups or a group of three or more hex digits, so
/// `1::2` (a slice) and `::1` alone are not reported.
pub(super) fn detect_ipv6(scan: &mut Scan<'_>, token_start: usize, token_end: usize) {
    let is_ipv6_byte = |byte: u8| byte.is_ascii_hexdigit() || byte == b':' || byte == b'.';
    let mut from = token_start;
    while let Some(offset) = scan
        .bytes
        .get(from..token_end)
        .and_then(|rest| memchr::memchr(b':', rest))
    {
        let colon = from + offset;
        from = colon + 1;
        let (before, after) = (scan.byte_before(colon), scan.byte(colon + 1));
        if !(before.is_ascii_hexdigit() || before == b':') || !(after.is_ascii_hexdigit() || after == b':') {
            continue;
        }
        let mut start = colon;
        while start > 0 && colon - start < LONGEST_IPV6 && is_ipv6_byte(scan.byte(start - 1)) {
            start -= 1;
        }
        let mut end = colon;
        while end - start < LONGEST_IPV6 && is_ipv6_byte(scan.byte(end)) {
            end += 1;
        }
        while matches!(scan.byte(end - 1), b'.' | b':') && end - 1 > colon && scan.byte(end - 2) != b':' {
            end -= 1;
        }
        from = from.max(end);
        if is_word_byte(scan.byte_before(start)) || is_word_byte(scan.byte(end)) {
            continue;
        }
        let Some(candidate) = scan.text.get(start..end) else {
            continue;
        };
        let colons = candidate.bytes().filter(|&byte| byte == b':').count();
        if colons >= 2 && looks_like_an_address(candidate) && candidate.parse::<Ipv6Addr>().is_ok() {
            scan.found(Category::IpAddress, start, end);
        }
    }
}

fn looks_like_an_address(candidate: &str) -> bool {
    let groups = candidate.split(':').filter(|group| !group.is_empty());
    let full = !candidate.contains("::");
    full || groups.clone().any(|group| group.len() >= 3)
}

#[cfg(test)]
mod tests {
    use super::super::found;
    use super::*;

    #[test]
    fn an_iban_is_found_compact_or_in_groups_of_four() {
        assert_eq!(
            found("pay DE89370400440532013000 now"),
            [(Category::Iban, "DE89370400440532013000")]
        );
        assert_eq!(
            found("to GB82 WEST 1234 5698 7654 32."),
            [(Category::Iban, "GB82 WEST 1234 5698 7654 32")]
        );
    }

    #[test]
    fn an_iban_with_a_wrong_check_or_length_is_left_alone() {
        assert!(found("pay DE89370400440532013001 now").is_empty());
        assert!(found("pay DE8937040044053201300 now").is_empty());
        assert!(found("model XX12345678901234567890").is_empty());
    }

    #[test]
    fn a_pan_needs_a_holder_type_letter() {
        assert_eq!(found("PAN ABCPE1234F"), [(Category::IndiaPan, "ABCPE1234F")]);
        assert!(found("code ABCXE1234F").is_empty());
        assert!(found("code ABCPE12345").is_empty());
    }

    #[test]
    fn a_gstin_needs_its_state_code_and_check_character() {
        assert_eq!(found("GSTIN 27AAPFU0939F1ZV."), [(Category::Gstin, "27AAPFU0939F1ZV")]);
        assert!(found("GSTIN 27AAPFU0939F1ZW").is_empty());
        assert!(found("GSTIN 45AAPFU0939F1ZV").is_empty());
    }

    #[test]
    fn e_mail_addresses_are_found_without_trailing_punctuation() {
        assert_eq!(
            found("write to jane.doe+work@example.co.uk."),
            [(Category::Email, "jane.doe+work@example.co.uk")]
        );
        assert_eq!(
            found("<a@b.io>,c.d@e-f.com;"),
            [(Category::Email, "a@b.io"), (Category::Email, "c.d@e-f.com")]
        );
    }

    #[test]
    fn handles_decorators_and_ssh_remotes_are_not_e_mail() {
        for text in [
            "@app.route('/')",
            "ping @jane",
            "user@localhost",
            "git@github.com:org/repo.git",
            "a@b.c1",
        ] {
            assert!(found(text).is_empty(), "{text}");
        }
    }

    #[test]
    fn ipv6_addresses_are_found_and_slices_and_times_are_not() {
        assert_eq!(
            found("host 2001:db8::8a2e:370:7334."),
            [(Category::IpAddress, "2001:db8::8a2e:370:7334")]
        );
        assert_eq!(found("link fe80::1 up"), [(Category::IpAddress, "fe80::1")]);
        assert_eq!(
            found("[2001:db8:0:0:0:0:0:1]:443"),
            [(Category::IpAddress, "2001:db8:0:0:0:0:0:1")]
        );
        for text in [
            "x[1::2]",
            "at 12:30:45",
            "std::vector",
            "::1",
            "mac 00:1A:2B:3C:4D:5E",
            "a::b",
        ] {
            assert!(found(text).is_empty(), "{text}");
        }
    }
}
