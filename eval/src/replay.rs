//! Replaying traffic under a config: which tier each request would get,
//! what it would cost at the configured prices, how both move with the
//! threshold of the strongest tier, and the threshold that sends a chosen
//! share of requests there (calibration).
//!
//! A request with its prompt (a prompt file, labelled data, or an audited
//! access-log line) is scored again by the config's classifier; one without
//! (an access-log line of an unaudited tenant) keeps the score it was logged
//! with. Costs use the logged token counts when there are any, else the
//! prompt's estimate and an assumed output length, priced at the first
//! model of the request's tier.

use signalbox::config::Config;

use crate::data::LoggedRequest;

/// One request as replay needs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Replayed {
    pub score: f64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Scored again from its prompt (not the logged score).
    pub rescored: bool,
}

/// Scores and token counts of `requests` under `config`.
pub fn replay(config: &Config, requests: &[LoggedRequest], assumed_output_tokens: u64) -> Vec<Replayed> {
    requests
        .iter()
        .filter_map(|logged| {
            let fresh = logged.request.as_ref().and_then(|request| {
                request.view(|view| {
                    let classification = config.classifier.classify(view);
                    (
                        classification.score,
                        u64::from(classification.prompt_tokens) + u64::from(view.context_tokens),
                    )
                })
            });
            let score = fresh.map(|(score, _)| score).or(logged.score)?;
            Some(Replayed {
                score,
                input_tokens: logged.input_tokens.or(fresh.map(|(_, tokens)| tokens)).unwrap_or(0),
                output_tokens: logged.output_tokens.unwrap_or(assumed_output_tokens),
                rescored: fresh.is_some(),
            })
        })
        .collect()
}

/// USD for one request served by the first model of `tier`.
fn cost(config: &Config, tier: usize, request: &Replayed) -> f64 {
    let Some(&model) = config.tiers.get(tier).and_then(|tier| tier.models.first()) else {
        return 0.0;
    };
    let price = config.models[model].price;
    (request.input_tokens as f64 * price.input + request.output_tokens as f64 * price.output) / 1e6
}

/// Requests and cost per tier.
#[derive(Debug, Clone, PartialEq)]
pub struct TierLoad {
    pub name: String,
    pub requests: usize,
    pub cost: f64,
}

/// How `requests` spread over the config's tiers as configured.
pub fn tier_loads(config: &Config, requests: &[Replayed]) -> Vec<TierLoad> {
    let mut loads: Vec<TierLoad> = config
        .tiers
        .iter()
        .map(|tier| TierLoad {
            name: tier.name.clone(),
            requests: 0,
            cost: 0.0,
        })
        .collect();
    for request in requests {
        let tier = config.tier_for_score(request.score);
        if let Some(load) = loads.get_mut(tier) {
            load.requests += 1;
            load.cost += cost(config, tier, request);
        }
    }
    loads
}

/// With the strongest tier starting at `threshold` (the others as
/// configured, capped below it): its share of requests and the total cost.
pub fn at_threshold(config: &Config, requests: &[Replayed], threshold: f64) -> (f64, f64) {
    let strongest = config.tiers.len().saturating_sub(1);
    let mut strong = 0usize;
    let mut total_cost = 0.0;
    for request in requests {
        let tier = if request.score >= threshold {
            strong += 1;
            strongest
        } else {
            config.tier_for_score(request.score).min(strongest.saturating_sub(1))
        };
        total_cost += cost(config, tier, request);
    }
    (strong as f64 / requests.len().max(1) as f64, total_cost)
}

/// The threshold (the second-strongest tier's `max_score`) that sends
/// `share` of `scores` to the strongest tier: halfway between the last
/// score sent and the first kept.
pub fn threshold_for_share(scores: &[f64], share: f64) -> Option<f64> {
    if scores.is_empty() || !(0.0..=1.0).contains(&share) {
        return None;
    }
    let mut sorted = scores.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let strong = (share * sorted.len() as f64).round() as usize;
    Some(match strong {
        0 => (sorted[0] + 1.0) / 2.0,
        n if n >= sorted.len() => sorted[sorted.len() - 1] / 2.0,
        n => (sorted[n - 1] + sorted[n]) / 2.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Request;

    const CONFIG: &str = r#"{
      "providers": {"openai": {"cluster": "openai", "api_key": "sk-x"}},
      "models": {
        "small": {"provider": "openai", "price": {"input": 1, "output": 2}},
        "large": {"provider": "openai", "price": {"input": 10, "output": 20}}
      },
      "tiers": [{"name": "simple", "max_score": 0.5, "models": ["small"]}, {"name": "complex", "models": ["large"]}]
    }"#;

    fn config() -> Config {
        Config::parse(CONFIG.as_bytes(), &|_| None).unwrap()
    }

    fn logged(score: f64) -> LoggedRequest {
        LoggedRequest {
            score: Some(score),
            input_tokens: Some(1_000_000),
            output_tokens: Some(0),
            ..LoggedRequest::default()
        }
    }

    #[test]
    fn logged_scores_are_kept_and_prompts_are_scored_again() {
        let config = config();
        let with_prompt = LoggedRequest {
            request: Some(Request::from_prompt(
                "Prove that there are infinitely many primes, step by step.",
            )),
            score: Some(0.01),
            ..LoggedRequest::default()
        };
        let replayed = replay(&config, &[logged(0.2), with_prompt, LoggedRequest::default()], 100);
        assert_eq!(replayed.len(), 2);
        assert!(!replayed[0].rescored && replayed[0].score == 0.2);
        assert!(replayed[1].rescored && replayed[1].score > 0.5);
        assert_eq!(replayed[1].output_tokens, 100);
        assert!(replayed[1].input_tokens > 0);
    }

    #[test]
    fn tiers_get_their_requests_and_cost_at_their_first_models_price() {
        let config = config();
        let requests = replay(&config, &[logged(0.1), logged(0.2), logged(0.9)], 0);
        let loads = tier_loads(&config, &requests);
        assert_eq!((loads[0].requests, loads[1].requests), (2, 1));
        assert!((loads[0].cost - 2.0).abs() < 1e-9 && (loads[1].cost - 10.0).abs() < 1e-9);
        let (share, cost) = at_threshold(&config, &requests, 0.15);
        assert!((share - 2.0 / 3.0).abs() < 1e-9);
        assert!((cost - 21.0).abs() < 1e-9);
    }

    #[test]
    fn calibration_finds_the_threshold_for_a_share_of_strong_calls() {
        let scores: Vec<f64> = (0..100).map(|n| f64::from(n) / 100.0).collect();
        let threshold = threshold_for_share(&scores, 0.25).unwrap();
        let sent = scores.iter().filter(|score| **score >= threshold).count();
        assert_eq!(sent, 25);
        assert_eq!(threshold_for_share(&scores, 0.0).map(|t| t > 0.99), Some(true));
        assert_eq!(threshold_for_share(&[], 0.5), None);
        assert_eq!(threshold_for_share(&scores, 1.5), None);
    }
}
