//! The semantic cache (off by default): a question close enough in meaning
//! to one answered minutes ago, in the same conversation, gets that answer.
//! Plain data in and out, like the exact cache it sits on:
//! - [`context`]: the request's context key (everything but the last user
//!   text) and that text; matches need equal context keys.
//! - [`embed`]: the embeddings call for the text, and the vector read back.
//! - [`vector`]: vectors normalised and quantised to `i8`, cosine on them.
//! - [`index`]: each tenant's bounded index in shared data, mapping
//!   (context, vector) to an exact [`super::CacheKey`], whose entry in the
//!   exact store answers.
//!
//! The glue, on an exact miss of a tenant with a threshold
//! ([`crate::config::cache::Cache::semantic_threshold`]): [`context_key`],
//! [`embedding_call`] dispatched, [`read_answer`], [`Quantised::from_floats`],
//! [`search`]; a key found is looked up in the exact store (a miss there is
//! a miss). Without a hit, once the answer is kept under the request's
//! exact key, [`add`] with the entry's expiry.

pub mod context;
pub mod embed;
pub mod index;
pub mod vector;

pub use context::{context_key, ContextKey};
pub use embed::{embedding_call, embedding_request_body, read_answer, read_embedding, EmbeddingCall};
pub use index::{add, search, SemanticLayout};
pub use vector::Quantised;
