//! One module per provider API: how a call is written for it and how its
//! answer is read back. [`openai`] (OpenAI, Azure and the compatible
//! vendors), [`anthropic`], [`gemini`] and [`bedrock`] translate chat and
//! embeddings; `responses` reads OpenAI's Responses API answers, which go
//! back to their client as they came. The front (`providers`) picks the
//! adapter by [`ProviderKind`](super::ProviderKind).

pub mod anthropic;
pub mod bedrock;
pub mod gemini;
pub mod openai;
pub(crate) mod responses;
