//! Precision and recall of the detectors on the labelled corpora in
//! `testdata/`: `pii.jsonl` (text and the values it holds, by category;
//! look-alikes that fail their checks are negatives) and `injection.jsonl`
//! (text, source, whether it is an attack). The tables print with
//! `cargo test --lib guard::corpus -- --nocapture`; the floors are what the
//! detectors achieve today, so a regression fails. Lines marked
//! `"split": "holdout"` were written after the detectors were tuned on the
//! rest and are reported on their own: they are the honest estimate.

use serde::Deserialize;

use super::injection::{assess_from, Source};
use super::{scan, Category, CategorySet};

const PII: &str = include_str!("testdata/pii.jsonl");
const INJECTION: &str = include_str!("testdata/injection.jsonl");

#[derive(Deserialize)]
struct PiiLine {
    text: String,
    /// (category name, value as written in the text).
    pii: Vec<(String, String)>,
    /// `holdout` for lines written after the detectors were tuned.
    #[serde(default)]
    split: String,
}

#[derive(Deserialize)]
struct InjectionLine {
    text: String,
    source: String,
    injection: bool,
    #[serde(default)]
    split: String,
}

#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    true_positives: u32,
    false_positives: u32,
    false_negatives: u32,
    /// True positives whose span is exactly the labelled value.
    exact: u32,
}

impl Tally {
    fn precision(&self) -> f64 {
        ratio(self.true_positives, self.true_positives + self.false_positives)
    }

    fn recall(&self) -> f64 {
        ratio(self.true_positives, self.true_positives + self.false_negatives)
    }

    fn add(&mut self, other: &Tally) {
        self.true_positives += other.true_positives;
        self.false_positives += other.false_positives;
        self.false_negatives += other.false_negatives;
        self.exact += other.exact;
    }

    /// `labelled | found | precision | recall` table cells.
    fn cells(&self) -> String {
        format!(
            "{} | {} | {:.3} | {:.3}",
            self.true_positives + self.false_negatives,
            self.true_positives + self.false_positives,
            self.precision(),
            self.recall()
        )
    }
}

fn ratio(part: u32, whole: u32) -> f64 {
    if whole == 0 {
        1.0
    } else {
        f64::from(part) / f64::from(whole)
    }
}

/// A finding counts when it overlaps a labelled value of its category;
/// each label is matched once.
fn pii_tallies(holdout_only: bool) -> Vec<(Category, Tally, Vec<String>)> {
    let mut tallies: Vec<(Category, Tally, Vec<String>)> = Category::ALL
        .iter()
        .map(|&category| (category, Tally::default(), Vec::new()))
        .collect();
    for line in PII.lines().filter(|line| !line.trim().is_empty()) {
        let line: PiiLine = serde_json::from_str(line).expect("corpus lines are valid");
        if holdout_only && line.split != "holdout" {
            continue;
        }
        let mut labels: Vec<(Category, std::ops::Range<usize>, bool)> = Vec::new();
        for (name, value) in &line.pii {
            let category = Category::from_name(name).expect("corpus categories exist");
            let from = labels
                .iter()
                .filter(|(_, span, _)| &line.text[span.clone()] == value)
                .map(|(_, span, _)| span.end)
                .max()
                .unwrap_or(0);
            let start = from
                + line.text[from..]
                    .find(value.as_str())
                    .expect("labelled values occur in their text");
            labels.push((category, start..start + value.len(), false));
        }
        for finding in scan(&line.text, CategorySet::all()) {
            let tally = &mut tallies[finding.category as usize];
            let label = labels.iter_mut().find(|(category, span, matched)| {
                *category == finding.category
                    && !*matched
                    && span.start < finding.span.end
                    && finding.span.start < span.end
            });
            match label {
                Some((_, span, matched)) => {
                    *matched = true;
                    tally.1.true_positives += 1;
                    tally.1.exact += u32::from(*span == finding.span);
                }
                None => {
                    tally.1.false_positives += 1;
                    tally
                        .2
                        .push(format!("FP {}: {}", finding.category.name(), &line.text[finding.span]));
                }
            }
        }
        for (category, span, matched) in labels {
            if !matched {
                let tally = &mut tallies[category as usize];
                tally.1.false_negatives += 1;
                tally.2.push(format!("FN {}: {}", category.name(), &line.text[span]));
            }
        }
    }
    tallies
}

