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

#[cfg(test)]
mod properties {
    use super::*;
    use crate::testing::any_json;
    use proptest::prelude::*;
    use serde_json::{Map, Value};

    /// An object with distinct keys (some written with escapes once
    /// serialized), printed compact or pretty, and one of its keys or a
    /// missing one to edit.
    fn object_and_key() -> impl Strategy<Value = (Map<String, Value>, Vec<u8>, String)> {
        (
            prop::collection::btree_map("model|max_tokens|stream_options|[a-z\"\\\\é\\n]{1,5}", any_json(), 0..6),
            any::<bool>(),
            any::<prop::sample::Index>(),
            any::<bool>(),
        )
            .prop_map(|(members, pretty, pick, missing)| {
                let object: Map<String, Value> = members.into_iter().collect();
                let body = if pretty {
                    serde_json::to_vec_pretty(&object).unwrap()
                } else {
                    serde_json::to_vec(&object).unwrap()
                };
                let keys: Vec<&String> = object.keys().collect();
                let key = match keys.is_empty() || missing {
                    true => "absent \"key\"".to_string(),
                    false => pick.get(&keys).to_string(),
                };
                (object, body, key)
            })
    }

    fn parsed(body: &[u8]) -> Map<String, Value> {
        serde_json::from_slice(body).expect("an edited body is still a JSON object")
    }

    proptest! {
        #[test]
        fn the_span_of_a_member_is_exactly_its_value((object, body, key) in object_and_key()) {
            let span = json_edit::member_value_span(&body, &key);
            match object.get(&key) {
                Some(value) => {
                    let span = span.expect("a present member has a span");
                    prop_assert_eq!(&serde_json::from_slice::<Value>(&body[span]).unwrap(), value);
                }
                None => prop_assert_eq!(span, None),
            }
        }

        #[test]
        fn setting_a_member_changes_only_that_member(
            (object, body, key) in object_and_key(),
            value in any_json(),
        ) {
            let edited = set_member(&body, &key, &serde_json::to_vec(&value).unwrap()).unwrap();
            let mut expected = object;
            expected.insert(key, value);
            prop_assert_eq!(parsed(&edited), expected);
        }

        #[test]
        fn removing_a_member_changes_only_that_member((object, body, key) in object_and_key()) {
            let mut expected = object;
            match expected.remove(&key) {
                Some(_) => prop_assert_eq!(parsed(&remove_member(&body, &key).unwrap()), expected),
                None => prop_assert_eq!(remove_member(&body, &key), None),
            }
        }

        #[test]
        fn renaming_a_member_keeps_its_value((object, body, key) in object_and_key()) {
            let mut expected = object;
            match expected.remove(&key) {
                Some(value) => {
                    expected.insert("renamed \"é\"".into(), value);
                    prop_assert_eq!(parsed(&rename_member(&body, &key, "renamed \"é\"").unwrap()), expected);
                }
                None => prop_assert_eq!(rename_member(&body, &key, "renamed \"é\""), None),
            }
        }
    }
}
