//! A cheap guess at the language of a prompt, from its first
//! [`SAMPLE_BYTES`] bytes: the script of its letters (Unicode ranges), and
//! for Latin script a vote of common function words among a handful of
//! major languages. Good enough to route on and to know when the English
//! cue lists cannot speak for a prompt; not a language identifier.
//!
//! [`Language::Undetermined`] means the sample had too little text to tell
//! (code, numbers, a word or two).

use super::phrases::{mix, WordHash};

/// Bytes of the message read for the guess.
pub const SAMPLE_BYTES: usize = 512;
/// Function words a Latin-script guess needs.
const MIN_VOTES: u32 = 2;
/// Longer words are no function word (in bytes: `perché` is 7).
const MAX_FUNCTION_WORD_BYTES: usize = 8;
/// A CJK character carries about as much as a short word of Latin letters.
const CJK_LETTER_WEIGHT: u32 = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Language {
    #[default]
    Undetermined,
    English,
    German,
    French,
    Spanish,
    Italian,
    Portuguese,
    Dutch,
    Chinese,
    Japanese,
    Korean,
    /// Cyrillic script.
    Russian,
    Arabic,
    Hebrew,
    /// Devanagari script.
    Hindi,
    Greek,
    Thai,
}

impl Language {
    pub const ALL: [Language; 17] = [
        Language::Undetermined,
        Language::English,
        Language::German,
        Language::French,
        Language::Spanish,
        Language::Italian,
        Language::Portuguese,
        Language::Dutch,
        Language::Chinese,
        Language::Japanese,
        Language::Korean,
        Language::Russian,
        Language::Arabic,
        Language::Hebrew,
        Language::Hindi,
        Language::Greek,
        Language::Thai,
    ];

    /// ISO 639-1 code (`und` when undetermined), as rules and logs name it.
    pub fn code(self) -> &'static str {
        match self {
            Language::Undetermined => "und",
            Language::English => "en",
            Language::German => "de",
            Language::French => "fr",
            Language::Spanish => "es",
            Language::Italian => "it",
            Language::Portuguese => "pt",
            Language::Dutch => "nl",
            Language::Chinese => "zh",
            Language::Japanese => "ja",
            Language::Korean => "ko",
            Language::Russian => "ru",
            Language::Arabic => "ar",
            Language::Hebrew => "he",
            Language::Hindi => "hi",
            Language::Greek => "el",
            Language::Thai => "th",
        }
    }

    pub fn from_code(code: &str) -> Option<Language> {
        Language::ALL.into_iter().find(|language| language.code() == code)
    }

    /// A language was recognised and it is not English: the English cue
    /// lists say little about this prompt.
    pub fn is_other_than_english(self) -> bool {
        !matches!(self, Language::English | Language::Undetermined)
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// Latin-script languages told apart by function words, in vote order.
const LATIN: [(Language, &[&str]); 7] = [
    (
        Language::English,
        &[
            "the", "and", "is", "are", "of", "to", "that", "it", "for", "with", "what", "how", "you", "this", "be",
            "can", "my", "your", "do", "does", "which", "was", "have", "will", "from", "an", "i",
        ],
    ),
    (
        Language::German,
        &[
            "der", "die", "das", "und", "ist", "nicht", "ein", "eine", "ich", "zu", "mit", "den", "für", "auf", "wie",
            "sie", "es", "sich", "auch", "dem", "des", "wird", "bitte", "kann", "einen", "mir",
        ],
    ),
    (
        Language::French,
        &[
            "le", "la", "les", "et", "est", "un", "une", "des", "du", "que", "pour", "dans", "pas", "je", "vous", "il",
            "elle", "ce", "sur", "avec", "qui", "mon", "au", "sont", "comment", "quelle",
        ],
    ),
    (
        Language::Spanish,
        &[
            "el", "los", "las", "y", "es", "una", "que", "de", "en", "por", "para", "con", "del", "como", "qué",
            "cómo", "mi", "su", "lo", "al", "son", "está", "puedes", "cuál",
        ],
    ),
    (
        Language::Italian,
        &[
            "il", "gli", "e", "è", "di", "che", "per", "non", "sono", "come", "della", "questo", "ho", "cosa",
            "perché", "una", "del", "puoi", "nel", "anche",
        ],
    ),
    (
        Language::Portuguese,
        &[
            "o", "os", "as", "um", "uma", "em", "não", "do", "da", "você", "isso", "são", "está", "para", "com",
            "como", "meu", "uma", "por", "qual",
        ],
    ),
    (
        Language::Dutch,
        &[
            "de", "het", "een", "en", "van", "niet", "dat", "ik", "je", "op", "te", "met", "voor", "zijn", "wat",
            "hoe", "er", "maar", "ook", "kan", "deze",
        ],
    ),
];

/// Function word hash → the Latin-script languages it votes for (bit per
/// position in [`LATIN`]), in a small open-addressed table: a lookup is a
/// few instructions, and most words miss on the first slot.
#[derive(Debug, Clone)]
pub struct LanguageGuesser {
    slots: Box<[(u64, u8); SLOTS]>,
}

/// Table size (a power of two, about six times the function words).
const SLOTS: usize = 1024;

impl Default for LanguageGuesser {
    fn default() -> Self {
        let mut guesser = LanguageGuesser {
            slots: Box::new([(0, 0); SLOTS]),
        };
        for (position, (_, words)) in LATIN.iter().enumerate() {
            for word in *words {
                guesser.insert(WordHash::of(word.as_bytes()), 1 << position);
            }
        }
        guesser
    }
}

/// Letters seen per script.
#[derive(Debug, Default)]
struct ScriptCounts {
    latin: u32,
    han: u32,
    kana: u32,
    hangul: u32,
    cyrillic: u32,
    arabic: u32,
    hebrew: u32,
    devanagari: u32,
    greek: u32,
    thai: u32,
}

impl ScriptCounts {
    fn add(&mut self, character: char) {
        let code = u32::from(character);
        let count = match code {
            0x00C0..=0x024F => &mut self.latin,
            0x0370..=0x03FF => &mut self.greek,
            0x0400..=0x04FF => &mut self.cyrillic,
            0x0590..=0x05FF => &mut self.hebrew,
            0x0600..=0x06FF | 0x0750..=0x077F => &mut self.arabic,
            0x0900..=0x097F => &mut self.devanagari,
            0x0E00..=0x0E7F => &mut self.thai,
            0x1100..=0x11FF | 0x3130..=0x318F | 0xAC00..=0xD7AF => &mut self.hangul,
            0x3040..=0x30FF => &mut self.kana,
            0x3400..=0x4DBF | 0x4E00..=0x9FFF => &mut self.han,
            _ => return,
        };
        *count += 1;
    }

    /// The non-Latin script that outweighs the Latin letters, if any.
    fn dominant_non_latin(&self) -> Option<Language> {
        let cjk = (self.han + self.kana) * CJK_LETTER_WEIGHT;
        let hangul = self.hangul * CJK_LETTER_WEIGHT;
        let candidates = [
            // Japanese mixes kanji with kana; Chinese has no kana.
            (
                if self.kana > 0 {
                    Language::Japanese
                } else {
                    Language::Chinese
                },
                cjk,
            ),
            (Language::Korean, hangul),
            (Language::Russian, self.cyrillic),
            (Language::Arabic, self.arabic),
            (Language::Hebrew, self.hebrew),
            (Language::Hindi, self.devanagari),
            (Language::Greek, self.greek),
            (Language::Thai, self.thai),
        ];
        let (language, letters) = candidates.into_iter().max_by_key(|(_, letters)| *letters)?;
        (letters > 0 && letters >= self.latin).then_some(language)
    }
}

/// What the words of a message's sample say about its language: the
/// function-word votes per Latin-script language and the ASCII letters
/// seen. The scanner gathers it as it hashes each word.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LatinVotes {
    votes: [u32; LATIN.len()],
    letters: u32,
}

