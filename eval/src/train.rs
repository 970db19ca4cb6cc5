//! Learning the classifier's weights from labelled prompts.
//!
//! What matters for routing is the order of prompts *within* one kind of
//! traffic (RouteLLM's benchmarks are each one kind), and the labels of
//! different sources are not on one scale (a judge's preference, a
//! solution's step count, a baseline solver's failure). So learning is
//! pairwise and only inside a source: for two prompts of one source, the one
//! whose strong-minus-weak gain is larger should score higher (a logistic
//! loss on the score difference, weighted by the gain difference).
//!
//! What is learned is per kind of prompt ([`PromptKind`]: chat, math, code,
//! multiple choice): an adjustment to each signal's hand-set weight, a word
//! n-gram table and a per-word weight. The hand-set weights themselves stay:
//! they separate kinds, which pairs inside one source cannot teach. Each
//! kind then gets an offset that keeps its training prompts' average logit
//! where the hand-set weights put it, so learning reorders prompts within a
//! kind without moving kinds against each other (tier thresholds keep their
//! meaning). The `language` weight is what the English cue signals add on
//! average to an English chat prompt.

use signalbox::classify::signals::{PRIOR_BIAS, WORDS_LIMIT};
use signalbox::classify::words::{BUCKETS, KINDS, TABLE_LEN};
use signalbox::classify::{Classifier, ClassifierSettings, Language, PromptKind, Signal, SIGNAL_COUNT};

use crate::apgr::{Curve, Outcome};
use crate::data::Labelled;
use crate::random::Random;

/// Signals whose weight gets per-kind adjustments: `words` has its own
/// table and `language` is set from the cue signals (see the module comment).
fn is_adjusted(signal: Signal) -> bool {
    !matches!(signal, Signal::Words | Signal::Language)
}

/// Training prompts a kind needs for anything learned about it to ship.
const MIN_KIND_EXAMPLES: usize = 300;

/// The per-word weights are learned in this unit: a long prompt has √n of
/// them, and steps of full size would overshoot.
const PER_WORD_UNIT: f64 = 0.05;

#[derive(Debug, Clone)]
pub struct Options {
    pub epochs: usize,
    /// Pairs drawn from each source per epoch, so a large source does not
    /// drown a small one.
    pub pairs_per_source: usize,
    pub learning_rate: f64,
    /// Pull of the per-kind signal adjustments (and per-word weights) to zero.
    pub adjust_l2: f64,
    /// Pull of the word n-gram weights to zero.
    pub word_l2: f64,
    /// Kinds that learn (adjustments, vocabulary, per-word weight). Not chat
    /// by default: its labels are a judge's preferences (with known style
    /// and length biases). A chat vocabulary learned from them demotes
    /// analytic and technical requests (a multi-step trade-off analysis
    /// falls from `complex` to `standard`) for no measurable gain on
    /// Arena-Bench's correctness ratings (docs/routing.md). Chat data still
    /// sets the `language` weight.
    pub learning_kinds: Vec<PromptKind>,
    pub seed: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            epochs: 12,
            pairs_per_source: 40_000,
            learning_rate: 0.05,
            adjust_l2: 1.0,
            word_l2: 0.02,
            learning_kinds: vec![PromptKind::Math, PromptKind::Choice],
            seed: 0x5eed,
        }
    }
}

/// One prompt as learning sees it.
struct Example {
    kind: usize,
    strengths: [f64; SIGNAL_COUNT],
    /// (index in the word table: the kind's region and the bucket, or the
    /// kind's per-word weight after the table; value).
    words: Vec<(usize, f64)>,
    gain: f64,
    /// Estimated tokens of the whole prompt: what the `length` router ranks by.
    tokens: f64,
    english_chat: bool,
}

/// Everything `learned.rs` ships.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub bias: f64,
    pub weights: [f64; SIGNAL_COUNT],
    /// Per kind, what is added to each signal's weight.
    pub adjustments: [[f64; SIGNAL_COUNT]; KINDS],
    /// Per kind, the logit that keeps its average where the priors put it.
    pub offsets: [f64; KINDS],
    /// Word n-gram weights (TABLE_LEN), then each kind's per-word weight
    /// (KINDS, in PER_WORD_UNIT).
    pub words: Vec<f64>,
}

