//! Properties of the stream framers and the translating adapters, checked
//! on generated input: framing does not depend on where a stream is cut, and
//! text a provider answers with reaches the client unchanged, whole or
//! streamed, and so does text a client sends, on its way to the provider.

use proptest::prelude::*;
use serde_json::{json, Value};

use super::testkit::{answer_from, bedrock_event, request_for, run_pieces, spec, stream_call};
use super::wire::eventstream::{encode_message, EventStreamDecoder, HeaderValue};
use super::wire::sse::SseFramer;
use super::ProviderKind;

const TRANSLATING: [ProviderKind; 3] = [ProviderKind::Anthropic, ProviderKind::Gemini, ProviderKind::Bedrock];

/// `bytes` cut at the given fractions of its length.
fn cut<'a>(bytes: &'a [u8], fractions: &[prop::sample::Index]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = fractions.iter().map(|index| index.index(bytes.len() + 1)).collect();
    points.sort_unstable();
    let mut pieces = Vec::new();
    let mut start = 0;
    for point in points {
        pieces.push(&bytes[start..point]);
        start = point;
    }
    pieces.push(&bytes[start..]);
    pieces
}

fn cut_points() -> impl Strategy<Value = Vec<prop::sample::Index>> {
    prop::collection::vec(any::<prop::sample::Index>(), 0..12)
}

/// An SSE event as sent: an optional name and its data lines.
type SentEvent = (Option<String>, Vec<String>);

fn sse_stream() -> impl Strategy<Value = (Vec<SentEvent>, Vec<u8>)> {
    let event = (
        prop::option::of("[a-z_]{1,12}"),
        prop::collection::vec("[^\r\n]{0,20}", 0..3),
        any::<bool>(),
    );
    (
        prop::collection::vec(event, 0..6),
        prop_oneof![Just("\n"), Just("\r\n"), Just("\r")],
    )
        .prop_map(|(events, newline)| {
            let mut stream = String::new();
            let mut sent = Vec::new();
            for (name, lines, comment) in events {
                if comment {
                    stream.push_str(&format!(": keep-alive{newline}"));
                }
                if let Some(name) = &name {
                    stream.push_str(&format!("event: {name}{newline}"));
                }
                for line in &lines {
                    stream.push_str(&format!("data: {line}{newline}"));
                }
                stream.push_str(newline);
                sent.push((name, lines));
            }
            (sent, stream.into_bytes())
        })
}

fn framed_events(pieces: &[&[u8]]) -> Vec<(String, String)> {
    let mut framer = SseFramer::default();
    let mut events = Vec::new();
    for (position, piece) in pieces.iter().enumerate() {
        framer.feed(piece);
        if position + 1 == pieces.len() {
            framer.end();
        }
        while let Some(event) = framer.next_event().expect("a well-formed stream frames") {
            events.push((event.event.to_string(), String::from_utf8(event.data.to_vec()).unwrap()));
        }
    }
    events
}

type SentMessage = (Vec<(String, String)>, Vec<u8>);

fn decoded_messages(pieces: &[&[u8]]) -> Vec<SentMessage> {
    let mut decoder = EventStreamDecoder::new();
    let mut messages = Vec::new();
    for piece in pieces {
        decoder.feed(piece);
        while let Some(message) = decoder.next_message().expect("a well-formed stream decodes") {
            let headers = message
                .headers
                .iter()
                .map(|header| match header.value {
                    HeaderValue::String(value) => (header.name.to_string(), value.to_string()),
                    other => panic!("only string headers were sent, got {other:?}"),
                })
                .collect();
            messages.push((headers, message.payload.to_vec()));
        }
    }
    assert_eq!(decoder.pending(), 0, "nothing is left over");
    messages
}

/// A provider's whole answer with `text` as its content.
fn whole_answer(kind: ProviderKind, text: &str) -> Value {
    match kind {
        ProviderKind::Anthropic => json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "m",
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
            "usage": {"input_tokens": 3, "output_tokens": 5},
        }),
        ProviderKind::Gemini => json!({
            "candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 5},
        }),
        _ => json!({
            "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
            "stopReason": "end_turn", "usage": {"inputTokens": 3, "outputTokens": 5},
        }),
    }
}

