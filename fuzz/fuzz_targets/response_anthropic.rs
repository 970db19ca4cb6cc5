#![no_main]
//! Anthropic answers (and errors) translated for the client.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| signalbox_fuzz::check_response(signalbox::providers::ProviderKind::Anthropic, data));
