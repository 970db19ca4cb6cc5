//! Street addresses, by heuristics: no checksum exists, so a candidate must
//! have a street's shape. Three shapes are read:
//!
//! - number first: `221B Baker Street`, `1600 Amphitheatre Pkwy`,
//!   `12 rue de la Paix` — a house number, capitalised name words and a
//!   street word (a suffix such as Street/Ave/Rd, or a leading rue/via);
//! - street first: `Hauptstraße 5`, `Calle Mayor 12` — a name ending in a
//!   street suffix (-straße, -weg, -laan, -gatan…) or led by a street word,
//!   then the house number;
//! - a UK postcode on its own (`SW1A 1AA`).
//!
//! After a street, a unit (`Apt 4B`), a town and a postcode (`CA 94043`,
//! `75002`, `SW1A 1AA`) extend the finding when they follow.

use std::ops::Range;

use super::scan::{is_word_byte, Scan};
use super::Category;

/// Street words that end a number-first address (compared exactly).
const SUFFIXES: &[&str] = &[
    "Street",
    "St",
    "Avenue",
    "Ave",
    "Road",
    "Rd",
    "Boulevard",
    "Blvd",
    "Lane",
    "Ln",
    "Drive",
    "Dr",
    "Court",
    "Ct",
    "Place",
    "Pl",
    "Square",
    "Sq",
    "Terrace",
    "Way",
    "Parkway",
    "Pkwy",
    "Highway",
    "Hwy",
    "Circle",
    "Crescent",
    "Close",
    "Grove",
    "Gardens",
    "Row",
    "Mews",
    "Trail",
    "Alley",
    "Plaza",
    "Loop",
];
/// Street words that open a number-first address (`12 rue de la Paix`).
const LEADING_STREET_WORDS: &[&str] = &[
    "rue",
    "Rue",
    "avenue",
    "boulevard",
    "bd",
    "place",
    "chemin",
    "allée",
    "impasse",
    "quai",
    "via",
    "Via",
    "viale",
    "piazza",
    "calle",
    "Calle",
    "rua",
    "Rua",
];
/// Street words that open a street-first address (`Calle Mayor 12`).
const STREET_FIRST_WORDS: &[&str] = &[
    "Calle", "Avenida", "Rua", "Via", "Viale", "Piazza", "Plaza", "Carrer", "Rue", "Avenue",
];
/// Endings of one-word street names (`Hauptstraße`, `Kerkstraat`).
const NAME_ENDINGS: &[&str] = &[
    "straße", "strasse", "str", "weg", "gasse", "allee", "platz", "damm", "straat", "laan", "gracht", "gade", "vej",
    "gatan", "vägen", "veien",
];
/// Lower-case words allowed inside a street name.
const PARTICLES: &[&str] = &["de", "la", "du", "des", "le", "del", "di", "da", "do", "of", "the"];
const UNIT_WORDS: &[&str] = &["Apt", "Apartment", "Suite", "Ste", "Unit", "Flat", "Floor", "#"];
/// Name words read between a number and its street word.
const MAX_NAME_WORDS: usize = 4;

/// A number-first address starting at this token.
pub(super) fn detect_numbered(scan: &mut Scan<'_>, token_start: usize, token_end: usize) {
    if !is_house_number(scan.bytes.get(token_start..token_end).unwrap_or_default()) {
        return;
    }
    if let Some(street_end) = street_after_number(scan, token_end) {
        let end = extend_with_locality(scan, street_end);
        scan.found(Category::StreetAddress, token_start, end);
    }
}

