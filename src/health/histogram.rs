//! A latency histogram with exponentially decaying counts.
//!
//! Sixteen log2 buckets (under 16 ms, then doubling up to 262 s and beyond)
//! give p50/p95/p99 within a factor of two of the truth, which is what a
//! routing decision between providers needs, in 64 bytes that every worker
//! can read and rewrite with one compare-and-swap. Counts decay with a
//! half-life instead of living in rotating time windows: no window to roll
//! over, no cliff when a window ends, and old incidents fade smoothly.

pub const BUCKETS: usize = 16;
/// Upper bound of bucket 0; bucket k ends at `FIRST_BOUND_MS << k`.
const FIRST_BOUND_MS: u64 = 16;

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DecayedHistogram {
    pub counts: [f32; BUCKETS],
}

impl DecayedHistogram {
    fn bucket_of(value_ms: u64) -> usize {
        let ratio = value_ms / FIRST_BOUND_MS;
        if ratio == 0 {
            0
        } else {
            ((u64::BITS - ratio.leading_zeros()) as usize).min(BUCKETS - 1)
        }
    }

    /// Upper bound (ms) of a bucket; the last bucket reports its lower bound.
    fn bound_of(bucket: usize) -> u64 {
        if bucket + 1 == BUCKETS {
            FIRST_BOUND_MS << (BUCKETS - 2)
        } else {
            FIRST_BOUND_MS << bucket
        }
    }

    pub fn record(&mut self, value_ms: u64) {
        self.counts[Self::bucket_of(value_ms)] += 1.0;
    }

    pub fn scale(&mut self, factor: f32) {
        self.counts.iter_mut().for_each(|count| *count *= factor);
    }

    pub fn total(&self) -> f32 {
        self.counts.iter().sum()
    }

    /// The bucket bound at quantile `q` (0..1), or `None` without data.
    pub fn quantile_ms(&self, q: f32) -> Option<u64> {
        let total = self.total();
        if total < 0.5 {
            return None;
        }
        let target = total * q.clamp(0.0, 1.0);
        let mut seen = 0.0;
        for (bucket, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= target && *count > 0.0 {
                return Some(Self::bound_of(bucket));
            }
        }
        Some(Self::bound_of(BUCKETS - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_land_in_log2_buckets() {
        assert_eq!(DecayedHistogram::bucket_of(0), 0);
        assert_eq!(DecayedHistogram::bucket_of(15), 0);
        assert_eq!(DecayedHistogram::bucket_of(16), 1);
        assert_eq!(DecayedHistogram::bucket_of(31), 1);
        assert_eq!(DecayedHistogram::bucket_of(32), 2);
        assert_eq!(DecayedHistogram::bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles_are_within_a_factor_of_two() {
        let mut histogram = DecayedHistogram::default();
        for _ in 0..90 {
            histogram.record(100);
        }
        for _ in 0..10 {
            histogram.record(5_000);
        }
        let p50 = histogram.quantile_ms(0.5).unwrap();
        assert!((100..=200).contains(&p50), "{p50}");
        let p99 = histogram.quantile_ms(0.99).unwrap();
        assert!((5_000..=10_000).contains(&p99), "{p99}");
    }

    #[test]
    fn an_empty_or_faded_histogram_has_no_quantiles() {
        let mut histogram = DecayedHistogram::default();
        assert_eq!(histogram.quantile_ms(0.5), None);
        histogram.record(10);
        histogram.scale(0.1);
        assert_eq!(histogram.quantile_ms(0.5), None);
    }
}
