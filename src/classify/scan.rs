//! One pass over the prompt text gathers everything the signals need: shape
//! statistics (lines that look like code, equations, numbers, questions, long
//! words) and cue-phrase evidence, looked up in the [`PhraseIndex`] as each
//! word ends. Nothing is allocated per request.
//!
//! Cues near the start or end of the message (where instructions sit) count
//! fully; cues deep inside a long message (pasted documents, logs, code) count
//! less, so "summarize this report" does not inherit the report's vocabulary.
//!
//! Work is bounded: a message longer than [`FULL_SCAN_BYTES`] is read in full
//! for its first and last [`EDGE_BYTES`], and the middle is sampled in
//! line-aligned windows ([`WINDOW_BYTES`] of every [`WINDOW_STRIDE`]) whose
//! shape statistics are scaled up to the whole middle. Only the character
//! count (for the token estimate) touches every byte.

use super::language::{self, Language, LanguageGuesser, LatinVotes};
use super::phrases::{PhraseIndex, WordHash, PREFIX_KEY_LEN};
use super::signals::SIGNAL_COUNT;
use super::words::{self, NgramSums, WordEvidence, WordTable, NUMBER_TOKEN};

/// Bytes at each end of the message treated as the instruction zone.
const INSTRUCTION_ZONE: usize = 600;
/// Weight of a cue found outside the instruction zone.
const PAYLOAD_CUE_WEIGHT: f64 = 0.35;
/// Words of at least this many characters count as long (specialist) words.
const LONG_WORD_CHARS: u32 = 13;
/// Messages up to this size are scanned in full.
pub const FULL_SCAN_BYTES: usize = 6 * 1024;
/// Longer messages: bytes scanned in full at each end.
pub const EDGE_BYTES: usize = 2 * 1024;
/// Longer messages: one sampling window of this size per stride of the middle.
pub const WINDOW_BYTES: usize = 256;
pub const WINDOW_STRIDE: usize = 1024;

/// Shape statistics of the scanned text.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct TextStats {
    pub ascii_bytes: usize,
    pub non_ascii_chars: usize,
    pub lines: u32,
    pub code_lines: u32,
    pub enumerated_lines: u32,
    /// Lines that start like a lettered answer option (`B.`, `c)`).
    pub option_lines: u32,
    /// Words on those lines after the option's letter.
    pub option_words: u32,
    pub questions: u32,
    pub numbers: u32,
    pub equation_ops: u32,
    pub words: u32,
    pub long_words: u32,
}

/// Everything the signals are computed from.
#[derive(Debug, Default, Clone)]
pub struct Evidence {
    /// Summed cue points per signal.
    pub cues: [f64; SIGNAL_COUNT],
    pub stats: TextStats,
    /// Estimated tokens of the last user message.
    pub prompt_tokens: u32,
    /// Estimated tokens of everything else in the conversation.
    pub context_tokens: u32,
    pub user_turns: u32,
    pub has_tools: bool,
    /// Tool (or function) results fed back in the conversation.
    pub tool_results: u32,
    /// Evidence from the request's `response_format` (0 when absent).
    pub response_format: f64,
    /// The learned weights of the message's word n-grams.
    pub words: WordEvidence,
    /// What the words at the start of the message say about its language.
    pub latin_votes: LatinVotes,
    pub language: Language,
}

impl TextStats {
    /// Adds `other`'s shape counts multiplied by `scale` (sampled windows
    /// standing for the whole middle of a message).
    fn add_scaled(&mut self, other: &TextStats, scale: f64) {
        let scaled = |count: u32| (f64::from(count) * scale).round() as u32;
        self.lines += scaled(other.lines);
        self.code_lines += scaled(other.code_lines);
        self.enumerated_lines += scaled(other.enumerated_lines);
        self.option_lines += scaled(other.option_lines);
        self.option_words += scaled(other.option_words);
        self.questions += scaled(other.questions);
        self.numbers += scaled(other.numbers);
        self.equation_ops += scaled(other.equation_ops);
        self.words += scaled(other.words);
        self.long_words += scaled(other.long_words);
    }
}

