#![no_main]
//! Any bytes as a chat-completions body.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| signalbox_fuzz::requests::check_chat(data));
