//! Learning the classifier's weights from labelled prompts.
//!
//! What matters for routing is the order of prompts *within* one kind of
//! traffic (RouteLLM's benchmarks are each one kind), and the labels of
//! different sources are not on one scale (a judge's preference, a
//! solution's step count, a baseline solver's failure). So learning is
//! pairwise and only inside a source: for two prompts of one source, the one
//! whose strong-minus-weak gain is larger should score higher (a logistic
//! loss on the score difference, weighted by the gain difference). Signal
//! weights are pulled toward their hand-set priors (L2), so kind signals
//! that never vary inside a source keep the weights that separate kinds;
//! word n-gram weights are pulled toward zero.
//!
//! Two numbers are not learned by pairs: the bias keeps the average logit of
//! the training prompts where the priors put it (tier thresholds keep their
//! meaning), and the `language` weight is what the English cue signals add
//! on average to an English chat prompt.

use signalbox::classify::words::{BUCKETS, KINDS, TABLE_LEN};
use signalbox::classify::{Classifier, ClassifierSettings, Language, Signal, SIGNAL_COUNT};

use crate::data::Labelled;

/// Signals whose weight pairs teach; `words` is scaled by its table and
/// `language` is set from the cue signals (see the module comment).
fn is_learned(signal: Signal) -> bool {
    !matches!(signal, Signal::Words | Signal::Language)
}

/// Signals that say what kind of prompt this is (the rest order prompts
/// within a kind).
fn is_kind(signal: Signal) -> bool {
    signal.index() <= Signal::Simple.index()
}

/// Training prompts a kind needs for its word weights to ship.
const MIN_KIND_EXAMPLES: usize = 300;

/// The per-word weights are learned in this unit: a long prompt has √n of
/// them, and steps of full size would overshoot.
const PER_WORD_UNIT: f64 = 0.05;

/// Signals that only English cue phrases raise.
const ENGLISH_CUE_SIGNALS: [Signal; 12] = [
    Signal::Code,
    Signal::Math,
    Signal::Reasoning,
    Signal::Analysis,
    Signal::MultiStep,
    Signal::Structured,
    Signal::Constraints,
    Signal::Expertise,
    Signal::Simple,
    Signal::Subject,
    Signal::QuestionShape,
    Signal::Deliverables,
];

#[derive(Debug, Clone)]
pub struct Options {
    pub epochs: usize,
    /// Pairs drawn from each source per epoch, so a large source does not
    /// drown a small one.
    pub pairs_per_source: usize,
    pub learning_rate: f64,
    /// Pull of kind signals (code, math, …) toward their priors: they
    /// separate kinds of prompt, which pairs inside one source cannot see.
    pub kind_l2: f64,
    /// Pull of within-kind signals toward their priors.
    pub within_l2: f64,
    pub word_l2: f64,
    pub seed: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            epochs: 12,
            pairs_per_source: 40_000,
            learning_rate: 0.05,
            kind_l2: 1.0,
            within_l2: 1.0,
            word_l2: 0.02,
            seed: 0x5eed,
        }
    }
}

/// One prompt as learning sees it.
struct Example {
    kind: usize,
    strengths: [f64; SIGNAL_COUNT],
    /// (index in the whole table: the kind's region and the bucket, count / √n-grams).
    words: Vec<(usize, f64)>,
    gain: f64,
    english_chat: bool,
}

/// Weights, bias and word table, as `learned.rs` ships them.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub bias: f64,
    pub weights: [f64; SIGNAL_COUNT],
    pub words: Vec<f64>,
}

impl Model {
    fn priors() -> Model {
        Model {
            bias: signalbox::classify::signals::PRIOR_BIAS,
            weights: Signal::ALL.map(Signal::prior_weight),
            // The bucket weights, then each kind's per-word weight.
            words: vec![0.0; TABLE_LEN + KINDS],
        }
    }

