//! The catalogue of complexity signals: their names (as used in the config
//! and the explain header), prior weights, and how raw evidence from one
//! scan of the prompt becomes a strength for each signal.
//!
//! Weights are logits: the score is `sigmoid(bias + Σ weight × strength)`.
//! Two kinds of signal work together. *Kind* signals (code, math,
//! reasoning, …) say what sort of prompt this is; their prior weights
//! reflect how much that sort widens the quality gap between a small and a
//! large model on public benchmarks: multi-step arithmetic and code
//! generation most, lookups, rewriting and chit-chat hardly at all.
//! *Within-kind* signals (quantities, operations, subject, question shape,
//! question and option length, deliverables, tool loops, words) order
//! prompts of one sort by how hard they are. The shipped weights are learned from labelled public data by
//! `signalbox-eval train`, starting from these priors (see
//! [`super::learned`] and `docs/routing.md`).

use super::scan::{Evidence, TextStats};
use super::words::{PromptKind, WordTable};

/// Logit when no signal fires, before learning: a short, unremarkable
/// prompt lands well inside the cheapest tier.
pub const PRIOR_BIAS: f64 = -2.0;
/// The learned word n-gram sum is clamped to this many logits either way,
/// so no vocabulary alone decides a prompt.
pub const WORDS_LIMIT: f64 = 3.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Signal {
    Code,
    Math,
    Reasoning,
    Analysis,
    MultiStep,
    Structured,
    Tools,
    Constraints,
    Expertise,
    Length,
    Conversation,
    Simple,
    Quantities,
    Operations,
    Subject,
    QuestionShape,
    QuestionLength,
    OptionLength,
    Deliverables,
    ToolLoop,
    Words,
    Language,
}

pub const SIGNAL_COUNT: usize = 22;

impl Signal {
    pub const ALL: [Signal; SIGNAL_COUNT] = [
        Signal::Code,
        Signal::Math,
        Signal::Reasoning,
        Signal::Analysis,
        Signal::MultiStep,
        Signal::Structured,
        Signal::Tools,
        Signal::Constraints,
        Signal::Expertise,
        Signal::Length,
        Signal::Conversation,
        Signal::Simple,
        Signal::Quantities,
        Signal::Operations,
        Signal::Subject,
        Signal::QuestionShape,
        Signal::QuestionLength,
        Signal::OptionLength,
        Signal::Deliverables,
        Signal::ToolLoop,
        Signal::Words,
        Signal::Language,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            Signal::Code => "code",
            Signal::Math => "math",
            Signal::Reasoning => "reasoning",
            Signal::Analysis => "analysis",
            Signal::MultiStep => "multi_step",
            Signal::Structured => "structured_output",
            Signal::Tools => "tools",
            Signal::Constraints => "constraints",
            Signal::Expertise => "expertise",
            Signal::Length => "length",
            Signal::Conversation => "conversation",
            Signal::Simple => "simple",
            Signal::Quantities => "quantities",
            Signal::Operations => "operations",
            Signal::Subject => "subject",
            Signal::QuestionShape => "question_shape",
            Signal::QuestionLength => "question_length",
            Signal::OptionLength => "option_length",
            Signal::Deliverables => "deliverables",
            Signal::ToolLoop => "tool_loop",
            Signal::Words => "words",
            Signal::Language => "language",
        }
    }

    pub fn from_name(name: &str) -> Option<Signal> {
        Signal::ALL.into_iter().find(|signal| signal.name() == name)
    }

    /// Kind signals say what sort of prompt this is; the rest (within-kind
    /// signals, words, language) were added to order prompts within a kind.
    pub fn says_kind(self) -> bool {
        self.index() <= Signal::Simple.index()
    }

    /// Raised mostly by English cue phrases, so mostly silent for a prompt
    /// in another language, whatever it asks.
    pub fn needs_english_cues(self) -> bool {
        !matches!(
            self,
            Signal::Tools
                | Signal::Length
                | Signal::Conversation
                | Signal::Quantities
                | Signal::Operations
                | Signal::QuestionLength
                | Signal::OptionLength
                | Signal::ToolLoop
                | Signal::Words
                | Signal::Language
        )
    }

    /// Hand-set weight: the starting point (and regularisation target) of
    /// learning, and the weight of a signal the learned table does not name.
    pub fn prior_weight(self) -> f64 {
        match self {
            // Generating or fixing code and multi-step arithmetic are where
            // small models fall furthest behind.
            Signal::Code => 2.6,
            Signal::Math => 2.8,
            // Explicit requests to reason, prove or deduce.
            Signal::Reasoning => 1.8,
            // Specialist vocabulary (science, law, medicine, finance).
            Signal::Expertise => 1.4,
            Signal::Analysis => 1.2,
            Signal::MultiStep => 1.1,
            Signal::Constraints => 0.9,
            Signal::Tools => 0.9,
            Signal::Length => 1.4,
            Signal::Conversation => 0.7,
            // Output format demands alone are easy for any model.
            Signal::Structured => 0.4,
            // Greetings, lookups, translation and rewriting.
            Signal::Simple => -2.4,
            // Each quantity and operation of a word problem is one more
            // step a small model can get wrong.
            Signal::Quantities => 1.0,
            Signal::Operations => 1.0,
            // College and professional subjects (law, medicine, advanced
            // mathematics, physics, chemistry) over general knowledge.
            Signal::Subject => 0.8,
            // "Which of the following is NOT", "except", several statements
            // to judge: questions that trip a small model more often.
            Signal::QuestionShape => 0.6,
            // A longer multiple-choice question (a scenario to read, a
            // passage, statements to weigh) is a harder one; `length` barely
            // moves below 150 tokens, where most such questions are.
            Signal::QuestionLength => 1.0,
            // Answer options that are whole statements must each be checked
            // against the question; one-word options are mostly recall. On
            // the ARC and MMLU training splits it orders questions almost as
            // well as their length and adds to it on both (where `expertise`
            // and `subject` pull the two sets opposite ways), so it weighs
            // more than `question_length`.
            Signal::OptionLength => 2.0,
            // Several things to produce in one answer. Kept small: on the
            // chat dev split it neither helped nor hurt much.
            Signal::Deliverables => 0.3,
            // An agent loop feeding tool results back: long, stateful work.
            Signal::ToolLoop => 0.8,
            // The word n-gram table carries its own scale.
            Signal::Words => 1.0,
            // What the English cues add to an English prompt on average,
            // given to a prompt in another language where they cannot fire.
            Signal::Language => 1.0,
        }
    }
}

