//! Guardrails: personal data and secrets found before a prompt leaves the
//! gateway, masked and restored around the provider, and a cheap, explainable
//! prompt-injection score. Plain functions over text and body bytes; nothing
//! here talks to Envoy.
//!
//! - [`scan`] finds [`Finding`]s of each wanted [`Category`] in one pass:
//!   cheap byte triggers (digits, `@`, `:`, capitals, known key prefixes)
//!   pick candidates, and each candidate is validated (Luhn, mod-97,
//!   Verhoeff, mod-36, number plans, entropy) before it counts.
//! - [`mask`] swaps findings for stable placeholders (`<CARD_1>`) kept in a
//!   per-request [`Vault`]; [`restore`] puts the originals back into an
//!   answer, whole or streamed.
//! - [`policy`] turns findings and a per-category [`Mode`] into one decision.
//! - [`injection`] scores instruction overrides, prompt exfiltration,
//!   jailbreak role-play, forged roles and hidden Unicode.
//! - [`redact_for_audit`] is what the access log writes instead of content.
//!
//! `docs/guardrails.md` is the manual: validation per category, masking and
//! streaming semantics, measured precision and recall, speed, limits.

use std::borrow::Cow;
use std::ops::Range;

mod address;
mod chat_json;
mod checksum;
#[cfg(test)]
mod corpus;
mod identifiers;
pub mod injection;
pub mod mask;
mod numbers;
pub mod policy;
pub mod restore;
mod scan;
mod secrets;

pub use mask::{mask_body, scan_body, Masker, Vault};
pub use policy::{Decision, Mode, Policy};
pub use restore::{restore_body, restore_text, AnswerRestorer, StreamRestorer, TextRestorer};
pub use scan::scan;

/// A kind of personal data or secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    Card,
    Iban,
    UsSsn,
    IndiaPan,
    Gstin,
    Aadhaar,
    Email,
    Phone,
    IpAddress,
    StreetAddress,
    Secret,
}

impl Category {
    pub const ALL: [Category; 11] = [
        Category::Card,
        Category::Iban,
        Category::UsSsn,
        Category::IndiaPan,
        Category::Gstin,
        Category::Aadhaar,
        Category::Email,
        Category::Phone,
        Category::IpAddress,
        Category::StreetAddress,
        Category::Secret,
    ];

    /// The name configuration and logs use (`card`, `ssn`, …).
    pub fn name(self) -> &'static str {
        match self {
            Category::Card => "card",
            Category::Iban => "iban",
            Category::UsSsn => "ssn",
            Category::IndiaPan => "pan",
            Category::Gstin => "gstin",
            Category::Aadhaar => "aadhaar",
            Category::Email => "email",
            Category::Phone => "phone",
            Category::IpAddress => "ip",
            Category::StreetAddress => "address",
            Category::Secret => "secret",
        }
    }

    pub fn from_name(name: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|category| category.name() == name)
    }

    /// The upper-case word placeholders are made of (`<CARD_1>`, `[CARD]`).
    pub fn tag(self) -> &'static str {
        match self {
            Category::Card => "CARD",
            Category::Iban => "IBAN",
            Category::UsSsn => "SSN",
            Category::IndiaPan => "PAN",
            Category::Gstin => "GSTIN",
            Category::Aadhaar => "AADHAAR",
            Category::Email => "EMAIL",
            Category::Phone => "PHONE",
            Category::IpAddress => "IP",
            Category::StreetAddress => "ADDRESS",
            Category::Secret => "SECRET",
        }
    }

    pub fn from_tag(tag: &[u8]) -> Option<Category> {
        Category::ALL
            .into_iter()
            .find(|category| category.tag().as_bytes() == tag)
    }

    fn bit(self) -> u16 {
        1 << self as u16
    }
}

/// A set of categories: which ones to look for, or which ones were found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CategorySet(u16);

impl CategorySet {
    pub const NONE: CategorySet = CategorySet(0);

    pub fn all() -> CategorySet {
        Category::ALL.into_iter().collect()
    }

    pub fn contains(self, category: Category) -> bool {
        self.0 & category.bit() != 0
    }

    pub fn insert(&mut self, category: Category) {
        self.0 |= category.bit();
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Category> {
        Category::ALL
            .into_iter()
            .filter(move |category| self.contains(*category))
    }

    /// `card, email`: for error messages and logs.
    pub fn names(self) -> String {
        self.iter().map(Category::name).collect::<Vec<_>>().join(", ")
    }
}

impl FromIterator<Category> for CategorySet {
    fn from_iter<I: IntoIterator<Item = Category>>(categories: I) -> Self {
        let mut set = CategorySet::NONE;
        categories.into_iter().for_each(|category| set.insert(category));
        set
    }
}

/// One piece of personal data or secret: what it is and its byte range in
/// the scanned text (always on character boundaries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub category: Category,
    pub span: Range<usize>,
}