/// (category, precision floor, recall floor), as measured when written.
const PII_FLOORS: [(Category, f64, f64); 11] = [
    (Category::Card, 1.0, 1.0),
    (Category::Iban, 1.0, 1.0),
    (Category::UsSsn, 1.0, 1.0),
    (Category::IndiaPan, 1.0, 1.0),
    (Category::Gstin, 1.0, 1.0),
    (Category::Aadhaar, 1.0, 1.0),
    (Category::Email, 1.0, 1.0),
    (Category::Phone, 0.93, 1.0),
    (Category::IpAddress, 1.0, 1.0),
    (Category::StreetAddress, 0.91, 1.0),
    (Category::Secret, 1.0, 1.0),
];

fn print_pii_table(title: &str, tallies: &[(Category, Tally, Vec<String>)]) {
    println!("{title}\n| category | labelled | found | precision | recall | exact span |");
    println!("|---|---|---|---|---|---|");
    let mut total = Tally::default();
    for (category, tally, _) in tallies {
        println!(
            "| {} | {} | {}/{} |",
            category.name(),
            tally.cells(),
            tally.exact,
            tally.true_positives
        );
        total.add(tally);
    }
    println!("| all | {} | |", total.cells());
    for (_, _, misses) in tallies {
        misses.iter().for_each(|miss| println!("{miss}"));
    }
}

#[test]
fn pii_detectors_keep_their_precision_and_recall_on_the_corpus() {
    let tallies = pii_tallies(false);
    print_pii_table("PII, whole corpus", &tallies);
    print_pii_table("PII, held-out lines only", &pii_tallies(true));
    for ((category, tally, misses), (floor_category, precision, recall)) in tallies.iter().zip(PII_FLOORS) {
        assert_eq!(*category, floor_category);
        assert!(
            tally.precision() >= precision,
            "{} precision {:.3} < {precision}: {misses:?}",
            category.name(),
            tally.precision()
        );
        assert!(
            tally.recall() >= recall,
            "{} recall {:.3} < {recall}: {misses:?}",
            category.name(),
            tally.recall()
        );
    }
}

/// (precision, recall) floors of the injection flag, as measured.
const INJECTION_FLOORS: (f64, f64) = (0.97, 0.94);

#[test]
fn the_injection_flag_keeps_its_precision_and_recall_on_the_corpus() {
    // (source, split) → tally; split 0 is the tuned lines, 1 the held-out.
    let mut tallies = [[Tally::default(); 2]; 2];
    let mut misses = Vec::new();
    for line in INJECTION.lines().filter(|line| !line.trim().is_empty()) {
        let line: InjectionLine = serde_json::from_str(line).expect("corpus lines are valid");
        let source = if line.source == "tool" {
            Source::ToolResult
        } else {
            Source::User
        };
        let assessment = assess_from(&line.text, source);
        let tally = &mut tallies[usize::from(source == Source::ToolResult)][usize::from(line.split == "holdout")];
        match (line.injection, assessment.flagged()) {
            (true, true) => tally.true_positives += 1,
            (false, true) => {
                tally.false_positives += 1;
                misses.push(format!(
                    "FP {:.2} {}: {}",
                    assessment.score,
                    assessment.explain(),
                    line.text
                ));
            }
            (true, false) => {
                tally.false_negatives += 1;
                misses.push(format!(
                    "FN {:.2} {}: {}",
                    assessment.score,
                    assessment.explain(),
                    line.text
                ));
            }
            (false, false) => {}
        }
    }
    let sum = |parts: &[Tally]| {
        let mut total = Tally::default();
        parts.iter().for_each(|part| total.add(part));
        total
    };
    let [user, tool] = tallies;
    let rows = [
        ("user", sum(&user)),
        ("tool", sum(&tool)),
        ("held-out lines only", sum(&[user[1], tool[1]])),
        ("all", sum(&[user[0], user[1], tool[0], tool[1]])),
    ];
    println!("| source | attacks | flagged | precision | recall |");
    println!("|---|---|---|---|---|");
    for (name, tally) in &rows {
        println!("| {name} | {} |", tally.cells());
    }
    misses.iter().for_each(|miss| println!("{miss}"));
    let total = rows[3].1;
    let (precision, recall) = INJECTION_FLOORS;
    assert!(
        total.precision() >= precision,
        "precision {:.3} < {precision}",
        total.precision()
    );
    assert!(total.recall() >= recall, "recall {:.3} < {recall}", total.recall());
}