/// Scans the parts of one message (in order) into `evidence`, and sets its
/// `prompt_tokens`.
pub fn scan(lookups: Lookups<'_>, parts: &[&str], evidence: &mut Evidence) {
    let total_len: usize = parts.iter().map(|part| part.len()).sum();
    let sampled = total_len > FULL_SCAN_BYTES;
    let (head_end, tail_start) = if sampled {
        (EDGE_BYTES, total_len - EDGE_BYTES)
    } else {
        (total_len, total_len)
    };
    let mut window_stats = TextStats::default();
    let mut window_bytes = 0usize;
    let mut offset = 0;
    for part in parts {
        let text = part.as_bytes();
        let (ascii, non_ascii_chars) = crate::tokens::count_ascii_and_chars(text);
        evidence.stats.ascii_bytes += ascii;
        evidence.stats.non_ascii_chars += non_ascii_chars;
        let local = |global: usize| global.clamp(offset, offset + text.len()) - offset;
        let mut read = |range: std::ops::Range<usize>, into_windows: bool| {
            if range.is_empty() {
                return;
            }
            let sinks = Sinks {
                cues: &mut evidence.cues,
                words: &mut evidence.words,
                latin_votes: &mut evidence.latin_votes,
            };
            let scanner = Scanner::new(lookups, text, range, offset, total_len, sinks);
            let stats = scanner.run();
            if into_windows {
                window_stats.add_scaled(&stats, 1.0);
            } else {
                evidence.stats.add_scaled(&stats, 1.0);
            }
        };
        read(0..local(head_end), false);
        let middle = local(head_end)..local(tail_start);
        let mut window_start = middle.start;
        while window_start < middle.end {
            let window = line_aligned(text, window_start, (window_start + WINDOW_BYTES).min(middle.end));
            window_bytes += window.len();
            read(window, true);
            window_start += WINDOW_STRIDE;
        }
        read(local(tail_start)..text.len(), false);
        offset += text.len();
    }
    if window_bytes > 0 {
        let middle_len = tail_start - head_end;
        evidence
            .stats
            .add_scaled(&window_stats, middle_len as f64 / window_bytes as f64);
    }
    evidence.prompt_tokens = crate::tokens::from_counts(evidence.stats.ascii_bytes, evidence.stats.non_ascii_chars);
}

/// `start..end` moved to whole lines: from just after the first newline in
/// the window (if any) to the end of the line that `end` falls in, so a
/// sampled window sees real lines and words.
fn line_aligned(text: &[u8], start: usize, end: usize) -> std::ops::Range<usize> {
    let window = text.get(start..end).unwrap_or_default();
    let aligned_start = window
        .iter()
        .position(|&byte| byte == b'\n')
        .map_or(start, |newline| start + newline + 1);
    let rest = text.get(end..).unwrap_or_default();
    let aligned_end = rest
        .iter()
        .take(WINDOW_BYTES)
        .position(|&byte| byte == b'\n')
        .map_or(end, |newline| end + newline);
    aligned_start.min(aligned_end)..aligned_end
}

fn zone_weight(position: usize, total_len: usize) -> f64 {
    if position < INSTRUCTION_ZONE || position + INSTRUCTION_ZONE >= total_len {
        1.0
    } else {
        PAYLOAD_CUE_WEIGHT
    }
}

/// Byte classes, so the hot loop (letters inside words) costs one table load.
const WORD: u8 = 1;
const NON_ASCII: u8 = 2;
/// First byte of a multi-byte UTF-8 character.
const LEAD: u8 = 4;
const SYNTAX: u8 = 8;
const OPERATOR: u8 = 16;
const NEWLINE: u8 = 32;
const QUESTION: u8 = 64;
/// Starts a symbol-led cue phrase (depends on the phrase index).
const SYMBOL: u8 = 128;

