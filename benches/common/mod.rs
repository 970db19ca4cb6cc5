#![allow(dead_code)] // each bench uses part of this module
//! What the native benches share: a realistic prompt and the timer.
//!
//! Each case runs in batches for a fixed time and the fastest batch gives
//! the per-call time. Time is the calling thread's CPU time, not the wall
//! clock: on a shared machine, neighbours inflate wall time two to four
//! times, and even CPU time (through caches and shared cores), while the
//! work itself does not change; noise only ever adds, so the fastest batch
//! is the closest to the code's own cost.

use std::time::{Duration, Instant};

/// Mixed prose, a question and a code block: what real prompts look like.
pub const PARAGRAPH: &str = "Our billing service occasionally double-charges customers when a payment \
provider times out and the client retries. Explain why this happens, compare idempotency keys \
with a transactional outbox, and recommend one approach for a team of four.\n\
```python\ndef charge(customer, amount):\n    response = provider.charge(customer.id, amount)\n    \
if response.status == 'timeout':\n        return charge(customer, amount)\n    return response\n```\n";

/// [`PARAGRAPH`] repeated and cut to `bytes`.
pub fn prompt_of_size(bytes: usize) -> String {
    text_of_size(&[PARAGRAPH], bytes)
}

/// `pieces` repeated in turn and cut to `bytes` (on a character boundary).
pub fn text_of_size(pieces: &[&str], bytes: usize) -> String {
    let mut text = String::with_capacity(bytes + 1024);
    while text.len() < bytes {
        for piece in pieces {
            text.push_str(piece);
        }
    }
    let mut end = bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text
}

/// CPU time this thread has used.
fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `now` is a valid, writable timespec for the call to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// Fastest CPU time per call over batches run for about `budget`.
pub fn measure(mut call: impl FnMut(), budget: Duration) -> Duration {
    let batch = {
        let start = Instant::now();
        let mut calls = 0u32;
        while start.elapsed() < Duration::from_millis(20) {
            call();
            calls += 1;
        }
        calls.max(1)
    };
    let mut samples = Vec::new();
    let start = Instant::now();
    while start.elapsed() < budget || samples.len() < 5 {
        let batch_start = thread_cpu_time();
        for _ in 0..batch {
            call();
        }
        samples.push((thread_cpu_time() - batch_start) / batch);
    }
    samples.into_iter().min().unwrap_or_default()
}

pub fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}
