#![no_main]
//! Member edits of any JSON object.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| signalbox_fuzz::splice::check_edits(data));
