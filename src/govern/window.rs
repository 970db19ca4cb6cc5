//! Requests-per-minute and tokens-per-minute as a sliding window.
//!
//! Two fixed one-minute buckets, the current and the previous one; the rate
//! over the last 60 s is estimated as `previous × (share of the previous
//! minute still inside the window) + current`. That is the classic sliding
//! window counter: 25 bytes per scope, one compare-and-swap per admission,
//! and at most a few percent off a true sliding log when traffic is steady.
//! Admission adds the request and its estimated tokens at once; settlement
//! corrects the tokens by the difference between actual and estimate.

pub use crate::policy::RateLimits;
use crate::state::codec::{Reader, Writer};
use crate::state::Record;

const MINUTE_MS: u64 = 60_000;
const VERSION: u8 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Buckets {
    current: u64,
    previous: u64,
}

impl Buckets {
    fn estimate(&self, elapsed_in_minute: u64) -> u64 {
        let carried = self.previous.saturating_mul(MINUTE_MS - elapsed_in_minute) / MINUTE_MS;
        carried.saturating_add(self.current)
    }

    /// Milliseconds until `amount` more fits under `limit`, if it ever does.
    fn wait_for(&self, amount: u64, limit: u64, elapsed_in_minute: u64) -> Option<u64> {
        if amount > limit {
            return None;
        }
        let room = limit - amount;
        if self.current <= room {
            // The previous minute's share has to shrink: solve
            // previous × (60000 − t) / 60000 + current ≤ room for t.
            if self.previous == 0 {
                return Some(0);
            }
            let needed = MINUTE_MS.saturating_sub((room - self.current).saturating_mul(MINUTE_MS) / self.previous);
            return Some(needed.saturating_sub(elapsed_in_minute) + 1);
        }
        // This minute alone is too full: wait into the next one, where it
        // becomes the previous bucket.
        let into_next = MINUTE_MS.saturating_sub(room.saturating_mul(MINUTE_MS) / self.current.max(1));
        Some(MINUTE_MS - elapsed_in_minute + into_next + 1)
    }
}

/// Requests and tokens of one scope over the sliding minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RateWindow {
    /// Index of the current minute since the epoch.
    pub minute: u64,
    requests: Buckets,
    tokens: Buckets,
}

/// Where the scope stands against its limits (for `x-ratelimit-*` headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RateStanding {
    pub requests_remaining: Option<u64>,
    pub tokens_remaining: Option<u64>,
    /// Milliseconds until the window has fully rolled over.
    pub reset_ms: u64,
}

impl RateWindow {
    /// Moves the window to `now_ms`'s minute. Only forward: a clock that
    /// jumps back (or a worker whose clock lags) counts in the window it
    /// finds, never wiping what other requests booked.
    fn roll(&mut self, now_ms: u64) {
        let minute = now_ms / MINUTE_MS;
        if minute <= self.minute {
            return;
        }
        let adjacent = minute == self.minute + 1;
        for buckets in [&mut self.requests, &mut self.tokens] {
            buckets.previous = if adjacent { buckets.current } else { 0 };
            buckets.current = 0;
        }
        self.minute = minute;
    }

