//! `signalbox-eval`: offline routing evaluation for Signalbox.
//!
//! ```text
//! signalbox-eval apgr DATA.jsonl... [--scorer SPEC]... [--bootstrap N] [--svg FILE] [--title TEXT]
//! signalbox-eval replay --config CONFIG.json (--log FILE | --prompts FILE | --data FILE) [--output-tokens N]
//! signalbox-eval calibrate --config CONFIG.json (--log FILE | --prompts FILE | --data FILE) --strong-share SHARE [--output-tokens N]
//! signalbox-eval train DATA.jsonl... [--out FILE] [--epochs N] [--adjust-l2 X] [--word-l2 X] [--learning-kinds math,choice] [--dev DEV.jsonl]... [--validate VAL.jsonl]...
//! signalbox-eval outcomes --log ACCESS.jsonl --events ENVOY.log [--strongest-tier NAME] [--out FILE]
//! ```
//!
//! Scorers: `classifier` (shipped weights), `previous` (hand-set weights
//! without within-type signals), `length`, `oracle` (the labels' own order:
//! the ceiling), `classifier=FILE` (a JSON `classifier` config section).
//! See `docs/routing.md`.

mod apgr;
mod data;
mod outcomes;
mod random;
mod replay;
mod scorer;
mod train;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use apgr::{Curve, Outcome};
use data::{Labelled, LoggedRequest};
use scorer::Scorer;
use signalbox::classify::PromptKind;
use signalbox::config::Config;

const USAGE: &str = "usage:
  signalbox-eval apgr DATA.jsonl... [--scorer classifier|previous|length|oracle|classifier=FILE]... [--bootstrap N] [--svg FILE] [--title TEXT]
  signalbox-eval replay --config CONFIG.json (--log FILE | --prompts FILE | --data FILE) [--output-tokens N]
  signalbox-eval calibrate --config CONFIG.json (--log FILE | --prompts FILE | --data FILE) --strong-share SHARE [--output-tokens N]
  signalbox-eval train DATA.jsonl... [--out FILE] [--epochs N] [--adjust-l2 X] [--word-l2 X] [--learning-kinds math,choice] [--dev DEV.jsonl]... [--validate VAL.jsonl]...
  signalbox-eval outcomes --log ACCESS.jsonl --events ENVOY.log [--strongest-tier NAME] [--out FILE]";

/// Output tokens assumed for a request whose log line has none.
const DEFAULT_OUTPUT_TOKENS: u64 = 300;

/// Command-line arguments: positional files and `--name value` options.
#[derive(Default)]
struct Args {
    files: Vec<PathBuf>,
    options: Vec<(String, String)>,
}

impl Args {
    fn parse(raw: impl Iterator<Item = String>) -> Result<Args, String> {
        let mut args = Args::default();
        let mut raw = raw.peekable();
        while let Some(arg) = raw.next() {
            match arg.strip_prefix("--") {
                Some(name) => {
                    let value = raw.next().ok_or_else(|| format!("--{name} needs a value"))?;
                    args.options.push((name.to_string(), value));
                }
                None => args.files.push(PathBuf::from(arg)),
            }
        }
        Ok(args)
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.options
            .iter()
            .filter(|(option, _)| option == name)
            .map(|(_, value)| value.as_str())
            .collect()
    }

    fn one(&self, name: &str) -> Option<&str> {
        self.all(name).last().copied()
    }

    fn number<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, String> {
        self.one(name).map_or(Ok(default), |value| {
            value.parse().map_err(|_| format!("--{name}: not a number: {value}"))
        })
    }
}

