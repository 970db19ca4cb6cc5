//! Complexity classification: how likely a prompt needs the strong model.
//!
//! [`Classifier::classify`] scans the last user message once (see [`scan`],
//! [`phrases`] and [`words`]), guesses its language ([`language`]), turns
//! the evidence into per-signal strengths (see [`signals`]) and combines
//! them with logit weights (learned, see [`learned`]; configurable) into a
//! score in [0, 1]. Higher means "more likely to need the strong model".
//! Every contribution is kept so the decision can be explained per request.

pub mod language;
pub mod learned;
pub mod lexicon;
pub mod phrases;
pub mod scan;
pub mod signals;
pub mod words;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Deserialize;

use crate::error::ConfigError;
use crate::request::{PromptView, ResponseFormatKind};
pub use language::Language;
use language::LanguageGuesser;
use phrases::PhraseIndex;
use scan::{ByteClasses, Evidence, Lookups};
pub use signals::{Signal, SIGNAL_COUNT};
pub use words::PromptKind;
use words::{WordTable, KINDS};

/// Points a phrase added in the config earns: a deliberate operator cue
/// weighs more than a built-in generic one.
const CUSTOM_PHRASE_POINTS: f64 = 1.5;

/// The `classifier` section of the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifierSettings {
    /// Start from the learned weights, bias and word table (default), or
    /// from the hand-set priors without word weights.
    #[serde(default = "learned_by_default")]
    pub learned: bool,
    /// Logit when no signal fires.
    pub bias: Option<f64>,
    /// Weight per signal name, replacing the default.
    #[serde(default)]
    pub weights: BTreeMap<String, f64>,
    /// Extra cue phrases per signal name.
    #[serde(default)]
    pub phrases: BTreeMap<String, Vec<String>>,
}

impl Default for ClassifierSettings {
    fn default() -> Self {
        ClassifierSettings {
            learned: true,
            bias: None,
            weights: BTreeMap::new(),
            phrases: BTreeMap::new(),
        }
    }
}

fn learned_by_default() -> bool {
    true
}

#[derive(Debug, Clone)]
pub struct Classifier {
    phrases: PhraseIndex,
    /// The scanner's byte classes, with `phrases`' symbol starts.
    classes: ByteClasses,
    words: WordTable,
    languages: LanguageGuesser,
    weights: [f64; SIGNAL_COUNT],
    /// Learned, per kind of prompt: added to each signal's weight.
    kind_adjustments: [[f64; SIGNAL_COUNT]; KINDS],
    /// Learned, per kind: keeps the kind's average logit where `weights` put it.
    kind_offsets: [f64; KINDS],
    bias: f64,
}

/// What the classifier computes from a prompt before weighting: the input of
/// learning (see `signalbox-eval train`).
#[derive(Debug, Clone)]
pub struct Features {
    /// Strength of each signal, by signal index.
    pub strengths: [f64; SIGNAL_COUNT],
    /// The bucket of every word n-gram scanned.
    pub word_buckets: Vec<u16>,
    /// Which kind's word weights apply.
    pub kind: PromptKind,
    pub language: Language,
}

/// The outcome of classifying one prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct Classification {
    pub score: f64,
    /// Logit contribution of each signal (weight × strength), by signal index.
    pub contributions: [f64; SIGNAL_COUNT],
    /// Estimated tokens of the last user message.
    pub prompt_tokens: u32,
    /// The guessed language of the last user message.
    pub language: Language,
    /// The kind of prompt whose learned weights applied.
    pub kind: PromptKind,
}