impl LanguageGuesser {
    /// Counts one word of the sample: its case-folded hash ([`WordHash`]),
    /// its length in bytes and its ASCII letters.
    #[inline]
    pub fn observe(&self, votes: &mut LatinVotes, hash: u64, len: usize, ascii_letters: u32) {
        votes.letters += ascii_letters;
        if len > MAX_FUNCTION_WORD_BYTES {
            return;
        }
        let mut languages = self.lookup(hash);
        // Most function words belong to one language: visit the set bits.
        while languages != 0 {
            if let Some(count) = votes.votes.get_mut(languages.trailing_zeros() as usize) {
                *count += 1;
            }
            languages &= languages - 1;
        }
    }

    /// The language of a message from its sample's words (`votes`) and the
    /// letters of other scripts at the start of its `parts`.
    pub fn decide(&self, parts: &[&str], votes: &LatinVotes) -> Language {
        let mut scripts = ScriptCounts {
            latin: votes.letters,
            ..ScriptCounts::default()
        };
        let mut budget = SAMPLE_BYTES;
        for part in parts {
            let sample = prefix(part, budget);
            budget -= sample.len();
            // Letters of other scripts only exist where there are non-ASCII
            // bytes; most prompts have none and skip the decoding.
            if !sample.is_ascii() {
                sample
                    .chars()
                    .filter(|character| !character.is_ascii())
                    .for_each(|character| scripts.add(character));
            }
        }
        if let Some(language) = scripts.dominant_non_latin() {
            return language;
        }
        let best = votes
            .votes
            .iter()
            .enumerate()
            .max_by_key(|(position, count)| (**count, std::cmp::Reverse(*position)));
        match best {
            Some((position, &count)) if count >= MIN_VOTES => LATIN
                .get(position)
                .map_or(Language::Undetermined, |(language, _)| *language),
            _ => Language::Undetermined,
        }
    }