/// [`CLASSES`] with the bytes that start one index's symbol phrases marked
/// [`SYMBOL`]: a byte of no class at all (a space, most punctuation) costs
/// the scanner one table load and one test.
#[derive(Clone)]
pub struct ByteClasses(Box<[u8; 256]>);

impl ByteClasses {
    pub fn new(index: &PhraseIndex) -> ByteClasses {
        let mut classes = Box::new(CLASSES);
        for (byte, class) in (0..=u8::MAX).zip(classes.iter_mut()) {
            if index.starts_symbol_phrase(byte) {
                *class |= SYMBOL;
            }
        }
        ByteClasses(classes)
    }

    #[inline(always)]
    fn of(&self, byte: u8) -> u8 {
        self.0[usize::from(byte)]
    }
}

impl std::fmt::Debug for ByteClasses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ByteClasses")
    }
}

const CLASSES: [u8; 256] = {
    let mut classes = [0u8; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        let mut class = 0;
        if b.is_ascii_alphanumeric() || b >= 0x80 {
            class |= WORD;
        }
        if b >= 0x80 {
            class |= NON_ASCII;
        }
        if b >= 0xC0 {
            class |= LEAD;
        }
        if matches!(
            b,
            b'{' | b'}' | b'[' | b']' | b';' | b'=' | b'<' | b'>' | b'|' | b'&' | b'_' | b'(' | b')'
        ) {
            class |= SYNTAX;
        }
        if matches!(b, b'+' | b'-' | b'*' | b'/' | b'^' | b'=' | b'<' | b'>') {
            class |= OPERATOR;
        }
        if b == b'\n' {
            class |= NEWLINE;
        }
        if b == b'?' {
            class |= QUESTION;
        }
        classes[byte] = class;
        byte += 1;
    }
    classes
};

/// One word as read by the inner loop.
struct Word {
    start: usize,
    end: usize,
    first: u8,
    last: u8,
    /// Characters (not bytes).
    chars: u32,
    hash: u64,
    /// Hash of the first PREFIX_KEY_LEN bytes, when the word is that long.
    key_hash: Option<u64>,
}

/// Where a scan's cue, n-gram and language evidence goes.
struct Sinks<'a> {
    cues: &'a mut [f64; SIGNAL_COUNT],
    words: &'a mut WordEvidence,
    latin_votes: &'a mut LatinVotes,
}

/// The tables each word is looked up in.
#[derive(Clone, Copy)]
pub struct Lookups<'a> {
    pub index: &'a PhraseIndex,
    pub classes: &'a ByteClasses,
    pub words: &'a WordTable,
    pub languages: &'a LanguageGuesser,
}

/// State of the pass over one range of one part of a message.
struct Scanner<'a> {
    index: &'a PhraseIndex,
    classes: &'a ByteClasses,
    word_table: &'a WordTable,
    languages: &'a LanguageGuesser,
    /// The whole part (phrases may be verified past the range's end).
    text: &'a [u8],
    range: std::ops::Range<usize>,
    /// The text up to the range's end: where reading stops.
    window: &'a [u8],
    /// Position of this part within the whole message.
    offset: usize,
    /// Words starting before this position of the part are in the
    /// language sample.
    sample_end: usize,
    total_len: usize,
    sinks: Sinks<'a>,
    stats: TextStats,
    /// N-gram weights not yet added to `sinks.words`.
    ngrams: NgramSums,
    /// Every n-gram's bucket goes to `sinks.words.buckets` (training).
    keep_buckets: bool,
    /// The previous word's token, for bigrams.
    previous_token: Option<u64>,
    /// End of the previous word and whether its last byte was a digit, so
    /// `1,250.50` counts as one number.
    previous_word_end: usize,
    previous_word_numeric: bool,
    /// No phrase may start before this position (leftmost-longest, no overlaps).
    matched_until: usize,
    line_start: usize,
    line_syntax: u32,
    /// `stats.words` when the current line started.
    line_first_word: u32,
}

