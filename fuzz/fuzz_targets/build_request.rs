#![no_main]
//! Accepted requests rewritten for every provider.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| signalbox_fuzz::requests::check_build(data));
