//! Scores prompts with the built-in classifier, one prompt per input line:
//! `cargo run --release --example score < prompts.txt`. Prints the score,
//! the default tier it would land in, and the signals that fired, so weights
//! can be tuned against an operator's own traffic.

use std::io::BufRead;

use signalbox::classify::{Classifier, ClassifierSettings};
use signalbox::request::PromptView;

fn main() {
    let classifier = Classifier::compile(&ClassifierSettings::default()).expect("built-in classifier compiles");
    for line in std::io::stdin().lock().lines().map_while(Result::ok) {
        let text = line.replace("\\n", "\n");
        let view = PromptView {
            last_user_parts: vec![&text],
            user_turns: 1,
            ..PromptView::default()
        };
        let result = classifier.classify(&view);
        let preview: String = line.chars().take(70).collect();
        println!("{:.3}  {:<72} {}", result.score, preview, result.explain());
    }
}
