//! Masking: each finding is replaced by a placeholder naming its category
//! and a number (`<CARD_1>`, `<EMAIL_2>`), and the original is kept in the
//! request's [`Vault`] so [`super::restore`] can put it back into the
//! answer. The same value gets the same placeholder throughout a request
//! (the model sees that two mentions are one card); numbering is per
//! category, in order of first appearance.
//!
//! [`mask_body`] masks every string value of a request body: the provider
//! is sent all of them, and the model reads far more than `messages`
//! (tool definitions, `prediction`, response-format schemas, names), so no
//! list of fields could be trusted to be complete. Encoded data (base64,
//! data URLs) is left alone, and every other byte stays as it was;
//! [`scan_body`] only counts.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use super::chat_json::{apply_edits, decode_string};
use super::{replace_findings, restore, scan, Category, CategorySet, FindingCounts};
use crate::json_edit::quote;

/// Placeholder ↔ original for one request.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Vault {
    /// Originals per category: `<CARD_3>` is `originals[Card][2]`; `None`
    /// for a number the client's own text already uses.
    originals: [Vec<Option<String>>; Category::ALL.len()],
    numbers: [HashMap<String, u32>; Category::ALL.len()],
    /// Placeholders the client wrote itself (`<EMAIL_1>` in a template):
    /// a value numbered the same would be restored where the client meant
    /// its own text.
    reserved: [HashSet<u32>; Category::ALL.len()],
}

impl Vault {
    /// The placeholder for `value`, numbering it on first sight.
    pub fn placeholder(&mut self, category: Category, value: &str) -> String {
        let slot = category as usize;
        let number = match self.numbers[slot].get(value) {
            Some(&number) => number,
            None => {
                let originals = &mut self.originals[slot];
                while self.reserved[slot].contains(&(originals.len() as u32 + 1)) {
                    originals.push(None);
                }
                originals.push(Some(value.to_string()));
                let number = originals.len() as u32;
                self.numbers[slot].insert(value.to_string(), number);
                number
            }
        };
        format!("<{}_{number}>", category.tag())
    }

    /// Keeps the placeholders written in `text` from being given to values.
    pub fn reserve_written(&mut self, text: &str) {
        for (category, number) in restore::placeholders_in(text) {
            self.reserved[category as usize].insert(number);
        }
    }

    /// The value behind `<TAG_number>`.
    pub fn original(&self, category: Category, number: u32) -> Option<&str> {
        let index = usize::try_from(number).ok()?.checked_sub(1)?;
        self.originals[category as usize].get(index)?.as_deref()
    }

    /// The categories that have a placeholder.
    pub fn categories(&self) -> CategorySet {
        Category::ALL
            .into_iter()
            .filter(|category| !self.numbers[*category as usize].is_empty())
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.numbers.iter().all(HashMap::is_empty)
    }
}

/// Masks text for one request: which categories, the vault, the counts.
#[derive(Debug, Default)]
pub struct Masker {
    wanted: CategorySet,
    vault: Vault,
    counts: FindingCounts,
}

impl Masker {
    pub fn new(wanted: CategorySet) -> Masker {
        Masker {
            wanted,
            ..Masker::default()
        }
    }

    /// `text` with each finding of the wanted categories replaced by its
    /// placeholder; borrowed when there was none.
    pub fn mask<'t>(&mut self, text: &'t str) -> Cow<'t, str> {
        self.vault.reserve_written(text);
        let findings = scan(text, self.wanted);
        if findings.is_empty() {
            return Cow::Borrowed(text);
        }
        self.counts.add_all(&findings);
        let vault = &mut self.vault;
        Cow::Owned(replace_findings(text, &findings, |finding, out| {
            let value = text.get(finding.span.clone()).unwrap_or_default();
            out.push_str(&vault.placeholder(finding.category, value));
        }))
    }

    /// Findings masked so far, per category: what the audit line records.
    pub fn counts(&self) -> FindingCounts {
        self.counts
    }

    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    pub fn into_vault(self) -> Vault {
        self.vault
    }
}

