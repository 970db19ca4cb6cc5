//! The cue-phrase index, built for a single pass over the text.
//!
//! A general multi-pattern automaton over ~600 phrases is a DFA of more than
//! a megabyte, and walking it costs a cache miss per byte. Cue phrases are
//! word-anchored, so instead each phrase is filed under the hash of its first
//! word (or of its first byte when it starts with a symbol such as "```" or
//! "\frac"); prefix phrases (`analy*`) under the hash of their first
//! [`PREFIX_KEY_LEN`] bytes. The scanner hashes words as it reads them; at each
//! word end a Bloom filter rejects most words outright, and survivors cost one
//! or two table probes and a byte comparison. Matching is ASCII
//! case-insensitive and whole-word, leftmost-longest, never overlapping.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::signals::Signal;

/// Prefix phrases are filed under the hash of this many leading bytes, so
/// each word needs one prefix probe whatever the prefixes' lengths.
pub const PREFIX_KEY_LEN: usize = 5;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Running FNV-1a hash of a word, case-folded: the scanner and the index
/// must hash words identically. Setting bit 5 lowercases ASCII letters and
/// leaves digits alone; it also folds some non-ASCII bytes together, which
/// only costs a verification (no phrase has non-ASCII bytes).
#[derive(Debug, Clone, Copy)]
pub struct WordHash(u64);

impl Default for WordHash {
    fn default() -> Self {
        WordHash(FNV_OFFSET)
    }
}

impl WordHash {
    #[inline(always)]
    pub fn push(&mut self, byte: u8) {
        self.0 = (self.0 ^ u64::from(byte | 0x20)).wrapping_mul(FNV_PRIME);
    }

    pub fn value(self) -> u64 {
        self.0
    }

    pub fn of(bytes: &[u8]) -> u64 {
        let mut hash = WordHash::default();
        bytes.iter().for_each(|&byte| hash.push(byte));
        hash.value()
    }
}

/// Letters, digits and every byte of a non-ASCII character are word bytes.
pub fn is_word_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte >= 0x80
}

/// Keys are already hashes; hashing them again would be wasted work.
#[derive(Default)]
pub struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 << 8) | u64::from(byte);
        }
    }
    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

type HashTable = HashMap<u64, Vec<u32>, BuildHasherDefault<IdentityHasher>>;

/// A one-hash Bloom filter over word hashes: most words of a prompt are in
/// no phrase, and this rejects them with one bit test instead of a probe.
/// 16384 bits (2 KiB, cache-resident) keep false positives near 4%.
#[derive(Clone)]
struct HashFilter(Box<[u64; 256]>);

impl Default for HashFilter {
    fn default() -> Self {
        HashFilter(Box::new([0; 256]))
    }
}

impl HashFilter {
    fn slot(hash: u64) -> (usize, u64) {
        let bit = (hash >> 50) as usize; // 14 well-mixed bits of FNV-1a
        (bit >> 6, 1 << (bit & 63))
    }

    fn insert(&mut self, hash: u64) {
        let (word, mask) = Self::slot(hash);
        self.0[word] |= mask;
    }

    fn may_contain(&self, hash: u64) -> bool {
        let (word, mask) = Self::slot(hash);
        self.0[word] & mask != 0
    }
}

/// One phrase and what matching it is worth.
#[derive(Debug, Clone)]
pub struct Phrase {
    /// Lowercase text without the trailing `*`.
    text: Vec<u8>,
    /// Leading bytes already proven equal by the table lookup's hash: the
    /// first word (whole-word phrases) or PREFIX_KEY_LEN (prefix phrases).
    /// A 64-bit hash match stands for equality; only the rest is compared.
    hashed_len: usize,
    /// Ends with a word byte and is not a prefix: the next byte must not be one.
    bounded_end: bool,
    /// `(signal, points)`: one phrase may serve several signals.
    pub credits: Vec<(Signal, f64)>,
    /// Counts as a quantity, like a number written in digits.
    pub number_word: bool,
}

#[derive(Clone, Default)]
pub struct PhraseIndex {
    phrases: Vec<Phrase>,
    /// First-word hash → phrases starting with that whole word.
    by_first_word: HashTable,
    /// Hash of the first PREFIX_KEY_LEN bytes → single-word prefix phrases.
    by_prefix: HashTable,
    /// Hashes present in either table.
    known_hashes: HashFilter,
    /// First byte → phrases starting with a symbol.
    by_symbol: HashMap<u8, Vec<u32>>,
    /// Bitset of bytes that start a symbol phrase.
    symbol_starts: [u64; 4],
}

impl std::fmt::Debug for PhraseIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PhraseIndex({} phrases)", self.phrases.len())
    }
}