impl Classifier {
    /// Validates the settings (path prefix `classifier`) and compiles the
    /// cue matcher.
    pub fn compile(settings: &ClassifierSettings) -> Result<Classifier, ConfigError> {
        let (default_bias, words) = if settings.learned {
            let table = WordTable::from_quantized(&learned::WORD_WEIGHTS, learned::WORD_SCALE, learned::WORD_PER_KIND);
            (learned::BIAS, table)
        } else {
            (signals::PRIOR_BIAS, WordTable::default())
        };
        let bias = settings.bias.unwrap_or(default_bias);
        if !bias.is_finite() || bias.abs() > 20.0 {
            return Err(ConfigError::new(
                "classifier.bias",
                "must be a finite number between -20 and 20",
            ));
        }
        let mut weights = Signal::ALL.map(Signal::prior_weight);
        let mut kind_adjustments = [[0.0; SIGNAL_COUNT]; KINDS];
        let mut kind_offsets = [0.0; KINDS];
        if settings.learned {
            for (name, weight) in learned::WEIGHTS {
                if let Some(signal) = Signal::from_name(name) {
                    weights[signal.index()] = *weight;
                }
            }
            for (name, per_kind) in learned::KIND_ADJUSTMENTS {
                if let Some(signal) = Signal::from_name(name) {
                    for (adjustments, value) in kind_adjustments.iter_mut().zip(per_kind) {
                        adjustments[signal.index()] = *value;
                    }
                }
            }
            kind_offsets = learned::KIND_OFFSETS;
        }
        for (name, weight) in &settings.weights {
            let path = format!("classifier.weights.{name}");
            let signal = signal_named(name, &path)?;
            if !weight.is_finite() || weight.abs() > 20.0 {
                return Err(ConfigError::new(path, "must be a finite number between -20 and 20"));
            }
            weights[signal.index()] = *weight;
        }
        let mut credits: Vec<(Signal, f64, &str)> = Vec::new();
        for group in lexicon::LEXICON {
            credits.extend(group.phrases.iter().map(|phrase| (group.signal, group.points, *phrase)));
        }
        for (name, phrases) in &settings.phrases {
            let path = format!("classifier.phrases.{name}");
            let signal = signal_named(name, &path)?;
            for (position, phrase) in phrases.iter().enumerate() {
                if phrase.trim_end_matches('*').trim().is_empty() || phrase.len() > 200 {
                    return Err(ConfigError::new(
                        format!("{path}[{position}]"),
                        "must be 1 to 200 characters",
                    ));
                }
                credits.push((signal, CUSTOM_PHRASE_POINTS, phrase.as_str()));
            }
        }
        let phrases = PhraseIndex::build(credits, lexicon::NUMBER_WORDS)
            .map_err(|message| ConfigError::new("classifier.phrases", message))?;
        Ok(Classifier {
            classes: ByteClasses::new(&phrases),
            phrases,
            words,
            languages: LanguageGuesser::default(),
            weights,
            kind_adjustments,
            kind_offsets,
            bias,
        })
    }

    /// The evidence of one scan of the prompt; n-gram buckets are kept
    /// only when `keep_buckets` (learning needs them, routing does not).
    fn evidence(&self, prompt: &PromptView<'_>, keep_buckets: bool) -> Evidence {
        let mut evidence = Evidence {
            context_tokens: prompt.context_tokens,
            user_turns: prompt.user_turns,
            has_tools: prompt.has_tools,
            tool_results: prompt.tool_results,
            response_format: match prompt.response_format {
                ResponseFormatKind::None | ResponseFormatKind::Text => 0.0,
                ResponseFormatKind::JsonObject => 1.5,
                ResponseFormatKind::JsonSchema => 3.0,
            },
            ..Evidence::default()
        };
        evidence.words.buckets = keep_buckets.then(Vec::new);
        let parts = &prompt.last_user_parts;
        let lookups = Lookups {
            index: &self.phrases,
            classes: &self.classes,
            words: &self.words,
            languages: &self.languages,
        };
        scan::scan(lookups, parts, &mut evidence);
        evidence.language = self.languages.decide(parts, &evidence.latin_votes);
        evidence
    }

    /// Signal strengths and n-gram buckets of a prompt, unweighted.
    pub fn features(&self, prompt: &PromptView<'_>) -> Features {
        let mut evidence = self.evidence(prompt, true);
        let (strengths, kind) = signals::strengths(&evidence, &self.words);
        Features {
            kind,
            strengths,
            word_buckets: evidence.words.buckets.take().unwrap_or_default(),
            language: evidence.language,
        }
    }

