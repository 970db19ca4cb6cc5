//! The cache key: who asked (the tenant), what answers (the model or tier
//! the request was routed to), and the request as it affects the answer,
//! canonicalised so that member order, whitespace, escapes and `1` versus
//! `1.0` do not matter.
//!
//! The canonical form is never built as text: a typed, length-prefixed
//! encoding of the parsed JSON is fed straight into SHA-256, and the first
//! 128 bits are the key. SHA-256 rather than a fast hash because the key
//! must be the same in every build and on every replica (entries may live
//! in Redis), and because a tenant must not be able to craft a request
//! whose key collides with another tenant's entry. Parsing and hashing
//! grow with the body (not yet measured in Wasm); only requests a cache
//! policy admits pay, and `max_request_bytes` bounds them.

use std::fmt;

use serde_json::{Map, Number, Value};
use sha2::{Digest, Sha256};

/// 128 bits of SHA-256 over the tenant, the target and the canonical request.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct CacheKey(pub [u8; 16]);

impl CacheKey {
    /// Lowercase hex, 32 characters.
    pub fn to_hex(&self) -> String {
        self.to_string()
    }

    /// The key as two numbers (its bytes in order, little-endian halves):
    /// how records store it and how the store places it.
    pub fn halves(&self) -> (u64, u64) {
        let mut high = [0u8; 8];
        let mut low = [0u8; 8];
        high.copy_from_slice(&self.0[..8]);
        low.copy_from_slice(&self.0[8..]);
        (u64::from_le_bytes(high), u64::from_le_bytes(low))
    }

    pub fn from_halves(high: u64, low: u64) -> CacheKey {
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&high.to_le_bytes());
        key[8..].copy_from_slice(&low.to_le_bytes());
        CacheKey(key)
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

/// Top-level members that do not change the answer: how it is delivered
/// (`stream`, `stream_options`), who asked and what the provider keeps
/// (`user`, `safety_identifier`, `metadata`, `store`, `prompt_cache_key`),
/// and `model`, which the routed target passed to [`CacheRequest::key`]
/// stands for (`auto` and a model name routed to the same model share).
/// Every other member is keyed, unknown ones included.
pub const UNKEYED_MEMBERS: [&str; 8] = [
    "model",
    "stream",
    "stream_options",
    "user",
    "safety_identifier",
    "metadata",
    "store",
    "prompt_cache_key",
];

/// Members the gateway itself adds (`signalbox_cache_breakpoint` on
/// messages): left out of the key at the top level and on messages.
const PRIVATE_PREFIX: &str = "signalbox_";

/// Changes to the encoding below must change this, so old entries miss.
const DOMAIN: &[u8] = b"signalbox.cache.key.v1";

/// A chat request as the cache reads it: parsed once, then keyed and judged.
#[derive(Debug, Clone)]
pub struct CacheRequest {
    members: Map<String, Value>,
}

impl CacheRequest {
    /// `None` when the body is not a JSON object. Nesting is bounded by
    /// serde_json's recursion limit, so the encoding below is too.
    pub fn parse(body: &[u8]) -> Option<CacheRequest> {
        match serde_json::from_slice(body).ok()? {
            Value::Object(members) => Some(CacheRequest { members }),
            _ => None,
        }
    }

    /// A top-level member; `null` reads as absent, as OpenAI reads it.
    pub fn member(&self, name: &str) -> Option<&Value> {
        self.members.get(name).filter(|value| !value.is_null())
    }

    pub fn is_stream(&self) -> bool {
        self.member("stream").and_then(Value::as_bool).unwrap_or(false)
    }

