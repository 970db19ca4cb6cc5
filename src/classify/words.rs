//! Hashed word n-grams: every word (numbers folded into one token) and every
//! pair of neighbouring words falls in one of [`BUCKETS`] buckets, each with
//! a learned weight per [`PromptKind`]: the same words mean different things
//! in a word problem, a multiple-choice question and a chat request, and a
//! vocabulary learned on one kind is noise on another. A prompt's `words`
//! strength is the sum of its n-grams' weights for its kind over the square
//! root of their count, so it does not grow with length alone — except
//! through one learned weight per kind that every word adds (how much
//! length itself says within that kind). The weights
//! are learned with the signal weights (see [`super::learned`]); the scanner
//! already hashes each word, so this costs a few table loads per word.

/// Number of n-gram buckets (a power of two).
pub const BUCKETS: usize = 4096;
/// Number of [`PromptKind`]s, each with its own weights.
pub const KINDS: usize = 4;
/// Size of the whole table: a region of [`BUCKETS`] per kind.
pub const TABLE_LEN: usize = BUCKETS * KINDS;

/// The kind of prompt its words are read as, from the kind signals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PromptKind {
    Chat,
    Math,
    Code,
    /// A question with lettered answer options.
    Choice,
}

impl PromptKind {
    pub const ALL: [PromptKind; KINDS] = [PromptKind::Chat, PromptKind::Math, PromptKind::Code, PromptKind::Choice];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            PromptKind::Chat => "chat",
            PromptKind::Math => "math",
            PromptKind::Code => "code",
            PromptKind::Choice => "choice",
        }
    }

    pub fn from_name(name: &str) -> Option<PromptKind> {
        PromptKind::ALL.into_iter().find(|kind| kind.name() == name)
    }
}
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

/// The learned weight of each bucket for each kind, and what each word adds
/// within a kind. Bucket weights stay quantized (`i8` × `scale`), laid out
/// bucket by bucket: an n-gram costs one 4-byte load from a 16 KB table that
/// stays in the L1 cache, and sums are exact integers until scored.
#[derive(Clone)]
pub struct WordTable {
    buckets: Box<[[i8; KINDS]; BUCKETS]>,
    /// The same weights packed for [`NgramSums`]: kind k's weight + 128 in
    /// bits 16k..16k+16 of each bucket's word.
    packed: Box<[u64; BUCKETS]>,
    /// Logits per quantization step.
    scale: f64,
    per_word: [f64; KINDS],
}

impl std::fmt::Debug for WordTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let used = self.buckets.iter().flatten().filter(|weight| **weight != 0).count();
        write!(f, "WordTable({used} of {TABLE_LEN} weights set)")
    }
}

impl Default for WordTable {
    /// No n-gram weighs anything.
    fn default() -> Self {
        WordTable {
            buckets: Box::new([[0; KINDS]; BUCKETS]),
            packed: Box::new([pack([0; KINDS]); BUCKETS]),
            scale: 0.0,
            per_word: [0.0; KINDS],
        }
    }
}

impl WordTable {
    /// The table from quantized weights, kind by kind (`quantized[kind ×
    /// BUCKETS + bucket]`, weight = value × `scale`), and the per-word
    /// weight of each kind.
    pub fn from_quantized(quantized: &[i8; TABLE_LEN], scale: f64, per_word: [f64; KINDS]) -> WordTable {
        let mut buckets = Box::new([[0i8; KINDS]; BUCKETS]);
        for (kind, region) in quantized.chunks_exact(BUCKETS).enumerate() {
            for (weights, &value) in buckets.iter_mut().zip(region) {
                weights[kind] = value;
            }
        }
        let mut packed = Box::new([0u64; BUCKETS]);
        for (word, weights) in packed.iter_mut().zip(buckets.iter()) {
            *word = pack(*weights);
        }
        WordTable {
            buckets,
            packed,
            scale,
            per_word,
        }
    }
}

/// Kind k's weight + 128 (0 to 255) in bits 16k..16k+16.
const fn pack(weights: [i8; KINDS]) -> u64 {
    let mut word = 0u64;
    let mut kind = 0;
    while kind < KINDS {
        word |= ((weights[kind] as i16 + 128) as u64) << (16 * kind);
        kind += 1;
    }
    word
}

/// Up to [`NgramSums::CAPACITY`] n-grams' weights summed for all kinds at
/// once, with one addition each (255 × 256 fits a 16-bit lane), then
/// flushed into a [`WordEvidence`]: the same exact integer sums as adding
/// kind by kind.
#[derive(Debug, Default, Clone, Copy)]
pub struct NgramSums {
    packed: u64,
    pending: u32,
}

impl NgramSums {
    const CAPACITY: u32 = 256;

    /// Adds one n-gram; the caller flushes before [`Self::CAPACITY`] (see
    /// [`Self::is_full`]).
    #[inline(always)]
    pub fn add(&mut self, table: &WordTable, bucket: u16) {
        self.packed += table.packed[usize::from(bucket) & (BUCKETS - 1)];
        self.pending += 1;
    }

    /// Two more n-grams (a word's unigram and bigram) would not fit.
    #[inline(always)]
    pub fn is_full(&self) -> bool {
        self.pending + 2 > Self::CAPACITY
    }

