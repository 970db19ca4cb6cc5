//! Personal data and secrets, found and replaced by a placeholder naming
//! what was there (`[EMAIL]`, `[CARD]`, …). Used wherever request or answer
//! text leaves the gateway for somewhere other than the provider: today the
//! audit fields of the access log.
//!
//! The detectors favour redacting too much over too little: a number that
//! merely looks like a phone number is replaced too. Card numbers must pass
//! the Luhn check, so order numbers and timestamps survive.

use std::borrow::Cow;

use regex::{Captures, Regex};

/// (placeholder, pattern, whether a match must pass the Luhn check).
/// Applied in order; placeholders hold no digits or `@`, so a later
/// detector never re-matches an earlier one's output.
const DETECTORS: [(&str, &str, bool); 8] = [
    (
        "[SECRET]",
        r"\b(?:sk-(?:ant-|proj-)?[A-Za-z0-9_-]{16,}|AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{30,}|xox[abprs]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{35})",
        false,
    ),
    ("[SECRET]", r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{16,}", false),
    (
        "[EMAIL]",
        r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b",
        false,
    ),
    ("[CARD]", r"\b\d(?:[ -]?\d){12,18}\b", true),
    ("[SSN]", r"\b\d{3}-\d{2}-\d{4}\b", false),
    (
        "[IBAN]",
        r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b",
        false,
    ),
    (
        "[PHONE]",
        r"(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\b\d{2,4}[ .-]\d{3,4}[ .-]\d{3,4}\b|\+\d{7,15}\b",
        false,
    ),
    (
        "[IP]",
        r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b",
        false,
    ),
];

pub struct Redactor {
    detectors: Vec<(&'static str, Regex, bool)>,
}

impl Redactor {
    pub fn new() -> Result<Redactor, regex::Error> {
        let detectors = DETECTORS
            .iter()
            .map(|(placeholder, pattern, luhn)| Ok((*placeholder, Regex::new(pattern)?, *luhn)))
            .collect::<Result<_, regex::Error>>()?;
        Ok(Redactor { detectors })
    }

    pub fn redact<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let mut text = Cow::Borrowed(text);
        for (placeholder, regex, luhn) in &self.detectors {
            let replaced = regex.replace_all(&text, |found: &Captures<'_>| {
                let matched = found.get(0).map_or("", |m| m.as_str());
                if *luhn && !passes_luhn(matched) {
                    matched.to_string()
                } else {
                    (*placeholder).to_string()
                }
            });
            if let Cow::Owned(replaced) = replaced {
                text = Cow::Owned(replaced);
            }
        }
        text
    }
}

/// The check digit test card numbers carry (separators ignored).
fn passes_luhn(number: &str) -> bool {
    let digits: Vec<u32> = number.chars().filter_map(|c| c.to_digit(10)).collect();
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(position, digit)| {
            if position % 2 == 1 {
                let doubled = digit * 2;
                if doubled > 9 {
                    doubled - 9
                } else {
                    doubled
                }
            } else {
                *digit
            }
        })
        .sum();
    digits.len() >= 13 && sum.is_multiple_of(10)
}

/// At most `max_chars` characters of `text`, marked with `…` when cut.
pub fn truncate_chars(text: &str, max_chars: usize) -> Cow<'_, str> {
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => Cow::Owned(format!("{}…", &text[..end])),
        None => Cow::Borrowed(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redact(text: &str) -> String {
        Redactor::new().unwrap().redact(text).into_owned()
    }

    #[test]
    fn personal_data_and_secrets_are_replaced() {
        assert_eq!(
            redact("Mail jane.doe+work@example.co.uk or call +1 415-555-0132."),
            "Mail [EMAIL] or call [PHONE]."
        );
        assert_eq!(
            redact("card 4111 1111 1111 1111, ssn 123-45-6789"),
            "card [CARD], ssn [SSN]"
        );
        assert_eq!(redact("key sk-proj-abcdefghijklmnop1234 here"), "key [SECRET] here");
        assert_eq!(
            redact("Authorization: Bearer abcdefghijklmnopqrstuvwx"),
            "Authorization: [SECRET]"
        );
        assert_eq!(redact("AWS AKIAIOSFODNN7EXAMPLE"), "AWS [SECRET]");
        assert_eq!(
            redact("from 10.0.12.7 to DE89 3704 0044 0532 0130 00"),
            "from [IP] to [IBAN]"
        );
    }

    #[test]
    fn ordinary_text_and_numbers_survive() {
        let text = "In 2024 we shipped 1234567890123 units (order 4111111111111112) at 3.14 each.";
        assert_eq!(redact(text), text);
        assert!(matches!(
            Redactor::new().unwrap().redact("nothing here"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn luhn_accepts_real_card_numbers_only() {
        assert!(passes_luhn("4111-1111-1111-1111"));
        assert!(passes_luhn("5500 0000 0000 0004"));
        assert!(!passes_luhn("4111 1111 1111 1112"));
        assert!(!passes_luhn("0000"));
    }

    #[test]
    fn truncation_respects_characters() {
        assert_eq!(truncate_chars("héllo wörld", 5), "héllo…");
        assert_eq!(truncate_chars("short", 10), "short");
    }
}
