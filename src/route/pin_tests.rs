//! Tier pinning through the planner: two tiers, conversations named by a
//! session header, pins kept in a shared-data store.

use super::*;
use crate::route::chain::StoreHealth;
use crate::route::pin::{PinnedTier, Pinning};
use crate::state::MemoryStore;
use crate::state::Record;

const CONFIG: &str = r#"{
  "providers": {"east": {"cluster": "east", "api_key": "sk-1"}},
  "models": {"small": {"provider": "east"}, "large": {"provider": "east"}},
  "tiers": [{"name": "simple", "max_score": 0.4, "models": ["small"]}, {"name": "complex", "models": ["large"]}],
  "affinity": {"sources": ["session_header"], "pin_tier": {"margin": 0.1, "idle_s": 60}}
}"#;

const HARD: &str = "Prove step by step that the sum of the first n odd numbers is n^2, then implement \
    a Rust function that checks it for n up to 10^6 with overflow handling, and analyse its complexity.";
const EASY: &str = "thanks!";

fn turn(session: &str, text: &str, store: &MemoryStore, config: &Config, now_ms: u64) -> RoutingDecision {
    let body = serde_json::json!({"model": "auto", "messages": [{"role": "user", "content": text}]}).to_string();
    let headers = HeaderMap::new(vec![("x-session-id".to_string(), session.as_bytes().to_vec())]);
    let health = StoreHealth::new(store, config, now_ms);
    plan_chat(
        config,
        body.as_bytes(),
        &headers,
        &ClientHints::default(),
        &Situation::open(&health, 1),
    )
    .unwrap()
    .decision
}

fn tier(config: &Config, decision: &RoutingDecision) -> String {
    config.tiers[decision.tier.unwrap()].name.clone()
}

#[test]
fn a_conversation_stays_on_its_tier_when_a_later_turn_scores_lower() {
    let config = Config::parse(CONFIG.as_bytes(), &|_| None).unwrap();
    let store = MemoryStore::default();
    let first = turn("s1", HARD, &store, &config, 1_000);
    assert_eq!(
        (tier(&config, &first), first.pinning),
        ("complex".into(), Some(Pinning::New))
    );
    let later = turn("s1", EASY, &store, &config, 2_000);
    assert_eq!(tier(&config, &later), "complex");
    assert_eq!(later.pinning, Some(Pinning::Kept { scored: 0 }));
    assert_eq!(decision_reason(&config, &later), "pinned");
    // Another conversation with the same easy turn is scored on its own.
    let other = turn("s2", EASY, &store, &config, 2_000);
    assert_eq!(
        (tier(&config, &other), other.source),
        ("simple".into(), DecisionSource::Score)
    );
    // Idle past `idle_s`: scored afresh.
    let idle = turn("s1", EASY, &store, &config, 2_000 + 61_000);
    assert_eq!(
        (tier(&config, &idle), idle.pinning),
        ("simple".into(), Some(Pinning::New))
    );
}

#[test]
fn a_turn_moves_the_conversation_up_only_past_the_margin() {
    let config = Config::parse(CONFIG.as_bytes(), &|_| None).unwrap();
    let store = MemoryStore::default();
    assert_eq!(tier(&config, &turn("s1", EASY, &store, &config, 1_000)), "simple");
    let raised = turn("s1", HARD, &store, &config, 2_000);
    assert!(raised.classification.as_ref().unwrap().score >= 0.5);
    assert_eq!(tier(&config, &raised), "complex");
    assert_eq!(raised.pinning, Some(Pinning::Raised { from: 0 }));
    assert_eq!(
        tier(&config, &turn("s1", EASY, &store, &config, 3_000)),
        "complex",
        "and stays up"
    );

    // A score just over the bound but within the margin keeps the tier.
    let pin = config.affinity.as_ref().unwrap().pin_tier.unwrap();
    assert_eq!(
        pin::apply(&config, &pin, 1, 0.45, Some(0)),
        (0, Pinning::Kept { scored: 1 })
    );
    assert_eq!(
        pin::apply(&config, &pin, 1, 0.5, Some(0)),
        (1, Pinning::Raised { from: 0 })
    );
    assert_eq!(pin::apply(&config, &pin, 0, 0.1, None), (0, Pinning::New));
}

#[test]
fn slots_hold_one_conversation_and_forget_renamed_tiers() {
    let config = Config::parse(CONFIG.as_bytes(), &|_| None).unwrap();
    let pinned = PinnedTier {
        conversation: 42,
        tier: "complex".into(),
        at_ms: 1_000,
    };
    assert_eq!(PinnedTier::decode(&pinned.encode()), Some(pinned.clone()));
    assert_eq!(pinned.tier_of(&config, 42, 1_500, 60_000), Some(1));
    assert_eq!(
        pinned.tier_of(&config, 43, 1_500, 60_000),
        None,
        "another conversation's slot"
    );
    let renamed = PinnedTier {
        tier: "gone".into(),
        ..pinned
    };
    assert_eq!(renamed.tier_of(&config, 42, 1_500, 60_000), None);
    assert_eq!(PinnedTier::decode(b"\x01\x00"), None);
}
