//! Circuit breaker per deployment.
//!
//! Closed: traffic flows. Open: the deployment is skipped until `until_ms`;
//! each reopening doubles the wait (capped). Half-open: after the wait, a
//! bounded number of trial requests may go through; a successful trial
//! closes the circuit, a failed one reopens it. Trial slots are claimed with
//! compare-and-swap in shared data, so the bound holds across all workers.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BreakerState {
    #[default]
    Closed,
    Open {
        until_ms: u64,
    },
    /// Trials may go through (at most `half_open_trials` at once; the
    /// record keeps them as leases).
    HalfOpen,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerSettings {
    /// Consecutive failures that open the circuit.
    pub consecutive_failures: u16,
    /// Failure share (decayed) that opens the circuit, once `min_requests` were seen.
    pub failure_rate: f32,
    pub min_requests: f32,
    /// First open period; doubled on every reopening up to `max_open_ms`.
    pub open_ms: u64,
    pub max_open_ms: u64,
    /// Trial requests allowed at once while half-open.
    pub half_open_trials: u8,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            consecutive_failures: 5,
            failure_rate: 0.5,
            min_requests: 10.0,
            open_ms: 30_000,
            max_open_ms: 300_000,
            half_open_trials: 1,
        }
    }
}

/// A change of state worth logging (once: only the worker whose write won).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Opened { until_ms: u64 },
    Closed,
}

impl BreakerSettings {
    /// Open period after `reopenings` earlier openings in a row.
    pub fn open_period_ms(&self, reopenings: u8) -> u64 {
        self.open_ms
            .saturating_mul(1u64 << reopenings.min(16))
            .min(self.max_open_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reopening_doubles_the_wait_up_to_the_cap() {
        let settings = BreakerSettings {
            open_ms: 1_000,
            max_open_ms: 5_000,
            ..BreakerSettings::default()
        };
        assert_eq!(settings.open_period_ms(0), 1_000);
        assert_eq!(settings.open_period_ms(1), 2_000);
        assert_eq!(settings.open_period_ms(2), 4_000);
        assert_eq!(settings.open_period_ms(3), 5_000);
        assert_eq!(settings.open_period_ms(200), 5_000);
    }
}