impl<'a> Scanner<'a> {
    fn new(
        lookups: Lookups<'a>,
        text: &'a [u8],
        range: std::ops::Range<usize>,
        offset: usize,
        total_len: usize,
        sinks: Sinks<'a>,
    ) -> Self {
        Scanner {
            index: lookups.index,
            classes: lookups.classes,
            ngrams: NgramSums::default(),
            keep_buckets: sinks.words.buckets.is_some(),
            word_table: lookups.words,
            languages: lookups.languages,
            text,
            line_start: range.start,
            matched_until: range.start,
            window: text.get(..range.end).unwrap_or(text),
            range,
            offset,
            sample_end: language::SAMPLE_BYTES.saturating_sub(offset),
            total_len,
            sinks,
            stats: TextStats::default(),
            previous_token: None,
            previous_word_end: 0,
            previous_word_numeric: false,
            line_syntax: 0,
            line_first_word: 0,
        }
    }

    /// Reads the range and returns its shape statistics (cues go straight
    /// into the evidence).
    fn run(mut self) -> TextStats {
        let text = self.text;
        let window = self.window;
        let mut position = self.range.start;
        while let Some(&byte) = window.get(position) {
            let class = self.classes.of(byte);
            if class & WORD != 0 {
                let word = self.read_word(position, byte, class);
                position = word.end;
                self.finish_word(&word);
                continue;
            }
            if class != 0 {
                self.other_byte(position, class);
            }
            position += 1;
        }
        self.finish_line(position.min(text.len()));
        self.ngrams.flush_into(self.sinks.words);
        self.stats
    }

    /// A byte outside words that means something: syntax, an operator, a
    /// line end, a question mark, the start of a symbol phrase.
    fn other_byte(&mut self, position: usize, class: u8) {
        if class & SYNTAX != 0 {
            self.line_syntax += 1;
        }
        if class & OPERATOR != 0 {
            self.check_equation(position);
        }
        if class & NEWLINE != 0 {
            self.finish_line(position);
        }
        if class & QUESTION != 0 {
            self.stats.questions += 1;
        }
        if class & SYMBOL != 0 && position >= self.matched_until {
            if let Some((id, end)) = self.index.match_symbol(self.text, position) {
                self.credit(id, position, end);
            }
        }
    }

    /// The hot loop: hashes one word, which starts with `first` (of
    /// `first_class`) at `start`: the first PREFIX_KEY_LEN bytes, then the
    /// rest once their hash is kept. Character counts only need work for
    /// the rare words with non-ASCII bytes.
    #[inline(always)]
    fn read_word(&self, start: usize, first: u8, first_class: u8) -> Word {
        // A word ends with the range too: a sampled window never reads on
        // into the rest of a huge word (a prompt of one 4 MB "word" would
        // make every window rescan the remainder).
        let window = self.window;
        let mut hash = WordHash::default();
        hash.push(first);
        let mut key_hash = None;
        let mut classes_seen = first_class;
        let mut end = start + 1;
        let key_end = start + PREFIX_KEY_LEN;
        while let Some(&byte) = window.get(end) {
            let class = self.classes.of(byte);
            if class & WORD == 0 {
                break;
            }
            classes_seen |= class;
            hash.push(byte);
            end += 1;
            if end == key_end {
                key_hash = Some(hash.value());
                while let Some(&byte) = window.get(end) {
                    let class = self.classes.of(byte);
                    if class & WORD == 0 {
                        break;
                    }
                    classes_seen |= class;
                    hash.push(byte);
                    end += 1;
                }
                break;
            }
        }
        let mut chars = (end - start) as u32;
        if classes_seen & NON_ASCII != 0 {
            // Continuation bytes of a UTF-8 character are not new characters.
            let word = window.get(start..end).unwrap_or_default();
            let continuations = word.iter().filter(|&&byte| (0x80..0xC0).contains(&byte)).count();
            chars -= continuations as u32;
        }
        Word {
            start,
            end,
            first,
            last: window.get(end - 1).copied().unwrap_or(first),
            chars,
            hash: hash.value(),
            key_hash,
        }
    }

