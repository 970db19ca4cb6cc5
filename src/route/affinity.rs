//! Conversation affinity: the turns of one conversation draw the same
//! weighted pick, canary share and key, so they reach the same deployment
//! on every worker and every replica without shared state, and the
//! provider's prompt cache for that conversation stays warm. An unhealthy
//! deployment is skipped by the chain as for any request, so failover still
//! moves the conversation; it comes back when the deployment recovers.
//!
//! The draw is a hash of what names the conversation (see
//! [`AffinitySource`]), fixed-seeded so every Envoy running this module
//! computes the same one.

use std::hash::{BuildHasher, Hash, Hasher};

use crate::config::affinity::{Affinity, AffinitySource};
use crate::headers::HeaderMap;
use crate::request::{ChatRequest, Role};

/// Most bytes of one text the prefix hash reads; with the text's length
/// this tells conversations apart without hashing a whole agent prompt.
const PREFIX_TEXT_BYTES: usize = 16 * 1024;

/// The conversation's draw and what named it, or `None` when the request
/// carries none of the configured sources. `tenant` (governed requests)
/// is hashed too: two tenants sending the same opening do not share a
/// deployment and key by construction, which would make the provider's
/// prompt cache a reliable channel between them.
pub fn draw(
    affinity: &Affinity,
    request: &ChatRequest<'_>,
    headers: &HeaderMap,
    tenant: Option<&str>,
) -> Option<(u64, AffinitySource)> {
    affinity.sources.iter().find_map(|&source| {
        let mut hasher = hasher(source);
        tenant.hash(&mut hasher);
        let named = match source {
            AffinitySource::SessionHeader => hash_text(&mut hasher, headers.get(&affinity.session_header)),
            AffinitySource::PromptCacheKey => hash_text(&mut hasher, request.prompt_cache_key.map(|raw| raw.get())),
            AffinitySource::User => hash_text(&mut hasher, request.user.map(|raw| raw.get())),
            AffinitySource::Prefix => hash_prefix(&mut hasher, request),
        };
        named.then(|| (hasher.finish(), source))
    })
}

fn hasher(source: AffinitySource) -> impl Hasher {
    // Fixed seeds: the same conversation must hash alike in every process.
    ahash::RandomState::with_seeds(
        0x5167_6e61_6c62_6f78,
        0x6166_6669_6e69_7479,
        0x636f_6e76_6572_7361,
        source as u64,
    )
    .build_hasher()
}

/// Hashes a non-empty, non-null value; false when there is none.
fn hash_text(hasher: &mut impl Hasher, value: Option<&str>) -> bool {
    match value.map(str::trim) {
        Some("" | "null" | "\"\"") | None => false,
        Some(value) => {
            value.hash(hasher);
            true
        }
    }
}

