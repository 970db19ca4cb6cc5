//! What the fuzz targets share: how a fuzz input is read (a settings byte,
//! cut points, a payload), provider calls built from the settings byte, and
//! the invariants every target checks beyond "no panic": client streams are
//! `data: {json}` events ending in one `[DONE]`, translations do not depend
//! on where a stream was cut, splices keep JSON valid and touch one member.

use std::fmt;

pub mod requests;
pub mod splice;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use signalbox::providers::eventstream::{crc32, EventStreamDecoder};
use signalbox::providers::sse::SseFramer;
use signalbox::providers::{
    self, Call, Failure, Operation, ProviderKind, ProviderSpec, Quirks, TokenUsage, TranslatedResponse,
};

/// 2023-11-14T22:13:20Z, as the unit tests use.
pub const NOW: u64 = 1_700_000_000;

/// Settings bits of an input's first byte.
pub mod flag {
    pub const STREAM: u8 = 0x01;
    pub const CLIENT_WANTS_USAGE: u8 = 0x02;
    pub const EMBEDDINGS: u8 = 0x04;
    /// OpenAI family: Mistral's quirks (no `stream_options`, no `max_completion_tokens`).
    pub const MISTRAL: u8 = 0x08;
    /// OpenAI family: Azure instead of OpenAI.
    pub const AZURE: u8 = 0x10;
    /// Response targets: the payload's first line is `name:value;...` headers.
    pub const HEADERS: u8 = 0x20;
    /// Event-stream targets: the payload is records to frame with valid CRCs.
    pub const FRAMED: u8 = 0x40;
    /// Stream targets: also feed the payload one byte at a time.
    pub const BYTEWISE: u8 = 0x80;
}

/// A fuzz input: `[flags][cut count][cut bytes...][payload...]`.
pub struct Input<'a> {
    pub flags: u8,
    cuts: &'a [u8],
    pub payload: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn parse(data: &'a [u8]) -> Option<Input<'a>> {
        let (&flags, rest) = data.split_first()?;
        let (&count, rest) = rest.split_first()?;
        let (cuts, payload) = rest.split_at(usize::from(count % 8).min(rest.len()));
        Some(Input { flags, cuts, payload })
    }

    pub fn has(&self, bit: u8) -> bool {
        self.flags & bit != 0
    }

    /// `bytes` cut where the fuzzer chose: each cut byte is a fraction of
    /// the length (255 = the end).
    pub fn pieces<'b>(&self, bytes: &'b [u8]) -> Vec<&'b [u8]> {
        let mut points: Vec<usize> = self
            .cuts
            .iter()
            .map(|&cut| usize::from(cut) * bytes.len() / 255)
            .collect();
        points.sort_unstable();
        let mut pieces = Vec::with_capacity(points.len() + 1);
        let mut rest = bytes;
        let mut consumed = 0;
        for point in points {
            let (head, tail) = rest.split_at(point - consumed);
            pieces.push(head);
            rest = tail;
            consumed = point;
        }
        pieces.push(rest);
        pieces
    }
}

/// A valid spec of `kind`, with the OpenAI-family variations `flags` ask for.
pub fn spec(kind: ProviderKind, flags: u8) -> ProviderSpec {
    let kind = match kind {
        ProviderKind::Openai if flags & flag::AZURE != 0 => ProviderKind::Azure,
        other => other,
    };
    let mut spec = ProviderSpec::new(kind);
    match kind {
        ProviderKind::Azure => spec.api_version = Some("2024-10-21".into()),
        ProviderKind::Bedrock => spec.region = Some("us-east-1".into()),
        _ => {}
    }
    if flags & flag::MISTRAL != 0 {
        spec.quirks = Quirks::MISTRAL;
    }
    spec
}

pub fn call(spec: &ProviderSpec, flags: u8) -> Call<'_> {
    Call {
        spec,
        model_id: "fuzz-model",
        credential: None,
        operation: if flags & flag::EMBEDDINGS != 0 {
            Operation::Embeddings
        } else {
            Operation::ChatCompletions
        },
        stream: flags & flag::STREAM != 0,
        client_wants_usage: flags & flag::CLIENT_WANTS_USAGE != 0,
        now_unix_seconds: NOW,
    }
}

