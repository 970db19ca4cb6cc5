//! Conversation affinity through the planner: a weighted split over two
//! models, one of them with two keys.

use super::*;
use crate::health::{BreakerState, DeploymentHealth, LeaseToken};
use crate::route::chain::HealthView;

const CONFIG: &str = r#"{
  "providers": {
    "east": {"cluster": "east", "api_keys": [{"name": "k1", "key": "sk-1"}, {"name": "k2", "key": "sk-2"}]},
    "west": {"cluster": "west", "api_key": "sk-3"}
  },
  "models": {"a": {"provider": "east"}, "b": {"provider": "west"}},
  "tiers": [{"name": "agents", "models": ["a", "b"], "strategy": "weighted", "weights": {"a": 50, "b": 50}}],
  "affinity": {}
}"#;

fn config() -> Config {
    Config::parse(CONFIG.as_bytes(), &|_| None).unwrap()
}

/// Turn `turns` of conversation `id`: the same opening, a growing history.
fn turn(id: usize, turns: usize) -> Vec<u8> {
    let mut messages = vec![
        serde_json::json!({"role": "system", "content": "You are a coding agent."}),
        serde_json::json!({"role": "user", "content": format!("Task {id}: refactor the parser")}),
    ];
    for later in 1..turns {
        messages.push(serde_json::json!({"role": "assistant", "content": format!("step {later} done")}));
        messages.push(serde_json::json!({"role": "user", "content": "continue"}));
    }
    serde_json::json!({"model": "auto", "messages": messages})
        .to_string()
        .into_bytes()
}

/// Every deployment of `broken` (a model name) has an open circuit.
struct Broken<'c>(&'c Config, &'static str);

impl HealthView for Broken<'_> {
    fn health(&self, deployment: DeploymentId) -> DeploymentHealth {
        let broken = self.0.model_named(self.1) == Some(self.0.deployments[deployment].model);
        DeploymentHealth {
            breaker: if broken {
                BreakerState::Open { until_ms: u64::MAX }
            } else {
                BreakerState::Closed
            },
            ..Default::default()
        }
    }
    fn claim_trial(&self, _: DeploymentId) -> Option<LeaseToken> {
        None
    }
    fn now_ms(&self) -> u64 {
        1
    }
}

fn primary(config: &Config, body: &[u8], health: &dyn HealthView, random: u64) -> (String, Option<AffinitySource>) {
    let plan = plan_chat(
        config,
        body,
        &HeaderMap::default(),
        &ClientHints::default(),
        &Situation::open(health, random),
    )
    .unwrap();
    (
        config.deployments[plan.decision.chain[0]].name.clone(),
        plan.decision.affinity,
    )
}

#[test]
fn a_conversation_keeps_its_deployment_and_key_on_every_turn() {
    let config = config();
    let healthy = chain::NoHistory { now_ms: 1 };
    let mut seen = std::collections::BTreeSet::new();
    for id in 0..40 {
        let (first, source) = primary(&config, &turn(id, 1), &healthy, 7);
        assert_eq!(source, Some(AffinitySource::Prefix));
        for turns in 2..=10 {
            // The random draw differs on every turn; the conversation decides.
            let (later, _) = primary(&config, &turn(id, turns), &healthy, turns as u64 * 0x9E37_79B9);
            assert_eq!(later, first, "conversation {id}, turn {turns}");
        }
        seen.insert(first);
    }
    // The split still splits: conversations land on every deployment.
    assert_eq!(seen.len(), 3, "{seen:?}");
}

#[test]
fn a_failed_deployment_moves_its_conversations_and_only_those() {
    let config = config();
    let healthy = chain::NoHistory { now_ms: 1 };
    let b_broken = Broken(&config, "b");
    for id in 0..40 {
        let (before, _) = primary(&config, &turn(id, 3), &healthy, 1);
        let (during, _) = primary(&config, &turn(id, 4), &b_broken, 2);
        if before.starts_with("a") {
            assert_eq!(during, before, "conversation {id} was not on the failed model");
        } else {
            assert!(
                during.starts_with("a"),
                "conversation {id} moved off the failed model: {during}"
            );
        }
        let (after, _) = primary(&config, &turn(id, 5), &healthy, 3);
        assert_eq!(after, before, "conversation {id} returns when the deployment recovers");
    }
}

#[test]
fn without_affinity_the_draw_is_per_request() {
    let mut config = config();
    config.affinity = None;
    let healthy = chain::NoHistory { now_ms: 1 };
    let primaries: std::collections::BTreeSet<String> = (0..40)
        .map(|draw| primary(&config, &turn(1, 3), &healthy, strategy::derive(draw, 5)).0)
        .collect();
    assert!(primaries.len() > 1, "one conversation spread over {primaries:?}");
    assert_eq!(primary(&config, &turn(1, 3), &healthy, 1).1, None);
}