impl PhraseIndex {
    /// Builds the index from `(signal, points, phrase)` credits and number
    /// words. A trailing `*` marks a word prefix.
    pub fn build<'p>(
        credits: impl IntoIterator<Item = (Signal, f64, &'p str)>,
        number_words: &[&str],
    ) -> Result<PhraseIndex, String> {
        let mut index = PhraseIndex::default();
        let mut known = HashMap::new();
        for (signal, points, raw) in credits {
            let id = index.intern(raw, &mut known)?;
            let credits = &mut index.phrases[id].credits;
            match credits.iter_mut().find(|(known, _)| *known == signal) {
                Some(credit) => credit.1 = credit.1.max(points),
                None => credits.push((signal, points)),
            }
        }
        for word in number_words {
            let id = index.intern(word, &mut known)?;
            index.phrases[id].number_word = true;
        }
        // Longest first: the first verified candidate is the leftmost-longest match.
        let phrases = &index.phrases;
        let by_length = |ids: &mut Vec<u32>| ids.sort_by_key(|&id| std::cmp::Reverse(phrases[id as usize].text.len()));
        index.by_first_word.values_mut().for_each(by_length);
        index.by_prefix.values_mut().for_each(by_length);
        index.by_symbol.values_mut().for_each(by_length);
        Ok(index)
    }

    /// The id of `raw`, filing it in the right table the first time.
    fn intern(&mut self, raw: &str, known: &mut HashMap<(Vec<u8>, bool), usize>) -> Result<usize, String> {
        let is_prefix = raw.ends_with('*');
        let text = raw.trim_end_matches('*').to_ascii_lowercase().into_bytes();
        if let Some(&id) = known.get(&(text.clone(), is_prefix)) {
            return Ok(id);
        }
        let Some(&first) = text.first() else {
            return Err("cue phrases must not be empty".into());
        };
        let first_word_len = text.iter().take_while(|&&byte| is_word_byte(byte)).count();
        let single_word = first_word_len == text.len();
        if is_prefix && single_word && text.len() < PREFIX_KEY_LEN {
            return Err(format!(
                "prefix phrase `{raw}` needs at least {PREFIX_KEY_LEN} characters before `*`"
            ));
        }
        let id = self.phrases.len();
        let id32 = u32::try_from(id).map_err(|_| "too many cue phrases".to_string())?;
        let last = text[text.len() - 1];
        let hashed_len = if first_word_len == 0 {
            0
        } else if is_prefix && single_word {
            PREFIX_KEY_LEN
        } else {
            first_word_len
        };
        if first_word_len == 0 {
            self.by_symbol.entry(first).or_default().push(id32);
            self.symbol_starts[usize::from(first >> 6)] |= 1 << (first & 63);
        } else if is_prefix && single_word {
            let hash = WordHash::of(&text[..PREFIX_KEY_LEN]);
            self.by_prefix.entry(hash).or_default().push(id32);
            self.known_hashes.insert(hash);
        } else {
            let hash = WordHash::of(&text[..first_word_len]);
            self.by_first_word.entry(hash).or_default().push(id32);
            self.known_hashes.insert(hash);
        }
        known.insert((text.clone(), is_prefix), id);
        self.phrases.push(Phrase {
            hashed_len,
            bounded_end: !is_prefix && is_word_byte(last),
            text,
            credits: Vec::new(),
            number_word: false,
        });
        Ok(id)
    }

    pub fn phrase(&self, id: u32) -> &Phrase {
        &self.phrases[id as usize]
    }

    pub fn starts_symbol_phrase(&self, byte: u8) -> bool {
        self.symbol_starts[usize::from(byte >> 6)] & (1 << (byte & 63)) != 0
    }

    /// Longest phrase matching at `start`, where a word begins whose full
    /// hash is `word_hash` and whose first PREFIX_KEY_LEN bytes hash to
    /// `key_hash` (when it is that long). Returns the phrase id and match end.
    #[inline]
    pub fn match_word(&self, text: &[u8], start: usize, word_hash: u64, key_hash: Option<u64>) -> Option<(u32, usize)> {
        let mut best = None;
        if self.known_hashes.may_contain(word_hash) {
            self.consider(self.by_first_word.get(&word_hash), text, start, &mut best);
        }
        if let Some(hash) = key_hash.filter(|&hash| self.known_hashes.may_contain(hash)) {
            self.consider(self.by_prefix.get(&hash), text, start, &mut best);
        }
        best
    }

    /// Longest symbol-led phrase matching at `start`.
    pub fn match_symbol(&self, text: &[u8], start: usize) -> Option<(u32, usize)> {
        let mut best = None;
        let first = *text.get(start)?;
        self.consider(self.by_symbol.get(&first), text, start, &mut best);
        best
    }

    /// The longest of `candidates` (sorted longest first) matching at `start`.
    fn consider(&self, candidates: Option<&Vec<u32>>, text: &[u8], start: usize, best: &mut Option<(u32, usize)>) {
        let Some(candidates) = candidates else { return };
        let rest = text.get(start..).unwrap_or_default();
        for &id in candidates {
            let phrase = &self.phrases[id as usize];
            let len = phrase.text.len();
            if best.is_some_and(|(_, best_end)| start + len <= best_end) {
                return;
            }
            let Some(unproven) = rest.get(phrase.hashed_len..len) else {
                continue;
            };
            if !unproven.eq_ignore_ascii_case(&phrase.text[phrase.hashed_len..]) {
                continue;
            }
            if phrase.bounded_end && rest.get(len).copied().is_some_and(is_word_byte) {
                continue;
            }
            *best = Some((id, start + len));
            return;
        }
    }
}