    /// Adds one request and `tokens` if both fit; otherwise the wait in ms
    /// until they would (`None`: never, the request alone is over the limit).
    pub fn try_admit(&mut self, now_ms: u64, tokens: u64, limits: &RateLimits) -> Result<(), Option<u64>> {
        self.roll(now_ms);
        let elapsed = self.elapsed_in_minute(now_ms);
        let checks = [
            (&self.requests, 1, limits.requests_per_minute),
            (&self.tokens, tokens, limits.tokens_per_minute),
        ];
        let mut wait: Option<u64> = Some(0);
        for (buckets, amount, limit) in checks {
            let Some(limit) = limit else { continue };
            if buckets.estimate(elapsed).saturating_add(amount) > limit {
                wait = match (wait, buckets.wait_for(amount, limit, elapsed)) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    _ => None,
                };
                if wait.is_none() {
                    return Err(None);
                }
            }
        }
        match wait {
            Some(0) => {
                self.requests.current += 1;
                self.tokens.current = self.tokens.current.saturating_add(tokens);
                Ok(())
            }
            other => Err(other),
        }
    }

    /// How far into the window's minute `now_ms` is (0 when the clock lags
    /// behind the window: the window is then as full as it gets).
    fn elapsed_in_minute(&self, now_ms: u64) -> u64 {
        if now_ms / MINUTE_MS == self.minute {
            now_ms % MINUTE_MS
        } else {
            0
        }
    }

    /// Corrects the tokens booked at `booked_minute` by `actual - estimate`.
    pub fn settle_tokens(&mut self, now_ms: u64, booked_minute: u64, estimate: u64, actual: u64) {
        self.roll(now_ms);
        let bucket = if booked_minute == self.minute {
            &mut self.tokens.current
        } else if booked_minute + 1 == self.minute {
            &mut self.tokens.previous
        } else {
            return;
        };
        *bucket = bucket.saturating_sub(estimate).saturating_add(actual);
    }

    /// Undoes an admission booked at `booked_minute` (another check failed).
    pub fn cancel(&mut self, now_ms: u64, booked_minute: u64, tokens: u64) {
        self.roll(now_ms);
        let buckets = if booked_minute == self.minute {
            (&mut self.requests.current, &mut self.tokens.current)
        } else if booked_minute + 1 == self.minute {
            (&mut self.requests.previous, &mut self.tokens.previous)
        } else {
            return;
        };
        *buckets.0 = buckets.0.saturating_sub(1);
        *buckets.1 = buckets.1.saturating_sub(tokens);
    }

    /// Counts usage that had no admission (deployment windows).
    pub fn record(&mut self, now_ms: u64, requests: u64, tokens: u64) {
        self.roll(now_ms);
        self.requests.current = self.requests.current.saturating_add(requests);
        self.tokens.current = self.tokens.current.saturating_add(tokens);
    }

    /// Whether another request would be over `limits` right now (read only).
    pub fn is_over(&self, now_ms: u64, limits: &RateLimits) -> bool {
        let mut window = *self;
        window.roll(now_ms);
        let elapsed = window.elapsed_in_minute(now_ms);
        let over =
            |buckets: &Buckets, limit: Option<u64>| limit.is_some_and(|limit| buckets.estimate(elapsed) >= limit);
        over(&window.requests, limits.requests_per_minute) || over(&window.tokens, limits.tokens_per_minute)
    }

    pub fn standing(&self, now_ms: u64, limits: &RateLimits) -> RateStanding {
        let mut window = *self;
        window.roll(now_ms);
        let elapsed = window.elapsed_in_minute(now_ms);
        let remaining =
            |buckets: &Buckets, limit: Option<u64>| limit.map(|limit| limit.saturating_sub(buckets.estimate(elapsed)));
        RateStanding {
            requests_remaining: remaining(&window.requests, limits.requests_per_minute),
            tokens_remaining: remaining(&window.tokens, limits.tokens_per_minute),
            reset_ms: MINUTE_MS - elapsed,
        }
    }
}

