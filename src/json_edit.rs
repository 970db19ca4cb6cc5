//! Byte-level edits of a JSON object that has already been validated.
//!
//! Rewriting `model` by re-serializing the whole body would cost a DOM build
//! per request; instead the top-level members are walked once to find the
//! value's byte range and the new value is spliced in, leaving every other
//! byte of the client's request exactly as it was sent.

use std::ops::Range;

/// Byte range of the value of top-level member `key` in `body`, which must
/// be a syntactically valid JSON object (serde has parsed it already).
/// Keys written with escapes are decoded before comparing.
pub fn member_value_span(body: &[u8], key: &str) -> Option<Range<usize>> {
    let mut cursor = skip_whitespace(body, 0);
    if body.get(cursor) != Some(&b'{') {
        return None;
    }
    cursor += 1;
    loop {
        cursor = skip_whitespace(body, cursor);
        if body.get(cursor) != Some(&b'"') {
            return None;
        }
        let key_end = string_end(body, cursor)?;
        let key_matches = key_equals(body.get(cursor..key_end)?, key);
        cursor = skip_whitespace(body, key_end);
        if body.get(cursor) != Some(&b':') {
            return None;
        }
        let value_start = skip_whitespace(body, cursor + 1);
        let value_end = value_end(body, value_start)?;
        if key_matches {
            return Some(value_start..value_end);
        }
        cursor = skip_whitespace(body, value_end);
        match body.get(cursor) {
            Some(b',') => cursor += 1,
            _ => return None,
        }
    }
}

/// Whether arrays and objects in `body` (valid JSON) nest deeper than
/// `max`. One pass; string contents are skipped with `memchr`. Most bodies
/// (prose prompts) have fewer brackets in all than `max`, counted first
/// without telling strings apart.
pub fn depth_exceeds(body: &[u8], max: usize) -> bool {
    if !more_brackets_than(body, max) {
        return false;
    }
    let mut depth = 0usize;
    let mut cursor = 0;
    while let Some(byte) = body.get(cursor) {
        match byte {
            b'"' => match string_end(body, cursor) {
                Some(end) => {
                    cursor = end;
                    continue;
                }
                None => return false,
            },
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        cursor += 1;
    }
    false
}

/// Whether `body` has more than `max` opening brackets, in strings or not
/// (an upper bound of its depth). Branch-free counts over chunks of fewer
/// than 256 bytes, which the compiler vectorizes.
fn more_brackets_than(body: &[u8], max: usize) -> bool {
    let mut count = 0usize;
    for chunk in body.chunks(192) {
        // `[` and `{` are the only bytes that OR 0x20 makes `{`.
        count += usize::from(chunk.iter().fold(0u8, |n, &byte| n + u8::from(byte | 0x20 == b'{')));
        if count > max {
            return true;
        }
    }
    false
}

/// Byte ranges of every string value in `body` (valid JSON), at any depth,
/// object keys left out. One pass, without recursion: outside a string, a
/// `"` always opens one.
pub fn string_values(body: &[u8]) -> Vec<Range<usize>> {
    let mut values = Vec::new();
    let mut cursor = 0;
    while let Some(offset) = body.get(cursor..).and_then(|rest| memchr::memchr(b'"', rest)) {
        let start = cursor + offset;
        let Some(end) = string_end(body, start) else {
            break;
        };
        cursor = end;
        if body.get(skip_whitespace(body, end)) != Some(&b':') {
            values.push(start..end);
        }
    }
    values
}

/// Byte ranges (absolute in `body`) of the elements of the JSON array at
/// `array`, which must be syntactically valid.
pub fn array_items(body: &[u8], array: Range<usize>) -> Option<Vec<Range<usize>>> {
    let mut cursor = skip_whitespace(body, array.start);
    if body.get(cursor) != Some(&b'[') {
        return None;
    }
    let mut items = Vec::new();
    cursor = skip_whitespace(body, cursor + 1);
    if body.get(cursor) == Some(&b']') {
        return Some(items);
    }
    loop {
        let end = value_end(body, cursor)?;
        items.push(cursor..end);
        cursor = skip_whitespace(body, end);
        match body.get(cursor) {
            Some(b',') => cursor = skip_whitespace(body, cursor + 1),
            Some(b']') if cursor < array.end => return Some(items),
            _ => return None,
        }
    }
}

/// `body` with `range` replaced by `replacement`, in one allocation.
pub fn splice(body: &[u8], range: Range<usize>, replacement: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() - range.len() + replacement.len());
    out.extend_from_slice(&body[..range.start]);
    out.extend_from_slice(replacement);
    out.extend_from_slice(&body[range.end..]);
    out
}

/// `value` encoded as a JSON string literal.
pub fn quote(value: &str) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_else(|_| b"\"\"".to_vec())
}

pub(crate) fn skip_whitespace(body: &[u8], mut cursor: usize) -> usize {
    while matches!(body.get(cursor), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        cursor += 1;
    }
    cursor
}

/// Index just past the closing quote of the string starting at `start`.
/// Message contents are most of a body, so this jumps between quotes and
/// backslashes instead of stepping through every byte.
pub(crate) fn string_end(body: &[u8], start: usize) -> Option<usize> {
    let mut cursor = start + 1;
    loop {
        cursor += memchr::memchr2(b'"', b'\\', body.get(cursor..)?)?;
        match body.get(cursor)? {
            b'\\' => cursor += 2,
            _ => return Some(cursor + 1),
        }
    }
}

