//! The cache's part in one planned request: whether it is looked up, under
//! which key, and whether its answer may be kept. Decided once the request
//! is planned (the key names the routed tier or model) and before it is
//! admitted (a hit spends nothing).
//!
//! Not cached: embeddings and Responses requests (a Responses request may
//! create or read state at OpenAI that a replay would skip), requests whose
//! prompt the guardrails found personal data in (an entry would keep it at
//! rest in shared data), and what the policy refuses ([`admit_request`]).
//! A client's `cache-control: no-cache` skips the lookup but keeps the new
//! answer; `no-store` skips both.

use super::admit::admit_request;
use super::key::CacheKey;
use super::semantic::context::{request_context, ContextKey};
use crate::config::cache::CachePolicy;
use crate::config::{Config, ModelId, TierId};
use crate::headers::HeaderMap;
use crate::route::attempts::NativeApi;
use crate::route::screen::PiiAction;
use crate::route::{Endpoint, RequestPlan};

pub use crate::contract::{HEADER_CACHE, HEADER_CACHE_SIMILARITY};

/// What the cache did for a request (the header, metric and log value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheResult {
    Hit,
    Miss,
    Stale,
    Bypass,
}

impl CacheResult {
    pub fn name(self) -> &'static str {
        match self {
            CacheResult::Hit => "hit",
            CacheResult::Miss => "miss",
            CacheResult::Stale => "stale",
            CacheResult::Bypass => "bypass",
        }
    }
}

/// What a key says answers it: a tier (any of its own models) or a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Tier(TierId),
    Model(ModelId),
}

/// A request the cache takes part in.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheTicket {
    pub key: CacheKey,
    /// What the key names; `None` only for a decision without models.
    pub target: Option<Target>,
    pub policy: CachePolicy,
    /// Look the key up (not when the client said `no-cache`); the answer
    /// is kept either way.
    pub look_up: bool,
    /// A hit is replayed as a stream, with a usage chunk when asked.
    pub stream: bool,
    pub include_usage: bool,
    /// On an exact miss, look for a near-duplicate: the conversation's
    /// context, its last user text, and the similarity a match needs.
    pub semantic: Option<SemanticProbe>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SemanticProbe {
    pub context: ContextKey,
    pub text: String,
    pub threshold: f32,
}

impl CacheTicket {
    /// Whether an answer by `model` may be kept under this key: only one by
    /// the target itself. A fallback model, or a stronger tier backing the
    /// tier up, answered because the target failed; kept, it would go on
    /// answering for the target after it recovered.
    pub fn kept_from(&self, config: &Config, model: ModelId) -> bool {
        match self.target {
            Some(Target::Tier(tier)) => config.tiers.get(tier).is_some_and(|tier| tier.models.contains(&model)),
            Some(Target::Model(named)) => named == model,
            None => false,
        }
    }
}