    fn finish_word(&mut self, word: &Word) {
        let stats = &mut self.stats;
        stats.words += 1;
        if word.chars >= LONG_WORD_CHARS {
            stats.long_words += 1;
        }
        // A run of digits with inner `.` or `,` separators is one number.
        let first_is_digit = word.first.is_ascii_digit();
        if first_is_digit {
            let continues_number = self.previous_word_numeric
                && self.previous_word_end + 1 == word.start
                && matches!(self.text.get(word.start.wrapping_sub(1)), Some(b'.' | b','));
            if !continues_number {
                stats.numbers += 1;
            }
        }
        self.previous_word_end = word.end;
        self.previous_word_numeric = word.last.is_ascii_digit();

        if word.start < self.sample_end {
            let ascii_letters = if word.chars as usize == word.end - word.start {
                word.chars
            } else {
                0
            };
            self.languages
                .observe(self.sinks.latin_votes, word.hash, word.end - word.start, ascii_letters);
        }
        let token = if first_is_digit { NUMBER_TOKEN } else { word.hash };
        let unigram = words::unigram(token);
        self.ngrams.add(self.word_table, unigram);
        let bigram = self.previous_token.map(|previous| words::bigram(previous, token));
        if let Some(bigram) = bigram {
            self.ngrams.add(self.word_table, bigram);
        }
        self.previous_token = Some(token);
        if self.keep_buckets {
            self.keep_buckets(unigram, bigram);
        }
        if self.ngrams.is_full() {
            self.ngrams.flush_into(self.sinks.words);
        }

        if word.start >= self.matched_until {
            if let Some((id, end)) = self.index.match_word(self.text, word.start, word.hash, word.key_hash) {
                self.credit(id, word.start, end);
            }
        }
    }

    /// Training keeps every n-gram's bucket, in order.
    #[cold]
    fn keep_buckets(&mut self, unigram: u16, bigram: Option<u16>) {
        if let Some(buckets) = &mut self.sinks.words.buckets {
            buckets.push(unigram);
            buckets.extend(bigram);
        }
    }

    /// Equation-like use of an operator: an operand (letter, digit or `)`)
    /// before it and a digit or `(` after it, spaces allowed in between.
    fn check_equation(&mut self, position: usize) {
        let text = self.text;
        let before = text[..position]
            .iter()
            .rev()
            .find(|&&byte| byte != b' ' && byte != b'\t');
        let after = text[position + 1..].iter().find(|&&byte| byte != b' ' && byte != b'\t');
        let operand_before = before.is_some_and(|&byte| byte.is_ascii_alphanumeric() || byte == b')');
        let operand_after = after.is_some_and(|&byte| byte.is_ascii_digit() || byte == b'(');
        if operand_before && operand_after {
            self.stats.equation_ops += 1;
        }
    }

    fn credit(&mut self, id: u32, start: usize, end: usize) {
        self.matched_until = end;
        let phrase = self.index.phrase(id);
        if phrase.number_word {
            self.stats.numbers += 1;
        }
        let weight = zone_weight(self.offset + start, self.total_len);
        for (signal, points) in &phrase.credits {
            self.sinks.cues[signal.index()] += points * weight;
        }
    }

    /// Shape of the line ending at `end` (exclusive).
    fn finish_line(&mut self, end: usize) {
        let line = &self.text[self.line_start..end];
        let syntax = std::mem::take(&mut self.line_syntax);
        let line_words = self
            .stats
            .words
            .saturating_sub(std::mem::replace(&mut self.line_first_word, self.stats.words));
        self.line_start = end + 1;
        let leading_spaces: u32 = line
            .iter()
            .take_while(|&&byte| byte == b' ' || byte == b'\t')
            .map(|&byte| if byte == b'\t' { 4 } else { 1 })
            .sum();
        let content = line.trim_ascii();
        let (Some(&first), Some(&last)) = (content.first(), content.last()) else {
            return;
        };
        let shape = LineShape {
            len: line.len() as u32,
            syntax,
            leading_spaces,
            first,
            second: content.get(1).copied().unwrap_or(0),
            last,
        };
        let stats = &mut self.stats;
        stats.lines += 1;
        if shape.looks_like_code() {
            stats.code_lines += 1;
        }
        if shape.is_enumerated() {
            stats.enumerated_lines += 1;
        }
        if shape.is_option() {
            stats.option_lines += 1;
            // The option's letter is a word too.
            stats.option_words += line_words.saturating_sub(1);
        }
    }
}

