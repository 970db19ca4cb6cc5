#![no_main]
//! OpenAI Responses API answers and streams read natively, however they are cut.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| signalbox_fuzz::check_responses_native(data));
