//! Restoring: placeholders the model echoes (`<CARD_1>`) are replaced by
//! the originals from the request's [`Vault`] before the client sees the
//! answer. Placeholders the vault does not know are left as written.
//!
//! Replacement happens on decoded JSON strings (`choices[].message` or
//! `choices[].delta`: content and tool-call arguments), and the result is
//! re-encoded, so an original with quotes, backslashes or newlines comes
//! out correctly escaped.
//!
//! A stream may split a placeholder anywhere: inside one network chunk, or
//! across events (`<CARD` in one delta, `_1>` in the next). [`StreamRestorer`]
//! frames events whatever the chunking, and per choice and tool call holds
//! back a trailing piece that could still become a placeholder (at most
//! [`LONGEST_PLACEHOLDER`] bytes); the held piece is sent, restored or not,
//! once it resolves, in a small event of its own before the choice's
//! `finish_reason`, or at the end of the stream.

use std::borrow::Cow;

use super::chat_json::{apply_edits, decode_string, member, member_items, message_strings, number_member, Slot};
use super::{Category, Vault};
use crate::error::GatewayError;
use crate::json_edit::quote;
use crate::providers::sse::{SseEvent, SseFramer};

/// `<` + the longest tag (7) + `_` + up to nine digits + `>`.
pub const LONGEST_PLACEHOLDER: usize = 1 + 7 + 1 + 9 + 1;
const MAX_NUMBER_DIGITS: usize = 9;

/// What the bytes at a `<` are.
enum Parsed {
    Placeholder {
        category: Category,
        number: u32,
        length: usize,
    },
    /// The text ends before it could be told: a prefix of a placeholder.
    Incomplete,
    NotPlaceholder,
}

fn parse_placeholder(text: &[u8]) -> Parsed {
    let rest = text.get(1..).unwrap_or_default();
    let tag_length = rest.iter().take_while(|byte| byte.is_ascii_uppercase()).count();
    let tag = rest.get(..tag_length).unwrap_or_default();
    let Some(after_tag) = rest.get(tag_length) else {
        let prefix = Category::ALL
            .iter()
            .any(|category| category.tag().as_bytes().starts_with(tag));
        return if prefix {
            Parsed::Incomplete
        } else {
            Parsed::NotPlaceholder
        };
    };
    let Some(category) = Category::from_tag(tag).filter(|_| *after_tag == b'_') else {
        return Parsed::NotPlaceholder;
    };
    let digits_start = tag_length + 1;
    let digits = rest.get(digits_start..).unwrap_or_default();
    let digit_count = digits.iter().take_while(|byte| byte.is_ascii_digit()).count();
    if digit_count > MAX_NUMBER_DIGITS {
        return Parsed::NotPlaceholder;
    }
    match digits.get(digit_count) {
        None => Parsed::Incomplete,
        Some(b'>') if digit_count > 0 => {
            let number = digits
                .get(..digit_count)
                .unwrap_or_default()
                .iter()
                .fold(0u32, |value, digit| value * 10 + u32::from(digit - b'0'));
            Parsed::Placeholder {
                category,
                number,
                length: 1 + digits_start + digit_count + 1,
            }
        }
        Some(_) => Parsed::NotPlaceholder,
    }
}

/// Every complete placeholder written in `text`, as (category, number).
pub(super) fn placeholders_in(text: &str) -> Vec<(Category, u32)> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(offset) = bytes.get(from..).and_then(|rest| memchr::memchr(b'<', rest)) {
        let at = from + offset;
        from = at + 1;
        if let Parsed::Placeholder {
            category,
            number,
            length,
        } = parse_placeholder(bytes.get(at..).unwrap_or_default())
        {
            found.push((category, number));
            from = at + length;
        }
    }
    found
}

/// Appends `text` to `out` with known placeholders restored. Unless
/// `at_end`, stops before a trailing placeholder prefix and returns where.
fn restore_into(vault: &Vault, text: &str, out: &mut String, at_end: bool) -> usize {
    let bytes = text.as_bytes();
    let mut copied = 0;
    let mut from = 0;
    while let Some(offset) = bytes.get(from..).and_then(|rest| memchr::memchr(b'<', rest)) {
        let at = from + offset;
        from = at + 1;
        match parse_placeholder(bytes.get(at..).unwrap_or_default()) {
            Parsed::Placeholder {
                category,
                number,
                length,
            } => {
                if let Some(original) = vault.original(category, number) {
                    out.push_str(text.get(copied..at).unwrap_or_default());
                    out.push_str(original);
                    copied = at + length;
                }
                from = at + length;
            }
            Parsed::Incomplete if !at_end => {
                out.push_str(text.get(copied..at).unwrap_or_default());
                return at;
            }
            Parsed::Incomplete | Parsed::NotPlaceholder => {}
        }
    }
    out.push_str(text.get(copied..).unwrap_or_default());
    text.len()
}