fn main() -> ExitCode {
    let mut raw = std::env::args().skip(1);
    let command = raw.next().unwrap_or_default();
    let result = Args::parse(raw).and_then(|args| match command.as_str() {
        "apgr" => run_apgr(&args),
        "replay" => run_replay(&args),
        "calibrate" => run_calibrate(&args),
        "train" => run_train(&args),
        "outcomes" => run_outcomes(&args),
        _ => Err(USAGE.to_string()),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("signalbox-eval: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Labelled JSONL from the gateway's shadow and feedback log lines, joined
/// with the access log's audited prompts (see `outcomes.rs`).
fn run_outcomes(args: &Args) -> Result<(), String> {
    let read = |name: &str| {
        let path = args.one(name).ok_or_else(|| format!("--{name} is required\n{USAGE}"))?;
        std::fs::read_to_string(path).map_err(|err| format!("{path}: {err}"))
    };
    let outcomes = outcomes::label(&read("log")?, &read("events")?, args.one("strongest-tier"));
    let text: String = outcomes.lines.iter().map(|line| format!("{line}\n")).collect();
    match args.one("out") {
        Some(path) => std::fs::write(path, &text).map_err(|err| format!("{path}: {err}"))?,
        None => print!("{text}"),
    }
    eprintln!(
        "{} labelled prompts; {} outcomes without an audited prompt skipped",
        outcomes.lines.len(),
        outcomes.skipped
    );
    Ok(())
}

fn labelled(files: &[PathBuf]) -> Result<Vec<Labelled>, String> {
    if files.is_empty() {
        return Err("give at least one labelled JSONL file".into());
    }
    let mut items = Vec::new();
    for file in files {
        items.extend(data::read_labelled(file)?);
    }
    Ok(items)
}

fn run_apgr(args: &Args) -> Result<(), String> {
    let items = labelled(&args.files)?;
    let specs = args.all("scorer");
    let specs = if specs.is_empty() {
        vec!["classifier", "length"]
    } else {
        specs
    };
    let scorers = specs
        .iter()
        .map(|spec| Scorer::parse(spec))
        .collect::<Result<Vec<_>, _>>()?;
    let rounds: usize = args.number("bootstrap", 0)?;
    let mut kinds: Vec<String> = items.iter().map(group_of).collect();
    kinds.sort_unstable();
    kinds.dedup();
    let mut plotted = Vec::new();
    let several = kinds.len() > 1;
    for kind in kinds {
        let of_kind: Vec<&Labelled> = items.iter().filter(|item| group_of(item) == kind).collect();
        println!("{kind}: {} prompts", of_kind.len());
        println!(
            "  {:<14} {:>6} {:>9} {:>9}   PGR at 10%..100% strong calls",
            "router", "APGR", "50% gap", "80% gap"
        );
        for scorer in &scorers {
            let outcomes: Vec<Outcome> = scored(scorer, &of_kind).into_iter().flatten().collect();
            let Some(curve) = print_curve(scorer.label(), &outcomes) else {
                continue;
            };
            let label = if several {
                format!("{kind}: {}", scorer.label())
            } else {
                scorer.label().to_string()
            };
            plotted.push((label, curve));
        }
        if rounds > 0 {
            print_against_length(&scorers, &of_kind, rounds);
        }
    }
    if let Some(path) = args.one("svg") {
        let title = args.one("title").unwrap_or("Routing quality");
        std::fs::write(path, apgr::svg(title, &plotted)).map_err(|err| format!("{path}: {err}"))?;
        println!("plot: {path}");
    }
    Ok(())
}

/// Each prompt's outcome under `scorer`, in the order of `items` (`None`
/// where the scorer cannot read the prompt).
fn scored(scorer: &Scorer, items: &[&Labelled]) -> Vec<Option<Outcome>> {
    items
        .iter()
        .map(|item| {
            Some(Outcome {
                score: scorer.score_labelled(item)?,
                weak: item.weak,
                strong: item.strong,
            })
        })
        .collect()
}

/// Prints one router's row; its curve, if there is a gap to recover.
fn print_curve(label: &str, outcomes: &[Outcome]) -> Option<Curve> {
    let Some(curve) = Curve::of(outcomes) else {
        println!("  {label:<14} the strong model is not better here: nothing to recover");
        return None;
    };
    let share = |target: f64| {
        curve
            .share_for(target)
            .map_or("-".to_string(), |share| format!("{:.0}%", share * 100.0))
    };
    let points: Vec<String> = (1..=10)
        .map(|tenth| format!("{:.2}", curve.pgr_at(f64::from(tenth) / 10.0)))
        .collect();
    println!(
        "  {label:<14} {:>6.3} {:>9} {:>9}   {}",
        curve.apgr(),
        share(0.5),
        share(0.8),
        points.join(" ")
    );
    Some(curve)
}

/// Seed of the bootstrap's resampling, so a run can be repeated.
const BOOTSTRAP_SEED: u64 = 0x5eed;

/// For each router but length: its APGR minus length's on the same
/// prompts, with a 95% paired-bootstrap interval.
fn print_against_length(scorers: &[Scorer], items: &[&Labelled], rounds: usize) {
    let length = scored(&Scorer::Length, items);
    for scorer in scorers.iter().filter(|scorer| !matches!(scorer, Scorer::Length)) {
        let (ours, theirs): (Vec<Outcome>, Vec<Outcome>) = scored(scorer, items)
            .into_iter()
            .zip(&length)
            .filter_map(|(ours, theirs)| Some((ours?, (*theirs)?)))
            .unzip();
        match apgr::paired_bootstrap(&ours, &theirs, rounds, BOOTSTRAP_SEED) {
            Some(difference) => println!(
                "  {} - length: {:+.3} (95% of {rounds} resamples: {:+.3} to {:+.3}; ahead in {:.0}%)",
                scorer.label(),
                difference.observed,
                difference.low,
                difference.high,
                difference.wins * 100.0
            ),
            None => println!("  {} - length: no gap to recover", scorer.label()),
        }
    }
}

/// The requests to replay, from whichever of --log, --prompts, --data is given.
fn traffic(args: &Args) -> Result<Vec<LoggedRequest>, String> {
    let unlogged = |request| LoggedRequest {
        request: Some(request),
        ..LoggedRequest::default()
    };
    match (args.one("log"), args.one("prompts"), args.one("data")) {
        (Some(log), None, None) => data::read_access_log(Path::new(log)),
        (None, Some(prompts), None) => Ok(data::read_prompts(Path::new(prompts))?
            .into_iter()
            .map(unlogged)
            .collect()),
        (None, None, Some(file)) => Ok(data::read_labelled(Path::new(file))?
            .into_iter()
            .map(|item| unlogged(item.request))
            .collect()),
        _ => Err("give exactly one of --log, --prompts, --data".into()),
    }
}

fn config(args: &Args) -> Result<Config, String> {
    let path = args.one("config").ok_or("--config CONFIG.json is required")?;
    let json = std::fs::read(path).map_err(|err| format!("{path}: {err}"))?;
    // Keys are not needed offline: any `api_key_env` resolves to a stand-in.
    Config::parse(&json, &|_| Some("offline".to_string())).map_err(|err| format!("{path}: {err}"))
}

fn run_replay(args: &Args) -> Result<(), String> {
    let config = config(args)?;
    let requests = replay::replay(
        &config,
        &traffic(args)?,
        args.number("output-tokens", DEFAULT_OUTPUT_TOKENS)?,
    );
    let rescored = requests.iter().filter(|request| request.rescored).count();
    println!(
        "{} requests ({} scored from their prompt, {} with their logged score)",
        requests.len(),
        rescored,
        requests.len() - rescored
    );
    println!("{:<12} {:>8} {:>7} {:>12}", "tier", "requests", "share", "cost USD");
    let loads = replay::tier_loads(&config, &requests);
    for load in &loads {
        let share = load.requests as f64 / requests.len().max(1) as f64;
        println!(
            "{:<12} {:>8} {:>6.1}% {:>12.4}",
            load.name,
            load.requests,
            share * 100.0,
            load.cost
        );
    }
    println!(
        "{:<12} {:>8} {:>7} {:>12.4}",
        "total",
        requests.len(),
        "",
        loads.iter().map(|load| load.cost).sum::<f64>()
    );
    let strongest = config.tiers.last().map_or("", |tier| tier.name.as_str());
    println!("\n`{strongest}` from score t:");
    println!("{:>7} {:>7} {:>12}", "t", "share", "cost USD");
    for tenth in 1..10 {
        let threshold = f64::from(tenth) / 10.0;
        let (share, cost) = replay::at_threshold(&config, &requests, threshold);
        println!("{threshold:>7.1} {:>6.1}% {cost:>12.4}", share * 100.0);
    }
    Ok(())
}

fn run_calibrate(args: &Args) -> Result<(), String> {
    let config = config(args)?;
    let share: f64 = args.number("strong-share", f64::NAN)?;
    let requests = replay::replay(
        &config,
        &traffic(args)?,
        args.number("output-tokens", DEFAULT_OUTPUT_TOKENS)?,
    );
    let scores: Vec<f64> = requests.iter().map(|request| request.score).collect();
    let threshold = replay::threshold_for_share(&scores, share)
        .ok_or("--strong-share must be in [0, 1], with some requests to calibrate on")?;
    let tiers = config.tiers.len();
    if tiers < 2 {
        return Err("the config has one tier: there is no threshold to set".into());
    }
    let (reached, cost) = replay::at_threshold(&config, &requests, threshold);
    println!(
        "set tiers[{}].max_score ({}) to {threshold:.3}: {:.1}% of {} requests go to `{}` (cost {cost:.4} USD)",
        tiers - 2,
        config.tiers[tiers - 2].name,
        reached * 100.0,
        requests.len(),
        config.tiers[tiers - 1].name
    );
    if let Some(lower) = tiers.checked_sub(3).map(|below| config.tiers[below].max_score) {
        if threshold <= lower {
            println!(
                "note: that is not above tiers[{}].max_score ({lower}); lower that too",
                tiers - 3
            );
        }
    }
    Ok(())
}

fn run_train(args: &Args) -> Result<(), String> {
    let items = labelled(&args.files)?;
    let defaults = train::Options::default();
    let options = train::Options {
        epochs: args.number("epochs", defaults.epochs)?,
        adjust_l2: args.number("adjust-l2", defaults.adjust_l2)?,
        learning_kinds: match args.one("learning-kinds") {
            None => defaults.learning_kinds.clone(),
            Some(names) => names
                .split(',')
                .filter(|name| !name.is_empty())
                .map(|name| {
                    PromptKind::from_name(name)
                        .ok_or_else(|| format!("--learning-kinds: unknown kind `{name}` (chat, math, code, choice)"))
                })
                .collect::<Result<_, _>>()?,
        },
        word_l2: args.number("word-l2", defaults.word_l2)?,
        ..defaults
    };
    let dev_files: Vec<PathBuf> = args.all("dev").iter().map(PathBuf::from).collect();
    let dev = if dev_files.is_empty() {
        Vec::new()
    } else {
        labelled(&dev_files)?
    };
    let model = train::train(&items, &dev, &options);
    for file in args.all("validate") {
        for check in train::validate(&model, &data::read_labelled(Path::new(file))?) {
            println!(
                "{file}: {}: APGR {:.3} with the priors, {:.3} learned, {:.3} by prompt length",
                check.source, check.prior, check.learned, check.length
            );
        }
    }
    let names: Vec<String> = args
        .files
        .iter()
        .map(|file| {
            file.file_name()
                .map_or_else(String::new, |name| name.to_string_lossy().into_owned())
        })
        .collect();
    let out = args.one("out").unwrap_or("src/classify/learned.rs");
    std::fs::write(out, train::rust_source(&model, &names)).map_err(|err| format!("{out}: {err}"))?;
    println!("wrote {out}");
    Ok(())
}

/// Prompts are reported by type, and by source within a type.
fn group_of(item: &Labelled) -> String {
    if item.source == item.kind {
        item.kind.clone()
    } else {
        format!("{} ({})", item.kind, item.source)
    }
}