    /// Whether a streaming client asked for the final usage chunk.
    pub fn wants_stream_usage(&self) -> bool {
        self.member("stream_options")
            .and_then(|options| options.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// The key of this request from `tenant` (its configured name; `None`
    /// without governance) routed to `target` (a model or tier name).
    pub fn key(&self, tenant: Option<&str>, target: &str) -> CacheKey {
        let mut encoder = Canonical(Sha256::new());
        encoder.0.update(DOMAIN);
        match tenant {
            None => encoder.tag(b'-'),
            Some(tenant) => {
                encoder.tag(b'+');
                encoder.text(tenant);
            }
        }
        encoder.text(target);
        encoder.object(self.keyed_members(), |encoder, name, value| match (name, value) {
            ("messages", Value::Array(messages)) => encoder.messages(messages),
            _ => encoder.value(value),
        });
        let digest = encoder.0.finalize();
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        CacheKey(key)
    }
}

impl CacheRequest {
    /// The members that shape the answer: not null, not [`UNKEYED_MEMBERS`],
    /// not the gateway's private ones.
    pub(super) fn keyed_members(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.members
            .iter()
            .filter(|(name, value)| !value.is_null() && is_keyed(name) && !UNKEYED_MEMBERS.contains(&name.as_str()))
    }
}

/// The key of `body` from `tenant` routed to `target`; `None` when the body
/// is not a JSON object. See [`CacheRequest::key`].
pub fn cache_key(tenant: Option<&str>, target: &str, body: &[u8]) -> Option<CacheKey> {
    CacheRequest::parse(body).map(|request| request.key(tenant, target))
}

pub(super) fn is_keyed(name: &str) -> bool {
    !name.starts_with(PRIVATE_PREFIX)
}

/// A typed, length-prefixed encoding: every value starts with a tag byte,
/// strings and containers with their length, so no two different values
/// encode alike and no separator can be forged from inside a string.
/// Shared with the semantic cache's context key, which starts from its
/// own domain string.
pub(super) struct Canonical(pub(super) Sha256);

impl Canonical {
    pub(super) fn tag(&mut self, tag: u8) {
        self.0.update([tag]);
    }

    fn length(&mut self, length: usize) {
        self.0.update((length as u64).to_le_bytes());
    }

    pub(super) fn text(&mut self, text: &str) {
        self.tag(b's');
        self.length(text.len());
        self.0.update(text.as_bytes());
    }

    pub(super) fn value(&mut self, value: &Value) {
        match value {
            Value::Null => self.tag(b'n'),
            Value::Bool(flag) => self.tag(if *flag { b't' } else { b'f' }),
            Value::Number(number) => self.number(number),
            Value::String(text) => self.text(text),
            Value::Array(items) => {
                self.tag(b'[');
                self.length(items.len());
                items.iter().for_each(|item| self.value(item));
            }
            Value::Object(members) => self.object(members.iter(), |encoder, _, value| encoder.value(value)),
        }
    }

    /// Members sorted by name (whatever order the client sent, and whether
    /// or not serde_json's map keeps insertion order).
    pub(super) fn object<'a>(
        &mut self,
        members: impl Iterator<Item = (&'a String, &'a Value)>,
        mut encode: impl FnMut(&mut Self, &str, &'a Value),
    ) {
        let mut sorted: Vec<(&String, &Value)> = members.collect();
        sorted.sort_unstable_by(|left, right| left.0.cmp(right.0));
        self.tag(b'{');
        self.length(sorted.len());
        for (name, value) in sorted {
            self.text(name);
            encode(self, name, value);
        }
    }

    /// Messages without the gateway's private members.
    pub(super) fn messages(&mut self, messages: &[Value]) {
        self.tag(b'[');
        self.length(messages.len());
        for message in messages {
            match message {
                Value::Object(members) => self.object(
                    members.iter().filter(|(name, _)| is_keyed(name)),
                    |encoder, _, value| encoder.value(value),
                ),
                other => self.value(other),
            }
        }
    }

    /// Integers (including integral floats: `1.0` is `1`, `-0.0` is `0`) as
    /// one 128-bit form, other floats by their bits.
    fn number(&mut self, number: &Number) {
        const INTEGRAL_LIMIT: f64 = 1e37; // well inside i128
        let integer = match (number.as_i64(), number.as_u64(), number.as_f64()) {
            (Some(signed), _, _) => Some(i128::from(signed)),
            (_, Some(unsigned), _) => Some(i128::from(unsigned)),
            (_, _, Some(float)) if float.fract() == 0.0 && float.abs() < INTEGRAL_LIMIT => Some(float as i128),
            _ => None,
        };
        match integer {
            Some(integer) => {
                self.tag(b'i');
                self.0.update(integer.to_le_bytes());
            }
            None => {
                self.tag(b'd');
                self.0.update(number.as_f64().unwrap_or(0.0).to_bits().to_le_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const BODY: &str = r#"{"model":"auto","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"What is 2+2?"}],"temperature":0}"#;

    fn key_of(body: &str) -> CacheKey {
        cache_key(Some("team"), "small", body.as_bytes()).expect("a JSON object")
    }

    fn with(member: &str, value: serde_json::Value) -> String {
        let mut request: serde_json::Value = serde_json::from_str(BODY).unwrap();
        request[member] = value;
        request.to_string()
    }

    /// Computed independently (a Python rendering of the encoding above):
    /// entries in Redis outlive the build that wrote them.
    const GOLDEN_KEY: &str = "d91d92063a5c782a27bcc7e1b6eec122";

    #[test]
    fn the_key_is_fixed_across_builds() {
        assert_eq!(key_of(BODY).to_hex(), GOLDEN_KEY);
    }

    #[test]
    fn a_key_splits_into_halves_and_back() {
        let key = key_of(BODY);
        let (high, low) = key.halves();
        assert_eq!(CacheKey::from_halves(high, low), key);
    }

    #[test]
    fn member_order_whitespace_and_escapes_do_not_matter() {
        let reordered = r#"{ "temperature" : 0.0,
            "messages" : [ {"content":"Be brief.","role":"system"},
                           {"content":"What is 2\u002b2?","role":"user"} ],
            "model":"auto" }"#;
        assert_eq!(key_of(reordered), key_of(BODY));
        let schema_a = with(
            "tools",
            json!([{"type":"function","function":{"name":"f","parameters":{"a":1,"b":2}}}]),
        );
        let schema_b = with(
            "tools",
            json!([{"function":{"parameters":{"b":2,"a":1},"name":"f"},"type":"function"}]),
        );
        assert_eq!(key_of(&schema_a), key_of(&schema_b));
    }

    #[test]
    fn delivery_identity_and_private_members_are_not_keyed() {
        let base = key_of(BODY);
        for (member, value) in [
            ("stream", json!(true)),
            ("stream_options", json!({"include_usage": true})),
            ("user", json!("alice")),
            ("safety_identifier", json!("hash")),
            ("metadata", json!({"run": "7"})),
            ("store", json!(true)),
            ("prompt_cache_key", json!("session-1")),
            ("model", json!("small")),
            ("signalbox_anything", json!(1)),
            ("top_p", json!(null)),
        ] {
            assert_eq!(key_of(&with(member, value)), base, "{member}");
        }
        let marked = BODY.replace(
            r#""content":"Be brief.""#,
            r#""content":"Be brief.","signalbox_cache_breakpoint":true"#,
        );
        assert_eq!(key_of(&marked), base);
    }

    #[test]
    fn everything_that_shapes_the_answer_is_keyed() {
        let base = key_of(BODY);
        let variants = [
            ("temperature", json!(0.2)),
            ("top_p", json!(0.9)),
            ("max_tokens", json!(10)),
            ("max_completion_tokens", json!(10)),
            ("stop", json!(["\n"])),
            ("seed", json!(7)),
            ("n", json!(2)),
            ("presence_penalty", json!(0.5)),
            ("frequency_penalty", json!(0.5)),
            ("logit_bias", json!({"50256": -100})),
            ("response_format", json!({"type": "json_object"})),
            ("logprobs", json!(true)),
            ("top_logprobs", json!(3)),
            ("parallel_tool_calls", json!(false)),
            ("reasoning_effort", json!("high")),
            ("tools", json!([{"type": "function", "function": {"name": "f"}}])),
            ("tool_choice", json!("required")),
            ("a_field_from_next_year", json!("x")),
        ];
        for (member, value) in variants {
            assert_ne!(key_of(&with(member, value)), base, "{member}");
        }
        for (from, to) in [
            (r#""role":"system""#, r#""role":"developer""#),
            ("What is 2+2?", "What is 2+3?"),
            (r#""role":"user","#, r#""role":"user","name":"bob","#),
        ] {
            assert_ne!(key_of(&BODY.replace(from, to)), base, "{to}");
        }
        let with_call = with(
            "messages",
            json!([{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]}]),
        );
        let other_call = with_call.replace(r#""arguments":"{}""#, r#""arguments":"{\"x\":1}""#);
        assert_ne!(key_of(&with_call), key_of(&other_call));
    }

    #[test]
    fn message_order_matters() {
        let swapped = r#"{"messages":[{"role":"user","content":"What is 2+2?"},{"role":"system","content":"Be brief."}],"temperature":0}"#;
        assert_ne!(key_of(swapped), key_of(BODY));
    }

    #[test]
    fn tenants_and_targets_never_share_a_key() {
        let body = BODY.as_bytes();
        let keys = [
            cache_key(None, "small", body),
            cache_key(Some(""), "small", body),
            cache_key(Some("team"), "small", body),
            cache_key(Some("other"), "small", body),
            cache_key(Some("team"), "large", body),
            cache_key(Some("teams"), "mall", body),
        ];
        for (position, key) in keys.iter().enumerate() {
            assert!(key.is_some());
            assert!(!keys[..position].contains(key), "key {position} repeats");
        }
    }

    #[test]
    fn numbers_compare_by_value() {
        let one = key_of(&with("seed", json!(1)));
        assert_eq!(
            key_of(&BODY.replace("\"temperature\":0", "\"temperature\":0,\"seed\":1.0")),
            one
        );
        assert_eq!(
            key_of(&BODY.replace("\"temperature\":0", "\"temperature\":0,\"seed\":1e0")),
            one
        );
        assert_eq!(
            key_of(&BODY.replace("\"temperature\":0", "\"temperature\":-0.0")),
            key_of(BODY)
        );
        assert_ne!(
            key_of(&with("temperature", json!(0.1))),
            key_of(&with("temperature", json!(0.10001)))
        );
    }

    #[test]
    fn a_body_that_is_not_a_json_object_has_no_key() {
        for body in [&b"[]"[..], b"\"x\"", b"{", b"", b"\xff"] {
            assert_eq!(cache_key(None, "m", body), None);
        }
    }

    #[test]
    fn a_deep_body_is_refused_by_the_parser_not_the_stack() {
        let deep = format!("{{\"x\":{}{}}}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(cache_key(None, "m", deep.as_bytes()), None);
    }

    #[test]
    fn delivery_fields_are_read() {
        let request = CacheRequest::parse(
            with("stream_options", json!({"include_usage": true}))
                .replace("\"temperature\"", "\"stream\":true,\"temperature\"")
                .as_bytes(),
        )
        .unwrap();
        assert!(request.is_stream() && request.wants_stream_usage());
        let plain = CacheRequest::parse(BODY.as_bytes()).unwrap();
        assert!(!plain.is_stream() && !plain.wants_stream_usage());
    }
}
