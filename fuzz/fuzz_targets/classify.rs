#![no_main]
//! Any text as the last user message.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| signalbox_fuzz::requests::check_classify(data));