/// The request `body` with every string value masked, or `None` when
/// nothing was found (forward the body untouched). `body` must be valid
/// JSON (the request parser has read it).
pub fn mask_body(body: &[u8], masker: &mut Masker) -> Option<Vec<u8>> {
    let strings = request_strings(body);
    // A placeholder the client wrote in a later text is no value's either.
    for span in &strings {
        if let Some(text) = decode_string(body, span.clone()) {
            masker.vault.reserve_written(&text);
        }
    }
    let mut edits = Vec::new();
    for span in strings {
        let Some(text) = decode_string(body, span.clone()) else {
            continue;
        };
        if let Cow::Owned(masked) = masker.mask(&text) {
            edits.push((span, quote(&masked)));
        }
    }
    (!edits.is_empty()).then(|| apply_edits(body, &edits))
}

/// Findings of the `wanted` categories in the texts of a request, counted:
/// what a policy decides on before anything is masked.
pub fn scan_body(body: &[u8], wanted: CategorySet) -> FindingCounts {
    let mut counts = FindingCounts::default();
    for span in request_strings(body) {
        if let Some(text) = decode_string(body, span) {
            counts.add_all(&scan(&text, wanted));
        }
    }
    counts
}

/// Every string value a provider is sent but encoded data, in order.
fn request_strings(body: &[u8]) -> Vec<std::ops::Range<usize>> {
    crate::json_edit::string_values(body)
        .into_iter()
        .filter(|span| !is_blob(body.get(span.clone()).unwrap_or_default()))
        .collect()
}

/// Shortest string value taken for encoded data rather than text.
const MIN_BLOB_BYTES: usize = 256;

