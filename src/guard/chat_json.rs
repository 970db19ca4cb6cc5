//! Where text sits in OpenAI chat JSON, for masking and restoring in place.
//!
//! A request's `messages[]`, an answer's `choices[].message` and a stream
//! chunk's `choices[].delta` share one shape: `content` (a string, or parts
//! with `text`), `tool_calls[].function.arguments` and the legacy
//! `function_call.arguments`. Those strings are found by walking the bytes
//! ([`crate::json_edit`]), decoded, changed, re-encoded and spliced back;
//! every other byte of the body stays as it was.

use std::borrow::Cow;
use std::ops::Range;

use crate::json_edit::{array_items, member_value_span};

/// Which text of a message a string is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Slot {
    Content,
    /// Arguments of the tool call with this `index` (its position when the
    /// call has none); the legacy `function_call` is index 0.
    ToolArguments(u64),
}

/// Range of member `key`'s value inside the object at `object`.
pub(super) fn member(body: &[u8], object: Range<usize>, key: &str) -> Option<Range<usize>> {
    let relative = member_value_span(body.get(object.clone())?, key)?;
    Some(object.start + relative.start..object.start + relative.end)
}

/// Items of the array that is member `key` of the object at `object`.
pub(super) fn member_items(body: &[u8], object: Range<usize>, key: &str) -> Vec<Range<usize>> {
    member(body, object, key)
        .and_then(|array| array_items(body, array))
        .unwrap_or_default()
}

/// The number member `key` holds, if it is a plain unsigned integer.
pub(super) fn number_member(body: &[u8], object: Range<usize>, key: &str) -> Option<u64> {
    let span = member(body, object, key)?;
    std::str::from_utf8(body.get(span)?).ok()?.parse().ok()
}

/// The text strings of one message object, in order.
pub(super) fn message_strings(body: &[u8], message: Range<usize>) -> Vec<(Slot, Range<usize>)> {
    let mut strings = Vec::new();
    if let Some(content) = member(body, message.clone(), "content") {
        if body.get(content.start) == Some(&b'"') {
            strings.push((Slot::Content, content));
        } else {
            for part in array_items(body, content).unwrap_or_default() {
                if let Some(text) = member(body, part, "text").filter(|text| body.get(text.start) == Some(&b'"')) {
                    strings.push((Slot::Content, text));
                }
            }
        }
    }
    for (position, call) in member_items(body, message.clone(), "tool_calls")
        .into_iter()
        .enumerate()
    {
        let index = number_member(body, call.clone(), "index").unwrap_or(position as u64);
        if let Some(arguments) =
            member(body, call, "function").and_then(|function| string_member(body, function, "arguments"))
        {
            strings.push((Slot::ToolArguments(index), arguments));
        }
    }
    if let Some(arguments) =
        member(body, message, "function_call").and_then(|function| string_member(body, function, "arguments"))
    {
        strings.push((Slot::ToolArguments(0), arguments));
    }
    strings
}

fn string_member(body: &[u8], object: Range<usize>, key: &str) -> Option<Range<usize>> {
    member(body, object, key).filter(|value| body.get(value.start) == Some(&b'"'))
}

/// The text of the JSON string literal at `span`, borrowed when it holds
/// no escapes.
pub(super) fn decode_string(body: &[u8], span: Range<usize>) -> Option<Cow<'_, str>> {
    let literal = body.get(span)?;
    let inner = literal.get(1..literal.len().checked_sub(1)?)?;
    if !inner.contains(&b'\\') {
        return std::str::from_utf8(inner).ok().map(Cow::Borrowed);
    }
    serde_json::from_slice::<String>(literal).ok().map(Cow::Owned)
}

/// `body` with each `(range, replacement)` applied; ranges are disjoint
/// and in order.
pub(super) fn apply_edits(body: &[u8], edits: &[(Range<usize>, Vec<u8>)]) -> Vec<u8> {
    let added: usize = edits.iter().map(|(_, replacement)| replacement.len()).sum();
    let mut out = Vec::with_capacity(body.len() + added);
    let mut copied = 0;
    for (range, replacement) in edits {
        out.extend_from_slice(body.get(copied..range.start).unwrap_or_default());
        out.extend_from_slice(replacement);
        copied = range.end;
    }
    out.extend_from_slice(body.get(copied..).unwrap_or_default());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(body: &str) -> Vec<(Slot, String)> {
        let bytes = body.as_bytes();
        message_strings(bytes, 0..bytes.len())
            .into_iter()
            .map(|(slot, span)| (slot, decode_string(bytes, span).unwrap().into_owned()))
            .collect()
    }

    #[test]
    fn content_parts_and_tool_arguments_are_found() {
        let body = r#"{"role":"assistant","content":[{"type":"text","text":"a\"b"},{"type":"image_url","image_url":{"url":"x"}}],
            "tool_calls":[{"index":3,"function":{"name":"f","arguments":"{\"x\":1}"}},{"function":{"arguments":"{}"}}]}"#;
        assert_eq!(
            texts(body),
            [
                (Slot::Content, "a\"b".to_string()),
                (Slot::ToolArguments(3), "{\"x\":1}".to_string()),
                (Slot::ToolArguments(1), "{}".to_string()),
            ]
        );
        assert_eq!(texts(r#"{"content":null}"#), []);
        assert_eq!(
            texts(r#"{"function_call":{"arguments":"{}"}}"#),
            [(Slot::ToolArguments(0), "{}".to_string())]
        );
    }

    #[test]
    fn edits_are_spliced_in_order() {
        assert_eq!(
            apply_edits(b"abcdef", &[(1..2, b"XY".to_vec()), (4..6, Vec::new())]),
            b"aXYcd"
        );
    }
}