    pub fn classify(&self, prompt: &PromptView<'_>) -> Classification {
        let evidence = self.evidence(prompt, false);
        let (strengths, kind) = signals::strengths(&evidence, &self.words);
        let adjustments = self.kind_adjustments.get(kind.index()).copied().unwrap_or_default();
        let mut contributions = [0.0; SIGNAL_COUNT];
        for signal in Signal::ALL {
            let weight = self.weights[signal.index()] + adjustments[signal.index()];
            contributions[signal.index()] = weight * strengths[signal.index()];
        }
        // The kind's offset is part of what was learned from words and
        // adjustments, so it is shown with `words` (and applies with them).
        if signals::words_apply(&evidence) {
            contributions[Signal::Words.index()] += self.kind_offsets.get(kind.index()).copied().unwrap_or_default();
        }
        let logit = self.bias + contributions.iter().sum::<f64>();
        Classification {
            score: 1.0 / (1.0 + (-logit).exp()),
            contributions,
            prompt_tokens: evidence.prompt_tokens,
            language: evidence.language,
            kind,
        }
    }
}

fn signal_named(name: &str, path: &str) -> Result<Signal, ConfigError> {
    Signal::from_name(name).ok_or_else(|| {
        let known: Vec<_> = Signal::ALL.iter().map(|signal| signal.name()).collect();
        ConfigError::new(
            path,
            format!("unknown signal `{name}`; known signals: {}", known.join(", ")),
        )
    })
}

impl Classification {
    /// Signals that moved the score, strongest first.
    pub fn fired(&self) -> Vec<(Signal, f64)> {
        let mut fired: Vec<(Signal, f64)> = Signal::ALL
            .into_iter()
            .map(|signal| (signal, self.contributions[signal.index()]))
            .filter(|(_, contribution)| contribution.abs() >= 0.005)
            .collect();
        fired.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
        fired
    }