/// `text` with known placeholders restored; borrowed when there were none.
pub fn restore_text<'t>(vault: &Vault, text: &'t str) -> Cow<'t, str> {
    if vault.is_empty() || !text.contains('<') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    restore_into(vault, text, &mut out, true);
    if out == text {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(out)
    }
}

/// Restores text that arrives in pieces, holding back a possible
/// placeholder prefix between pieces.
#[derive(Debug, Default)]
pub struct TextRestorer {
    held: String,
}

impl TextRestorer {
    /// What can be sent of the text so far, restored.
    pub fn feed(&mut self, vault: &Vault, piece: &str) -> String {
        let text = std::mem::take(&mut self.held) + piece;
        let mut out = String::with_capacity(text.len());
        let consumed = restore_into(vault, &text, &mut out, false);
        self.held = text.get(consumed..).unwrap_or_default().to_string();
        out
    }

    fn is_holding(&self) -> bool {
        !self.held.is_empty()
    }

    /// Whatever is still held: the text ended inside a would-be placeholder.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

/// The chat answer `body` with placeholders restored in every choice's
/// content and tool-call arguments, or `None` when nothing changed.
pub fn restore_body(body: &[u8], vault: &Vault) -> Option<Vec<u8>> {
    if vault.is_empty() {
        return None;
    }
    let mut edits = Vec::new();
    for choice in member_items(body, 0..body.len(), "choices") {
        let Some(message) = member(body, choice, "message") else {
            continue;
        };
        for (_, span) in message_strings(body, message) {
            let Some(text) = decode_string(body, span.clone()) else {
                continue;
            };
            if let Cow::Owned(restored) = restore_text(vault, &text) {
                edits.push((span, quote(&restored)));
            }
        }
    }
    (!edits.is_empty()).then(|| apply_edits(body, &edits))
}

/// Restoring one answer as the filter receives it: a whole answer once
/// complete (the caller buffers until then), a stream chunk by chunk.
#[derive(Debug)]
pub enum AnswerRestorer {
    Whole(Vault),
    Stream(StreamRestorer),
    /// The stream could not be framed: an error event was sent and the
    /// rest is dropped (placeholders are never passed off as the answer).
    Failed,
}

impl AnswerRestorer {
    pub fn new(vault: Vault, stream: bool) -> AnswerRestorer {
        if stream {
            AnswerRestorer::Stream(StreamRestorer::new(vault))
        } else {
            AnswerRestorer::Whole(vault)
        }
    }

    /// Whether the caller must hold the body until its end.
    pub fn wants_whole_body(&self) -> bool {
        matches!(self, AnswerRestorer::Whole(_))
    }

    /// The restored bytes for `chunk` (the whole body for a whole answer).
    pub fn feed(&mut self, chunk: &[u8], end_of_stream: bool) -> Vec<u8> {
        let restored = match self {
            AnswerRestorer::Whole(vault) => return restore_body(chunk, vault).unwrap_or_else(|| chunk.to_vec()),
            AnswerRestorer::Failed => return Vec::new(),
            AnswerRestorer::Stream(restorer) => {
                let mut restored = restorer.feed(chunk);
                if end_of_stream {
                    restored = restored.and_then(|mut out| {
                        out.extend(restorer.finish()?);
                        Ok(out)
                    });
                }
                restored
            }
        };
        restored.unwrap_or_else(|error| {
            log::warn!("a masked answer's stream cannot be restored: {error}");
            *self = AnswerRestorer::Failed;
            let mut event = b"data: ".to_vec();
            event.extend(error.to_json());
            event.extend(b"\n\n");
            event
        })
    }
}

/// Restores an OpenAI chat-completions SSE stream chunk by chunk.
#[derive(Debug)]
pub struct StreamRestorer {
    vault: Vault,
    framer: SseFramer,
    /// Per (choice index, text slot): the held-back piece.
    pending: Vec<((u64, Slot), TextRestorer)>,
}

impl StreamRestorer {
    pub fn new(vault: Vault) -> StreamRestorer {
        StreamRestorer {
            vault,
            framer: SseFramer::default(),
            pending: Vec::new(),
        }
    }