    pub fn flush_into(&mut self, evidence: &mut WordEvidence) {
        let offset = 128 * i64::from(self.pending);
        for (kind, sum) in evidence.sums.iter_mut().enumerate() {
            *sum += ((self.packed >> (16 * kind)) & 0xFFFF) as i64 - offset;
        }
        evidence.count += self.pending;
        *self = NgramSums::default();
    }
}

/// What the scan gathers about a prompt's n-grams.
#[derive(Debug, Default, Clone)]
pub struct WordEvidence {
    /// Quantized weight sums, one per kind.
    pub sums: [i64; KINDS],
    pub count: u32,
    /// Every n-gram's bucket, only when asked for (training).
    pub buckets: Option<Vec<u16>>,
}

impl WordEvidence {
    /// Adds one n-gram.
    #[inline(always)]
    pub fn add(&mut self, table: &WordTable, bucket: u16) {
        let weights = table.buckets[usize::from(bucket) & (BUCKETS - 1)];
        for (sum, weight) in self.sums.iter_mut().zip(weights) {
            *sum += i64::from(weight);
        }
        self.count += 1;
        if let Some(buckets) = &mut self.buckets {
            buckets.push(bucket);
        }
    }

    /// The `words` strength of a prompt of `kind`: its weight sum (with
    /// the kind's per-word weight) over √count (0 without words).
    pub fn score(&self, table: &WordTable, kind: PromptKind) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let count = f64::from(self.count);
        let sum = self.sums[kind.index()] as f64 * table.scale;
        (sum + count * table.per_word[kind.index()]) / count.sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_round_trip_in_index_order() {
        for (position, kind) in PromptKind::ALL.into_iter().enumerate() {
            assert_eq!(kind.index(), position);
            assert_eq!(PromptKind::from_name(kind.name()), Some(kind));
        }
    }

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
        let mut quantized = [0i8; TABLE_LEN];
        quantized[BUCKETS + usize::from(unigram(42))] = 100;
        let table = WordTable::from_quantized(&quantized, 0.01, [0.0; KINDS]);
        let mut once = WordEvidence::default();
        once.add(&table, unigram(42));
        let mut diluted = WordEvidence::default();
        diluted.add(&table, unigram(42));
        (0..99).for_each(|_| diluted.add(&table, unigram(7)));
        assert!((once.score(&table, PromptKind::Math) - 1.0).abs() < 1e-6);
        assert!(diluted.score(&table, PromptKind::Math) < 0.2 * once.score(&table, PromptKind::Math));
        assert_eq!(WordEvidence::default().score(&table, PromptKind::Math), 0.0);
        let lengthy = WordTable::from_quantized(&quantized, 0.01, [0.0, 0.5, 0.0, 0.0]);
        assert!(diluted.score(&lengthy, PromptKind::Math) > 4.0);
    }

    #[test]
    fn packed_sums_equal_kind_by_kind_sums_even_at_the_extreme_weights() {
        let mut quantized = [0i8; TABLE_LEN];
        for (position, weight) in quantized.iter_mut().enumerate() {
            *weight = match position % 5 {
                0 => i8::MIN,
                1 => i8::MAX,
                2 => -1,
                3 => 0,
                _ => (position % 251) as i8,
            };
        }
        let table = WordTable::from_quantized(&quantized, 0.01, [0.0; KINDS]);
        let mut expected = WordEvidence::default();
        let mut packed = NgramSums::default();
        let mut evidence = WordEvidence::default();
        for step in 0..5_000u64 {
            let bucket = unigram(step % 7) ^ (step as u16 % 3);
            expected.add(&table, bucket);
            packed.add(&table, bucket);
            if packed.is_full() {
                packed.flush_into(&mut evidence);
            }
        }
        packed.flush_into(&mut evidence);
        assert_eq!(evidence.sums, expected.sums);
        assert_eq!(evidence.count, expected.count);
        // Every lane at its largest, as often as fits before a flush.
        let full = WordTable::from_quantized(&[i8::MAX; TABLE_LEN], 0.01, [0.0; KINDS]);
        let mut packed = NgramSums::default();
        let mut evidence = WordEvidence::default();
        for _ in 0..1_000 {
            packed.add(&full, 9);
            if packed.is_full() {
                packed.flush_into(&mut evidence);
            }
        }
        packed.flush_into(&mut evidence);
        assert_eq!(evidence.sums, [127 * 1_000; KINDS]);
        assert_eq!(evidence.count, 1_000);
    }

    #[test]
    fn each_kind_reads_words_with_its_own_weights() {
        let mut quantized = [0i8; TABLE_LEN];
        quantized[PromptKind::Choice.index() * BUCKETS + usize::from(unigram(42))] = -50;
        let table = WordTable::from_quantized(&quantized, 0.01, [0.0; KINDS]);
        let mut evidence = WordEvidence::default();
        evidence.add(&table, unigram(42));
        assert!(evidence.score(&table, PromptKind::Choice) < 0.0);
        assert_eq!(evidence.score(&table, PromptKind::Chat), 0.0);
    }
}