/// `1 - e^(-x/k)`: the first cue counts most, later ones add less, and no
/// amount of repetition pushes a signal past 1.
fn saturate(evidence: f64, scale: f64) -> f64 {
    if evidence <= 0.0 {
        0.0
    } else {
        1.0 - (-evidence / scale).exp()
    }
}

/// Position of `value` between `low` and `high` on a log scale, clamped to [0, 1].
fn log_ramp(value: f64, low: f64, high: f64) -> f64 {
    if value <= low {
        return 0.0;
    }
    ((value / low).ln() / (high / low).ln()).min(1.0)
}

/// Turns the evidence of one prompt into per-signal strengths (in [0, 1],
/// but `words`, a sum of learned weights) and the kind of prompt it is.
pub fn strengths(evidence: &Evidence, words: &WordTable) -> ([f64; SIGNAL_COUNT], PromptKind) {
    let mut strength = [0.0; SIGNAL_COUNT];
    set_kind_strengths(evidence, &mut strength);
    let kind = prompt_kind(evidence, &strength);
    set_within_kind_strengths(evidence, words, kind, &mut strength);
    strength[Signal::Language.index()] = if evidence.language.is_other_than_english() {
        1.0
    } else {
        0.0
    };
    (strength, kind)
}

/// The signals that say what sort of prompt this is (and how long, how
/// deep in a conversation), from cue phrases and the shape of the text.
fn set_kind_strengths(evidence: &Evidence, strength: &mut [f64; SIGNAL_COUNT]) {
    let stats = &evidence.stats;
    let cue = |signal: Signal| evidence.cues[signal.index()];
    strength[Signal::Code.index()] = saturate(cue(Signal::Code) + code_shape(stats), 1.8);
    strength[Signal::Math.index()] = saturate(math_evidence(evidence), 2.2);
    strength[Signal::Reasoning.index()] = saturate(cue(Signal::Reasoning), 1.8);
    strength[Signal::Analysis.index()] = saturate(cue(Signal::Analysis), 2.0);

    // Several questions or an enumerated list of asks means several steps.
    let multi_step = cue(Signal::MultiStep) + 0.5 * stats.enumerated_lines.min(6) as f64 + 0.6 * extra_questions(stats);
    strength[Signal::MultiStep.index()] = saturate(multi_step, 2.2);

    strength[Signal::Structured.index()] = saturate(cue(Signal::Structured) + evidence.response_format, 1.5);
    strength[Signal::Tools.index()] = if evidence.has_tools { 1.0 } else { 0.0 };
    strength[Signal::Constraints.index()] = saturate(cue(Signal::Constraints), 3.0);
    strength[Signal::Expertise.index()] = saturate(cue(Signal::Expertise) + jargon(stats), 2.5);

    let prompt_tokens = evidence.prompt_tokens as f64;
    strength[Signal::Length.index()] = log_ramp(prompt_tokens, 30.0, 2500.0);

    let earlier_turns = evidence.user_turns.saturating_sub(1).min(6) as f64 / 6.0;
    let context = log_ramp(evidence.context_tokens as f64, 200.0, 20_000.0);
    strength[Signal::Conversation.index()] = 0.5 * earlier_turns + 0.5 * context;

    // "Simple" cues only count in short prompts: a long prompt that opens
    // with "hi" is not small talk.
    let shortness = 1.0 - log_ramp(prompt_tokens, 40.0, 400.0);
    strength[Signal::Simple.index()] = saturate(cue(Signal::Simple), 1.0) * shortness;
}