/// A street-first address or a UK postcode starting at this token.
pub(super) fn detect_named(scan: &mut Scan<'_>, token_start: usize, token_end: usize) {
    let leading = scan
        .bytes
        .get(token_start..token_end)
        .unwrap_or_default()
        .iter()
        .take_while(|byte| !byte.is_ascii_alphanumeric())
        .count();
    let token_start = token_start + leading;
    let Some(first) = word_at(scan.bytes, token_start) else {
        return;
    };
    let Some(name) = scan.text.get(first.clone()) else {
        return;
    };
    if name.bytes().any(|byte| byte.is_ascii_digit()) {
        if let Some(end) = postcode_at(scan.bytes, token_start) {
            scan.found(Category::StreetAddress, token_start, end);
        }
        return;
    }
    let mut cursor = first.end;
    let number_follows = matches!(
        (scan.byte(cursor), scan.byte(cursor + 1), scan.byte(cursor + 2)),
        (b' ', b'0'..=b'9', _) | (b',', b' ', b'0'..=b'9')
    );
    if number_follows {
        if !(is_capitalised(name) && ends_like_a_street(name)) {
            return;
        }
    } else if STREET_FIRST_WORDS.contains(&name) {
        // `Calle Mayor 12`: name words up to the number.
        let mut names = 0;
        while let Some(word) = next_word(scan.bytes, cursor) {
            match scan.text.get(word.clone()) {
                Some(word_text) if names < MAX_NAME_WORDS && is_name_word(word_text) => {
                    names += 1;
                    cursor = word.end;
                }
                _ => break,
            }
        }
        if names == 0 {
            return;
        }
    } else {
        return;
    }
    let Some(number) = next_word(scan.bytes, cursor) else {
        return;
    };
    if is_house_number(scan.bytes.get(number.clone()).unwrap_or_default()) {
        let end = extend_with_locality(scan, number.end);
        scan.found(Category::StreetAddress, token_start, end);
    }
}

/// 1–5 digits, optionally one letter (`221B`, `12a`).
fn is_house_number(word: &[u8]) -> bool {
    let digits = word.iter().take_while(|byte| byte.is_ascii_digit()).count();
    let rest = word.get(digits..).unwrap_or_default();
    (1..=5).contains(&digits) && (rest.is_empty() || (rest.len() == 1 && rest.iter().all(u8::is_ascii_alphabetic)))
}

/// End of the street name after a house number, if one follows.
fn street_after_number(scan: &Scan<'_>, number_end: usize) -> Option<usize> {
    if scan.byte(number_end) != b' ' {
        return None;
    }
    let first = word_at(scan.bytes, number_end + 1)?;
    if LEADING_STREET_WORDS.contains(&scan.text.get(first.clone())?) {
        let mut end = None;
        let mut cursor = first.end;
        while let Some(word) = next_word(scan.bytes, cursor) {
            let text = scan.text.get(word.clone())?;
            if is_capitalised(text) {
                end = Some(word.end);
            } else if !PARTICLES.contains(&text) {
                break;
            }
            cursor = word.end;
        }
        return end;
    }
    let mut names = 0;
    let mut word = first;
    loop {
        let text = scan.text.get(word.clone())?;
        if names > 0 && SUFFIXES.contains(&text) {
            return Some(word.end);
        }
        if names == MAX_NAME_WORDS || !is_name_word(text) {
            return None;
        }
        names += 1;
        word = next_word(scan.bytes, word.end)?;
    }
}

/// A unit, a town and a postcode after the street, when they follow; the
/// town counts only with its postcode.
fn extend_with_locality(scan: &Scan<'_>, street_end: usize) -> usize {
    let mut end = street_end;
    if let Some(unit) = next_word(scan.bytes, end).filter(|word| {
        scan.text
            .get(word.clone())
            .is_some_and(|text| UNIT_WORDS.contains(&text))
    }) {
        if let Some(number) = next_word(scan.bytes, unit.end) {
            end = number.end;
        }
    }
    let mut cursor = end;
    for _ in 0..4 {
        let Some(word) = next_word(scan.bytes, cursor) else {
            break;
        };
        if let Some(postcode_end) = postcode_at(scan.bytes, word.start) {
            return postcode_end;
        }
        match scan.text.get(word.clone()) {
            Some(text) if is_capitalised(text) => cursor = word.end,
            _ => break,
        }
    }
    end
}

/// End of a postcode at `start`: US `CA 94043(-1234)`, UK `SW1A 1AA`, Dutch
/// `1012 AB`, or five digits (`75002`, `94043`).
fn postcode_at(bytes: &[u8], start: usize) -> Option<usize> {
    let word = word_at(bytes, start)?;
    let text = bytes.get(word.clone())?;
    let next = next_word(bytes, word.end);
    let next_text = next.clone().and_then(|next| bytes.get(next)).unwrap_or_default();
    let digits = |text: &[u8], n: usize| text.len() == n && text.iter().all(u8::is_ascii_digit);
    let upper = |text: &[u8], n: usize| text.len() == n && text.iter().all(u8::is_ascii_uppercase);
    let next_end = next.map_or(word.end, |next| next.end);
    if upper(text, 2) && digits(next_text.get(..5.min(next_text.len()))?, 5) {
        // `CA 94043` or `CA 94043-1234`.
        let zip = next_text;
        return (zip.len() == 5 || (zip.len() == 10 && zip.get(5) == Some(&b'-') && digits(zip.get(6..)?, 4)))
            .then_some(next_end);
    }
    if is_uk_outward(text)
        && next_text.len() == 3
        && next_text.first()?.is_ascii_digit()
        && upper(next_text.get(1..)?, 2)
    {
        return Some(next_end);
    }
    if digits(text, 4) && upper(next_text, 2) {
        return Some(next_end);
    }
    digits(text, 5).then_some(word.end)
}