/// The provider kinds, for targets that pick one from a byte.
pub const KINDS: [ProviderKind; 5] = [
    ProviderKind::Openai,
    ProviderKind::Azure,
    ProviderKind::Anthropic,
    ProviderKind::Gemini,
    ProviderKind::Bedrock,
];

pub fn kind_from(byte: u8) -> ProviderKind {
    KINDS[usize::from(byte) % KINDS.len()]
}

/// Whether `bytes` is one JSON value (checked without recursion, so deep
/// nesting is not mistaken for invalid JSON).
pub fn is_json(bytes: &[u8]) -> bool {
    serde_json::from_slice::<&RawValue>(bytes).is_ok()
}

/// An OpenAI error body: `{"error": {"message": "...", ...}}`.
pub fn assert_openai_error(body: &[u8]) {
    let value: serde_json::Value = serde_json::from_slice(body)
        .unwrap_or_else(|err| panic!("an error body is JSON ({err}): {}", String::from_utf8_lossy(body)));
    assert!(
        value["error"]["message"].is_string(),
        "an error body has error.message: {value}"
    );
}

/// The members of a JSON object in order, duplicates kept, each value as
/// its raw text: the oracle for byte-level edits.
#[derive(Debug, PartialEq, Eq)]
pub struct Members(pub Vec<(String, String)>);

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Members, D::Error> {
        struct MembersVisitor;
        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut members = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, Box<RawValue>>()? {
                    members.push((key, value.get().to_string()));
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(MembersVisitor)
    }
}

impl Members {
    pub fn of(body: &[u8]) -> Option<Members> {
        serde_json::from_slice(body).ok()
    }

    pub fn position(&self, key: &str) -> Option<usize> {
        self.0.iter().position(|(name, _)| name == key)
    }
}

/// Parses `name:value;name:value` into headers (lowercase names).
pub fn headers_from(line: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(line)
        .split(';')
        .filter_map(|pair| pair.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect()
}

/// Splits off the header line when the input asks for one.
pub fn headers_and_body<'a>(input: &Input<'a>) -> (Vec<(String, String)>, &'a [u8]) {
    if !input.has(flag::HEADERS) {
        return (Vec::new(), input.payload);
    }
    match input.payload.iter().position(|&byte| byte == b'\n') {
        Some(end) => (headers_from(&input.payload[..end]), &input.payload[end + 1..]),
        None => (headers_from(input.payload), &[]),
    }
}

/// Statuses a provider may answer with, picked by a byte.
pub const STATUSES: [u16; 16] = [
    200, 200, 200, 201, 400, 401, 403, 404, 408, 413, 422, 429, 500, 503, 504, 529,
];

/// What every translated answer must be: a failure is an OpenAI error with
/// an error status, a success is JSON (the OpenAI family passes bodies
/// through as they came, so it is checked only where it translates).
pub fn assert_translated(kind: ProviderKind, translated: &TranslatedResponse, original: &[u8]) {
    match translated.failure {
        Some(_) => {
            assert!(
                (400..600).contains(&translated.status),
                "a failure has an error status: {}",
                translated.status
            );
            assert_openai_error(&translated.body);
        }
        None => {
            assert!(
                (200..300).contains(&translated.status),
                "a success has a 2xx status: {}",
                translated.status
            );
            if matches!(kind, ProviderKind::Openai | ProviderKind::Azure) {
                assert_eq!(translated.body, original, "the OpenAI family passes answers through");
            } else {
                assert!(is_json(&translated.body), "a translated answer is JSON");
            }
        }
    }
}

/// A non-streamed answer of `kind`: `[flags][cuts][status byte][payload]`.
pub fn check_response(kind: ProviderKind, data: &[u8]) {
    let Some(input) = Input::parse(data) else { return };
    let Some((&status, payload)) = input.payload.split_first() else {
        return;
    };
    let input = Input { payload, ..input };
    let status = STATUSES[usize::from(status) % STATUSES.len()];
    let spec = spec(kind, input.flags);
    let call = call(&spec, input.flags);
    let (headers, body) = headers_and_body(&input);
    let translated = providers::translate_response(&call, status, &headers, body);
    assert_translated(spec.kind, &translated, body);
}