/// Within-kind signals only count in the kind they were made for. In a
/// word problem, quantities (numbers, number words, units) and the
/// operations that relate them stand for the steps a solution takes; in
/// a multiple-choice question, the subject, the question's shape
/// (negations, several statements), its length and how long its answer
/// options are say how hard it is; in a chat
/// request, how many things it asks for. Tool loops and the learned words
/// count in every kind.
fn set_within_kind_strengths(
    evidence: &Evidence,
    words: &WordTable,
    kind: PromptKind,
    strength: &mut [f64; SIGNAL_COUNT],
) {
    let stats = &evidence.stats;
    let cue = |signal: Signal| evidence.cues[signal.index()];
    let only_in = |wanted: PromptKind| if kind == wanted { 1.0 } else { 0.0 };
    let quantities = f64::from(stats.numbers) + cue(Signal::Quantities);
    strength[Signal::Quantities.index()] = log_ramp(1.0 + quantities, 1.0, 25.0) * only_in(PromptKind::Math);
    strength[Signal::Operations.index()] =
        log_ramp(1.0 + cue(Signal::Operations), 1.0, 16.0) * only_in(PromptKind::Math);
    strength[Signal::Subject.index()] = saturate(cue(Signal::Subject), 3.0) * only_in(PromptKind::Choice);
    strength[Signal::QuestionShape.index()] = saturate(cue(Signal::QuestionShape), 2.0) * only_in(PromptKind::Choice);
    strength[Signal::QuestionLength.index()] =
        log_ramp(f64::from(evidence.prompt_tokens), 20.0, 400.0) * only_in(PromptKind::Choice);
    // From one-word options (0) to options of 20 words and more (1).
    strength[Signal::OptionLength.index()] =
        log_ramp(1.0 + mean_option_words(stats), 2.0, 21.0) * only_in(PromptKind::Choice);
    strength[Signal::Deliverables.index()] =
        saturate(cue(Signal::Deliverables) + 0.5 * extra_questions(stats), 3.0) * only_in(PromptKind::Chat);
    strength[Signal::ToolLoop.index()] = log_ramp(1.0 + f64::from(evidence.tool_results), 1.0, 9.0);
    strength[Signal::Words.index()] = if words_apply(evidence) {
        evidence.words.score(words, kind).clamp(-WORDS_LIMIT, WORDS_LIMIT)
    } else {
        0.0
    };
}

/// Code evidence from the shape of the text: lines dense in syntax
/// characters or ending in `;`, `{`, `}` are code whatever the language.
fn code_shape(stats: &TextStats) -> f64 {
    if stats.lines >= 2 {
        3.0 * stats.code_lines as f64 / stats.lines as f64 + 0.2 * stats.code_lines.min(15) as f64
    } else {
        0.2 * stats.code_lines as f64
    }
}

/// Math evidence: cue phrases, equation-like operator use, and quantities.
/// Numbers alone (dates, versions) say little; numbers next to math cues
/// are a word problem.
fn math_evidence(evidence: &Evidence) -> f64 {
    let stats = &evidence.stats;
    let math_cues = evidence.cues[Signal::Math.index()];
    let quantities = stats.numbers.min(12) as f64;
    let quantity_evidence = if math_cues > 0.0 {
        0.35 * quantities
    } else {
        0.05 * quantities
    };
    math_cues + 0.5 * stats.equation_ops.min(10) as f64 + quantity_evidence
}

/// Questions after the first (up to three): more steps, more deliverables.
fn extra_questions(stats: &TextStats) -> f64 {
    stats.questions.saturating_sub(1).min(3) as f64
}

/// Mean words per answer option (0 without options).
fn mean_option_words(stats: &TextStats) -> f64 {
    if stats.option_lines == 0 {
        0.0
    } else {
        f64::from(stats.option_words) / f64::from(stats.option_lines)
    }
}