/// The first half of a UK postcode: `SW1A`, `M1`, `B33`, `EC1A`, `CR2`.
fn is_uk_outward(text: &[u8]) -> bool {
    let letters = text.iter().take_while(|byte| byte.is_ascii_uppercase()).count();
    let rest = text.get(letters..).unwrap_or_default();
    (1..=2).contains(&letters)
        && match rest {
            [digit] => digit.is_ascii_digit(),
            [digit, second] => digit.is_ascii_digit() && (second.is_ascii_digit() || second.is_ascii_uppercase()),
            _ => false,
        }
}

/// The word at `start`: letters, digits, `'`, `-` and non-ASCII bytes.
fn word_at(bytes: &[u8], start: usize) -> Option<Range<usize>> {
    let length = bytes
        .get(start..)?
        .iter()
        .take(40)
        .take_while(|&&byte| is_word_byte(byte) || matches!(byte, b'\'' | b'-' | b'#'))
        .count();
    (length > 0).then_some(start..start + length)
}

/// The word after `end`, past one space, optionally after `,` or `.`.
fn next_word(bytes: &[u8], end: usize) -> Option<Range<usize>> {
    let mut cursor = end;
    if matches!(bytes.get(cursor), Some(b',' | b'.')) {
        cursor += 1;
    }
    if bytes.get(cursor) != Some(&b' ') {
        return None;
    }
    word_at(bytes, cursor + 1)
}

fn is_capitalised(word: &str) -> bool {
    word.chars().next().is_some_and(char::is_uppercase)
}

/// A capitalised word or an ordinal (`5th`, `42nd`) inside a street name.
fn is_name_word(word: &str) -> bool {
    let number = word.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let ordinal = !number.is_empty()
        && number.chars().all(|c| c.is_ascii_digit())
        && ["st", "nd", "rd", "th"].iter().any(|suffix| word.ends_with(suffix));
    (is_capitalised(word) && !SUFFIXES.contains(&word)) || ordinal
}

fn ends_like_a_street(word: &str) -> bool {
    let word = word.as_bytes();
    NAME_ENDINGS.iter().any(|ending| {
        word.len() > ending.len() + 2
            && word
                .get(word.len() - ending.len()..)
                .is_some_and(|end| end.eq_ignore_ascii_case(ending.as_bytes()))
    })
}

#[cfg(test)]
mod tests {
    use super::super::found_of;
    use super::*;

    fn addresses(text: &str) -> Vec<&str> {
        found_of(Category::StreetAddress, text)
    }

    #[test]
    fn number_first_addresses_are_found_with_their_postcode() {
        assert_eq!(
            addresses("I live at 221B Baker Street, London NW1 6XE."),
            ["221B Baker Street, London NW1 6XE"]
        );
        assert_eq!(
            addresses("HQ: 1600 Amphitheatre Parkway, Mountain View, CA 94043"),
            ["1600 Amphitheatre Parkway, Mountain View, CA 94043"]
        );
        assert_eq!(addresses("send it to 350 5th Ave, Apt 4B"), ["350 5th Ave, Apt 4B"]);
        assert_eq!(
            addresses("au 12 rue de la Paix, 75002 Paris"),
            ["12 rue de la Paix, 75002"]
        );
    }

    #[test]
    fn street_first_addresses_and_postcodes_are_found() {
        assert_eq!(
            addresses("Wohnung in der Hauptstraße 5, 10115 Berlin"),
            ["Hauptstraße 5, 10115"]
        );
        assert_eq!(addresses("en Calle Mayor 12"), ["Calle Mayor 12"]);
        assert_eq!(addresses("postcode SW1A 1AA please"), ["SW1A 1AA"]);
    }

    #[test]
    fn numbers_before_capitalised_words_are_not_addresses() {
        for text in [
            "We hired 3 Senior Engineers",
            "In 2024 Apple released",
            "Chapter 3 Dr Smith",
            "she walked 3 blocks down the road",
            "the Street Fighter 2 game",
            "A Strasse",
        ] {
            assert!(addresses(text).is_empty(), "{text}");
        }
    }
}
