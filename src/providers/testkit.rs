//! Test helpers shared by the adapters' tests: specs and calls, secrets,
//! running a recorded stream through a translator, and the check that a
//! translation does not depend on where the stream was cut.

use crate::secret::Secret;
use crate::testing::xorshift;

use serde_json::Value;

use super::wire::eventstream::encode_message;
use super::{
    build_request, stream_translator, translate_response, Call, Credential, Failure, Operation, ProviderKind,
    ProviderSpec, TokenUsage, TranslatedResponse, UpstreamRequest,
};

/// 2023-11-14T22:13:20Z.
pub(crate) const NOW: u64 = 1_700_000_000;

/// A valid spec of `kind` (Azure gets an api-version, Bedrock a region).
pub(crate) fn spec(kind: ProviderKind) -> ProviderSpec {
    let mut spec = ProviderSpec::new(kind);
    match kind {
        ProviderKind::Azure => spec.api_version = Some("2024-10-21".into()),
        ProviderKind::Bedrock => spec.region = Some("us-east-1".into()),
        _ => {}
    }
    spec
}

/// A non-streamed chat call for model `gpt-test`, without a credential.
pub(crate) fn call_for(spec: &ProviderSpec) -> Call<'_> {
    Call {
        spec,
        model_id: "gpt-test",
        credential: None,
        operation: Operation::ChatCompletions,
        stream: false,
        client_wants_usage: false,
        now_unix_seconds: NOW,
    }
}

/// A streamed chat call for `spec`; `wants_usage` is whether the client
/// asked for the usage chunk itself.
pub(crate) fn stream_call(spec: &ProviderSpec, wants_usage: bool) -> Call<'_> {
    let mut call = call_for(spec);
    call.stream = true;
    call.client_wants_usage = wants_usage;
    call
}

/// An OpenAI chat body built for `kind` as model `model_id`, and its JSON.
pub(crate) fn request_for(kind: ProviderKind, model_id: &str, body: &str) -> (UpstreamRequest, Value) {
    let spec = spec(kind);
    let mut call = call_for(&spec);
    call.model_id = model_id;
    let upstream = build_request(&call, body.as_bytes()).expect("the request builds");
    let json = serde_json::from_slice(&upstream.body).expect("the built body is JSON");
    (upstream, json)
}

/// A provider's 200 answer translated back to OpenAI's format, and its JSON.
pub(crate) fn answer_from(kind: ProviderKind, body: &str) -> (TranslatedResponse, Value) {
    let spec = spec(kind);
    let translated = translate_response(&call_for(&spec), 200, &[], body.as_bytes());
    let json = serde_json::from_slice(&translated.body).expect("the translated body is JSON");
    (translated, json)
}

pub(crate) fn secret(value: &str) -> Secret {
    Secret::new(value.to_string())
}

pub(crate) fn bearer(value: &str) -> Credential {
    Credential::Bearer(secret(value))
}

/// One message of a Bedrock event stream: a JSON event of type `kind`.
pub(crate) fn bedrock_event(kind: &str, payload: &str) -> Vec<u8> {
    encode_message(
        &[
            (":event-type", kind),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        payload.as_bytes(),
    )
}

/// A recorded Bedrock stream (`fixtures/bedrock/*.events`): each line, an
/// event type, a space and its JSON payload, framed as the binary messages
/// Bedrock sends.
pub(crate) fn bedrock_stream(events: &str) -> Vec<u8> {
    events
        .lines()
        .map(|line| {
            let (kind, payload) = line.split_once(' ').expect("a line is an event type and a payload");
            bedrock_event(kind, payload)
        })
        .collect::<Vec<_>>()
        .concat()
}

/// What a translator made of a whole stream.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StreamRun {
    pub text: String,
    pub usage: Option<TokenUsage>,
    pub saw_content: bool,
    pub failure: Option<Failure>,
}

impl StreamRun {
    /// The JSON of every `data:` event but `[DONE]`.
    pub(crate) fn events(&self) -> Vec<serde_json::Value> {
        self.text
            .split("\n\n")
            .filter_map(|event| event.strip_prefix("data: "))
            .filter(|data| *data != "[DONE]")
            .map(|data| serde_json::from_str(data).expect("an event is JSON"))
            .collect()
    }

    /// The streamed answer text, concatenated from the content deltas.
    pub(crate) fn content(&self) -> String {
        self.events()
            .iter()
            .filter_map(|event| event["choices"][0]["delta"]["content"].as_str().map(str::to_string))
            .collect()
    }
}

/// Feeds `pieces` to a fresh translator for `call` and finishes it.
pub(crate) fn run_pieces(call: &Call<'_>, pieces: &[&[u8]]) -> StreamRun {
    let mut translator = stream_translator(call);
    let mut out = Vec::new();
    for piece in pieces {
        // An error is also recorded by the translator and shows in its output.
        let _ = translator.push(piece, &mut out);
    }
    translator.finish(&mut out);
    StreamRun {
        text: String::from_utf8(out).expect("translated streams are UTF-8"),
        usage: translator.usage(),
        saw_content: translator.saw_content(),
        failure: translator.failure(),
    }
}

pub(crate) fn run_stream(call: &Call<'_>, stream: &[u8]) -> StreamRun {
    run_pieces(call, &[stream])
}

/// Asserts that `stream` translates the same whole, split in two at every
/// byte offset, in three uneven pieces, and fed one byte at a time.
pub(crate) fn assert_split_invariant(call: &Call<'_>, stream: &[u8]) -> StreamRun {
    let whole = run_stream(call, stream);
    assert!(
        whole.failure.is_none(),
        "the recorded stream itself fails: {}",
        whole.text
    );
    for split in 0..=stream.len() {
        let (head, tail) = stream.split_at(split);
        assert_eq!(run_pieces(call, &[head, tail]), whole, "split at byte {split}");
    }
    for step in [3, 7, 64] {
        let pieces: Vec<&[u8]> = stream.chunks(step).collect();
        assert_eq!(run_pieces(call, &pieces), whole, "pieces of {step} bytes");
    }
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(run_pieces(call, &bytes), whole, "one byte at a time");
    whole
}

/// Feeds pseudo-random bytes, and every truncation of `valid`, to the
/// translator for `call`: it must never panic and must always end the
/// client's stream with `[DONE]`.
pub(crate) fn assert_garbage_is_survived(call: &Call<'_>, valid: &[u8]) {
    for end in 0..valid.len() {
        let run = run_stream(call, &valid[..end]);
        assert!(
            run.text.ends_with("data: [DONE]\n\n"),
            "truncated at {end}: {}",
            run.text
        );
    }
    let mut next = xorshift(0x853c_49e6_748f_ea9b);
    for _ in 0..300 {
        let mut bytes = valid.to_vec();
        for _ in 0..(next() % 8 + 1) {
            let len = bytes.len().max(1) as u64;
            let at = (next() % len) as usize;
            if let Some(byte) = bytes.get_mut(at) {
                *byte = next() as u8;
            }
        }
        let noise: Vec<u8> = (0..(next() % 200)).map(|_| next() as u8).collect();
        for input in [bytes, noise] {
            let run = run_stream(call, &input);
            assert!(run.text.ends_with("data: [DONE]\n\n"), "{}", run.text);
        }
    }
}
