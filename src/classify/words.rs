//! Hashed word n-grams: every word (numbers folded into one token) and every
//! pair of neighbouring words falls in one of [`BUCKETS`] buckets, each with
//! a learned weight. A prompt's `words` strength is the sum of its n-grams'
//! weights over the square root of their count, so it does not grow with
//! length alone. The weights are learned with the signal weights (see
//! [`super::learned`]); the scanner already hashes each word, so this costs
//! two table loads per word.

/// Number of n-gram buckets (a power of two).
pub const BUCKETS: usize = 4096;
const BUCKET_BITS: u32 = BUCKETS.trailing_zeros();
/// The token every number stands for: "12 apples" and "7 apples" are the
/// same n-gram.
pub const NUMBER_TOKEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// Bucket of a single word, from its (case-folded FNV-1a) hash.
pub fn unigram(token: u64) -> u16 {
    bucket(token.wrapping_mul(0xff51_afd7_ed55_8ccd))
}

/// Bucket of a word and the word before it.
pub fn bigram(previous: u64, token: u64) -> u16 {
    bucket((previous.rotate_left(29) ^ token).wrapping_mul(0xc4ce_b9fe_1a85_ec53))
}

fn bucket(mixed: u64) -> u16 {
    // The top bits are the best mixed; BUCKET_BITS <= 16 keeps this lossless.
    (mixed >> (64 - BUCKET_BITS)) as u16
}

/// The learned weight of each bucket, in logits.
#[derive(Clone)]
pub struct WordTable(Box<[f32; BUCKETS]>);

impl std::fmt::Debug for WordTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let used = self.0.iter().filter(|weight| **weight != 0.0).count();
        write!(f, "WordTable({used} of {BUCKETS} buckets weighted)")
    }
}

impl Default for WordTable {
    /// No n-gram weighs anything.
    fn default() -> Self {
        WordTable(Box::new([0.0; BUCKETS]))
    }
}

impl WordTable {
    /// The table from quantized weights: bucket weight = `quantized × scale`.
    pub fn from_quantized(quantized: &[i8; BUCKETS], scale: f64) -> WordTable {
        let mut weights = Box::new([0.0f32; BUCKETS]);
        for (weight, &value) in weights.iter_mut().zip(quantized) {
            *weight = (f64::from(value) * scale) as f32;
        }
        WordTable(weights)
    }

    #[inline(always)]
    pub fn weight(&self, bucket: u16) -> f64 {
        f64::from(self.0[usize::from(bucket) & (BUCKETS - 1)])
    }
}

/// What the scan gathers about a prompt's n-grams.
#[derive(Debug, Default, Clone)]
pub struct WordEvidence {
    pub sum: f64,
    pub count: u32,
    /// Every n-gram's bucket, only when asked for (training).
    pub buckets: Option<Vec<u16>>,
}

impl WordEvidence {
    /// Adds one n-gram.
    #[inline(always)]
    pub fn add(&mut self, table: &WordTable, bucket: u16) {
        self.sum += table.weight(bucket);
        self.count += 1;
        if let Some(buckets) = &mut self.buckets {
            buckets.push(bucket);
        }
    }

    /// The `words` strength: the weight sum over √count (0 without words).
    pub fn score(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum / f64::from(self.count).sqrt()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_stay_in_range_and_bigrams_depend_on_order() {
        for token in [0u64, 1, u64::MAX, NUMBER_TOKEN] {
            assert!(usize::from(unigram(token)) < BUCKETS);
            assert!(usize::from(bigram(token, 7)) < BUCKETS);
        }
        assert_ne!(bigram(1, 2), bigram(2, 1));
    }

    #[test]
    fn the_words_strength_does_not_grow_with_repetition_alone() {
        let mut quantized = [0i8; BUCKETS];
        quantized[usize::from(unigram(42))] = 100;
        let table = WordTable::from_quantized(&quantized, 0.01);
        let mut once = WordEvidence::default();
        once.add(&table, unigram(42));
        let mut diluted = WordEvidence::default();
        diluted.add(&table, unigram(42));
        (0..99).for_each(|_| diluted.add(&table, unigram(7)));
        assert!((once.score() - 1.0).abs() < 1e-6);
        assert!(diluted.score() < 0.2 * once.score());
        assert_eq!(WordEvidence::default().score(), 0.0);
    }
}