    /// `code=+2.10,length=+0.35,simple=-0.40`: the explain header value.
    pub fn explain(&self) -> String {
        let mut text = String::new();
        for (signal, contribution) in self.fired() {
            if !text.is_empty() {
                text.push(',');
            }
            let _ = write!(text, "{}={:+.2}", signal.name(), contribution);
        }
        if text.is_empty() {
            text.push_str("none");
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classifier() -> Classifier {
        Classifier::compile(&ClassifierSettings::default()).unwrap()
    }

    fn prompt(text: &str) -> PromptView<'_> {
        PromptView {
            last_user_parts: vec![text],
            user_turns: 1,
            ..PromptView::default()
        }
    }

    fn score(text: &str) -> f64 {
        classifier().classify(&prompt(text)).score
    }

    #[test]
    fn a_greeting_scores_lower_than_a_plain_question() {
        assert!(score("hi there, thanks!") < score("Tell me about the history of the printing press."));
    }

    #[test]
    fn code_math_and_reasoning_prompts_score_high() {
        let code = "Write a function in Python that merges two sorted linked lists and explain its time complexity.";
        let math = "A train leaves at 3 pm travelling 60 miles per hour; a second train leaves at 4 pm at 80 miles per hour. How many hours until the second catches up?";
        let proof = "Prove that the square root of 2 is irrational. Show your reasoning step by step.";
        let lookup = score("What is the capital of France?");
        for text in [code, math, proof] {
            assert!(score(text) > 0.5, "{text}: {}", score(text));
            assert!(score(text) > lookup + 0.3, "{text}: {}", score(text));
        }
    }

    #[test]
    fn tools_and_json_schema_raise_the_score() {
        let classifier = classifier();
        let plain = classifier.classify(&prompt("Look up the weather in Paris."));
        let with_tools = classifier.classify(&PromptView {
            has_tools: true,
            ..prompt("Look up the weather in Paris.")
        });
        let with_schema = classifier.classify(&PromptView {
            response_format: ResponseFormatKind::JsonSchema,
            ..prompt("Look up the weather in Paris.")
        });
        assert!(with_tools.score > plain.score);
        assert!(with_schema.score > plain.score);
    }

    #[test]
    fn a_long_conversation_raises_the_score() {
        let classifier = classifier();
        let first = classifier.classify(&prompt("and what about the second option?"));
        let later = classifier.classify(&PromptView {
            user_turns: 8,
            context_tokens: 6000,
            ..prompt("and what about the second option?")
        });
        assert!(later.score > first.score);
        assert!(later.contributions[Signal::Conversation.index()] > 0.0);
    }

    #[test]
    fn the_explanation_lists_fired_signals_strongest_first() {
        let result = classifier().classify(&prompt("Write a function in Rust that parses JSON."));
        let explanation = result.explain();
        assert!(explanation.starts_with("code=+"), "{explanation}");
        let empty = classifier().classify(&prompt(""));
        assert_eq!(empty.explain(), "none");
    }

    #[test]
    fn weights_and_phrases_are_configurable() {
        let settings = ClassifierSettings {
            bias: Some(-1.0),
            weights: BTreeMap::from([("code".to_string(), 0.0)]),
            phrases: BTreeMap::from([("expertise".to_string(), vec!["kubernetes operator".to_string()])]),
            ..Default::default()
        };
        let classifier = Classifier::compile(&settings).unwrap();
        let result = classifier.classify(&prompt("write a kubernetes operator"));
        assert_eq!(result.contributions[Signal::Code.index()], 0.0);
        assert!(result.contributions[Signal::Expertise.index()] > 0.0);
    }

    #[test]
    fn bad_settings_name_the_field() {
        let unknown = ClassifierSettings {
            weights: BTreeMap::from([("vibes".to_string(), 1.0)]),
            ..Default::default()
        };
        let err = Classifier::compile(&unknown).unwrap_err();
        assert_eq!(err.path, "classifier.weights.vibes");
        let infinite = ClassifierSettings {
            weights: BTreeMap::from([("code".to_string(), f64::NAN)]),
            ..Default::default()
        };
        assert_eq!(
            Classifier::compile(&infinite).unwrap_err().path,
            "classifier.weights.code"
        );
        let empty = ClassifierSettings {
            phrases: BTreeMap::from([("code".to_string(), vec!["*".to_string()])]),
            ..Default::default()
        };
        assert_eq!(
            Classifier::compile(&empty).unwrap_err().path,
            "classifier.phrases.code[0]"
        );
    }

    #[test]
    fn a_math_word_problem_with_many_steps_scores_higher() {
        let few = "Tom has 4 apples and eats 1. How many apples are left?";
        let many = "Tom buys 3 boxes of 12 apples at $4 each, sells half of the apples for $1 each, \
                    gives 5 to a friend and eats 2 every day for 3 days. How much money did he make, \
                    and how many apples are left?";
        assert!(score(many) > score(few), "{} <= {}", score(many), score(few));
        let result = classifier().classify(&prompt(many));
        assert_eq!(result.kind, PromptKind::Math);
        assert!(result.contributions[Signal::Quantities.index()] > 0.0);
        assert!(result.contributions[Signal::Operations.index()] > 0.0);
    }

    #[test]
    fn within_kind_signals_only_count_in_their_kind() {
        let question =
            "Which of the following is NOT a tort?\nA. Negligence\nB. Battery\nC. Breach of contract\nD. Trespass";
        let choice = classifier().classify(&prompt(question));
        assert_eq!(choice.kind, PromptKind::Choice);
        assert!(choice.contributions[Signal::QuestionShape.index()] > 0.0);
        assert!(choice.contributions[Signal::Subject.index()] > 0.0);
        let chat = classifier().classify(&prompt("Is a breach of contract not a tort? Explain the court's view."));
        assert_eq!(chat.kind, PromptKind::Chat);
        assert_eq!(chat.contributions[Signal::QuestionShape.index()], 0.0);
        assert_eq!(chat.contributions[Signal::Subject.index()], 0.0);
        assert_eq!(chat.contributions[Signal::Quantities.index()], 0.0);
    }

    #[test]
    fn a_question_whose_options_are_whole_statements_scores_higher_and_says_why() {
        let recall = "Which planet is closest to the Sun?\nA. Mercury\nB. Venus\nC. Earth\nD. Mars";
        let statements = "Which planet is closest to the Sun?\n\
                          A. Mercury, because its orbit is the smallest of the eight planets\n\
                          B. Venus, because it is the hottest planet and so must be nearest\n\
                          C. Earth, because it receives the most light of any planet\n\
                          D. Mars, because its red colour comes from the heat of the Sun";
        let result = classifier().classify(&prompt(statements));
        assert_eq!(result.kind, PromptKind::Choice);
        assert!(
            score(statements) > score(recall),
            "{} <= {}",
            score(statements),
            score(recall)
        );
        assert!(result.explain().contains("option_length=+"), "{}", result.explain());
    }

    #[test]
    fn an_agent_loop_of_tool_results_raises_the_score() {
        let classifier = classifier();
        let first = classifier.classify(&prompt("Find the cheapest flight to Lisbon."));
        let looping = classifier.classify(&PromptView {
            tool_results: 6,
            ..prompt("Find the cheapest flight to Lisbon.")
        });
        assert!(looping.score > first.score);
        assert!(looping.contributions[Signal::ToolLoop.index()] > 0.0);
    }

    #[test]
    fn a_prompt_in_another_language_gets_what_english_cues_would_add_and_no_english_words() {
        let classifier = classifier();
        let german = classifier.classify(&prompt(
            "Kannst du mir bitte erklären, wie die Steuer in Deutschland funktioniert?",
        ));
        assert_eq!(german.language, Language::German);
        assert!(german.contributions[Signal::Language.index()] > 0.0);
        assert_eq!(german.contributions[Signal::Words.index()], 0.0);
        let english = classifier.classify(&prompt("Can you please explain how taxes work in Germany?"));
        assert_eq!(english.language, Language::English);
        assert_eq!(english.contributions[Signal::Language.index()], 0.0);
        // The same hard request scores alike whatever the language.
        let hard_en = score("Write a Python function that parses a CSV file and explain its time complexity.");
        let hard_de = score("Schreibe eine Python-Funktion, die eine CSV-Datei einliest, und erkläre die Laufzeit.");
        assert!((hard_en - hard_de).abs() < 0.3, "{hard_en} vs {hard_de}");
    }

    #[test]
    fn without_learning_the_classifier_uses_its_priors_and_no_word_weights() {
        let settings = ClassifierSettings {
            learned: false,
            ..Default::default()
        };
        let prior = Classifier::compile(&settings).unwrap();
        let view = prompt("Sam sells 4 boxes of 12 pens at $3 each. How much does he earn?");
        let result = prior.classify(&view);
        let strengths = prior.features(&view).strengths;
        assert_eq!(result.contributions[Signal::Words.index()], 0.0);
        for signal in [Signal::Math, Signal::Quantities, Signal::Operations] {
            let expected = signal.prior_weight() * strengths[signal.index()];
            assert!(
                (result.contributions[signal.index()] - expected).abs() < 1e-12,
                "{}",
                signal.name()
            );
        }
    }

    #[test]
    fn any_text_classifies_without_panicking() {
        let classifier = classifier();
        let texts = [
            String::new(),
            "\u{0}\u{ffff}".repeat(100),
            "é".repeat(5000),
            "A.\nB.\nC.".repeat(3000),
            "🙂 ".repeat(20_000),
            "1".repeat(100_000),
        ];
        for text in &texts {
            let result = classifier.classify(&prompt(text));
            assert!(result.score.is_finite() && result.score > 0.0 && result.score < 1.0);
        }
    }

    #[test]
    fn scores_stay_inside_the_unit_interval() {
        let classifier = classifier();
        let huge = "prove integral ```code``` analyze step by step ".repeat(2000);
        let result = classifier.classify(&prompt(&huge));
        assert!(result.score > 0.0 && result.score < 1.0);
    }
}