impl Model {
    fn priors() -> Model {
        Model {
            bias: PRIOR_BIAS,
            weights: Signal::ALL.map(Signal::prior_weight),
            adjustments: [[0.0; SIGNAL_COUNT]; KINDS],
            offsets: [0.0; KINDS],
            words: vec![0.0; TABLE_LEN + KINDS],
        }
    }

    /// What learning adds to the priors' logit for this prompt.
    fn learned_part(&self, example: &Example) -> f64 {
        let adjustments = &self.adjustments[example.kind];
        let signals: f64 = Signal::ALL
            .iter()
            .filter(|signal| is_adjusted(**signal))
            .map(|signal| adjustments[signal.index()] * example.strengths[signal.index()])
            .sum();
        let words: f64 = example
            .words
            .iter()
            .map(|&(index, value)| self.words[index] * value)
            .sum();
        signals + words.clamp(-WORDS_LIMIT, WORDS_LIMIT)
    }

    /// Logit without the bias.
    fn margin(&self, example: &Example) -> f64 {
        let signals: f64 = Signal::ALL
            .iter()
            .filter(|signal| is_adjusted(**signal))
            .map(|signal| self.weights[signal.index()] * example.strengths[signal.index()])
            .sum();
        signals + self.learned_part(example) + self.offsets[example.kind]
    }
}

/// Prompts as (source, example); features come from the classifier itself.
fn examples(items: &[Labelled]) -> Vec<(String, Example)> {
    let classifier = Classifier::compile(&ClassifierSettings {
        learned: false,
        ..ClassifierSettings::default()
    })
    .expect("the built-in classifier compiles");
    items
        .iter()
        .filter_map(|item| {
            let (features, tokens) = item
                .request
                .view(|view| (classifier.features(view), crate::scorer::prompt_length(view)))?;
            let kind = features.kind.index();
            let mut counts = std::collections::BTreeMap::<usize, f64>::new();
            for bucket in &features.word_buckets {
                *counts.entry(kind * BUCKETS + usize::from(*bucket)).or_default() += 1.0;
            }
            if !features.word_buckets.is_empty() {
                // Every word adds the kind's per-word weight.
                let words = features.word_buckets.len() as f64;
                counts.insert(TABLE_LEN + kind, words * PER_WORD_UNIT);
            }
            let norm = (features.word_buckets.len().max(1) as f64).sqrt();
            let example = Example {
                kind,
                strengths: features.strengths,
                words: counts.into_iter().map(|(index, count)| (index, count / norm)).collect(),
                gain: item.strong - item.weak,
                tokens,
                english_chat: item.kind == "chat" && features.language == Language::English,
            };
            Some((item.source.clone(), example))
        })
        .collect()
}

fn sources_of(all: &[(String, Example)]) -> Vec<String> {
    let mut sources: Vec<String> = all.iter().map(|(source, _)| source.clone()).collect();
    sources.sort();
    sources.dedup();
    sources
}

/// Learns a model from labelled prompts (`dev` prompts, if any, decide
/// how much of each kind's word weights ships); prints progress to stderr.
pub fn train(items: &[Labelled], dev: &[Labelled], options: &Options) -> Model {
    let all = examples(items);
    let groups: Vec<Vec<&Example>> = sources_of(&all)
        .iter()
        .map(|name| {
            all.iter()
                .filter(|(source, _)| source == name)
                .map(|(_, example)| example)
                .collect()
        })
        .collect();
    let mut model = Model::priors();
    let mut random = Random(options.seed | 1);
    for epoch in 0..options.epochs {
        let rate = options.learning_rate / (1.0 + epoch as f64);
        for group in &groups {
            let typical_gap = mean_gain_gap(group, &mut random);
            if typical_gap > 0.0 {
                for _ in 0..options.pairs_per_source {
                    let pair = (group[random.below(group.len())], group[random.below(group.len())]);
                    learn_from_pair(&mut model, pair, typical_gap, rate, options);
                }
            }
        }
        eprintln!("epoch {}: {}", epoch + 1, describe(&model));
    }
    forget_unseen_kinds(&mut model, &all);
    center_kinds(&mut model, &all);
    if !dev.is_empty() {
        scale_words_by_dev(&mut model, dev, &all);
    }
    if let Some(average) = english_cue_average(&model, &all) {
        model.weights[Signal::Language.index()] = average;
    }
    model
}

