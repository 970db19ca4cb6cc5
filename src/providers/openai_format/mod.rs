//! OpenAI's chat and embeddings shapes, shared by the adapters: `chat`
//! reads a chat request once for the translating adapters, `embeddings`
//! reads and writes embeddings, `compose` writes OpenAI answers and chunks,
//! `usage` renders token usage, [`body_edit`] edits a client's body byte for
//! byte for the OpenAI family.

pub mod body_edit;
pub(crate) mod chat;
pub(crate) mod compose;
pub(in crate::providers) mod embeddings;
pub(crate) mod usage;