/// How many findings of each category: what the audit line records (never
/// the values). Displays as `card=1 email=2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FindingCounts([u32; Category::ALL.len()]);

impl FindingCounts {
    pub fn of(findings: &[Finding]) -> FindingCounts {
        let mut counts = FindingCounts::default();
        counts.add_all(findings);
        counts
    }

    pub fn add_all(&mut self, findings: &[Finding]) {
        for finding in findings {
            let count = &mut self.0[finding.category as usize];
            *count = count.saturating_add(1);
        }
    }

    /// Per category, the larger count: two readings of the same texts
    /// (a body and its translation) count each finding once.
    pub fn per_category_max(mut self, other: FindingCounts) -> FindingCounts {
        for (count, theirs) in self.0.iter_mut().zip(other.0) {
            *count = (*count).max(theirs);
        }
        self
    }

    pub fn get(&self, category: Category) -> u32 {
        self.0[category as usize]
    }

    pub fn categories(&self) -> CategorySet {
        Category::ALL
            .into_iter()
            .filter(|category| self.get(*category) > 0)
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.categories().is_empty()
    }
}

impl std::fmt::Display for FindingCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut separator = "";
        for category in self.categories().iter() {
            write!(f, "{separator}{}={}", category.name(), self.get(category))?;
            separator = " ";
        }
        Ok(())
    }
}

/// `text` with every finding replaced by its tag in brackets (`[EMAIL]`):
/// what the access log records of audited prompts and answers.
pub fn redact_for_audit(text: &str) -> Cow<'_, str> {
    let findings = scan(text, CategorySet::all());
    if findings.is_empty() {
        return Cow::Borrowed(text);
    }
    Cow::Owned(replace_findings(text, &findings, |finding, out| {
        out.push('[');
        out.push_str(finding.category.tag());
        out.push(']');
    }))
}

/// `text` with each finding's span replaced by what `write` appends.
/// Findings are sorted and disjoint, as [`scan`] returns them.
fn replace_findings(text: &str, findings: &[Finding], mut write: impl FnMut(&Finding, &mut String)) -> String {
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for finding in findings {
        out.push_str(text.get(copied..finding.span.start).unwrap_or_default());
        write(finding, &mut out);
        copied = finding.span.end;
    }
    out.push_str(text.get(copied..).unwrap_or_default());
    out
}

/// Each finding of `text` as (category, the text it covers).
#[cfg(test)]
fn found(text: &str) -> Vec<(Category, &str)> {
    scan(text, CategorySet::all())
        .into_iter()
        .map(|finding| (finding.category, text.get(finding.span).unwrap_or_default()))
        .collect()
}

/// The texts of the findings of one category.
#[cfg(test)]
fn found_of(category: Category, text: &str) -> Vec<&str> {
    found(text)
        .into_iter()
        .filter(|(kind, _)| *kind == category)
        .map(|(_, value)| value)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_round_trip_through_names_and_tags() {
        for category in Category::ALL {
            assert_eq!(Category::from_name(category.name()), Some(category));
            assert_eq!(Category::from_tag(category.tag().as_bytes()), Some(category));
        }
        assert_eq!(Category::from_name("nope"), None);
    }

    #[test]
    fn a_summary_counts_categories_and_never_shows_values() {
        let text = "mail a@example.com and b@example.com, card 4111 1111 1111 1111";
        let counts = FindingCounts::of(&scan(text, CategorySet::all()));
        assert_eq!(counts.to_string(), "card=1 email=2");
        assert_eq!(counts.categories().names(), "card, email");
        assert!(FindingCounts::default().is_empty());
    }

    #[test]
    fn audit_redaction_replaces_findings_with_bracketed_tags() {
        assert_eq!(
            redact_for_audit("Mail jane.doe+work@example.co.uk or call +1 415-555-0132."),
            "Mail [EMAIL] or call [PHONE]."
        );
        assert_eq!(
            redact_for_audit("card 4111 1111 1111 1111, ssn 123-45-6789"),
            "card [CARD], ssn [SSN]"
        );
        assert_eq!(
            redact_for_audit("Authorization: Bearer abcdefghijklmnopqrstuvwx"),
            "Authorization: Bearer [SECRET]"
        );
        assert_eq!(
            redact_for_audit("from 10.0.12.7 to DE89 3704 0044 0532 0130 00"),
            "from [IP] to [IBAN]"
        );
        assert_eq!(
            redact_for_audit("key sk-proj-abcdefghijklmnop1234 here"),
            "key [SECRET] here"
        );
        assert_eq!(redact_for_audit("AWS AKIAIOSFODNN7EXAMPLE"), "AWS [SECRET]");
        assert!(matches!(redact_for_audit("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn ordinary_text_and_numbers_survive_audit_redaction() {
        let text = "In 2024 we shipped 1234567890123 units (order 4111111111111112) at 3.14 each.";
        assert_eq!(redact_for_audit(text), text);
    }
}
