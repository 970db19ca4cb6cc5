//! Transport-level pieces that know nothing of chat: [`sse`] and
//! [`eventstream`] frame provider streams, [`sigv4`] signs AWS requests,
//! `dates` does the calendar arithmetic they and rate-limit resets need.

pub(in crate::providers) mod dates;
pub mod eventstream;
pub mod sigv4;
pub mod sse;