/// Specialist text is dense in long words; ordinary English has ~3% of
/// words of 13+ letters, technical prose two to three times as many.
fn jargon(stats: &TextStats) -> f64 {
    let long_word_share = if stats.words > 0 {
        stats.long_words as f64 / stats.words as f64
    } else {
        0.0
    };
    (long_word_share - 0.03).max(0.0) * 25.0 * (stats.words.min(40) as f64 / 40.0)
}

/// Whether the learned word weights speak for this prompt: it has words,
/// and they are not in another language than the (English) ones learned.
pub fn words_apply(evidence: &Evidence) -> bool {
    evidence.words.count > 0 && !evidence.language.is_other_than_english()
}

/// Options to choose from · code · math · anything else, in that order, from
/// the kind signals' strengths (computed before `words`).
pub fn prompt_kind(evidence: &Evidence, strength: &[f64; SIGNAL_COUNT]) -> PromptKind {
    if strength[Signal::Code.index()] >= 0.5 {
        PromptKind::Code
    } else if evidence.stats.option_lines >= 2 {
        PromptKind::Choice
    } else if strength[Signal::Math.index()] >= 0.5 {
        PromptKind::Math
    } else {
        PromptKind::Chat
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        for signal in Signal::ALL {
            assert_eq!(Signal::from_name(signal.name()), Some(signal));
        }
        let mut names: Vec<_> = Signal::ALL.iter().map(|s| s.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), SIGNAL_COUNT);
    }

    #[test]
    fn the_index_matches_the_position_in_all() {
        for (position, signal) in Signal::ALL.into_iter().enumerate() {
            assert_eq!(signal.index(), position);
        }
    }

    #[test]
    fn saturation_is_monotonic_and_bounded() {
        let mut previous = 0.0;
        for step in 1..50 {
            let value = saturate(step as f64 * 0.5, 2.0);
            assert!(value > previous && value < 1.0);
            previous = value;
        }
        assert_eq!(saturate(-1.0, 2.0), 0.0);
    }

    fn choice_evidence(text: &str) -> Evidence {
        let phrases =
            super::super::phrases::PhraseIndex::build(std::iter::empty::<(Signal, f64, &str)>(), &[]).unwrap();
        super::super::scan::scan_without_learning(&phrases, &[text])
    }

    #[test]
    fn option_length_is_the_mean_words_per_option_on_a_log_scale() {
        let short = choice_evidence("Which gas do plants take in?\nA. oxygen\nB. carbon dioxide\nC. neon\nD. helium");
        assert_eq!(short.stats.option_lines, 4);
        assert_eq!(short.stats.option_words, 5);
        assert!((mean_option_words(&short.stats) - 1.25).abs() < 1e-12);
        let long = choice_evidence(
            "Why do leaves change colour?\nA. The chlorophyll breaks down and other pigments show through\n\
             B. The tree pumps red dye into each leaf before it falls\n\
             C. Cold air freezes the green pigment into a brown one",
        );
        let (short_strengths, short_kind) = strengths(&short, &WordTable::default());
        let (long_strengths, long_kind) = strengths(&long, &WordTable::default());
        assert_eq!((short_kind, long_kind), (PromptKind::Choice, PromptKind::Choice));
        let option_length = Signal::OptionLength.index();
        assert!(short_strengths[option_length] > 0.0 && short_strengths[option_length] < 0.1);
        assert!(long_strengths[option_length] > 0.5 && long_strengths[option_length] <= 1.0);
        assert!(long_strengths[Signal::QuestionLength.index()] > short_strengths[Signal::QuestionLength.index()]);
    }

    #[test]
    fn question_and_option_length_only_count_in_multiple_choice() {
        let chat = choice_evidence(&"Tell me a long story about a dragon who learns to cook. ".repeat(20));
        let (strength, kind) = strengths(&chat, &WordTable::default());
        assert_eq!(kind, PromptKind::Chat);
        assert_eq!(strength[Signal::QuestionLength.index()], 0.0);
        assert_eq!(strength[Signal::OptionLength.index()], 0.0);
        assert_eq!(mean_option_words(&TextStats::default()), 0.0);
    }

    #[test]
    fn log_ramp_is_clamped() {
        assert_eq!(log_ramp(10.0, 30.0, 2500.0), 0.0);
        assert_eq!(log_ramp(1e9, 30.0, 2500.0), 1.0);
        let middle = log_ramp(300.0, 30.0, 2500.0);
        assert!(middle > 0.4 && middle < 0.7);
    }
}
