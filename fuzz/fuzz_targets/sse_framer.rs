#![no_main]
//! SSE framing: the same events however the stream is cut; bounded events.
use libfuzzer_sys::fuzz_target;
use signalbox::providers::sse::MAX_FRAME_BYTES;
use signalbox_fuzz::{sse_events, Input};

fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::parse(data) else { return };
    let whole = sse_events(&[input.payload], MAX_FRAME_BYTES);
    assert_eq!(sse_events(&input.pieces(input.payload), MAX_FRAME_BYTES), whole);
    // A small cap: errors instead of growth, never a panic.
    let _ = sse_events(&input.pieces(input.payload), usize::from(input.flags));
});