/// What the code and enumeration tests need to know about a line.
struct LineShape {
    len: u32,
    syntax: u32,
    leading_spaces: u32,
    first: u8,
    second: u8,
    last: u8,
}

impl LineShape {
    fn looks_like_code(&self) -> bool {
        if self.len < 2 {
            return false;
        }
        let dense = self.syntax >= 3 && self.syntax * 8 >= self.len;
        let terminated = matches!(self.last, b';' | b'{' | b'}');
        let indented_call = self.leading_spaces >= 4 && self.syntax >= 2;
        dense || terminated || indented_call
    }

    fn is_option(&self) -> bool {
        matches!(self.first.to_ascii_uppercase(), b'A'..=b'E') && matches!(self.second, b'.' | b')')
    }

    fn is_enumerated(&self) -> bool {
        (self.first.is_ascii_digit() && matches!(self.second, b'.' | b')'))
            || (matches!(self.first, b'-' | b'*') && self.second == b' ')
    }
}

/// Scans `parts` with no learned word weights (what most tests need).
#[cfg(test)]
pub(super) fn scan_without_learning(index: &PhraseIndex, parts: &[&str]) -> Evidence {
    let mut evidence = Evidence::default();
    let lookups = Lookups {
        index,
        classes: &ByteClasses::new(index),
        words: &WordTable::default(),
        languages: &LanguageGuesser::default(),
    };
    scan(lookups, parts, &mut evidence);
    evidence
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::signals::Signal;

    fn matcher(phrases: &[(Signal, &str)]) -> PhraseIndex {
        PhraseIndex::build(phrases.iter().map(|(signal, phrase)| (*signal, 1.0, *phrase)), &["two"]).unwrap()
    }

    fn scan(index: &PhraseIndex, text: &str) -> Evidence {
        scan_without_learning(index, &[text])
    }

    #[test]
    fn a_sampling_window_never_reads_past_its_end_into_a_huge_word() {
        let index = matcher(&[]);
        let (words, languages) = (WordTable::default(), LanguageGuesser::default());
        let text = "a".repeat(100_000);
        let mut evidence = Evidence::default();
        let sinks = Sinks {
            cues: &mut evidence.cues,
            words: &mut evidence.words,
            latin_votes: &mut evidence.latin_votes,
        };
        let lookups = Lookups {
            index: &index,
            classes: &ByteClasses::new(&index),
            words: &words,
            languages: &languages,
        };
        let scanner = Scanner::new(lookups, text.as_bytes(), 1_000..1_256, 0, text.len(), sinks);
        assert_eq!(scanner.read_word(1_000, b'a', WORD).end, 1_256);
    }

    #[test]
    fn phrases_match_whole_words_only() {
        let m = matcher(&[(Signal::Reasoning, "prove")]);
        assert_eq!(scan(&m, "Prove it.").cues[Signal::Reasoning.index()], 1.0);
        assert_eq!(scan(&m, "we improve things").cues[Signal::Reasoning.index()], 0.0);
        assert_eq!(scan(&m, "proven").cues[Signal::Reasoning.index()], 0.0);
    }

    #[test]
    fn a_starred_phrase_matches_any_word_with_that_prefix() {
        let m = matcher(&[(Signal::Analysis, "analy*")]);
        assert_eq!(scan(&m, "an analytical essay").cues[Signal::Analysis.index()], 1.0);
        assert_eq!(scan(&m, "psychoanalysis").cues[Signal::Analysis.index()], 0.0);
    }

    #[test]
    fn punctuation_phrases_need_no_boundary() {
        let m = matcher(&[(Signal::Code, "```"), (Signal::Code, "c++")]);
        assert_eq!(scan(&m, "x```py").cues[Signal::Code.index()], 1.0);
        assert_eq!(scan(&m, "in c++, write").cues[Signal::Code.index()], 1.0);
    }

    #[test]
    fn cues_deep_inside_a_long_message_count_less() {
        let m = matcher(&[(Signal::Analysis, "compare")]);
        let filler = "lorem ipsum ".repeat(200);
        let edge = scan(&m, &format!("compare {filler}"));
        let middle = scan(&m, &format!("{filler} compare {filler}"));
        assert_eq!(edge.cues[Signal::Analysis.index()], 1.0);
        assert!(middle.cues[Signal::Analysis.index()] < 0.5);
    }

    #[test]
    fn one_phrase_can_credit_two_signals() {
        let m = PhraseIndex::build(
            [
                (Signal::Analysis, 1.0, "diagnos*"),
                (Signal::Expertise, 2.0, "diagnos*"),
            ],
            &[],
        )
        .unwrap();
        let evidence = scan(&m, "a diagnosis");
        assert_eq!(evidence.cues[Signal::Analysis.index()], 1.0);
        assert_eq!(evidence.cues[Signal::Expertise.index()], 2.0);
    }

    #[test]
    fn number_words_and_digit_runs_count_as_quantities() {
        let m = matcher(&[]);
        let evidence = scan(&m, "two apples cost 1,250.50 and 3 pears");
        assert_eq!(evidence.stats.numbers, 3);
    }

    #[test]
    fn code_lines_are_recognised_by_shape() {
        let m = matcher(&[]);
        let code = "fn main() {\n    let x = vec![1, 2];\n    println!(\"{x:?}\");\n}\n";
        let evidence = scan(&m, code);
        assert_eq!(evidence.stats.lines, 4);
        assert!(evidence.stats.code_lines >= 3, "{:?}", evidence.stats);
        let prose = scan(&m, "The weather was fine.\nWe walked (slowly) home.\n");
        assert_eq!(prose.stats.code_lines, 0);
    }

    #[test]
    fn equations_enumerations_questions_and_long_words_are_counted() {
        let m = matcher(&[]);
        let evidence = scan(&m, "1. Solve 3x + 4 = 19?\n2) why?\n- internationalization");
        assert_eq!(evidence.stats.equation_ops, 2);
        assert_eq!(evidence.stats.enumerated_lines, 3);
        assert_eq!(evidence.stats.questions, 2);
        assert_eq!(evidence.stats.long_words, 1);
        let options = scan(&m, "Which gas?\nA. oxygen\nB. argon gas\n\nc) neon\nAlso this.");
        assert_eq!(options.stats.option_lines, 3);
        // Words after each option's letter; not the question's, not the last line's.
        assert_eq!(options.stats.option_words, 4);
    }

    #[test]
    fn non_ascii_text_is_counted_by_characters() {
        let m = matcher(&[]);
        let evidence = scan(&m, "héllo 你好");
        assert_eq!(evidence.stats.non_ascii_chars, 3);
        assert_eq!(evidence.stats.words, 2);
    }

    #[test]
    fn scanning_several_parts_accumulates() {
        let m = matcher(&[(Signal::Code, "python")]);
        let evidence = scan_without_learning(&m, &["python", "and python"]);
        assert_eq!(evidence.cues[Signal::Code.index()], 2.0);
        assert!(evidence.prompt_tokens > 0);
    }
}

