//! The conversation a semantic match must share: everything in a chat
//! request that shapes the answer except the text of its last user message
//! (system prompt, earlier turns, tools, sampling parameters, response
//! format, the last message's other members), canonicalised and hashed as
//! the exact key is ([`super::super::key`]), under its own domain. Two
//! requests may match semantically only when their context keys are equal:
//! "what is 5 km in miles" after a conversation about running is not the
//! same question after one about a recipe.

use std::fmt;

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::super::key::{is_keyed, CacheRequest, Canonical};

/// 128 bits of SHA-256 over the tenant, the target and the request without
/// its last user text.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct ContextKey(pub [u8; 16]);

impl ContextKey {
    pub fn halves(&self) -> (u64, u64) {
        let mut high = [0u8; 8];
        let mut low = [0u8; 8];
        high.copy_from_slice(&self.0[..8]);
        low.copy_from_slice(&self.0[8..]);
        (u64::from_le_bytes(high), u64::from_le_bytes(low))
    }

    pub fn from_halves(high: u64, low: u64) -> ContextKey {
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&high.to_le_bytes());
        key[8..].copy_from_slice(&low.to_le_bytes());
        ContextKey(key)
    }
}

impl fmt::Display for ContextKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

/// Changes to the encoding must change this, so old index records miss.
const DOMAIN: &[u8] = b"signalbox.cache.semantic.context.v1";

/// The context key of `body` from `tenant` routed to `target`, and the text
/// of its last message. `None` when the body is not a JSON object, or its
/// last message is not a user message of text only (a string, or text
/// parts, joined by newlines) with some non-blank text: an image, audio or
/// a tool result is not something a text embedding can stand for.
pub fn context_key(tenant: Option<&str>, target: &str, body: &[u8]) -> Option<(ContextKey, String)> {
    CacheRequest::parse(body).and_then(|request| request_context(&request, tenant, target))
}

/// [`context_key`] of an already parsed request.
pub fn request_context(request: &CacheRequest, tenant: Option<&str>, target: &str) -> Option<(ContextKey, String)> {
    let messages = request.member("messages")?.as_array()?;
    let (last, earlier) = messages.split_last()?;
    let text = user_text(last)?;
    let last_members = last.as_object()?;
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
    encoder.object(request.keyed_members(), |encoder, name, value| match (name, value) {
        ("messages", Value::Array(_)) => {
            encoder.messages(earlier);
            // The last message with every member but its text: a `name`,
            // say, still has to agree.
            encoder.object(
                last_members
                    .iter()
                    .filter(|(name, _)| is_keyed(name) && name.as_str() != "content"),
                |encoder, _, value| encoder.value(value),
            );
        }
        _ => encoder.value(value),
    });
    let digest = encoder.0.finalize();
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest[..16]);
    Some((ContextKey(key), text))
}

fn user_text(message: &Value) -> Option<String> {
    if message.get("role").and_then(Value::as_str) != Some("user") {
        return None;
    }
    let text = match message.get("content")? {
        Value::String(text) => text.clone(),
        Value::Array(parts) => {
            let texts: Option<Vec<&str>> = parts
                .iter()
                .map(|part| match part.get("type").and_then(Value::as_str) {
                    Some("text") => part.get("text").and_then(Value::as_str),
                    _ => None,
                })
                .collect();
            texts?.join("\n")
        }
        _ => return None,
    };
    (!text.trim().is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(last: &str) -> serde_json::Value {
        json!({
            "model": "auto",
            "temperature": 0,
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "I run every morning."},
                {"role": "assistant", "content": "Nice."},
                {"role": "user", "content": last}
            ]
        })
    }

    fn context_of(body: &serde_json::Value) -> Option<(ContextKey, String)> {
        context_key(Some("team"), "small", body.to_string().as_bytes())
    }

    #[test]
    fn the_last_user_text_is_returned_and_left_out_of_the_key() {
        let (first, text) = context_of(&request("How far is 5 km in miles?")).unwrap();
        assert_eq!(text, "How far is 5 km in miles?");
        let (second, _) = context_of(&request("5 km is how many miles?")).unwrap();
        assert_eq!(first, second);
    }

    #[test]
    fn everything_else_in_the_conversation_is_keyed() {
        let (base, _) = context_of(&request("q")).unwrap();
        let mut variants = Vec::new();
        let mut system = request("q");
        system["messages"][0]["content"] = json!("Be verbose.");
        variants.push(system);
        let mut earlier = request("q");
        earlier["messages"][1]["content"] = json!("I cook every morning.");
        variants.push(earlier);
        let mut shorter = request("q");
        shorter["messages"].as_array_mut().unwrap().remove(2);
        variants.push(shorter);
        let mut named = request("q");
        named["messages"][3]["name"] = json!("bob");
        variants.push(named);
        for (member, value) in [
            ("temperature", json!(0.3)),
            ("tools", json!([{"type": "function", "function": {"name": "f"}}])),
            ("response_format", json!({"type": "json_object"})),
            ("max_tokens", json!(5)),
        ] {
            let mut changed = request("q");
            changed[member] = value;
            variants.push(changed);
        }
        for variant in &variants {
            assert_ne!(context_of(variant).unwrap().0, base, "{variant}");
        }
        let other_tenant = context_key(Some("other"), "small", request("q").to_string().as_bytes()).unwrap();
        let other_target = context_key(Some("team"), "large", request("q").to_string().as_bytes()).unwrap();
        assert_ne!(other_tenant.0, base);
        assert_ne!(other_target.0, base);
    }

    #[test]
    fn delivery_members_and_member_order_do_not_matter() {
        let (base, _) = context_of(&request("q")).unwrap();
        let mut streamed = request("q");
        streamed["stream"] = json!(true);
        streamed["user"] = json!("alice");
        assert_eq!(context_of(&streamed).unwrap().0, base);
        let reordered = r#"{"temperature":0.0,"messages":[{"content":"Be brief.","role":"system"},
            {"content":"I run every morning.","role":"user"},{"content":"Nice.","role":"assistant"},
            {"content":"q","role":"user"}],"model":"x"}"#;
        assert_eq!(
            context_key(Some("team"), "small", reordered.as_bytes()).unwrap().0,
            base
        );
    }

    #[test]
    fn the_context_key_is_not_the_exact_key() {
        let body = request("q").to_string();
        let exact = super::super::super::key::cache_key(Some("team"), "small", body.as_bytes()).unwrap();
        assert_ne!(context_of(&request("q")).unwrap().0 .0, exact.0);
    }

    #[test]
    fn text_parts_are_joined_and_anything_else_has_no_context() {
        let parts = request("x");
        let mut parts = parts;
        parts["messages"][3]["content"] = json!([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]);
        assert_eq!(context_of(&parts).unwrap().1, "a\nb");
        let mut image = parts.clone();
        image["messages"][3]["content"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "image_url", "image_url": {"url": "https://x"}}));
        assert_eq!(context_of(&image), None);
        let mut assistant_last = request("x");
        assistant_last["messages"][3]["role"] = json!("assistant");
        assert_eq!(context_of(&assistant_last), None);
        assert_eq!(context_of(&request("   ")), None);
        assert_eq!(context_of(&json!({"messages": []})), None);
        assert_eq!(context_key(None, "m", b"[1]"), None);
        let mut tool = request("x");
        tool["messages"][3] = json!({"role": "tool", "tool_call_id": "c", "content": "42"});
        assert_eq!(context_of(&tool), None);
    }
}
