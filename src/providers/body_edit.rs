//! Byte-level edits of a validated JSON request body beyond the value splice
//! of [`crate::json_edit`]: set (replace or insert), remove and rename a
//! top-level member. The OpenAI-family adapter uses them so a client's body
//! goes upstream byte for byte except where the provider needs a change.

use std::ops::Range;

use crate::json_edit;

fn skip_whitespace(body: &[u8], mut cursor: usize) -> usize {
    while matches!(body.get(cursor), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        cursor += 1;
    }
    cursor
}

/// The index after the last non-whitespace byte before `cursor`.
fn skip_whitespace_back(body: &[u8], mut cursor: usize) -> usize {
    while cursor > 0 && matches!(body.get(cursor - 1), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        cursor -= 1;
    }
    cursor
}

/// Byte ranges of the quoted key and of the value of top-level member `key`.
fn member_spans(body: &[u8], key: &str) -> Option<(Range<usize>, Range<usize>)> {
    let value = json_edit::member_value_span(body, key)?;
    let colon = skip_whitespace_back(body, value.start).checked_sub(1)?;
    if body.get(colon) != Some(&b':') {
        return None;
    }
    let key_end = skip_whitespace_back(body, colon);
    let closing_quote = key_end.checked_sub(1)?;
    if body.get(closing_quote) != Some(&b'"') {
        return None;
    }
    // The opening quote is the nearest earlier quote not escaped by an odd
    // run of backslashes.
    let mut search_end = closing_quote;
    let key_start = loop {
        let quote = memchr::memrchr(b'"', body.get(..search_end)?)?;
        let backslashes = body.get(..quote)?.iter().rev().take_while(|b| **b == b'\\').count();
        if backslashes % 2 == 0 {
            break quote;
        }
        search_end = quote;
    };
    Some((key_start..key_end, value))
}

/// `body` with member `key` set to `value_json`: replaced in place when
/// present, otherwise inserted first. `None` if `body` is not an object.
pub fn set_member(body: &[u8], key: &str, value_json: &[u8]) -> Option<Vec<u8>> {
    if let Some(span) = json_edit::member_value_span(body, key) {
        return Some(json_edit::splice(body, span, value_json));
    }
    let open = skip_whitespace(body, 0);
    if body.get(open) != Some(&b'{') {
        return None;
    }
    let is_empty = body.get(skip_whitespace(body, open + 1)) == Some(&b'}');
    let mut member = json_edit::quote(key);
    member.push(b':');
    member.extend_from_slice(value_json);
    if !is_empty {
        member.push(b',');
    }
    Some(json_edit::splice(body, open + 1..open + 1, &member))
}

/// `body` without member `key`, or `None` when it has no such member.
pub fn remove_member(body: &[u8], key: &str) -> Option<Vec<u8>> {
    let (key_span, value_span) = member_spans(body, key)?;
    let after = skip_whitespace(body, value_span.end);
    let range = if body.get(after) == Some(&b',') {
        key_span.start..skip_whitespace(body, after + 1)
    } else {
        let before = skip_whitespace_back(body, key_span.start);
        match before.checked_sub(1) {
            Some(comma) if body.get(comma) == Some(&b',') => comma..value_span.end,
            _ => key_span.start..value_span.end,
        }
    };
    Some(json_edit::splice(body, range, b""))
}

/// `body` with member `from` renamed to `to`, or `None` when absent.
pub fn rename_member(body: &[u8], from: &str, to: &str) -> Option<Vec<u8>> {
    let (key_span, _) = member_spans(body, from)?;
    Some(json_edit::splice(body, key_span, &json_edit::quote(to)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(bytes: Option<Vec<u8>>) -> Option<String> {
        bytes.map(|bytes| String::from_utf8(bytes).unwrap())
    }

    #[test]
    fn setting_replaces_a_present_member_and_inserts_a_missing_one() {
        assert_eq!(
            text(set_member(br#"{"a":1,"b":{"x":[]}}"#, "b", b"2")),
            Some(r#"{"a":1,"b":2}"#.into())
        );
        assert_eq!(
            text(set_member(br#" { "a":1}"#, "b", b"2")),
            Some(r#" {"b":2, "a":1}"#.into())
        );
        assert_eq!(text(set_member(b"{ }", "b", b"2")), Some(r#"{"b":2 }"#.into()));
        assert_eq!(set_member(b"[1]", "b", b"2"), None);
    }

    #[test]
    fn removing_takes_the_member_and_exactly_one_comma() {
        let remove = |body: &str, key: &str| text(remove_member(body.as_bytes(), key));
        assert_eq!(
            remove(r#"{"a":1, "b":2, "c":3}"#, "b"),
            Some(r#"{"a":1, "c":3}"#.into())
        );
        assert_eq!(remove(r#"{"a":1, "b":2}"#, "b"), Some(r#"{"a":1}"#.into()));
        assert_eq!(
            remove(r#"{ "b" : {"x":"\"}"} , "a":1}"#, "b"),
            Some(r#"{ "a":1}"#.into())
        );
        assert_eq!(remove(r#"{"b":2}"#, "b"), Some("{}".into()));
        assert_eq!(remove(r#"{"a":1}"#, "b"), None);
        let parsed: serde_json::Value =
            serde_json::from_slice(&remove_member(br#"{"a":"x\\","b":[1,2],"c":null}"#, "b").unwrap()).unwrap();
        assert_eq!(parsed, serde_json::json!({"a": "x\\", "c": null}));
    }

    #[test]
    fn keys_written_with_escapes_are_found_and_renamed() {
        let body = br#"{"q\"x":1,"max_\u0074okens":5}"#;
        assert_eq!(
            text(rename_member(body, "max_tokens", "n")),
            Some(r#"{"q\"x":1,"n":5}"#.into())
        );
        assert_eq!(
            text(remove_member(br#"{"a\\":1,"b":2}"#, "a\\")),
            Some(r#"{"b":2}"#.into())
        );
    }

    #[test]
    fn renaming_keeps_the_value_bytes() {
        let body = br#"{"model":"m","max_completion_tokens": 50 }"#;
        assert_eq!(
            text(rename_member(body, "max_completion_tokens", "max_tokens")),
            Some(r#"{"model":"m","max_tokens": 50 }"#.into())
        );
    }
}

