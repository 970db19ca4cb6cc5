//! Test helpers for the ingress formats: fixture files, and the check that
//! a stream encoder's output does not depend on where the chat stream was
//! cut.

use std::path::PathBuf;

use serde_json::Value;

use super::StreamEncode;
use crate::providers::{self, Call, Operation, ProviderKind, ProviderSpec};
use crate::testing::xorshift;

fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("src/ingress/fixtures")
        .join(name)
}

/// The bytes of `fixtures/<name>`.
pub(crate) fn fixture(name: &str) -> Vec<u8> {
    let path = fixture_path(name);
    std::fs::read(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// Asserts `actual` equals `fixtures/<name>`; with `SIGNALBOX_BLESS=1` in
/// the environment, writes it there instead (then review the diff).
pub(crate) fn assert_fixture(name: &str, actual: &[u8]) {
    if std::env::var_os("SIGNALBOX_BLESS").is_some() {
        let path = fixture_path(name);
        std::fs::write(&path, actual).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        return;
    }
    let expected = fixture(name);
    assert!(
        expected == actual,
        "{name} differs:\n--- expected\n{}\n--- actual\n{}",
        String::from_utf8_lossy(&expected),
        String::from_utf8_lossy(actual)
    );
}

/// A JSON fixture, pretty-printed, for readable golden files.
pub(crate) fn pretty(json: &[u8]) -> Vec<u8> {
    let value: Value = serde_json::from_slice(json).expect("the output is JSON");
    let mut text = serde_json::to_vec_pretty(&value).expect("JSON prints");
    text.push(b'\n');
    text
}

/// Runs `stream` through a fresh encoder in `pieces`.
pub(crate) fn encode_pieces<E: StreamEncode>(make: &impl Fn() -> E, pieces: &[&[u8]]) -> Vec<u8> {
    let mut encoder = make();
    let mut out = Vec::new();
    for piece in pieces {
        encoder.push(piece, &mut out);
    }
    encoder.finish(&mut out);
    out
}

/// Asserts that `stream` encodes the same whole, split in two at every
/// byte offset, in pieces of 3 and 7 bytes, and a byte at a time; returns
/// the output.
pub(crate) fn assert_split_invariant<E: StreamEncode>(make: impl Fn() -> E, stream: &[u8]) -> Vec<u8> {
    let whole = encode_pieces(&make, &[stream]);
    for split in 0..=stream.len() {
        let (head, tail) = stream.split_at(split);
        assert!(encode_pieces(&make, &[head, tail]) == whole, "split at byte {split}");
    }
    for step in [1, 3, 7] {
        let pieces: Vec<&[u8]> = stream.chunks(step).collect();
        assert!(encode_pieces(&make, &pieces) == whole, "pieces of {step} bytes");
    }
    whole
}

/// Feeds every truncation of `valid` and pseudo-random corruptions of it
/// to fresh encoders: none may panic, and each output must be UTF-8 that
/// `ends_well` accepts.
pub(crate) fn assert_garbage_is_survived<E: StreamEncode>(
    make: impl Fn() -> E,
    valid: &[u8],
    ends_well: impl Fn(&str) -> bool,
) {
    let mut next = xorshift(0x853c_49e6_748f_ea9b);
    let mut inputs: Vec<Vec<u8>> = (0..valid.len()).map(|end| valid[..end].to_vec()).collect();
    for _ in 0..200 {
        let mut bytes = valid.to_vec();
        for _ in 0..(next() % 8 + 1) {
            let at = (next() % bytes.len().max(1) as u64) as usize;
            if let Some(byte) = bytes.get_mut(at) {
                *byte = next() as u8;
            }
        }
        inputs.push(bytes);
        inputs.push((0..(next() % 200)).map(|_| next() as u8).collect());
    }
    for input in inputs {
        let out = encode_pieces(&make, &[&input]);
        let text = String::from_utf8(out).expect("encoders write UTF-8");
        assert!(ends_well(&text), "{text}");
    }
}

/// The `(event name, data JSON)` pairs of an SSE text this module wrote.
pub(crate) fn named_events(sse: &[u8]) -> Vec<(String, Value)> {
    String::from_utf8(sse.to_vec())
        .expect("UTF-8")
        .split("\n\n")
        .filter(|event| !event.is_empty())
        .map(|event| {
            let (name, data) = event
                .strip_prefix("event: ")
                .and_then(|rest| rest.split_once("\ndata: "))
                .expect("an event: and a data: line");
            (name.to_string(), serde_json::from_str(data).expect("data is JSON"))
        })
        .collect()
}

/// A chat body as Signalbox's own Anthropic adapter sends it upstream (a
/// streamed call): the body's JSON, and what the adapter dropped.
pub(crate) fn through_anthropic_adapter(chat: &[u8]) -> (Value, Vec<&'static str>) {
    let spec = ProviderSpec::new(ProviderKind::Anthropic);
    let call = Call {
        spec: &spec,
        model_id: "claude-sonnet-4-5",
        credential: None,
        operation: Operation::ChatCompletions,
        stream: true,
        client_wants_usage: true,
        now_unix_seconds: 0,
    };
    let upstream = providers::build_request(&call, chat).expect("the Anthropic adapter takes the chat body");
    let body = serde_json::from_slice(&upstream.body).expect("the adapter writes JSON");
    (body, upstream.dropped)
}

/// The `param` an error names, as the client sees it.
pub(crate) fn param_of(error: &crate::error::GatewayError) -> String {
    let json: Value = serde_json::from_slice(&error.to_json()).expect("errors are JSON");
    json["error"]["param"].as_str().unwrap_or_default().to_string()
}