fn key_equals(quoted: &[u8], key: &str) -> bool {
    let inner = &quoted[1..quoted.len() - 1];
    if !inner.contains(&b'\\') {
        return inner == key.as_bytes();
    }
    serde_json::from_slice::<String>(quoted).is_ok_and(|decoded| decoded == key)
}

/// Index just past the value starting at `start`. Containers are skipped by
/// counting brackets outside strings, without recursion.
fn value_end(body: &[u8], start: usize) -> Option<usize> {
    match body.get(start)? {
        b'"' => string_end(body, start),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut cursor = start;
            loop {
                match body.get(cursor)? {
                    b'"' => {
                        cursor = string_end(body, cursor)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(cursor + 1);
                        }
                    }
                    _ => {}
                }
                cursor += 1;
            }
        }
        _ => {
            let mut cursor = start;
            while !matches!(
                body.get(cursor),
                None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
            ) {
                cursor += 1;
            }
            Some(cursor)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_string_value_is_found_and_no_key() {
        let body = br#"{"a":"x","b":[1,"y\"z",{"c" : "w"}],"d":{"e":null}}"#;
        let values: Vec<&[u8]> = string_values(body).into_iter().map(|span| &body[span]).collect();
        assert_eq!(values, [&br#""x""#[..], br#""y\"z""#, br#""w""#]);
    }

    #[test]
    fn the_bracket_count_counts_opening_brackets_only_and_bounds_the_depth() {
        for byte in 0..=u8::MAX {
            let expected = matches!(byte, b'[' | b'{');
            assert_eq!(more_brackets_than(&[byte], 0), expected, "{byte:#x}");
        }
        let body = format!("{{\"a\":\"{}\"}}", "x]}".repeat(500));
        assert!(!more_brackets_than(body.as_bytes(), 1));
        let many = "[".repeat(1_000);
        assert!(more_brackets_than(many.as_bytes(), 999));
        assert!(!more_brackets_than(many.as_bytes(), 1_000));
    }

    #[test]
    fn nesting_depth_is_counted_outside_strings() {
        let nested = |depth: usize| format!("{{\"a\":{}1{}}}", "[".repeat(depth - 1), "]".repeat(depth - 1));
        assert!(!depth_exceeds(nested(64).as_bytes(), 64));
        assert!(depth_exceeds(nested(65).as_bytes(), 64));
        let brackets_in_text = format!("{{\"a\":\"{}\\\"[\"}}", "[{".repeat(100));
        assert!(!depth_exceeds(brackets_in_text.as_bytes(), 2));
    }

    fn rewrite_model(body: &str, model: &str) -> String {
        let span = member_value_span(body.as_bytes(), "model").expect("model member");
        String::from_utf8(splice(body.as_bytes(), span, &quote(model))).unwrap()
    }

    #[test]
    fn the_model_value_is_replaced_and_nothing_else_moves() {
        let body = r#"{ "messages": [{"role":"user","content":"say \"model\": 1 {"}], "model" : "auto", "n":1 }"#;
        let rewritten = rewrite_model(body, "gpt-4o-mini");
        assert_eq!(rewritten, body.replace(r#""auto""#, r#""gpt-4o-mini""#));
    }

    #[test]
    fn nested_model_keys_are_not_top_level() {
        let body = r#"{"metadata":{"model":"inner"},"model":"auto"}"#;
        assert_eq!(
            rewrite_model(body, "x"),
            r#"{"metadata":{"model":"inner"},"model":"x"}"#
        );
    }

    #[test]
    fn escaped_keys_are_decoded() {
        let body = r#"{"mod\u0065l":"auto"}"#;
        assert_eq!(rewrite_model(body, "x"), r#"{"mod\u0065l":"x"}"#);
    }

    #[test]
    fn any_value_type_can_be_skipped() {
        let body = r#"{"a":[1,{"b":"]}"}],"c":-1.5e3,"d":true,"e":null,"model":"m"}"#;
        assert_eq!(
            member_value_span(body.as_bytes(), "model"),
            Some(body.len() - 4..body.len() - 1)
        );
    }

    #[test]
    fn missing_members_and_non_objects_give_none() {
        assert_eq!(member_value_span(br#"{"a":1}"#, "model"), None);
        assert_eq!(member_value_span(br#"[1]"#, "model"), None);
        assert_eq!(member_value_span(b"", "model"), None);
        assert_eq!(member_value_span(br#"{"a":"unterminated"#, "model"), None);
    }

    #[test]
    fn array_items_are_listed_with_absolute_ranges() {
        let body = br#"{"a": [ 1, "x,]", {"b":[2]} ]}"#;
        let array = member_value_span(body, "a").unwrap();
        let items: Vec<&[u8]> = array_items(body, array)
            .unwrap()
            .into_iter()
            .map(|item| &body[item])
            .collect();
        assert_eq!(items, [&b"1"[..], br#""x,]""#, br#"{"b":[2]}"#]);
        assert_eq!(array_items(b"[]", 0..2), Some(vec![]));
        assert_eq!(array_items(b"{}", 0..2), None);
        assert_eq!(array_items(b"[1,", 0..3), None);
    }

    #[test]
    fn quoting_escapes_special_characters() {
        assert_eq!(quote("a\"b"), br#""a\"b""#.to_vec());
    }
}