#[cfg(test)]
mod sampling_tests {
    use super::*;

    fn scan_text(text: &str) -> Evidence {
        let index = PhraseIndex::build([], &[]).unwrap();
        scan_without_learning(&index, &[text])
    }

    #[test]
    fn a_long_message_is_sampled_but_its_statistics_stay_representative() {
        let code_line = "    let total = items.iter().map(|item| item.price * 2).sum::<u64>();\n";
        let prose_line = "The quarterly report covers revenue, churn and the hiring plan for next year.\n";
        let text = format!("{}{}", code_line.repeat(300), prose_line.repeat(300));
        assert!(text.len() > 6 * FULL_SCAN_BYTES);
        let stats = scan_text(&text).stats;
        let within = |value: u32, expected: f64| (f64::from(value) - expected).abs() <= expected * 0.15;
        assert!(within(stats.lines, 600.0), "{stats:?}");
        assert!(within(stats.code_lines, 300.0), "{stats:?}");
        assert!(within(stats.numbers, 300.0), "{stats:?}");
    }

    #[test]
    fn the_token_estimate_counts_every_byte_even_when_sampling() {
        let text = "abcd".repeat(10_000);
        assert_eq!(scan_text(&text).prompt_tokens, 10_000);
    }

    #[test]
    fn sampling_windows_start_and_end_on_line_boundaries() {
        let text = b"aaaa\nbbbb\ncccc\ndddd";
        assert_eq!(line_aligned(text, 2, 7), 5..9);
        // No newline in the window: it starts where asked.
        assert_eq!(line_aligned(b"aaaaaaaa", 2, 4), 2..4);
    }
}