    /// Logit without the bias.
    fn margin(&self, example: &Example) -> f64 {
        let signals: f64 = Signal::ALL
            .iter()
            .filter(|signal| is_learned(**signal))
            .map(|signal| self.weights[signal.index()] * example.strengths[signal.index()])
            .sum();
        let words: f64 = example
            .words
            .iter()
            .map(|&(index, value)| self.words[index] * value)
            .sum();
        signals
            + words.clamp(
                -signalbox::classify::signals::WORDS_LIMIT,
                signalbox::classify::signals::WORDS_LIMIT,
            )
    }
}

/// A small deterministic generator (xorshift64*), so training is reproducible.
struct Random(u64);

impl Random {
    fn below(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % bound.max(1)
    }
}

fn examples(items: &[Labelled]) -> Vec<(String, Example)> {
    let classifier = Classifier::compile(&ClassifierSettings {
        learned: false,
        ..ClassifierSettings::default()
    })
    .expect("the built-in classifier compiles");
    items
        .iter()
        .filter_map(|item| {
            let features = item.request.view(|view| classifier.features(view))?;
            let region = features.kind.index() * BUCKETS;
            let mut counts = std::collections::BTreeMap::<usize, f64>::new();
            for bucket in &features.word_buckets {
                *counts.entry(region + usize::from(*bucket)).or_default() += 1.0;
            }
            let norm = (features.word_buckets.len().max(1) as f64).sqrt();
            if !features.word_buckets.is_empty() {
                // Every word adds the kind's per-word weight: count / √count,
                // learned in units of PER_WORD_UNIT so steps stay small.
                let words = features.word_buckets.len() as f64;
                counts.insert(TABLE_LEN + features.kind.index(), words * PER_WORD_UNIT);
            }
            let example = Example {
                kind: features.kind.index(),
                strengths: features.strengths,
                words: counts
                    .into_iter()
                    .map(|(bucket, count)| (bucket, count / norm))
                    .collect(),
                gain: item.strong - item.weak,
                english_chat: item.kind == "chat" && features.language == Language::English,
            };
            Some((item.source.clone(), example))
        })
        .collect()
}

/// Learns a model from labelled prompts (`dev` prompts, if any, decide
/// which kinds keep their word weights); prints progress to stderr.
pub fn train(items: &[Labelled], dev: &[Labelled], options: &Options) -> Model {
    let all = examples(items);
    let mut sources: Vec<String> = all.iter().map(|(source, _)| source.clone()).collect();
    sources.sort();
    sources.dedup();
    let groups: Vec<Vec<&Example>> = sources
        .iter()
        .map(|name| {
            all.iter()
                .filter(|(source, _)| source == name)
                .map(|(_, example)| example)
                .collect()
        })
        .collect();
    let priors = Model::priors();
    let mut model = priors.clone();
    let mut random = Random(options.seed | 1);
    for epoch in 0..options.epochs {
        let rate = options.learning_rate / (1.0 + epoch as f64);
        for group in &groups {
            let typical_gap = mean_gain_gap(group, &mut random);
            if typical_gap <= 0.0 {
                continue;
            }
            for _ in 0..options.pairs_per_source {
                let (first, second) = (group[random.below(group.len())], group[random.below(group.len())]);
                let gap = first.gain - second.gain;
                if gap.abs() < 1e-9 {
                    continue;
                }
                let (higher, lower) = if gap > 0.0 { (first, second) } else { (second, first) };
                let difference = model.margin(higher) - model.margin(lower);
                // d(loss)/d(difference) for loss = ln(1 + e^-difference), weighted.
                let step = rate * (gap.abs() / typical_gap) * -sigmoid(-difference);
                for signal in Signal::ALL.into_iter().filter(|signal| is_learned(*signal)) {
                    let index = signal.index();
                    let slope = step * (higher.strengths[index] - lower.strengths[index]);
                    let l2 = if is_kind(signal) {
                        options.kind_l2
                    } else {
                        options.within_l2
                    };
                    let pull = (rate * l2).min(1.0) * (model.weights[index] - priors.weights[index]);
                    model.weights[index] = (model.weights[index] - slope - pull).clamp(-20.0, 20.0);
                }
                for (example, sign) in [(higher, 1.0), (lower, -1.0)] {
                    for &(index, value) in &example.words {
                        // A kind's per-word weight is one number, not a vocabulary.
                        let l2 = if index >= TABLE_LEN {
                            options.within_l2
                        } else {
                            options.word_l2
                        };
                        let weight = &mut model.words[index];
                        // Decay as a factor, so a strong pull cannot overshoot zero.
                        *weight = (*weight - sign * step * value) * (1.0 - rate * l2).max(0.0);
                    }
                }
            }
        }
        eprintln!("epoch {}: {}", epoch + 1, describe(&model));
    }
    forget_unseen_kinds(&mut model, &all);
    if !dev.is_empty() {
        keep_words_that_help(&mut model, dev);
    }
    model.weights[Signal::Language.index()] =
        english_cue_average(&model, &all).unwrap_or(priors.weights[Signal::Language.index()]);
    model.bias = priors.bias + mean_margin(&priors, &groups) - mean_margin(&model, &groups);
    model
}

