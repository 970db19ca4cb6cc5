//! One cached answer as a versioned shared-data record: the key it answers
//! (a slot holds whichever key was placed there last, so readers check),
//! when it was stored and until when it answers, the model that answered,
//! what it cost, and the provider's whole chat completion.

use super::answer;
use super::key::CacheKey;
use crate::providers::TokenUsage;
use crate::state::codec::{Reader, Writer};
use crate::state::Record;

/// How long after its expiry an entry still reads as [`Freshness::Stale`]
/// (for the `stale` header, or to answer while every provider fails);
/// after that it is a miss.
pub const STALE_GRACE_MS: u64 = 60_000;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Entry {
    pub key: CacheKey,
    /// Epoch ms when it was stored.
    pub stored_ms: u64,
    /// Epoch ms from which it no longer answers.
    pub expires_ms: u64,
    /// The configured model that answered (headers, metrics, the saving).
    pub model: String,
    /// What the answer cost when it was made (what a hit saves).
    pub usage: TokenUsage,
    /// The whole chat completion as the provider sent it.
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    Fresh,
    /// Expired less than [`STALE_GRACE_MS`] ago.
    Stale,
    Expired,
}

impl Entry {
    pub fn new(key: CacheKey, model: &str, usage: TokenUsage, body: Vec<u8>, now_ms: u64, ttl_ms: u64) -> Entry {
        Entry {
            key,
            stored_ms: now_ms,
            expires_ms: now_ms.saturating_add(ttl_ms),
            model: model.to_string(),
            usage,
            body,
        }
    }

    pub fn freshness(&self, now_ms: u64) -> Freshness {
        if now_ms < self.expires_ms {
            Freshness::Fresh
        } else if now_ms < self.expires_ms.saturating_add(STALE_GRACE_MS) {
            Freshness::Stale
        } else {
            Freshness::Expired
        }
    }

    /// The answer as a `chat.completion.chunk` stream; `None` if the stored
    /// body cannot be read (treat as a miss).
    pub fn replay_stream(&self, id: &str, created: u64, include_usage: bool) -> Option<Vec<u8>> {
        answer::replay_stream(&self.body, id, created, &self.model, include_usage)
    }

    /// The answer as a whole chat completion under a fresh id and time.
    pub fn replay_whole(&self, id: &str, created: u64) -> Vec<u8> {
        answer::replay_whole(&self.body, id, created)
    }
}

const VERSION: u8 = 1;

/// When an encoded entry was stored and when it expires, read without
/// copying its body (to tell whether a slot still holds a given entry).
pub(crate) fn peek_times(bytes: &[u8]) -> Option<(u64, u64)> {
    let mut reader = Reader::with_version(bytes, VERSION)?;
    reader.u64()?;
    reader.u64()?;
    Some((reader.u64()?, reader.u64()?))
}

impl Record for Entry {
    fn encode(&self) -> Vec<u8> {
        let (high, low) = self.key.halves();
        let mut writer = Writer::with_version(VERSION);
        writer
            .u64(high)
            .u64(low)
            .u64(self.stored_ms)
            .u64(self.expires_ms)
            .u64(self.usage.input)
            .u64(self.usage.cached_input)
            .u64(self.usage.cache_write)
            .u64(self.usage.output)
            .bytes(self.model.as_bytes())
            .bytes(&self.body);
        writer.finish()
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let mut reader = Reader::with_version(bytes, VERSION)?;
        let key = CacheKey::from_halves(reader.u64()?, reader.u64()?);
        let entry = Entry {
            key,
            stored_ms: reader.u64()?,
            expires_ms: reader.u64()?,
            usage: TokenUsage {
                input: reader.u64()?,
                cached_input: reader.u64()?,
                cache_write: reader.u64()?,
                output: reader.u64()?,
            },
            model: String::from_utf8(reader.bytes()?.to_vec()).ok()?,
            body: reader.bytes()?.to_vec(),
        };
        reader.is_done().then_some(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry::new(
            CacheKey([7; 16]),
            "small",
            TokenUsage {
                input: 10,
                cached_input: 2,
                cache_write: 0,
                output: 5,
            },
            br#"{"id":"x","choices":[]}"#.to_vec(),
            1_000,
            300_000,
        )
    }

    #[test]
    fn the_record_round_trips() {
        let entry = entry();
        assert_eq!(Entry::decode(&entry.encode()), Some(entry));
    }

    #[test]
    fn the_times_are_read_without_the_body() {
        assert_eq!(peek_times(&entry().encode()), Some((1_000, 301_000)));
        assert_eq!(peek_times(b""), None);
    }

    #[test]
    fn empty_truncated_or_foreign_bytes_read_as_absent() {
        let bytes = entry().encode();
        assert_eq!(Entry::decode(b""), None, "a blanked slot");
        assert_eq!(Entry::decode(&bytes[..bytes.len() - 1]), None);
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(Entry::decode(&longer), None);
        let mut other_version = bytes;
        other_version[0] = 2;
        assert_eq!(Entry::decode(&other_version), None);
    }

    #[test]
    fn an_entry_is_fresh_until_it_expires_then_stale_for_a_grace_period() {
        let entry = entry();
        assert_eq!(entry.freshness(1_000), Freshness::Fresh);
        assert_eq!(entry.freshness(300_999), Freshness::Fresh);
        assert_eq!(entry.freshness(301_000), Freshness::Stale);
        assert_eq!(entry.freshness(301_000 + STALE_GRACE_MS - 1), Freshness::Stale);
        assert_eq!(entry.freshness(301_000 + STALE_GRACE_MS), Freshness::Expired);
        assert_eq!(entry.freshness(u64::MAX), Freshness::Expired);
    }
}