#[cfg(test)]
mod matching_tests {
    use super::*;
    use crate::classify::signals::Signal;

    fn cues(phrases: &[&str], text: &str) -> f64 {
        let index = PhraseIndex::build(phrases.iter().map(|phrase| (Signal::Code, 1.0, *phrase)), &[]).unwrap();
        let evidence = scan_without_learning(&index, &[text]);
        evidence.cues[Signal::Code.index()]
    }

    #[test]
    fn the_longest_phrase_at_a_position_wins_and_matches_do_not_overlap() {
        // "write a function" consumes "function": one credit, not two.
        assert_eq!(cues(&["write a function", "function"], "Write a function now"), 1.0);
        assert_eq!(cues(&["import ", "import numpy"], "import numpy as np"), 1.0);
        assert_eq!(cues(&["$", "$$"], "$$x$$"), 2.0);
    }

    #[test]
    fn multi_word_phrases_need_every_word() {
        assert_eq!(cues(&["how many"], "how many apples"), 1.0);
        assert_eq!(cues(&["how many"], "how manyfold"), 0.0);
        assert_eq!(cues(&["how many"], "how much"), 0.0);
    }

    #[test]
    fn symbol_phrases_match_anywhere_but_keep_their_end_boundary() {
        assert_eq!(cues(&["\\int"], "$\\int_0^1 x dx$"), 1.0);
        assert_eq!(cues(&["\\int"], "\\integer"), 0.0);
        assert_eq!(cues(&["```"], "text```rust"), 1.0);
        assert_eq!(cues(&["(b)"], "choose (b) or"), 1.0);
    }

    #[test]
    fn phrases_with_inner_symbols_are_verified_in_full() {
        assert_eq!(cues(&["c++", "node.js", "o(n"], "C++ and Node.js in O(n log n)"), 3.0);
        assert_eq!(cues(&["c++"], "c+"), 0.0);
    }

    #[test]
    fn prefixes_of_several_lengths_match_long_words() {
        assert_eq!(cues(&["refactor*", "debug*"], "refactoring and debugging"), 2.0);
        let long = "a".repeat(40);
        assert_eq!(cues(&["refactor*"], &long), 0.0);
    }

    #[test]
    fn long_words_match_whole_and_short_prefixes_are_rejected_at_build() {
        let long = "x".repeat(30);
        assert_eq!(cues(&[long.as_str()], &format!("a {long} b")), 1.0);
        assert!(PhraseIndex::build([(Signal::Code, 1.0, "ab*")], &[]).is_err());
        assert!(PhraseIndex::build([(Signal::Code, 1.0, "*")], &[]).is_err());
    }
}