/// APGR of the priors and of `model` on `items`, per group (as `apgr`
/// reports them), from the same features learning uses: a quick check
/// without rebuilding the classifier.
pub fn validate(model: &Model, items: &[Labelled]) -> Vec<(String, f64, f64)> {
    let priors = Model::priors();
    let all = examples(items);
    sources_of(&all)
        .into_iter()
        .filter_map(|source| {
            let prior = source_apgr(&priors, &all, &source)?;
            let learned = source_apgr(model, &all, &source)?;
            Some((source, prior, learned))
        })
        .collect()
}

fn sources_of(all: &[(String, Example)]) -> Vec<String> {
    let mut sources: Vec<String> = all.iter().map(|(source, _)| source.clone()).collect();
    sources.sort();
    sources.dedup();
    sources
}

/// APGR of `model`'s margins on the examples of one source.
fn source_apgr(model: &Model, all: &[(String, Example)], source: &str) -> Option<f64> {
    let outcomes: Vec<crate::apgr::Outcome> = all
        .iter()
        .filter(|(name, _)| name == source)
        .map(|(_, example)| crate::apgr::Outcome {
            score: model.margin(example),
            weak: 0.0,
            strong: example.gain,
        })
        .collect();
    crate::apgr::Curve::of(&outcomes).map(|curve| curve.apgr())
}

