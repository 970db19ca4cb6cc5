//! Byte-level JSON edits (`json_edit`, `providers::body_edit`) against an
//! oracle: the object's members in order, read by serde_json.

use signalbox::json_edit::{member_value_span, quote, splice};
use signalbox::providers::body_edit::{remove_member, rename_member, set_member};

use crate::{is_json, Members};

const KEYS: [&str; 6] = [
    "model",
    "stream_options",
    "max_tokens",
    "max_completion_tokens",
    "a\"b",
    "é",
];

/// `[key selector][value selector][JSON object]`: the span of the chosen
/// key's first member is exactly its value; set, remove and rename keep the
/// document valid and change only that member.
pub fn check_edits(data: &[u8]) {
    let [key_selector, value_selector, body @ ..] = data else {
        return;
    };
    let Some(before) = Members::of(body) else { return };
    let key = match before.0.get(usize::from(*key_selector)) {
        Some((own, _)) if *key_selector >= 8 => own.clone(),
        _ => KEYS[usize::from(*key_selector) % KEYS.len()].to_string(),
    };
    let first = before.position(&key);
    let span = member_value_span(body, &key);
    match (first, &span) {
        (Some(at), Some(span)) => assert_eq!(
            body.get(span.clone()),
            Some(before.0[at].1.as_bytes()),
            "the span of {key:?} is its first value"
        ),
        (None, None) => {}
        _ => panic!("member {key:?} found at {first:?} by serde but at {span:?} by the splicer"),
    }

    let value = match value_selector % 4 {
        0 => quote("new \"value\" \u{1}"),
        1 => b"{\"include_usage\":true}".to_vec(),
        2 => b"-1.5e3".to_vec(),
        _ => b"[]".to_vec(),
    };
    let value_text = String::from_utf8(value.clone()).expect("edit values are UTF-8");

    let set = set_member(body, &key, &value).expect("a JSON object takes a member");
    let mut expected = before.0.clone();
    match first {
        Some(at) => expected[at].1 = value_text.clone(),
        None => expected.insert(0, (key.clone(), value_text.clone())),
    }
    assert_eq!(Members::of(&set), Some(Members(expected)), "set {key:?}");

    let removed = remove_member(body, &key);
    match first {
        Some(at) => {
            let mut expected = before.0.clone();
            expected.remove(at);
            let removed = removed.expect("a present member can be removed");
            assert_eq!(Members::of(&removed), Some(Members(expected)), "remove {key:?}");
        }
        None => assert_eq!(removed, None),
    }

    let renamed = rename_member(body, &key, "renamed\u{7f}\"");
    match first {
        Some(at) => {
            let mut expected = before.0.clone();
            expected[at].0 = "renamed\u{7f}\"".into();
            let renamed = renamed.expect("a present member can be renamed");
            assert_eq!(Members::of(&renamed), Some(Members(expected)), "rename {key:?}");
        }
        None => assert_eq!(renamed, None),
    }

    if let Some(span) = span {
        assert!(is_json(&splice(body, span, b"null")));
    }
}