    /// Slot of `hash`'s probe sequence start.
    fn home(hash: u64) -> usize {
        (mix(hash) >> 54) as usize & (SLOTS - 1)
    }

    fn insert(&mut self, hash: u64, languages: u8) {
        let mut slot = Self::home(hash);
        // Every word votes for some language, so 0 marks an empty slot.
        while let Some(&(key, value)) = self.slots.get(slot) {
            if value == 0 || key == hash {
                if let Some(entry) = self.slots.get_mut(slot) {
                    *entry = (hash, value | languages);
                }
                return;
            }
            slot = (slot + 1) & (SLOTS - 1);
        }
    }

    /// The languages `hash` votes for (0: none).
    #[inline]
    fn lookup(&self, hash: u64) -> u8 {
        let mut slot = Self::home(hash);
        loop {
            match self.slots.get(slot) {
                Some(&(key, value)) if value != 0 && key != hash => slot = (slot + 1) & (SLOTS - 1),
                Some(&(_, value)) if value != 0 => return value,
                _ => return 0,
            }
        }
    }
}

/// The longest prefix of `text` of at most `limit` bytes that ends on a
/// character boundary.
fn prefix(text: &str, limit: usize) -> &str {
    let mut end = limit.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guess(text: &str) -> Language {
        let classifier = crate::classify::Classifier::compile(&crate::classify::ClassifierSettings::default()).unwrap();
        let view = crate::request::PromptView {
            last_user_parts: vec![text],
            ..Default::default()
        };
        classifier.classify(&view).language
    }

    #[test]
    fn latin_script_languages_are_told_apart_by_function_words() {
        assert_eq!(
            guess("What is the best way to learn a new language?"),
            Language::English
        );
        assert_eq!(
            guess("Wie kann ich die Datei mit Python öffnen und lesen?"),
            Language::German
        );
        assert_eq!(
            guess("Comment est-ce que je peux ouvrir le fichier dans un script ?"),
            Language::French
        );
        assert_eq!(
            guess("¿Cómo puedo abrir el archivo con Python para leer los datos?"),
            Language::Spanish
        );
        assert_eq!(
            guess("Come posso aprire il file per leggere questo testo?"),
            Language::Italian
        );
        assert_eq!(
            guess("Você pode me ajudar com isso? Não sei como fazer."),
            Language::Portuguese
        );
        assert_eq!(
            guess("Hoe kan ik het bestand openen en de regels lezen?"),
            Language::Dutch
        );
    }

    #[test]
    fn other_scripts_are_recognised_by_their_letters() {
        assert_eq!(guess("请用Python写一个函数来合并两个有序链表"), Language::Chinese);
        assert_eq!(guess("このコードのバグを直してください"), Language::Japanese);
        assert_eq!(guess("파이썬으로 정렬 함수를 작성해 주세요"), Language::Korean);
        assert_eq!(guess("Напишите функцию сортировки на Python"), Language::Russian);
        assert_eq!(guess("اكتب دالة لفرز قائمة"), Language::Arabic);
        assert_eq!(guess("Γράψε μια συνάρτηση ταξινόμησης"), Language::Greek);
    }

    #[test]
    fn code_numbers_and_empty_text_are_undetermined() {
        assert_eq!(guess(""), Language::Undetermined);
        assert_eq!(guess("fn main() { let x = 42; }"), Language::Undetermined);
        assert_eq!(guess("12 + 7 = ?"), Language::Undetermined);
    }

    #[test]
    fn only_the_start_of_a_long_message_is_read() {
        let text = format!(
            "{} {}",
            "the cat and the dog ".repeat(40),
            "der die das und ".repeat(500)
        );
        assert_eq!(guess(&text), Language::English);
    }

    #[test]
    fn a_sample_never_splits_a_character() {
        let text = "é".repeat(SAMPLE_BYTES);
        assert_eq!(prefix(&text, 3), "é");
        assert_eq!(guess(&text), Language::Undetermined);
    }

    #[test]
    fn every_function_word_is_found_and_other_words_are_not() {
        let guesser = LanguageGuesser::default();
        for (position, (_, words)) in LATIN.iter().enumerate() {
            for word in *words {
                assert_ne!(
                    guesser.lookup(WordHash::of(word.as_bytes())) & (1 << position),
                    0,
                    "{word}"
                );
            }
        }
        for word in ["function", "python", "zebra", "routing", "x"] {
            assert_eq!(guesser.lookup(WordHash::of(word.as_bytes())), 0, "{word}");
        }
    }

    #[test]
    fn codes_round_trip() {
        for language in Language::ALL {
            assert_eq!(Language::from_code(language.code()), Some(language));
        }
        assert_eq!(Language::from_code("xx"), None);
    }
}
