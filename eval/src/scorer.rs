//! The routers the tool compares: the classifier (shipped, previous, or
//! with operator settings) and prompt length alone.

use std::collections::BTreeMap;
use std::path::Path;

use signalbox::classify::{Classifier, ClassifierSettings, Signal};
use signalbox::request::PromptView;

use crate::data::{Labelled, Request};

pub enum Scorer {
    Classifier {
        label: String,
        classifier: Box<Classifier>,
    },
    /// Estimated tokens of the whole prompt: the baseline to beat.
    Length,
    /// Each prompt's own strong-minus-weak gain: the best any router could
    /// do on these labels (labelled data only).
    Oracle,
}

impl Scorer {
    /// `classifier` (the shipped one), `previous` (hand-set weights, no
    /// within-type signals), `length`, or `classifier=FILE` (a JSON
    /// `classifier` config section).
    pub fn parse(spec: &str) -> Result<Scorer, String> {
        let (label, settings) = match spec.split_once('=') {
            None if spec == "length" => return Ok(Scorer::Length),
            None if spec == "oracle" => return Ok(Scorer::Oracle),
            None if spec == "classifier" => ("classifier".to_string(), ClassifierSettings::default()),
            None if spec == "previous" => ("previous".to_string(), previous_settings()),
            Some(("classifier", file)) => (file_label(file), read_settings(Path::new(file))?),
            _ => {
                return Err(format!(
                    "unknown scorer `{spec}`: use classifier, previous, length, oracle or classifier=FILE"
                ))
            }
        };
        let classifier = Classifier::compile(&settings).map_err(|err| err.to_string())?;
        Ok(Scorer::Classifier {
            label,
            classifier: Box::new(classifier),
        })
    }

    pub fn label(&self) -> &str {
        match self {
            Scorer::Classifier { label, .. } => label,
            Scorer::Length => "length",
            Scorer::Oracle => "oracle",
        }
    }

    /// The score of a labelled prompt (the oracle reads its labels).
    pub fn score_labelled(&self, item: &Labelled) -> Option<f64> {
        match self {
            Scorer::Oracle => Some(item.strong - item.weak),
            _ => self.score(&item.request),
        }
    }

    /// The score of a prompt; `None` for the oracle, which needs labels.
    pub fn score(&self, request: &Request) -> Option<f64> {
        match self {
            Scorer::Classifier { classifier, .. } => request.view(|view| classifier.classify(view).score),
            Scorer::Length => request.view(prompt_length),
            Scorer::Oracle => None,
        }
    }
}

/// What the `length` router ranks by: estimated tokens of the whole prompt.
pub fn prompt_length(view: &PromptView<'_>) -> f64 {
    f64::from(view.last_user_tokens()) + f64::from(view.context_tokens)
}

/// The classifier as it was before learning: prior weights, no word table,
/// none of the within-type signals.
pub fn previous_settings() -> ClassifierSettings {
    ClassifierSettings {
        learned: false,
        weights: Signal::ALL
            .iter()
            .filter(|signal| !signal.says_kind())
            .map(|signal| (signal.name().to_string(), 0.0))
            .collect::<BTreeMap<_, _>>(),
        ..ClassifierSettings::default()
    }
}

fn file_label(file: &str) -> String {
    Path::new(file)
        .file_stem()
        .map_or_else(|| file.to_string(), |stem| stem.to_string_lossy().into_owned())
}

fn read_settings(path: &Path) -> Result<ClassifierSettings, String> {
    let text = std::fs::read_to_string(path).map_err(|err| format!("{}: {err}", path.display()))?;
    serde_json::from_str(&text).map_err(|err| format!("{}: {err}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scorers_are_named_by_their_spec() {
        for spec in ["classifier", "previous", "length", "oracle"] {
            assert_eq!(Scorer::parse(spec).unwrap().label(), spec);
        }
        assert!(Scorer::parse("vibes").is_err());
        assert!(Scorer::parse("classifier=/nonexistent.json").is_err());
    }

    #[test]
    fn the_previous_classifier_ignores_the_within_type_signals() {
        let Scorer::Classifier { classifier, .. } = Scorer::parse("previous").unwrap() else {
            panic!("a classifier");
        };
        let request = Request::from_prompt("Tom has 3 apples and buys 4 more each day for 5 days. How many now?");
        let contributions = request.view(|view| classifier.classify(view).contributions).unwrap();
        for signal in Signal::ALL.into_iter().filter(|signal| !signal.says_kind()) {
            assert_eq!(contributions[signal.index()], 0.0, "{}", signal.name());
        }
    }

    #[test]
    fn length_scores_longer_prompts_higher() {
        let length = Scorer::Length;
        let short = length.score(&Request::from_prompt("hi")).unwrap();
        let long = length.score(&Request::from_prompt(&"word ".repeat(100))).unwrap();
        assert!(long > short);
    }
}
