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

/// A word hash with its bits spread (FNV-1a's high bits barely differ
/// between short words): what table slots and filter bits are taken from.
#[inline(always)]
pub fn mix(hash: u64) -> u64 {
    hash.wrapping_mul(0xff51_afd7_ed55_8ccd)
}

/// Letters, digits and every byte of a non-ASCII character are word bytes.
pub fn is_word_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte >= 0x80
}

/// Phrase ids filed under a key (a word hash): an open-addressed table of
/// ranges into one flat id list. Built once, probed on the hot path only
/// after the Bloom filter let a word through; a probe is a slot load and a
/// key comparison, with no hashing (keys are already FNV-1a hashes).
#[derive(Clone, Default)]
struct KeyTable {
    slots: Box<[Slot]>,
    ids: Vec<u32>,
}

#[derive(Clone, Copy, Default)]
struct Slot {
    key: u64,
    start: u32,
    /// 0 marks an empty slot (every filed key has a phrase).
    len: u32,
}

impl KeyTable {
    /// The table of `lists` (key → ids), at most a quarter full.
    fn freeze(lists: HashMap<u64, Vec<u32>>) -> Result<KeyTable, String> {
        let size = (lists.len() * 4).next_power_of_two().max(16);
        let mut table = KeyTable {
            slots: vec![Slot::default(); size].into_boxed_slice(),
            ids: Vec::new(),
        };
        let mut keys: Vec<_> = lists.into_iter().collect();
        keys.sort_unstable_by_key(|(key, _)| *key);
        for (key, ids) in keys {
            let too_many = || "too many cue phrases".to_string();
            let start = u32::try_from(table.ids.len()).map_err(|_| too_many())?;
            let len = u32::try_from(ids.len()).map_err(|_| too_many())?;
            table.ids.extend(ids);
            let mut slot = Self::home(key, size);
            while table.slots[slot].len != 0 {
                slot = (slot + 1) & (size - 1);
            }
            table.slots[slot] = Slot { key, start, len };
        }
        Ok(table)
    }

    fn home(key: u64, size: usize) -> usize {
        (mix(key) >> 32) as usize & (size - 1)
    }

    /// The ids filed under `key` (none when absent).
    #[inline]
    fn get(&self, key: u64) -> &[u32] {
        let mask = self.slots.len().wrapping_sub(1);
        let mut slot = Self::home(key, self.slots.len());
        // At most a quarter full: an empty slot always ends the probe.
        while let Some(&Slot { key: found, start, len }) = self.slots.get(slot) {
            if len == 0 {
                break;
            }
            if found == key {
                let start = start as usize;
                return self.ids.get(start..start + len as usize).unwrap_or_default();
            }
            slot = (slot + 1) & mask;
        }
        &[]
    }
}

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
        // FNV-1a's own high bits are poorly spread over short words (half
        // the words of a prompt passed); one multiply mixes them.
        let bit = (mix(hash) >> 50) as usize;
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
    /// The first 8 bytes as [`folded_head`] reads text, and the mask of
    /// those not already proven equal by the table lookup's hash (the first
    /// word of whole-word phrases, PREFIX_KEY_LEN bytes of prefix phrases:
    /// a 64-bit hash match stands for equality): one comparison checks them.
    head: u64,
    head_mask: u64,
    /// Where the unproven bytes past the head start (they are compared
    /// byte by byte).
    tail_from: usize,
    /// Ends with a word byte and is not a prefix: the next byte must not be one.
    bounded_end: bool,
    /// `(signal, points)`: one phrase may serve several signals.
    pub credits: Vec<(Signal, f64)>,
    /// Counts as a quantity, like a number written in digits.
    pub number_word: bool,
}

/// Word-led phrase ids per key while the index is built.
#[derive(Default)]
struct Lists {
    by_first_word: HashMap<u64, Vec<u32>>,
    by_prefix: HashMap<u64, Vec<u32>>,
}

