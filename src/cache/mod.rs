//! The exact response cache, as plain data in and out (no Envoy calls):
//! [`key`] turns a tenant, a routed target and a chat request into a
//! [`CacheKey`]; [`admit`] says whether a request may be answered from the
//! cache and whether an answer may be kept, under a tenant's policy
//! ([`crate::config::cache::CachePolicy`]); [`answer`] reads a kept answer
//! and replays it whole or as a stream.
//!
//! The filter glue decides when to look up and store; everything it needs
//! to decide with is here.

pub mod admit;
pub mod answer;
pub mod key;

pub use admit::{admit_answer, admit_request, Uncacheable};
pub use answer::{replay_stream, replay_whole, StoredAnswer};
pub use key::{cache_key, CacheKey, CacheRequest};

#[cfg(test)]
mod answer_tests;