/// The cache's part: none (`None`: the tenant has no cache, or the
/// endpoint is not cached), bypassed, or a ticket.
pub fn plan(
    config: &Config,
    tenant: Option<usize>,
    endpoint: Endpoint,
    plan: &RequestPlan,
    chat_body: &[u8],
    headers: &HeaderMap,
    dropped: &[&'static str],
) -> Option<Result<CacheTicket, CacheResult>> {
    let policy = config.cache.policy(tenant)?;
    if !matches!(endpoint, Endpoint::ChatCompletions | Endpoint::Messages) {
        return None;
    }
    let directives = headers.get("cache-control").unwrap_or_default().to_ascii_lowercase();
    let has = |directive: &str| directives.split(',').any(|item| item.trim() == directive);
    let no_store = has("no-store");
    // A translated request that lost something the answer depends on
    // (`thinking`, `top_k`, …) is not described by its chat body: its key
    // would match a request without it. Cache breakpoints change no answer.
    let lossy = dropped.iter().any(|feature| *feature != "cache_control");
    // A request that may go to its provider as the client sent it (Messages
    // to Anthropic) is not described by its chat body either: that provider
    // reads fields and `anthropic-*` headers the chat form has no place for.
    let native = plan.attempts.native != NativeApi::None;
    if no_store || lossy || native || plan.screening.action != PiiAction::None {
        return Some(Err(CacheResult::Bypass));
    }
    let Ok(request) = admit_request(policy, chat_body) else {
        return Some(Err(CacheResult::Bypass));
    };
    let tenant_name = tenant
        .and_then(|id| config.governance.as_ref()?.tenants.get(id))
        .map(|tenant| tenant.name.as_str());
    let target = target(plan);
    let mut policy = *policy;
    let tier_setting = match target {
        Some(Target::Tier(tier)) => config.cache.tiers.get(tier).copied().flatten(),
        _ => None,
    };
    if let Some(setting) = tier_setting {
        if !setting.enabled {
            return Some(Err(CacheResult::Bypass));
        }
        policy.ttl_ms = setting.ttl_ms.unwrap_or(policy.ttl_ms);
    }
    let name = target_name(config, target);
    let semantic = config.cache.semantic_threshold(tenant).and_then(|threshold| {
        let (context, text) = request_context(&request, tenant_name, &name)?;
        Some(SemanticProbe {
            context,
            text,
            threshold,
        })
    });
    Some(Ok(CacheTicket {
        key: request.key(tenant_name, &name),
        target,
        policy,
        look_up: !has("no-cache"),
        stream: plan.attempts.stream,
        include_usage: plan.attempts.client_wants_usage,
        semantic,
    }))
}

/// What the answer is asked of: the tier a scored or forced request was
/// routed to (its models answer alike for the cache's purpose), else the
/// model named.
fn target(plan: &RequestPlan) -> Option<Target> {
    let decision = &plan.decision;
    match (decision.tier, decision.models.first()) {
        (Some(tier), _) => Some(Target::Tier(tier)),
        (None, Some(model)) => Some(Target::Model(*model)),
        (None, None) => None,
    }
}

fn target_name(config: &Config, target: Option<Target>) -> String {
    match target {
        Some(Target::Tier(tier)) => format!("tier:{}", config.tiers[tier].name),
        Some(Target::Model(model)) => format!("model:{}", config.models[model].name),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::{plan_chat, ClientHints, Situation};
    use crate::testing::{governed_config, ALL_HEALTHY};

    fn config() -> Config {
        let mut config = governed_config();
        config.cache = crate::config::cache::resolve(
            Some(&serde_json::from_str(r#"{"enabled": true}"#).unwrap()),
            &[("research", None), ("interns", None)],
            &|_| None,
        )
        .unwrap();
        config
    }

    fn step(
        config: &Config,
        tenant: Option<usize>,
        body: &str,
        headers: &[(&str, &str)],
    ) -> Option<Result<CacheTicket, CacheResult>> {
        let headers: HeaderMap = headers.iter().copied().collect();
        let planned = plan_chat(
            config,
            body.as_bytes(),
            &headers,
            &ClientHints::default(),
            &Situation::open(&ALL_HEALTHY, 0),
        )
        .expect("planned");
        plan(
            config,
            tenant,
            Endpoint::ChatCompletions,
            &planned,
            body.as_bytes(),
            &headers,
            &[],
        )
    }

    const COLD: &str = r#"{"model":"auto","temperature":0,"messages":[{"role":"user","content":"hi"}]}"#;

    #[test]
    fn a_cold_request_gets_a_ticket_keyed_by_tenant() {
        let config = config();
        let research = step(&config, Some(0), COLD, &[]).unwrap().unwrap();
        let interns = step(&config, Some(1), COLD, &[]).unwrap().unwrap();
        assert!(research.look_up && !research.stream);
        assert_ne!(research.key, interns.key);
        let again = step(&config, Some(0), COLD, &[]).unwrap().unwrap();
        assert_eq!(research.key, again.key);
    }

    #[test]
    fn client_directives_and_hot_sampling_bypass() {
        let config = config();
        let no_cache = step(&config, Some(0), COLD, &[("cache-control", "max-age=0, No-Cache")])
            .unwrap()
            .unwrap();
        assert!(!no_cache.look_up);
        assert_eq!(
            step(&config, Some(0), COLD, &[("cache-control", "no-store")]),
            Some(Err(CacheResult::Bypass))
        );
        let hot = COLD.replace(r#""temperature":0"#, r#""temperature":0.9"#);
        assert_eq!(step(&config, Some(0), &hot, &[]), Some(Err(CacheResult::Bypass)));
    }

    #[test]
    fn only_the_target_s_own_answers_are_kept() {
        let config = config();
        let model = |name: &str| config.model_named(name).expect("a sample model");
        // `auto` is routed to the simple tier (small, medium); the stronger
        // tiers (large) back it up only while its models fail.
        let tiered = step(&config, Some(0), COLD, &[]).unwrap().unwrap();
        assert!(tiered.kept_from(&config, model("small")) && tiered.kept_from(&config, model("medium")));
        assert!(!tiered.kept_from(&config, model("large")));
        // A named model's fallbacks answer only while it fails.
        let named = step(&config, Some(0), &COLD.replace(r#""auto""#, r#""small""#), &[])
            .unwrap()
            .unwrap();
        assert_eq!(named.target, Some(Target::Model(model("small"))));
        assert!(named.kept_from(&config, model("small")) && !named.kept_from(&config, model("medium")));
    }

    #[test]
    fn without_a_policy_the_cache_takes_no_part() {
        let config = governed_config();
        assert_eq!(step(&config, Some(0), COLD, &[]), None);
    }

    #[test]
    fn a_tier_can_turn_the_cache_off_or_keep_answers_longer() {
        let mut config = config();
        let simple = config.tier_named("simple").unwrap();
        config.cache.tiers = vec![None; config.tiers.len()];
        config.cache.tiers[simple] = Some(crate::config::cache::TierCache {
            enabled: true,
            ttl_ms: Some(3_600_000),
        });
        let longer = step(&config, Some(0), COLD, &[]).unwrap().unwrap();
        assert_eq!(longer.policy.ttl_ms, 3_600_000);
        config.cache.tiers[simple] = Some(crate::config::cache::TierCache {
            enabled: false,
            ttl_ms: None,
        });
        assert_eq!(step(&config, Some(0), COLD, &[]), Some(Err(CacheResult::Bypass)));
    }

    /// The plan of the cold request, as a Messages request's chat form.
    fn cold_plan(config: &Config) -> RequestPlan {
        plan_chat(
            config,
            COLD.as_bytes(),
            &HeaderMap::default(),
            &ClientHints::default(),
            &Situation::open(&ALL_HEALTHY, 0),
        )
        .expect("planned")
    }

    #[test]
    fn a_translation_that_lost_what_the_answer_depends_on_bypasses() {
        let config = config();
        let headers = HeaderMap::default();
        let planned = cold_plan(&config);
        let with = |dropped: &[&'static str]| {
            plan(
                &config,
                Some(0),
                Endpoint::Messages,
                &planned,
                COLD.as_bytes(),
                &headers,
                dropped,
            )
        };
        assert_eq!(with(&["thinking"]), Some(Err(CacheResult::Bypass)));
        assert!(matches!(with(&["cache_control"]), Some(Ok(_))));
    }

    #[test]
    fn a_request_its_provider_reads_as_the_client_sent_it_bypasses() {
        let config = config();
        let mut planned = cold_plan(&config);
        planned.attempts.native = NativeApi::Messages;
        let step = plan(
            &config,
            Some(0),
            Endpoint::Messages,
            &planned,
            COLD.as_bytes(),
            &HeaderMap::default(),
            &[],
        );
        assert_eq!(step, Some(Err(CacheResult::Bypass)));
    }
}