/// An embeddings answer to a client's embeddings request:
/// `[flags][cuts][kind and status byte][request] \0 [answer]`.
pub fn check_embeddings(data: &[u8]) {
    let Some(input) = Input::parse(data) else { return };
    let Some((&selector, payload)) = input.payload.split_first() else {
        return;
    };
    let input = Input { payload, ..input };
    let kind = kind_from(selector);
    let status = STATUSES[usize::from(selector >> 4)];
    let spec = spec(kind, input.flags);
    let mut call = call(&spec, input.flags);
    call.operation = Operation::Embeddings;
    let (headers, rest) = headers_and_body(&input);
    let (request, answer) = match rest.iter().position(|&byte| byte == 0) {
        Some(nul) => (&rest[..nul], &rest[nul + 1..]),
        None => (rest, &b""[..]),
    };
    let translated = providers::translate_embeddings(&call, request, status, &headers, answer);
    assert_translated(kind, &translated, answer);
}

/// What a stream translator made of a whole stream.
#[derive(Debug, PartialEq)]
pub struct StreamRun {
    pub text: Vec<u8>,
    pub usage: Option<TokenUsage>,
    pub saw_content: bool,
    pub failure: Option<Failure>,
}

pub fn run_stream(call: &Call<'_>, pieces: &[&[u8]]) -> StreamRun {
    run_reader(providers::stream_translator(call), pieces)
}

fn run_reader(mut translator: Box<dyn providers::StreamTranslator>, pieces: &[&[u8]]) -> StreamRun {
    let mut text = Vec::new();
    for piece in pieces {
        // An error is recorded by the translator and ends the client's stream.
        let _ = translator.push(piece, &mut text);
    }
    translator.finish(&mut text);
    StreamRun {
        text,
        usage: translator.usage(),
        saw_content: translator.saw_content(),
        failure: translator.failure(),
    }
}

/// A client stream: UTF-8 `data: {json}\n\n` events, then one `data: [DONE]\n\n`.
pub fn assert_client_stream(text: &[u8]) {
    let text = std::str::from_utf8(text).expect("the client's stream is UTF-8");
    let events = text
        .strip_suffix("data: [DONE]\n\n")
        .unwrap_or_else(|| panic!("the client's stream ends with [DONE]: {text:?}"));
    for event in events.split_terminator("\n\n") {
        let data = event
            .strip_prefix("data: ")
            .unwrap_or_else(|| panic!("every event is a data line: {event:?}"));
        assert!(!data.contains(['\n', '\r']), "one line per event: {data:?}");
        assert!(is_json(data.as_bytes()), "every event but [DONE] is JSON: {data:?}");
    }
}

/// A provider stream of `kind`: valid client SSE out, the same however the
/// input was cut.
pub fn check_stream(kind: ProviderKind, data: &[u8]) {
    let Some(input) = Input::parse(data) else { return };
    let spec = spec(kind, input.flags);
    let mut call = call(&spec, input.flags);
    call.stream = true;
    call.operation = Operation::ChatCompletions;
    let stream = if input.has(flag::FRAMED) {
        frame_records(input.payload)
    } else {
        input.payload.to_vec()
    };
    let whole = run_stream(&call, &[&stream]);
    assert_client_stream(&whole.text);
    let cut = run_stream(&call, &input.pieces(&stream));
    assert_eq!(cut, whole, "a stream translates the same however it is cut");
    if input.has(flag::BYTEWISE) {
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(run_stream(&call, &bytes), whole, "fed one byte at a time");
    }
}