#[derive(Clone, Default)]
pub struct PhraseIndex {
    phrases: Vec<Phrase>,
    /// First-word hash → phrases starting with that whole word.
    by_first_word: KeyTable,
    /// Hash of the first PREFIX_KEY_LEN bytes → single-word prefix phrases.
    by_prefix: KeyTable,
    /// Hashes present in either table.
    known_hashes: HashFilter,
    /// First byte → phrases starting with a symbol (256 lists once built).
    by_symbol: Vec<Vec<u32>>,
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
        let mut index = PhraseIndex {
            by_symbol: vec![Vec::new(); 256],
            ..PhraseIndex::default()
        };
        let mut known = HashMap::new();
        let mut lists = Lists::default();
        for (signal, points, raw) in credits {
            let id = index.intern(raw, &mut known, &mut lists)?;
            let credits = &mut index.phrases[id].credits;
            match credits.iter_mut().find(|(known, _)| *known == signal) {
                Some(credit) => credit.1 = credit.1.max(points),
                None => credits.push((signal, points)),
            }
        }
        for word in number_words {
            let id = index.intern(word, &mut known, &mut lists)?;
            index.phrases[id].number_word = true;
        }
        // Longest first: the first verified candidate is the leftmost-longest match.
        let phrases = &index.phrases;
        let by_length = |ids: &mut Vec<u32>| ids.sort_by_key(|&id| std::cmp::Reverse(phrases[id as usize].text.len()));
        lists.by_first_word.values_mut().for_each(by_length);
        lists.by_prefix.values_mut().for_each(by_length);
        index.by_symbol.iter_mut().for_each(by_length);
        index.by_first_word = KeyTable::freeze(lists.by_first_word)?;
        index.by_prefix = KeyTable::freeze(lists.by_prefix)?;
        Ok(index)
    }

    /// The id of `raw`, filing it in the right table the first time.
    fn intern(
        &mut self,
        raw: &str,
        known: &mut HashMap<(Vec<u8>, bool), usize>,
        lists: &mut Lists,
    ) -> Result<usize, String> {
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
            if let Some(ids) = self.by_symbol.get_mut(usize::from(first)) {
                ids.push(id32);
            }
            self.symbol_starts[usize::from(first >> 6)] |= 1 << (first & 63);
        } else if is_prefix && single_word {
            let hash = WordHash::of(&text[..PREFIX_KEY_LEN]);
            lists.by_prefix.entry(hash).or_default().push(id32);
            self.known_hashes.insert(hash);
        } else {
            let hash = WordHash::of(&text[..first_word_len]);
            lists.by_first_word.entry(hash).or_default().push(id32);
            self.known_hashes.insert(hash);
        }
        known.insert((text.clone(), is_prefix), id);
        self.phrases.push(Phrase {
            head: folded_head(&text),
            head_mask: (hashed_len..text.len().min(HEAD_LEN)).fold(0, |mask, byte| mask | 0xFF << (8 * byte)),
            tail_from: hashed_len.max(HEAD_LEN),
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
            self.consider(self.by_first_word.get(word_hash), text, start, &mut best);
        }
        if let Some(hash) = key_hash.filter(|&hash| self.known_hashes.may_contain(hash)) {
            self.consider(self.by_prefix.get(hash), text, start, &mut best);
        }
        best
    }

    /// Longest symbol-led phrase matching at `start`.
    pub fn match_symbol(&self, text: &[u8], start: usize) -> Option<(u32, usize)> {
        let mut best = None;
        let first = *text.get(start)?;
        let candidates = self.by_symbol.get(usize::from(first)).map_or(&[][..], Vec::as_slice);
        self.consider(candidates, text, start, &mut best);
        best
    }

    /// The longest of `candidates` (sorted longest first) matching at `start`.
    #[inline(always)]
    fn consider(&self, candidates: &[u32], text: &[u8], start: usize, best: &mut Option<(u32, usize)>) {
        if candidates.is_empty() {
            return;
        }
        let rest = text.get(start..).unwrap_or_default();
        let head = folded_head(rest);
        for &id in candidates {
            let Some(phrase) = self.phrases.get(id as usize) else {
                continue;
            };
            let len = phrase.text.len();
            if best.is_some_and(|(_, best_end)| start + len <= best_end) {
                return;
            }
            if len > rest.len() || (head ^ phrase.head) & phrase.head_mask != 0 {
                continue;
            }
            if len > phrase.tail_from {
                let (Some(unproven), Some(expected)) =
                    (rest.get(phrase.tail_from..len), phrase.text.get(phrase.tail_from..))
                else {
                    continue;
                };
                if !unproven.eq_ignore_ascii_case(expected) {
                    continue;
                }
            }
            if phrase.bounded_end && rest.get(len).copied().is_some_and(is_word_byte) {
                continue;
            }
            *best = Some((id, start + len));
            return;
        }
    }
}

/// Bytes of a phrase compared at once (a `u64`).
const HEAD_LEN: usize = 8;

/// The first [`HEAD_LEN`] bytes of `bytes` (zero-padded) as a little-endian
/// `u64`, ASCII capitals lowercased (other bytes unchanged): two heads are
/// equal in a byte exactly where `eq_ignore_ascii_case` says so.
fn folded_head(bytes: &[u8]) -> u64 {
    let raw = match bytes.first_chunk::<HEAD_LEN>() {
        Some(chunk) => u64::from_le_bytes(*chunk),
        None => {
            let mut padded = [0u8; HEAD_LEN];
            padded.iter_mut().zip(bytes).for_each(|(slot, &byte)| *slot = byte);
            u64::from_le_bytes(padded)
        }
    };
    const ONES: u64 = 0x0101_0101_0101_0101;
    // Per byte, without carries between bytes: the high bit of `at_least_a`
    // is set from `A` up, that of `above_z` past `Z`; bytes >= 0x80 are
    // left out by `!raw`.
    let low7 = raw & (0x7F * ONES);
    let at_least_a = low7 + (0x80 - u64::from(b'A')) * ONES;
    let above_z = low7 + (0x80 - u64::from(b'Z') - 1) * ONES;
    let capitals = at_least_a & !above_z & !raw & (0x80 * ONES);
    raw | (capitals >> 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folded_head_lowercases_exactly_the_ascii_capitals_in_every_position() {
        for byte in 0..=u8::MAX {
            for position in 0..HEAD_LEN {
                let mut bytes = *b"xYz09!\xC3\xA9";
                bytes[position] = byte;
                let expected = u64::from_le_bytes(bytes.map(|byte| byte.to_ascii_lowercase()));
                assert_eq!(folded_head(&bytes), expected, "{byte:#x} at {position}");
            }
        }
        assert_eq!(folded_head(b"AbC"), u64::from_le_bytes(*b"abc\0\0\0\0\0"));
        assert_eq!(folded_head(b""), 0);
    }

    #[test]
    fn phrases_longer_than_the_head_are_verified_to_their_end() {
        let index = PhraseIndex::build([(Signal::Code, 1.0, "segmentation fault")], &[]).unwrap();
        let text = b"a Segmentation FAULT here";
        let hash = WordHash::of(b"segmentation");
        assert_eq!(
            index.match_word(text, 2, hash, Some(WordHash::of(b"segme"))),
            Some((0, 20))
        );
        let wrong = b"a segmentation fauls here";
        assert_eq!(index.match_word(wrong, 2, hash, None), None);
        let cut = b"a segmentation fau";
        assert_eq!(index.match_word(cut, 2, hash, None), None);
    }
}