/// Hashes the system and developer messages before the first user message,
/// and that message: what stays the same on every turn of a conversation.
fn hash_prefix(hasher: &mut impl Hasher, request: &ChatRequest<'_>) -> bool {
    let Some(first_user) = request.messages.iter().position(|message| message.role == Role::User) else {
        return false;
    };
    for message in &request.messages[..=first_user] {
        if !matches!(message.role, Role::System | Role::Developer | Role::User) {
            continue;
        }
        (message.role as u8).hash(hasher);
        for text in message.text_parts() {
            text.len().hash(hasher);
            hasher.write(text.as_bytes().get(..PREFIX_TEXT_BYTES).unwrap_or(text.as_bytes()));
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::affinity::{resolve, RawAffinity};
    use crate::request::parse_chat;

    fn affinity(sources: &str) -> Affinity {
        let raw: RawAffinity = serde_json::from_str(sources).unwrap();
        resolve(Some(&raw)).unwrap().unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        HeaderMap::new(
            pairs
                .iter()
                .map(|(name, value)| (name.to_string(), value.as_bytes().to_vec()))
                .collect(),
        )
    }

    fn draw_of(affinity: &Affinity, body: &str, pairs: &[(&str, &str)]) -> Option<(u64, AffinitySource)> {
        let request = parse_chat(body.as_bytes()).unwrap();
        draw(affinity, &request, &headers(pairs), None)
    }

    fn turn(system: &str, first: &str, later: &[&str]) -> String {
        let mut messages = vec![
            serde_json::json!({"role": "system", "content": system}),
            serde_json::json!({"role": "user", "content": first}),
        ];
        for text in later {
            messages.push(serde_json::json!({"role": "assistant", "content": "ok"}));
            messages.push(serde_json::json!({"role": "user", "content": text}));
        }
        serde_json::json!({"model": "auto", "messages": messages}).to_string()
    }

    #[test]
    fn every_turn_of_a_conversation_draws_alike() {
        let affinity = affinity("{}");
        let first = draw_of(&affinity, &turn("You code.", "Fix the parser", &[]), &[]);
        let tenth = draw_of(&affinity, &turn("You code.", "Fix the parser", &["more"; 9]), &[]);
        assert_eq!(first.map(|(_, source)| source), Some(AffinitySource::Prefix));
        assert_eq!(first, tenth);
        let other = draw_of(&affinity, &turn("You code.", "Write the docs", &[]), &[]);
        assert_ne!(first, other);
    }

    #[test]
    fn the_first_configured_source_present_decides() {
        let affinity = affinity("{}");
        let body =
            r#"{"model":"auto","user":"u-1","prompt_cache_key":"s-9","messages":[{"role":"user","content":"hi"}]}"#;
        let by_header = draw_of(&affinity, body, &[("x-session-id", "abc")]);
        assert_eq!(by_header.map(|(_, source)| source), Some(AffinitySource::SessionHeader));
        let by_key = draw_of(&affinity, body, &[]);
        assert_eq!(by_key.map(|(_, source)| source), Some(AffinitySource::PromptCacheKey));
        let by_user = draw_of(&affinity, &body.replace(r#""prompt_cache_key":"s-9","#, ""), &[]);
        assert_eq!(by_user.map(|(_, source)| source), Some(AffinitySource::User));
        // The same value under two sources draws differently.
        assert_ne!(by_key.map(|(draw, _)| draw), by_user.map(|(draw, _)| draw));
    }

    #[test]
    fn empty_values_and_requests_without_a_user_turn_name_nothing() {
        let affinity = affinity(r#"{"sources": ["user", "prefix"]}"#);
        let body = r#"{"model":"auto","user":"","messages":[{"role":"system","content":"only"}]}"#;
        assert_eq!(draw_of(&affinity, body, &[]), None);
        let null_user = r#"{"model":"auto","user":null,"messages":[{"role":"user","content":"hi"}]}"#;
        assert_eq!(
            draw_of(&affinity, null_user, &[]).map(|(_, source)| source),
            Some(AffinitySource::Prefix)
        );
    }

    #[test]
    fn tenants_sending_the_same_opening_draw_apart() {
        let affinity = affinity("{}");
        let body = turn("You code.", "Fix the parser", &[]);
        let request = parse_chat(body.as_bytes()).unwrap();
        let none = HeaderMap::default();
        let acme = draw(&affinity, &request, &none, Some("acme"));
        assert_eq!(acme, draw(&affinity, &request, &none, Some("acme")));
        assert_ne!(acme, draw(&affinity, &request, &none, Some("globex")));
    }

    #[test]
    fn a_long_opening_is_hashed_within_bounds_and_still_told_apart() {
        let affinity = affinity(r#"{"sources": ["prefix"]}"#);
        let long = "x".repeat(PREFIX_TEXT_BYTES * 4);
        let longer = "x".repeat(PREFIX_TEXT_BYTES * 4 + 1);
        assert_ne!(
            draw_of(&affinity, &turn("s", &long, &[]), &[]),
            draw_of(&affinity, &turn("s", &longer, &[]), &[])
        );
    }

    #[test]
    fn bad_sections_are_refused_naming_the_field() {
        let refused = |text: &str| {
            let raw: RawAffinity = serde_json::from_str(text).unwrap();
            resolve(Some(&raw)).unwrap_err().to_string()
        };
        assert!(refused(r#"{"sources": []}"#).contains("affinity.sources"));
        assert!(refused(r#"{"sources": ["user", "user"]}"#).contains("affinity.sources[1]"));
        assert!(refused(r#"{"session_header": "X Bad"}"#).contains("affinity.session_header"));
        assert!(refused(r#"{"sources": ["user"], "session_header": "x-s"}"#).contains("affinity.session_header"));
        assert!(serde_json::from_str::<RawAffinity>(r#"{"sources": ["cookie"]}"#).is_err());
    }
}