/// Mean APGR over the sources of `all`, each weighing the same.
fn mean_apgr(model: &Model, all: &[(String, Example)]) -> f64 {
    let values: Vec<f64> = sources_of(all)
        .iter()
        .filter_map(|source| source_apgr(model, all, source))
        .collect();
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

/// Keeps a kind's word-bucket weights only where they do not make routing
/// worse on held-apart `dev` prompts: a vocabulary learned from a few
/// thousand questions can memorise them rather than generalise.
fn keep_words_that_help(model: &mut Model, dev: &[Labelled]) {
    let dev = examples(dev);
    for kind in 0..KINDS {
        let region = kind * BUCKETS..(kind + 1) * BUCKETS;
        if model.words[region.clone()].iter().all(|weight| *weight == 0.0) {
            continue;
        }
        let mut without = model.clone();
        without.words[region.clone()].fill(0.0);
        let (with_words, without_words) = (mean_apgr(model, &dev), mean_apgr(&without, &dev));
        if without_words > with_words {
            eprintln!(
                "kind {kind}: dev APGR {with_words:.3} with its word weights, {without_words:.3} without: dropped"
            );
            *model = without;
        }
    }
}

/// Word weights of a kind with fewer than [`MIN_KIND_EXAMPLES`] training
/// prompts are noise learned from strays (a coding question in the chat
/// set): they are not shipped.
fn forget_unseen_kinds(model: &mut Model, all: &[(String, Example)]) {
    for kind in 0..KINDS {
        let seen = all.iter().filter(|(_, example)| example.kind == kind).count();
        if seen < MIN_KIND_EXAMPLES {
            eprintln!("kind {kind}: {seen} training prompts, too few: no word weights");
            model.words[kind * BUCKETS..(kind + 1) * BUCKETS].fill(0.0);
            model.words[TABLE_LEN + kind] = 0.0;
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

/// Mean margin over sources, each source weighing the same.
fn mean_margin(model: &Model, groups: &[Vec<&Example>]) -> f64 {
    let means: Vec<f64> = groups
        .iter()
        .filter(|group| !group.is_empty())
        .map(|group| group.iter().map(|example| model.margin(example)).sum::<f64>() / group.len() as f64)
        .collect();
    means.iter().sum::<f64>() / means.len().max(1) as f64
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
            ENGLISH_CUE_SIGNALS
                .iter()
                .map(|signal| model.weights[signal.index()] * example.strengths[signal.index()])
                .sum::<f64>()
        })
        .sum();
    Some(total / chats.len() as f64)
}

fn describe(model: &Model) -> String {
    Signal::ALL
        .iter()
        .filter(|signal| is_learned(**signal))
        .map(|signal| format!("{}={:.2}", signal.name(), model.weights[signal.index()]))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The `src/classify/learned.rs` that ships `model`.
pub fn rust_source(model: &Model, trained_on: &[String]) -> String {
    let (buckets, per_kind) = model.words.split_at(TABLE_LEN);
    let largest = buckets.iter().fold(0.0f64, |largest, weight| largest.max(weight.abs()));
    let scale = if largest > 0.0 { largest / 127.0 } else { 0.0 };
    let quantized: Vec<i8> = buckets
        .iter()
        .map(|weight| {
            if scale > 0.0 {
                (weight / scale).round().clamp(-127.0, 127.0) as i8
            } else {
                0
            }
        })
        .collect();
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
    out.push_str("/// Weight per signal name.\npub const WEIGHTS: &[(&str, f64)] = &[\n");
    for signal in Signal::ALL {
        out.push_str(&format!(
            "    (\"{}\", {:.3}),\n",
            signal.name(),
            model.weights[signal.index()]
        ));
    }
    out.push_str("];\n\n/// Logits per step of a quantized word n-gram weight.\n");
    out.push_str(&format!("pub const WORD_SCALE: f64 = {scale:.6e};\n\n"));
    out.push_str("/// What each word adds within each kind of prompt (see [`super::words`]).\n");
    let per_kind: Vec<String> = per_kind
        .iter()
        .map(|weight| format!("{:.5}", weight * PER_WORD_UNIT))
        .collect();
    out.push_str(&format!(
        "pub const WORD_PER_KIND: [f64; super::words::KINDS] = [{}];\n\n",
        per_kind.join(", ")
    ));
    out.push_str("/// Quantized weight of each word n-gram bucket (see [`super::words`]).\n");
    out.push_str("#[rustfmt::skip]\npub const WORD_WEIGHTS: [i8; super::words::TABLE_LEN] = [\n");
    for row in quantized.chunks(32) {
        let values: Vec<String> = row.iter().map(|value| value.to_string()).collect();
        out.push_str(&format!("    {},\n", values.join(", ")));
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

    #[test]
    fn learning_raises_the_weight_of_what_separates_hard_from_easy_prompts() {
        // In this source, more quantities mean a harder problem.
        let mut items = Vec::new();
        for n in 0..40 {
            items.push(item(
                &format!("Sam has {n} apples. How many are left if he eats 2?"),
                1.0,
            ));
            items.push(item(
                &format!("Sam buys {n} boxes of 12 pens at $3 each, sells 5 for $4 and 7 for $6, then pays 15% tax. How much profit?"),
                0.0,
            ));
        }
        let options = Options {
            epochs: 3,
            pairs_per_source: 3000,
            ..Options::default()
        };
        let model = train(&items, &[], &options);
        let priors = Model::priors();
        let quantities = Signal::Quantities.index();
        assert!(model.weights[quantities] > priors.weights[quantities], "{model:?}");
        // Kind signals that do not vary inside the source stay near their priors.
        let code = Signal::Code.index();
        assert!((model.weights[code] - priors.weights[code]).abs() < 0.1);
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
        assert!(source.contains("pub const WORD_SCALE"));
        let numbers = source.split("WORD_WEIGHTS").nth(1).unwrap();
        assert_eq!(numbers.matches(',').count(), TABLE_LEN);
        assert!(numbers.contains("-127"));
    }
}
