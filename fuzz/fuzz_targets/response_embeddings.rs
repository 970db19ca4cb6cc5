#![no_main]
//! Embeddings answers of every provider.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| signalbox_fuzz::check_embeddings(data));