impl Record for RateWindow {
    fn encode(&self) -> Vec<u8> {
        let mut writer = Writer::with_version(VERSION);
        writer
            .u64(self.minute)
            .u64(self.requests.current)
            .u64(self.requests.previous)
            .u64(self.tokens.current)
            .u64(self.tokens.previous);
        writer.finish()
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let mut reader = Reader::with_version(bytes, VERSION)?;
        let window = RateWindow {
            minute: reader.u64()?,
            requests: Buckets {
                current: reader.u64()?,
                previous: reader.u64()?,
            },
            tokens: Buckets {
                current: reader.u64()?,
                previous: reader.u64()?,
            },
        };
        reader.is_done().then_some(window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RPM_3: RateLimits = RateLimits {
        requests_per_minute: Some(3),
        tokens_per_minute: None,
    };
    const TPM_1000: RateLimits = RateLimits {
        requests_per_minute: None,
        tokens_per_minute: Some(1_000),
    };

    #[test]
    fn a_clock_that_jumps_back_does_not_wipe_the_window() {
        let mut window = RateWindow::default();
        let now = 10 * MINUTE_MS + 5_000;
        for _ in 0..3 {
            window.try_admit(now, 0, &RPM_3).unwrap();
        }
        assert!(window.try_admit(now - 2 * MINUTE_MS, 0, &RPM_3).is_err());
        assert!(window.try_admit(now - 1, 0, &RPM_3).is_err());
        assert_eq!(window.minute, 10);
    }

    #[test]
    fn requests_over_the_limit_wait_for_the_window_to_slide() {
        let mut window = RateWindow::default();
        let start = 10 * MINUTE_MS;
        for offset in 0..3 {
            assert_eq!(window.try_admit(start + offset, 0, &RPM_3), Ok(()));
        }
        let wait = window.try_admit(start + 10, 0, &RPM_3).unwrap_err().unwrap();
        assert!(wait > 0 && wait <= 2 * MINUTE_MS, "{wait}");
        // Half way through the next minute half of the old minute still counts: 1.5 → room for 1.
        assert_eq!(window.try_admit(start + MINUTE_MS + MINUTE_MS / 2, 0, &RPM_3), Ok(()));
        // Two idle minutes later everything has slid out.
        for offset in 0..3 {
            assert_eq!(window.try_admit(start + 4 * MINUTE_MS + offset, 0, &RPM_3), Ok(()));
        }
    }

    #[test]
    fn the_wait_really_makes_room() {
        let mut window = RateWindow::default();
        let start = 7 * MINUTE_MS + 5_000;
        for _ in 0..3 {
            window.try_admit(start, 0, &RPM_3).unwrap();
        }
        let wait = window.try_admit(start + 1, 0, &RPM_3).unwrap_err().unwrap();
        assert_eq!(window.try_admit(start + 1 + wait, 0, &RPM_3), Ok(()));
    }

    #[test]
    fn tokens_are_reserved_then_settled_to_actual_usage() {
        let mut window = RateWindow::default();
        let now = 3 * MINUTE_MS;
        window.try_admit(now, 800, &TPM_1000).unwrap();
        assert!(window.try_admit(now, 300, &TPM_1000).is_err());
        window.settle_tokens(now + 10, 3, 800, 100);
        assert_eq!(window.try_admit(now + 20, 300, &TPM_1000), Ok(()));
        assert_eq!(window.standing(now + 20, &TPM_1000).tokens_remaining, Some(600));
    }

    #[test]
    fn a_cancelled_admission_gives_its_room_back() {
        let mut window = RateWindow::default();
        let now = 9 * MINUTE_MS;
        for _ in 0..3 {
            window.try_admit(now, 0, &RPM_3).unwrap();
        }
        window.cancel(now + 1, 9, 0);
        assert_eq!(window.try_admit(now + 2, 0, &RPM_3), Ok(()));
    }

    #[test]
    fn a_request_bigger_than_the_limit_never_fits() {
        let mut window = RateWindow::default();
        assert_eq!(window.try_admit(0, 5_000, &TPM_1000), Err(None));
    }

    #[test]
    fn deployment_windows_count_without_admission() {
        let mut window = RateWindow::default();
        window.record(MINUTE_MS, 3, 0);
        assert!(window.is_over(MINUTE_MS + 1, &RPM_3));
        assert!(!window.is_over(4 * MINUTE_MS, &RPM_3));
    }

    #[test]
    fn the_record_round_trips() {
        let mut window = RateWindow::default();
        window.try_admit(5 * MINUTE_MS, 42, &TPM_1000).unwrap();
        assert_eq!(RateWindow::decode(&window.encode()), Some(window));
        assert_eq!(RateWindow::decode(b"\x01short"), None);
    }
}