    /// The restored bytes of every event completed by `chunk`. An error is
    /// a stream the framer refuses (an event over its size cap).
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<u8>, GatewayError> {
        self.framer.feed(chunk);
        self.drain()
    }

    /// The stream ended: the last events, then anything still held.
    pub fn finish(&mut self) -> Result<Vec<u8>, GatewayError> {
        self.framer.end();
        let mut out = self.drain()?;
        self.flush(&mut out, None);
        Ok(out)
    }

    fn drain(&mut self) -> Result<Vec<u8>, GatewayError> {
        let mut out = Vec::new();
        let StreamRestorer { vault, framer, pending } = self;
        while let Some(SseEvent { event, data }) = framer.next_event()? {
            rewrite(vault, pending, event, data, &mut out);
        }
        Ok(out)
    }

    fn flush(&mut self, out: &mut Vec<u8>, choice: Option<u64>) {
        flush(&mut self.pending, out, choice);
    }
}

type Pending = Vec<((u64, Slot), TextRestorer)>;

/// One event, restored. An event with no `<` while nothing is held cannot
/// change and is copied without reading its JSON.
fn rewrite(vault: &Vault, pending: &mut Pending, event: &str, data: &[u8], out: &mut Vec<u8>) {
    let holding = pending.iter().any(|(_, restorer)| restorer.is_holding());
    if !holding && memchr::memchr(b'<', data).is_none() {
        write_event(out, event, data);
        return;
    }
    if data.trim_ascii() == b"[DONE]" {
        flush(pending, out, None);
        write_event(out, event, data);
        return;
    }
    let mut edits = Vec::new();
    let mut finished = Vec::new();
    for (position, choice) in member_items(data, 0..data.len(), "choices").into_iter().enumerate() {
        let index = number_member(data, choice.clone(), "index").unwrap_or(position as u64);
        let finishing =
            member(data, choice.clone(), "finish_reason").is_some_and(|span| data.get(span) != Some(b"null"));
        if let Some(delta) = member(data, choice, "delta") {
            for (slot, span) in message_strings(data, delta) {
                let Some(text) = decode_string(data, span.clone()) else {
                    continue;
                };
                let restored = match restorer(pending, index, slot) {
                    // The choice ends with this event: nothing more can
                    // complete a held piece, and it must follow this text.
                    Some(restorer) if finishing => restorer.feed(vault, &text) + &restorer.finish(),
                    Some(restorer) => restorer.feed(vault, &text),
                    None => restore_text(vault, &text).into_owned(),
                };
                if restored != text {
                    edits.push((span, quote(&restored)));
                }
            }
        }
        if finishing {
            finished.push(index);
        }
    }
    for index in finished {
        flush(pending, out, Some(index));
    }
    if edits.is_empty() {
        write_event(out, event, data);
    } else {
        write_event(out, event, &apply_edits(data, &edits));
    }
}

/// Sends what is held for one choice (or all) as events of their own.
fn flush(pending: &mut Pending, out: &mut Vec<u8>, choice: Option<u64>) {
    for ((index, slot), restorer) in pending.iter_mut() {
        if choice.is_some_and(|choice| choice != *index) {
            continue;
        }
        let held = restorer.finish();
        if held.is_empty() {
            continue;
        }
        let delta = match slot {
            Slot::Content => serde_json::json!({ "content": held }),
            Slot::ToolArguments(call) => {
                serde_json::json!({ "tool_calls": [{ "index": call, "function": { "arguments": held } }] })
            }
        };
        let chunk = serde_json::json!({
            "object": "chat.completion.chunk",
            "choices": [{ "index": index, "delta": delta }]
        });
        write_event(out, "", chunk.to_string().as_bytes());
    }
}

/// Choices and tool calls whose text is held back between events; more
/// (a stream no model sends) are restored event by event, unheld.
const MAX_PENDING: usize = 64;

fn restorer(pending: &mut Pending, choice: u64, slot: Slot) -> Option<&mut TextRestorer> {
    let key = (choice, slot);
    let position = match pending.iter().position(|(held, _)| *held == key) {
        Some(position) => position,
        None if pending.len() < MAX_PENDING => {
            pending.push((key, TextRestorer::default()));
            pending.len() - 1
        }
        None => return None,
    };
    pending.get_mut(position).map(|(_, restorer)| restorer)
}

fn write_event(out: &mut Vec<u8>, event: &str, data: &[u8]) {
    if !event.is_empty() {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(event.as_bytes());
        out.push(b'\n');
    }
    for line in data.split(|&byte| byte == b'\n') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::{CategorySet, Masker};

    fn vault() -> Vault {
        let mut masker = Masker::new(CategorySet::all());
        let masked = masker.mask("card 4111 1111 1111 1111, mail jane@x.io");
        assert_eq!(masked, "card <CARD_1>, mail <EMAIL_1>");
        let mut vault = masker.into_vault();
        vault.placeholder(Category::Secret, "line one\nline \"two\"");
        vault
    }

    #[test]
    fn known_placeholders_are_restored_and_unknown_ones_kept() {
        let vault = vault();
        assert_eq!(
            restore_text(&vault, "Paid with <CARD_1> (not <CARD_2>), <b>bold</b> <EMAIL_1>."),
            "Paid with 4111 1111 1111 1111 (not <CARD_2>), <b>bold</b> jane@x.io."
        );
        assert!(matches!(restore_text(&vault, "a < b"), Cow::Borrowed(_)));
        assert!(matches!(restore_text(&vault, "<CARD_99>"), Cow::Borrowed(_)));
    }

    #[test]
    fn a_placeholder_split_anywhere_is_restored_once_complete() {
        let vault = vault();
        let text = "Card <CARD_1> and <EMAIL_1>; x < y <CAR";
        for split in 0..=text.len() {
            let mut restorer = TextRestorer::default();
            let mut out = restorer.feed(&vault, &text[..split]);
            out += &restorer.feed(&vault, &text[split..]);
            out += &restorer.finish();
            assert_eq!(
                out, "Card 4111 1111 1111 1111 and jane@x.io; x < y <CAR",
                "split at {split}"
            );
        }
    }

    #[test]
    fn an_answer_body_is_restored_with_correct_escaping() {
        let vault = vault();
        let body = br#"{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":"Card <CARD_1>, key <SECRET_1>","tool_calls":[{"id":"t","type":"function","function":{"name":"pay","arguments":"{\"card\":\"<CARD_1>\"}"}}]},"finish_reason":"stop"}]}"#;
        let restored = restore_body(body, &vault).unwrap();
        let parsed: serde_json::Value = serde_json::from_slice(&restored).unwrap();
        assert_eq!(
            parsed["choices"][0]["message"]["content"],
            "Card 4111 1111 1111 1111, key line one\nline \"two\""
        );
        assert_eq!(
            parsed["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
            r#"{"card":"4111 1111 1111 1111"}"#
        );
        assert_eq!(
            restore_body(br#"{"choices":[{"message":{"content":"plain"}}]}"#, &vault),
            None
        );
        assert_eq!(restore_body(body, &Vault::default()), None);
    }

    fn chunk(content: &str) -> String {
        let delta = serde_json::json!({"choices":[{"index":0,"delta":{"content":content},"finish_reason":null}]});
        format!("data: {delta}\n\n")
    }

    /// The assistant text the client assembles from a restored stream.
    fn assembled(stream: &[u8]) -> String {
        let text = String::from_utf8(stream.to_vec()).unwrap();
        text.lines()
            .filter_map(|line| line.strip_prefix("data: "))
            .filter_map(|data| serde_json::from_str::<serde_json::Value>(data).ok())
            .filter_map(|event| event["choices"][0]["delta"]["content"].as_str().map(str::to_string))
            .collect()
    }

    #[test]
    fn a_stream_is_restored_across_event_and_chunk_splits_at_every_byte() {
        let mut stream = String::new();
        for piece in ["Your card ", "<", "CARD", "_1", "> and ", "<EMAIL_", "1>", " ok <CA"] {
            stream += &chunk(piece);
        }
        stream += "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
        let expected = "Your card 4111 1111 1111 1111 and jane@x.io ok <CA";
        for split in 0..=stream.len() {
            let mut restorer = StreamRestorer::new(vault());
            let mut out = restorer.feed(&stream.as_bytes()[..split]).unwrap();
            out.extend(restorer.feed(&stream.as_bytes()[split..]).unwrap());
            out.extend(restorer.finish().unwrap());
            assert_eq!(assembled(&out), expected, "split at {split}");
            let text = String::from_utf8(out).unwrap();
            assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
            assert!(
                text.find("<CA\"").unwrap() < text.find("\"stop\"").unwrap(),
                "held text precedes the finish"
            );
        }
    }

    #[test]
    fn text_held_in_the_finishing_event_follows_that_event_s_own_text() {
        let last = serde_json::json!({"choices":[{"index":0,"delta":{"content":"ok <CA"},"finish_reason":"stop"}]});
        let stream = format!(
            "{}{}data: {last}\n\ndata: [DONE]\n\n",
            chunk("Card <CARD_1>, "),
            chunk("then ")
        );
        let mut restorer = StreamRestorer::new(vault());
        let mut out = restorer.feed(stream.as_bytes()).unwrap();
        out.extend(restorer.finish().unwrap());
        assert_eq!(assembled(&out), "Card 4111 1111 1111 1111, then ok <CA");
    }

    #[test]
    fn streamed_tool_call_arguments_are_restored_per_call() {
        let event = |call: u64, arguments: &str| {
            let chunk = serde_json::json!({"choices":[{"index":0,"delta":{"tool_calls":[{"index":call,"function":{"arguments":arguments}}]}}]});
            format!("data: {chunk}\n\n")
        };
        let stream = [
            event(0, "{\"to\":\"<EMA"),
            event(1, "{\"card\":\"<CARD_1"),
            event(0, "IL_1>\"}"),
            event(1, ">\"}"),
        ]
        .concat();
        let mut restorer = StreamRestorer::new(vault());
        let mut out = restorer.feed(stream.as_bytes()).unwrap();
        out.extend(restorer.finish().unwrap());
        let mut arguments = [String::new(), String::new()];
        for line in String::from_utf8(out)
            .unwrap()
            .lines()
            .filter_map(|line| line.strip_prefix("data: "))
        {
            let event: serde_json::Value = serde_json::from_str(line).unwrap();
            let call = &event["choices"][0]["delta"]["tool_calls"][0];
            arguments[call["index"].as_u64().unwrap() as usize] += call["function"]["arguments"].as_str().unwrap();
        }
        assert_eq!(
            arguments,
            [r#"{"to":"jane@x.io"}"#, r#"{"card":"4111 1111 1111 1111"}"#]
        );
    }

    #[test]
    fn past_the_held_slot_cap_tool_calls_are_still_restored_event_by_event() {
        let stream: String = (0..MAX_PENDING as u64 + 10)
            .map(|call| {
                let chunk = serde_json::json!({"choices":[{"index":0,"delta":{"tool_calls":[{"index":call,"function":{"arguments":"<CARD_1>"}}]}}]});
                format!("data: {chunk}\n\n")
            })
            .collect();
        let mut restorer = StreamRestorer::new(vault());
        let out = String::from_utf8(restorer.feed(stream.as_bytes()).unwrap()).unwrap();
        assert_eq!(out.matches("4111 1111 1111 1111").count(), MAX_PENDING + 10);
        assert!(!out.contains("<CARD_1>"));
    }

    #[test]
    fn events_without_placeholders_pass_unchanged() {
        let stream = format!(
            "{}: keep-alive\n\n{}data: {{\"choices\":[]}}\n\n",
            chunk("hello"),
            chunk("world")
        );
        let mut restorer = StreamRestorer::new(vault());
        let mut out = restorer.feed(stream.as_bytes()).unwrap();
        out.extend(restorer.finish().unwrap());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("{}{}data: {{\"choices\":[]}}\n\n", chunk("hello"), chunk("world"))
        );
    }

    #[test]
    fn an_answer_restorer_restores_whole_answers_and_streams_split_anywhere() {
        let whole = br#"{"choices":[{"index":0,"message":{"role":"assistant","content":"paid with <CARD_1>"}}]}"#;
        let mut restorer = AnswerRestorer::new(vault(), false);
        assert!(restorer.wants_whole_body());
        let restored = String::from_utf8(restorer.feed(whole, true)).unwrap();
        assert!(restored.contains("paid with 4111 1111 1111 1111"), "{restored}");
        let stream = format!("{}{}data: [DONE]\n\n", chunk("paid with <CA"), chunk("RD_1>."));
        let mut restorer = AnswerRestorer::new(vault(), true);
        let (head, tail) = stream.as_bytes().split_at(17);
        let mut out = restorer.feed(head, false);
        out.extend(restorer.feed(tail, true));
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains("4111 1111 1111 1111") && !out.contains("<CA"), "{out}");
        assert!(out.ends_with("data: [DONE]\n\n"), "{out}");
    }

    #[test]
    fn a_stream_that_cannot_be_framed_ends_in_an_error_event_and_nothing_more() {
        let mut restorer = AnswerRestorer::new(vault(), true);
        let huge = format!("data: {}", "x".repeat(crate::providers::sse::MAX_FRAME_BYTES + 1));
        let out = String::from_utf8(restorer.feed(huge.as_bytes(), false)).unwrap();
        assert!(out.starts_with("data: {\"error\""), "{out}");
        assert!(restorer.feed(chunk("<CARD_1>").as_bytes(), true).is_empty());
    }
}
