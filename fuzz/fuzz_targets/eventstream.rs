#![no_main]
//! AWS event-stream decoding: the same messages however the stream is cut,
//! on raw bytes and on fuzzer records framed with valid CRCs.
use libfuzzer_sys::fuzz_target;
use signalbox_fuzz::{eventstream_messages, flag, frame_records, Input};

fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::parse(data) else { return };
    let stream = if input.has(flag::FRAMED) {
        frame_records(input.payload)
    } else {
        input.payload.to_vec()
    };
    let whole = eventstream_messages(&[&stream]);
    assert_eq!(eventstream_messages(&input.pieces(&stream)), whole);
});