/// An OpenAI Responses API answer relayed natively: the whole body (first
/// byte picks the status) is read without panicking, a success passes as it
/// came; as a stream, what the reader learns (usage, content, failure) is
/// the same however it is cut.
pub fn check_responses_native(data: &[u8]) {
    let Some(input) = Input::parse(data) else { return };
    let Some((&status, payload)) = input.payload.split_first() else {
        return;
    };
    let status = STATUSES[usize::from(status) % STATUSES.len()];
    let spec = spec(ProviderKind::Openai, input.flags);
    let mut call = call(&spec, input.flags);
    call.operation = Operation::ChatCompletions;
    let read = providers::read_responses_answer(&call, status, &[], payload);
    if read.failure.is_none() {
        assert_eq!(read.body, payload, "a successful native answer passes as it came");
    }
    call.stream = true;
    let whole = run_reader(providers::responses_stream_reader(&call), &[payload]);
    let cut = run_reader(providers::responses_stream_reader(&call), &input.pieces(payload));
    let learned = |run: &StreamRun| (run.usage, run.saw_content, run.failure);
    assert_eq!(learned(&cut), learned(&whole), "a native stream reads the same however it is cut");
    if input.has(flag::BYTEWISE) {
        let bytes: Vec<&[u8]> = payload.chunks(1).collect();
        let bytewise = run_reader(providers::responses_stream_reader(&call), &bytes);
        assert_eq!(learned(&bytewise), learned(&whole), "fed one byte at a time");
    }
}

/// AWS event-stream messages with valid lengths and CRCs around fuzzer
/// bytes, so the decoder's header parsing and the Bedrock handler are
/// reached. Records: `[headers length u8][payload length u16 LE][headers][payload]`.
pub fn frame_records(mut records: &[u8]) -> Vec<u8> {
    let mut stream = Vec::new();
    while let [headers_len, low, high, rest @ ..] = records {
        let headers_len = usize::from(*headers_len).min(rest.len());
        let (headers, rest) = rest.split_at(headers_len);
        let payload_len = usize::from(u16::from_le_bytes([*low, *high])).min(rest.len());
        let (payload, rest) = rest.split_at(payload_len);
        records = rest;
        let total = 16 + headers.len() + payload.len();
        let start = stream.len();
        stream.extend_from_slice(&(total as u32).to_be_bytes());
        stream.extend_from_slice(&(headers.len() as u32).to_be_bytes());
        let prelude_crc = crc32(&stream[start..]);
        stream.extend_from_slice(&prelude_crc.to_be_bytes());
        stream.extend_from_slice(headers);
        stream.extend_from_slice(payload);
        let message_crc = crc32(&stream[start..]);
        stream.extend_from_slice(&message_crc.to_be_bytes());
    }
    stream
}

/// The SSE events a framer with `cap` cuts out of `pieces`, as text, then
/// the error that stopped it, if any.
pub fn sse_events(pieces: &[&[u8]], cap: usize) -> Vec<String> {
    let mut framer = SseFramer::new(cap);
    let mut seen = Vec::new();
    for (position, piece) in pieces.iter().enumerate() {
        framer.feed(piece);
        if position + 1 == pieces.len() {
            framer.end();
        }
        loop {
            match framer.next_event() {
                Ok(Some(event)) => {
                    assert!(!event.data.contains(&b'\r'), "data lines never keep a CR");
                    assert!(!event.event.contains(['\n', '\r']), "event names are one line");
                    assert!(event.data.len() <= cap, "an event is at most the cap");
                    seen.push(format!("{event:?}"));
                }
                Ok(None) => break,
                Err(error) => {
                    seen.push(format!("error: {error}"));
                    return seen;
                }
            }
        }
    }
    seen
}

/// The event-stream messages a decoder cuts out of `pieces`, as text, then
/// the error that stopped it or the bytes left over.
pub fn eventstream_messages(pieces: &[&[u8]]) -> Vec<String> {
    let mut decoder = EventStreamDecoder::new();
    let mut seen = Vec::new();
    for piece in pieces {
        decoder.feed(piece);
        loop {
            match decoder.next_message() {
                Ok(Some(message)) => seen.push(format!("{message:?}")),
                Ok(None) => break,
                Err(error) => {
                    seen.push(format!("error: {error}"));
                    return seen;
                }
            }
        }
    }
    seen.push(format!("pending: {}", decoder.pending()));
    seen
}