/// One step of pairwise logistic regression on two prompts of one source.
fn learn_from_pair(
    model: &mut Model,
    (first, second): (&Example, &Example),
    typical_gap: f64,
    rate: f64,
    options: &Options,
) {
    let gap = first.gain - second.gain;
    if gap.abs() < 1e-9 {
        return;
    }
    let (higher, lower) = if gap > 0.0 { (first, second) } else { (second, first) };
    let difference = model.margin(higher) - model.margin(lower);
    // d(loss)/d(difference) for loss = ln(1 + e^-difference), weighted.
    let step = rate * (gap.abs() / typical_gap) * -sigmoid(-difference);
    let adjust_decay = (1.0 - rate * options.adjust_l2).max(0.0);
    let word_decay = (1.0 - rate * options.word_l2).max(0.0);
    let learns = |example: &Example| options.learning_kinds.iter().any(|kind| kind.index() == example.kind);
    for (example, sign) in [(higher, 1.0), (lower, -1.0)] {
        if !learns(example) {
            continue;
        }
        let adjustments = &mut model.adjustments[example.kind];
        for signal in Signal::ALL.into_iter().filter(|signal| is_adjusted(*signal)) {
            let index = signal.index();
            adjustments[index] =
                ((adjustments[index] - sign * step * example.strengths[index]) * adjust_decay).clamp(-10.0, 10.0);
        }
        for &(index, value) in &example.words {
            // A kind's per-word weight is one number, not a vocabulary.
            let decay = if index >= TABLE_LEN { adjust_decay } else { word_decay };
            let weight = &mut model.words[index];
            *weight = (*weight - sign * step * value) * decay;
        }
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Mean |gain difference| of random pairs: the unit pair weights are in.
fn mean_gain_gap(group: &[&Example], random: &mut Random) -> f64 {
    let samples = 2000;
    (0..samples)
        .map(|_| (group[random.below(group.len())].gain - group[random.below(group.len())].gain).abs())
        .sum::<f64>()
        / f64::from(samples)
}

/// Anything learned about a kind with fewer than [`MIN_KIND_EXAMPLES`]
/// training prompts is noise from strays (a coding question in the chat
/// set): it is not shipped.
fn forget_unseen_kinds(model: &mut Model, all: &[(String, Example)]) {
    for kind in 0..KINDS {
        let seen = all.iter().filter(|(_, example)| example.kind == kind).count();
        if seen < MIN_KIND_EXAMPLES {
            eprintln!("kind {kind}: {seen} training prompts, too few: nothing learned ships");
            model.adjustments[kind] = [0.0; SIGNAL_COUNT];
            model.words[kind * BUCKETS..(kind + 1) * BUCKETS].fill(0.0);
            model.words[TABLE_LEN + kind] = 0.0;
        }
    }
}

/// Sets each kind's offset so learning leaves its average logit unchanged.
fn center_kinds(model: &mut Model, all: &[(String, Example)]) {
    for kind in 0..KINDS {
        let of_kind: Vec<&Example> = all
            .iter()
            .map(|(_, example)| example)
            .filter(|example| example.kind == kind)
            .collect();
        model.offsets[kind] = if of_kind.is_empty() {
            0.0
        } else {
            -of_kind.iter().map(|example| model.learned_part(example)).sum::<f64>() / of_kind.len() as f64
        };
    }
}

/// APGR of one source's prompts by three routers.
#[derive(Debug, Clone)]
pub struct Validation {
    pub source: String,
    /// The hand-set weights alone.
    pub prior: f64,
    pub learned: f64,
    /// Prompt length alone: the baseline to beat.
    pub length: f64,
}

/// APGR of the priors, of `model` and of prompt length on `items`, per source, from the
/// same features learning uses: a quick check without rebuilding the
/// classifier.
pub fn validate(model: &Model, items: &[Labelled]) -> Vec<Validation> {
    let priors = Model::priors();
    let all = examples(items);
    sources_of(&all)
        .into_iter()
        .filter_map(|source| {
            Some(Validation {
                prior: source_apgr(&priors, &all, &source)?,
                learned: source_apgr(model, &all, &source)?,
                length: length_apgr(&all, &source)?,
                source,
            })
        })
        .collect()
}

/// APGR of `model`'s margins on the examples of one source.
fn source_apgr(model: &Model, all: &[(String, Example)], source: &str) -> Option<f64> {
    let outcomes: Vec<Outcome> = all
        .iter()
        .filter(|(name, _)| name == source)
        .map(|(_, example)| Outcome {
            score: model.margin(example),
            weak: 0.0,
            strong: example.gain,
        })
        .collect();
    Curve::of(&outcomes).map(|curve| curve.apgr())
}

/// APGR of the `length` router (estimated prompt tokens) on one source.
fn length_apgr(all: &[(String, Example)], source: &str) -> Option<f64> {
    let outcomes: Vec<Outcome> = all
        .iter()
        .filter(|(name, _)| name == source)
        .map(|(_, example)| Outcome {
            score: example.tokens,
            weak: 0.0,
            strong: example.gain,
        })
        .collect();
    Curve::of(&outcomes).map(|curve| curve.apgr())
}

/// The fractions of its learned size a kind's word-bucket weights may ship
/// at; held-apart prompts choose one.
const WORD_SCALES: [f64; 6] = [1.0, 0.8, 0.6, 0.4, 0.2, 0.0];

/// The sources of `all` whose prompts are mostly of `kind`.
fn sources_of_kind(all: &[(String, Example)], kind: usize) -> Vec<String> {
    sources_of(all)
        .into_iter()
        .filter(|source| {
            let of_source = all.iter().filter(|(name, _)| name == source);
            let (mut total, mut of_kind) = (0usize, 0usize);
            for (_, example) in of_source {
                total += 1;
                of_kind += usize::from(example.kind == kind);
            }
            2 * of_kind > total
        })
        .collect()
}

/// Scales each kind's word-bucket weights by what held-apart `dev` prompts
/// support: a vocabulary learned from a few thousand questions can memorise
/// them rather than generalise, and one learned from sources that
/// disagree (ARC's, MMLU's and MMLU-Pro's questions are one kind) can help
/// one and add noise to another. The scale kept is the one whose worst dev source of
/// that kind beats prompt length by the most (on a tie, the larger scale);
/// a kind without dev prompts keeps its words whole.
fn scale_words_by_dev(model: &mut Model, dev: &[Labelled], all: &[(String, Example)]) {
    let dev = examples(dev);
    for kind in 0..KINDS {
        let region = kind * BUCKETS..(kind + 1) * BUCKETS;
        if model.words[region.clone()].iter().all(|weight| *weight == 0.0) {
            continue;
        }
        let sources = sources_of_kind(&dev, kind);
        let baselines: Vec<(&String, f64)> = sources
            .iter()
            .filter_map(|source| Some((source, length_apgr(&dev, source)?)))
            .collect();
        if baselines.is_empty() {
            continue;
        }
        let learned = model.clone();
        let mut best: Option<(f64, Model, String)> = None;
        for scale in WORD_SCALES {
            let mut candidate = learned.clone();
            candidate.words[region.clone()]
                .iter_mut()
                .for_each(|weight| *weight *= scale);
            center_kinds(&mut candidate, all);
            let margins: Vec<(&String, f64)> = baselines
                .iter()
                .filter_map(|(source, length)| Some((*source, source_apgr(&candidate, &dev, source)? - length)))
                .collect();
            let worst = margins.iter().map(|(_, margin)| *margin).fold(f64::INFINITY, f64::min);
            let detail: Vec<String> = margins
                .iter()
                .map(|(source, margin)| format!("{source} {margin:+.3}"))
                .collect();
            let line = format!("scale {scale}: dev APGR minus length: {}", detail.join(", "));
            eprintln!("kind {kind}: {line}");
            if best.as_ref().is_none_or(|(best_worst, _, _)| worst > *best_worst) {
                best = Some((worst, candidate, line));
            }
        }
        if let Some((_, chosen, line)) = best {
            eprintln!("kind {kind}: word weights kept at {line}");
            *model = chosen;
        }
    }
}

/// What the English cue signals add to an English chat prompt on average.
fn english_cue_average(model: &Model, all: &[(String, Example)]) -> Option<f64> {
    let chats: Vec<&Example> = all
        .iter()
        .map(|(_, example)| example)
        .filter(|example| example.english_chat)
        .collect();
    if chats.is_empty() {
        return None;
    }
    let total: f64 = chats
        .iter()
        .map(|example| {
            Signal::ALL
                .iter()
                .filter(|signal| signal.needs_english_cues())
                .map(|signal| {
                    let weight = model.weights[signal.index()] + model.adjustments[example.kind][signal.index()];
                    weight * example.strengths[signal.index()]
                })
                .sum::<f64>()
        })
        .sum();
    Some(total / chats.len() as f64)
}

/// The largest per-kind adjustments, for the progress line.
fn describe(model: &Model) -> String {
    let mut parts = Vec::new();
    for (kind, adjustments) in model.adjustments.iter().enumerate() {
        let mut strongest: Vec<(Signal, f64)> = Signal::ALL
            .iter()
            .map(|signal| (*signal, adjustments[signal.index()]))
            .collect();
        strongest.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
        let top: Vec<String> = strongest
            .iter()
            .take(3)
            .map(|(signal, value)| format!("{}{value:+.2}", signal.name()))
            .collect();
        parts.push(format!("kind {kind}: {}", top.join(" ")));
    }
    parts.join(" | ")
}

/// The `src/classify/learned.rs` that ships `model`.
pub fn rust_source(model: &Model, trained_on: &[String]) -> String {
    let (buckets, per_word) = model.words.split_at(TABLE_LEN);
    let largest = buckets.iter().fold(0.0f64, |largest, weight| largest.max(weight.abs()));
    let scale = if largest > 0.0 { largest / 127.0 } else { 0.0 };
    let quantized: Vec<String> = buckets
        .iter()
        .map(|weight| {
            if scale > 0.0 {
                (weight / scale).round().clamp(-127.0, 127.0) as i8
            } else {
                0
            }
        })
        .map(|value| value.to_string())
        .collect();
    let per_kind = |values: &[f64], unit: f64| {
        values
            .iter()
            .map(|value| format!("{:.4}", value * unit))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = String::new();
    out.push_str("//! Learned classifier weights, generated by `signalbox-eval train` from the\n");
    out.push_str("//! labelled prompts `tools/routing-data/build.py` builds (see `docs/routing.md`).\n");
    out.push_str("//! Do not edit by hand: retrain, and commit what the trainer writes.\n//!\n");
    out.push_str("//! Trained on:");
    for file in trained_on {
        out.push_str(&format!(" `{file}`"));
    }
    out.push_str(".\n\n/// Logit when no signal fires.\n");
    out.push_str(&format!("pub const BIAS: f64 = {:.3};\n\n", model.bias));
    out.push_str(
        "/// Weight per signal name (the same for every kind of prompt).\npub const WEIGHTS: &[(&str, f64)] = &[\n",
    );
    for signal in Signal::ALL {
        out.push_str(&format!(
            "    (\"{}\", {:.3}),\n",
            signal.name(),
            model.weights[signal.index()]
        ));
    }
    out.push_str("];\n\n/// Per signal name, what is added to its weight in a prompt of each kind\n");
    out.push_str("/// (chat, math, code, multiple choice; see [`super::words::PromptKind`]).\n");
    out.push_str("pub const KIND_ADJUSTMENTS: &[(&str, [f64; super::words::KINDS])] = &[\n");
    for signal in Signal::ALL.into_iter().filter(|signal| is_adjusted(*signal)) {
        let values: Vec<f64> = model.adjustments.iter().map(|kind| kind[signal.index()]).collect();
        out.push_str(&format!("    (\"{}\", [{}]),\n", signal.name(), per_kind(&values, 1.0)));
    }
    out.push_str("];\n\n/// Per kind, the logit that keeps its average where the hand-set weights put it.\n");
    out.push_str(&format!(
        "pub const KIND_OFFSETS: [f64; super::words::KINDS] = [{}];\n\n",
        per_kind(&model.offsets, 1.0)
    ));
    out.push_str("/// What each word adds within each kind of prompt (see [`super::words`]).\n");
    out.push_str(&format!(
        "pub const WORD_PER_KIND: [f64; super::words::KINDS] = [{}];\n\n",
        per_kind(per_word, PER_WORD_UNIT)
    ));
    out.push_str("/// Logits per step of a quantized word n-gram weight.\n");
    out.push_str(&format!("pub const WORD_SCALE: f64 = {scale:.6e};\n\n"));
    out.push_str("/// Quantized weight of each word n-gram bucket (see [`super::words`]).\n");
    out.push_str("#[rustfmt::skip]\npub const WORD_WEIGHTS: [i8; super::words::TABLE_LEN] = [\n");
    for row in quantized.chunks(32) {
        out.push_str(&format!("    {},\n", row.join(", ")));
    }
    out.push_str("];\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Request;

    fn item(prompt: &str, weak: f64) -> Labelled {
        Labelled {
            request: Request::from_prompt(prompt),
            weak,
            strong: 1.0,
            kind: "math".into(),
            source: "test".into(),
        }
    }

    fn word_problems() -> Vec<Labelled> {
        // In this source, more quantities mean a harder problem.
        let mut items = Vec::new();
        for n in 0..160 {
            items.push(item(
                &format!("Sam has {n} apples. How many are left if he eats 2?"),
                1.0,
            ));
            items.push(item(
                &format!("Sam buys {n} boxes of 12 pens at $3 each, sells 5 for $4 and 7 for $6, then pays 15% tax. How much profit?"),
                0.0,
            ));
        }
        items
    }

    fn quick() -> Options {
        Options {
            epochs: 3,
            pairs_per_source: 3000,
            ..Options::default()
        }
    }

    #[test]
    fn learning_raises_what_separates_hard_from_easy_prompts_of_a_kind() {
        let items = word_problems();
        let model = train(&items, &[], &quick());
        let math = signalbox::classify::PromptKind::Math.index();
        assert!(
            model.adjustments[math][Signal::Quantities.index()] > 0.0,
            "{:?}",
            model.adjustments[math]
        );
        let check = validate(&model, &items).pop().unwrap();
        assert!(check.learned >= check.prior, "{check:?}");
        // The hand-set weights that separate kinds are not touched.
        assert_eq!(model.weights[Signal::Code.index()], Signal::Code.prior_weight());
    }

    #[test]
    fn dev_prompts_choose_one_of_the_word_scales_and_other_kinds_keep_theirs() {
        let items = word_problems();
        let whole = train(&items, &[], &quick());
        let math = signalbox::classify::PromptKind::Math.index();
        let region = math * BUCKETS..(math + 1) * BUCKETS;
        assert!(whole.words[region.clone()].iter().any(|weight| *weight != 0.0));
        // Dev prompts of another kind say nothing about math's words.
        let chat_dev = vec![Labelled {
            kind: "chat".into(),
            ..item("Tell me a story about a fox.", 0.0)
        }];
        assert_eq!(train(&items, &chat_dev, &quick()).words, whole.words);
        let scaled = train(&items, &items, &quick());
        let (index, largest) = whole.words[region]
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
            .unwrap();
        let scale = scaled.words[math * BUCKETS + index] / largest;
        assert!(
            WORD_SCALES.iter().any(|allowed| (allowed - scale).abs() < 1e-9),
            "{scale}"
        );
        let all = examples(&items);
        assert_eq!(sources_of_kind(&all, math), vec!["test".to_string()]);
        assert!(sources_of_kind(&all, signalbox::classify::PromptKind::Chat.index()).is_empty());
    }

    #[test]
    fn learning_leaves_a_kinds_average_logit_where_the_priors_put_it() {
        let items = word_problems();
        let model = train(&items, &[], &quick());
        let all = examples(&items);
        let mean = |model: &Model| all.iter().map(|(_, example)| model.margin(example)).sum::<f64>() / all.len() as f64;
        assert!((mean(&model) - mean(&Model::priors())).abs() < 1e-9);
    }

    #[test]
    fn the_generated_source_names_every_signal_and_every_bucket() {
        let mut model = Model::priors();
        model.words[7] = -0.5;
        model.words[8] = 0.25;
        let source = rust_source(&model, &["math.train.jsonl".to_string()]);
        for signal in Signal::ALL {
            assert!(source.contains(&format!("(\"{}\",", signal.name())));
        }
        assert!(source.contains("pub const WORD_SCALE") && source.contains("pub const KIND_OFFSETS"));
        let numbers = source.split("WORD_WEIGHTS").nth(1).unwrap();
        assert_eq!(numbers.matches(',').count(), TABLE_LEN);
        assert!(numbers.contains("-127"));
    }
}
