//! The exact response cache, as plain data in and out (no Envoy calls):
//! [`key`] turns a tenant, a routed target and a chat request into a
//! [`CacheKey`]; [`admit`] says whether a request may be answered from the
//! cache and whether an answer may be kept, under a tenant's policy
//! ([`crate::config::cache::CachePolicy`]); [`answer`] reads a kept answer
//! and replays it whole or as a stream; [`entry`] is the stored record and
//! [`store`] keeps entries in shared data within `max_bytes` (each shard's
//! [`index`] evicting the oldest), readable in one lookup. [`semantic`]
//! finds a near-duplicate question's exact key (off by default).
//!
//! The filter glue decides when to look up and store; everything it needs
//! to decide with is here.

pub mod admit;
pub mod answer;
pub mod assemble;
pub mod entry;
pub mod index;
pub mod key;
pub mod plan;
pub mod semantic;
pub mod store;

pub use admit::{admit_answer, admit_request, Uncacheable};
pub use answer::{replay_stream, replay_whole, StoredAnswer};
pub use entry::{Entry, Freshness};
pub use key::{cache_key, CacheKey, CacheRequest};
pub use store::{insert, lookup, sweep, InsertError, Layout, Lookup};

#[cfg(test)]
mod answer_tests;
#[cfg(test)]
mod store_tests;
