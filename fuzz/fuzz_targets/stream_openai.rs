#![no_main]
//! Openai streams translated for the client, however they are cut.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| signalbox_fuzz::check_stream(signalbox::providers::ProviderKind::Openai, data));