/// A provider's stream answering `deltas`, in its own framing.
fn streamed_answer(kind: ProviderKind, deltas: &[String]) -> Vec<u8> {
    let sse = |events: Vec<(&str, Value)>| -> Vec<u8> {
        events
            .into_iter()
            .map(|(name, data)| format!("event: {name}\ndata: {data}\n\n"))
            .collect::<String>()
            .into_bytes()
    };
    match kind {
        ProviderKind::Anthropic => {
            let mut events = vec![
                (
                    "message_start",
                    json!({"type": "message_start", "message": {"id": "msg_1", "model": "m", "usage": {"input_tokens": 3, "output_tokens": 1}}}),
                ),
                (
                    "content_block_start",
                    json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
                ),
            ];
            events.extend(deltas.iter().map(|text| {
                (
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}),
                )
            }));
            events.push(("content_block_stop", json!({"type": "content_block_stop", "index": 0})));
            events.push((
                "message_delta",
                json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 5}}),
            ));
            events.push(("message_stop", json!({"type": "message_stop"})));
            sse(events)
        }
        ProviderKind::Gemini => {
            let last = deltas.len().saturating_sub(1);
            let mut events: Vec<(&str, Value)> = deltas
                .iter()
                .enumerate()
                .map(|(at, text)| {
                    let mut candidate = json!({"content": {"role": "model", "parts": [{"text": text}]}});
                    if at == last {
                        candidate["finishReason"] = json!("STOP");
                    }
                    ("message", json!({"candidates": [candidate]}))
                })
                .collect();
            if deltas.is_empty() {
                events.push((
                    "message",
                    json!({"candidates": [{"content": {"parts": []}, "finishReason": "STOP"}]}),
                ));
            }
            sse(events)
        }
        _ => {
            let event = |kind: &str, payload: Value| bedrock_event(kind, &payload.to_string());
            let mut stream = event("messageStart", json!({"role": "assistant"}));
            for text in deltas {
                stream.extend(event(
                    "contentBlockDelta",
                    json!({"contentBlockIndex": 0, "delta": {"text": text}}),
                ));
            }
            stream.extend(event("contentBlockStop", json!({"contentBlockIndex": 0})));
            stream.extend(event("messageStop", json!({"stopReason": "end_turn"})));
            stream.extend(event(
                "metadata",
                json!({"usage": {"inputTokens": 3, "outputTokens": 5}}),
            ));
            stream
        }
    }
}

/// Every string anywhere in `value`.
fn strings(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::String(text) => found.push(text.clone()),
        Value::Array(items) => items.iter().for_each(|item| strings(item, found)),
        Value::Object(members) => members.values().for_each(|item| strings(item, found)),
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn sse_framing_yields_the_sent_events_however_the_stream_is_cut(
        (sent, stream) in sse_stream(),
        fractions in cut_points(),
    ) {
        let expected: Vec<(String, String)> = sent
            .into_iter()
            .filter(|(_, lines)| !lines.is_empty())
            .map(|(name, lines)| (name.unwrap_or_default(), lines.join("\n")))
            .collect();
        prop_assert_eq!(framed_events(&[&stream]), expected.clone());
        prop_assert_eq!(framed_events(&cut(&stream, &fractions)), expected);
    }

    #[test]
    fn event_stream_decoding_yields_the_sent_messages_however_the_stream_is_cut(
        sent in prop::collection::vec(
            (prop::collection::vec(("[:a-z-]{1,16}", ".{0,16}"), 0..4), prop::collection::vec(any::<u8>(), 0..64)),
            0..5,
        ),
        fractions in cut_points(),
    ) {
        let mut stream = Vec::new();
        for (headers, payload) in &sent {
            let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
            stream.extend(encode_message(&headers, payload));
        }
        prop_assert_eq!(decoded_messages(&cut(&stream, &fractions)), sent);
    }

    #[test]
    fn a_providers_answer_reaches_the_client_with_its_text_unchanged(text in ".{0,40}", kind in prop::sample::select(TRANSLATING.to_vec())) {
        let (translated, answer) = answer_from(kind, &whole_answer(kind, &text).to_string());
        prop_assert_eq!(translated.failure, None);
        prop_assert_eq!(answer["choices"][0]["message"]["content"].as_str().unwrap_or_default(), text.as_str());
    }

    #[test]
    fn a_providers_stream_reaches_the_client_with_its_text_unchanged_however_it_is_cut(
        deltas in prop::collection::vec(".{0,8}", 0..6),
        kind in prop::sample::select(TRANSLATING.to_vec()),
        fractions in cut_points(),
    ) {
        let spec = spec(kind);
        let call = stream_call(&spec, false);
        let stream = streamed_answer(kind, &deltas);
        let run = run_pieces(&call, &cut(&stream, &fractions));
        prop_assert_eq!(run.failure, None, "{}", run.text);
        prop_assert_eq!(run.content(), deltas.concat());
        prop_assert!(run.text.ends_with("data: [DONE]\n\n"));
    }

    #[test]
    fn a_clients_text_reaches_every_provider_unchanged(
        system in ".{1,20}",
        user in ".{1,20}",
        kind in prop::sample::select(TRANSLATING.to_vec()),
    ) {
        let body = json!({"model": "auto", "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": [{"type": "text", "text": user}]},
        ]});
        let (_, built) = request_for(kind, "m", &body.to_string());
        let mut found = Vec::new();
        strings(&built, &mut found);
        prop_assert!(found.contains(&system), "system text missing from {}", built);
        prop_assert!(found.contains(&user), "user text missing from {}", built);
    }
}
