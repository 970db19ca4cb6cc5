#![no_main]
//! Any bytes as an embeddings body.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| signalbox_fuzz::requests::check_embeddings_request(data));