/// Whether the string literal `quoted` is encoded data (base64 images and
/// documents, signatures, base64 data URLs): nothing the scanner could
/// read, and megabytes it would spend time and false findings on. A data
/// URL of plain text is text.
fn is_blob(quoted: &[u8]) -> bool {
    let inner = quoted.get(1..quoted.len().saturating_sub(1)).unwrap_or_default();
    let base64_url = inner.strip_prefix(b"data:").is_some_and(|url| {
        let header = url.split(|byte| *byte == b',').next().unwrap_or_default();
        header.ends_with(b";base64")
    });
    base64_url
        || (inner.len() >= MIN_BLOB_BYTES
            && inner
                .iter()
                .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'+' | b'/' | b'=')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_value_gets_the_same_placeholder_and_numbering_is_per_category() {
        let mut masker = Masker::new(CategorySet::all());
        let masked = masker
            .mask("a@x.io, b@x.io, a@x.io, card 4111 1111 1111 1111")
            .into_owned();
        assert_eq!(masked, "<EMAIL_1>, <EMAIL_2>, <EMAIL_1>, card <CARD_1>");
        assert_eq!(masker.counts().to_string(), "card=1 email=3");
        assert_eq!(masker.vault().original(Category::Email, 2), Some("b@x.io"));
        assert_eq!(masker.vault().original(Category::Email, 3), None);
        assert_eq!(masker.vault().original(Category::Email, 0), None);
    }

    #[test]
    fn placeholders_the_client_wrote_itself_are_never_reused() {
        let body = br#"{"messages":[{"role":"user","content":"mail a@x.io"},{"role":"user","content":"template: <EMAIL_1>, <EMAIL_3>"}]}"#;
        let mut masker = Masker::new(CategorySet::all());
        let masked = String::from_utf8(mask_body(body, &mut masker).unwrap()).unwrap();
        assert!(masked.contains("mail <EMAIL_2>"), "{masked}");
        let vault = masker.into_vault();
        assert_eq!(
            super::super::restore_text(&vault, "<EMAIL_1> <EMAIL_2> <EMAIL_3>"),
            "<EMAIL_1> a@x.io <EMAIL_3>"
        );
        assert_eq!(vault.categories().names(), "email");
    }

    #[test]
    fn only_the_wanted_categories_are_masked() {
        let mut masker = Masker::new([Category::Email].into_iter().collect());
        assert_eq!(
            masker.mask("a@x.io 4111 1111 1111 1111"),
            "<EMAIL_1> 4111 1111 1111 1111"
        );
        assert!(matches!(masker.mask("nothing"), Cow::Borrowed(_)));
    }

    #[test]
    fn a_chat_body_is_masked_in_every_string_value_and_nowhere_else() {
        let body = br#"{"model":"auto","user":"a@x.io","messages":[
            {"role":"system","content":"Reply to a@x.io"},
            {"role":"user","content":[{"type":"text","text":"card \"4111 1111 1111 1111\"\n"},{"type":"image_url","image_url":{"url":"data:image/png;base64,a@x.io"}}]},
            {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"mail","arguments":"{\"to\":\"a@x.io\"}"}}]},
            {"role":"tool","tool_call_id":"c1","content":"sent to a@x.io"}],
            "tools":[{"type":"function","function":{"name":"mail","description":"Mails a@x.io"}}]}"#;
        let mut masker = Masker::new(CategorySet::all());
        let masked = String::from_utf8(mask_body(body, &mut masker).unwrap()).unwrap();
        let expected = String::from_utf8(body.to_vec())
            .unwrap()
            .replace(r#""user":"a@x.io""#, r#""user":"<EMAIL_1>""#)
            .replace("Reply to a@x.io", "Reply to <EMAIL_1>")
            .replace("4111 1111 1111 1111", "<CARD_1>")
            .replace(r#"{\"to\":\"a@x.io\"}"#, r#"{\"to\":\"<EMAIL_1>\"}"#)
            .replace("sent to a@x.io", "sent to <EMAIL_1>")
            .replace("Mails a@x.io", "Mails <EMAIL_1>");
        assert_eq!(masked, expected);
        assert!(masked.contains("base64,a@x.io"), "encoded data is left alone");
        assert_eq!(masker.counts().to_string(), "card=1 email=5");
    }

    #[test]
    fn a_body_without_findings_or_not_json_is_left_alone() {
        let mut masker = Masker::new(CategorySet::all());
        assert_eq!(
            mask_body(br#"{"messages":[{"role":"user","content":"hi"}]}"#, &mut masker),
            None
        );
        assert_eq!(mask_body(b"not json", &mut masker), None);
        assert!(masker.vault().is_empty());
    }

    #[test]
    fn a_chat_body_can_be_counted_without_masking() {
        let body = br#"{"messages":[{"role":"user","content":"a@x.io and b@x.io"}]}"#;
        assert_eq!(scan_body(body, CategorySet::all()).to_string(), "email=2");
    }

    #[test]
    fn any_body_is_read_in_every_string_but_encoded_data() {
        let blob = format!("{}4111111111111111", "QUJD".repeat(100));
        let body = serde_json::json!({"x": [{"y": "mail a@x.io"}, {"data": blob},
            {"url": "data:text/plain;base64,a@x.io 4111 1111 1111 1111"}], "a@x.io": 1});
        let body = body.to_string();
        assert_eq!(scan_body(body.as_bytes(), CategorySet::all()).to_string(), "email=1");
        assert!(is_blob(format!("\"{}\"", "QUJD".repeat(64)).as_bytes()));
        assert!(!is_blob(format!("\"{}\"", "QUJD ".repeat(64)).as_bytes()));
        assert!(!is_blob(br#""a@x.io""#));
        assert!(!is_blob(br#""data:text/plain,mail a@x.io""#));
    }

    #[test]
    fn an_embeddings_input_is_masked_whether_one_string_or_many() {
        let mut masker = Masker::new(CategorySet::all());
        let one = br#"{"model":"e","input":"mail a@x.io"}"#;
        let masked = mask_body(one, &mut masker).unwrap();
        assert_eq!(masked, br#"{"model":"e","input":"mail <EMAIL_1>"}"#);
        let many = br#"{"model":"e","input":["a@x.io",[1,2],"card 4111 1111 1111 1111"]}"#;
        assert_eq!(scan_body(many, CategorySet::all()).to_string(), "card=1 email=1");
        assert_eq!(scan_body(br#"{"input":[[1,2]]}"#, CategorySet::all()).to_string(), "");
    }
}
