//! Signalbox: an LLM routing gateway that runs inside Envoy as a proxy-wasm
//! HTTP filter.
//!
//! Everything but [`filter`] is a plain Rust core that builds and tests
//! natively: [`request`] reads OpenAI requests, [`classify`] scores them,
//! [`route`] plans where each goes, [`providers`] rewrites it for the chosen
//! provider. [`filter`] is the only code that talks to Envoy: it moves bytes
//! between the host and that core.

pub mod assess;
pub mod cache;
pub mod canary;
pub mod classify;
pub mod config;
pub mod contract;
pub mod error;
pub mod failure;
pub mod feedback;
pub mod fleet;
pub mod govern;
pub mod guard;
pub mod headers;
pub mod health;
pub mod ingress;
pub mod json_edit;
pub mod json_path;
pub mod keys;
pub mod policy;
pub mod probe;
pub mod providers;
pub mod request;
pub mod route;
pub mod secret;
pub mod shadow;
pub mod state;
pub mod status;
pub mod telemetry;
pub mod tokens;

#[cfg(target_arch = "wasm32")]
mod filter;

#[cfg(test)]
mod testing;
