//! The exact response cache, as plain data in and out (no Envoy calls):
//! [`key`] turns a tenant, a routed target and a chat request into a
//! [`CacheKey`].
//!
//! The filter glue decides when to look up and store; everything it needs
//! to decide with is here.

pub mod key;

pub use key::{cache_key, CacheKey, CacheRequest};
