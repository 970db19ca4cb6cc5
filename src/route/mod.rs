//! Planning a request: which model serves it, why, and exactly what must
//! change in the request and the response. The plan is plain data; the
//! filter applies it without further decisions.
//!
//! Precedence for `model: "auto"`: trusted client headers, then operator
//! rules, then the classifier's score. A concrete model name is honoured as
//! asked (and rejected if it cannot take the request), within the tenant's
//! tier caps: above its `max_tier` it is refused, above its downgrade tier
//! in force that tier serves it (see [`select::named_model`]).

pub mod affinity;
pub mod attempts;
pub mod chain;
pub mod pin;
pub mod response;
pub mod rules;
pub mod screen;
pub mod select;
pub mod strategy;

use std::borrow::Cow;
use std::fmt::Write as _;

use crate::classify::{Classification, Language};
use crate::config::affinity::AffinitySource;
use crate::config::governance::Tenant;
use crate::config::guardrails::Guardrails;
use crate::config::{Config, DeploymentId, ExplainMode, ModelId, RuleAction, TierId};
use crate::error::GatewayError;
use crate::guard::Decision;
use crate::headers::HeaderMap;
use crate::health::Availability;
use crate::ingress::{messages, responses, Ingress, Translated};
use crate::providers::{Operation, CREDENTIAL_HEADERS};
use crate::request::{parse_chat, parse_embeddings, ChatRequest, PromptView};
pub use attempts::{AttemptPlan, AttemptTrail};
use attempts::{Escalation, NativeApi};
pub use chain::HealthView;
use pin::Pinning;
use select::{Expressibility, NamedModel, Pick, Requirements};
use strategy::{CostBasis, ModelStats};

pub const HEADER_MODEL: &str = "x-signalbox-model";
pub const HEADER_PROVIDER: &str = "x-signalbox-provider";
pub const HEADER_TIER: &str = "x-signalbox-tier";
pub const HEADER_SCORE: &str = "x-signalbox-score";
pub const HEADER_SIGNALS: &str = "x-signalbox-signals";
pub const HEADER_REASON: &str = "x-signalbox-reason";
/// With explanations: what named the conversation the deployment was kept for.
pub const HEADER_AFFINITY: &str = "x-signalbox-affinity";
/// With explanations and tier pinning: `new`, `kept` or `raised`.
pub const HEADER_PIN: &str = "x-signalbox-pin";
pub const HEADER_EXPLAIN: &str = "x-signalbox-explain";
pub const HEADER_ROUTE: &str = "x-signalbox-route";
pub const HEADER_ATTEMPTS: &str = "x-signalbox-attempts";
/// After a cascade: the weaknesses that escalated the cheaper answer.
pub const HEADER_CASCADE: &str = "x-signalbox-cascade";
/// Output tokens assumed for cost ordering when the request sets no limit.
const DEFAULT_OUTPUT_TOKENS: u64 = 512;
/// Client steering headers, honoured only with `trust_client_headers`.
pub const HEADER_FORCE_TIER: &str = "x-signalbox-tier";
pub const HEADER_FORCE_MODEL: &str = "x-signalbox-model";
/// Every client-sent header with this prefix is dropped before routing.
pub const CLIENT_HEADER_PREFIX: &str = "x-signalbox-";

/// What the client asked for through headers, already filtered by trust.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientHints {
    pub explain: bool,
    pub tier: Option<String>,
    pub model: Option<String>,
}

/// Why a model was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionSource {
    /// The client named a concrete model.
    Explicit,
    /// A trusted `x-signalbox-tier` / `x-signalbox-model` header.
    ClientHeader,
    /// Operator rule, by index.
    Rule(usize),
    /// The guardrails confined the request to the private model.
    Guardrails,
    /// The classifier's score.
    Score,
    /// The conversation's pinned tier, over a lower score.
    Pinned,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RoutingDecision {
    /// Deployments to try, in order; the first is the primary.
    pub chain: Vec<DeploymentId>,
    /// The candidate models the chain was drawn from (cost estimates use
    /// the most expensive).
    pub models: Vec<ModelId>,
    /// Nothing was healthy: the chain holds the least-bad deployment.
    pub degraded: bool,
    /// Half-open trial slots claimed for links of the chain (position, lease).
    pub trials: Vec<(usize, crate::health::LeaseToken)>,
    /// The tenant's downgrade tier replaced the scored one.
    pub downgraded: bool,
    /// The tier whose pool supplied the primary (none for a model served
    /// as named).
    pub tier: Option<TierId>,
    /// The tier first chosen, when a different tier had to supply the model.
    pub escalated_from: Option<TierId>,
    pub source: DecisionSource,
    pub classification: Option<Classification>,
    /// Prompt plus requested output, for context-window checks.
    pub estimated_tokens: u64,
    /// Estimated prompt tokens (system, history, tools, last message).
    pub prompt_tokens: u64,
    /// Output budget: the client's `max_tokens`, or the tenant's cap.
    pub max_output_tokens: Option<u64>,
    /// Answers asked for (`n`): each may use the output budget.
    pub choices: u64,
    /// What named the conversation this request's draw came from.
    pub affinity: Option<AffinitySource>,
    /// What tier pinning did, when it applied.
    pub pinning: Option<pin::Pinning>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum HeaderEdit {
    Remove(Cow<'static, str>),
    Set(Cow<'static, str>, String),
}

/// Everything the router filter applies to one request.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestPlan {
    pub decision: RoutingDecision,
    /// For the upstream filter, stored in filter state.
    pub attempts: AttemptPlan,
    pub request_headers: Vec<HeaderEdit>,
    /// Response headers known at decision time (model and route are added
    /// once the attempt that answered is known).
    pub response_headers: Vec<(&'static str, String)>,
    pub explain: bool,
    /// The `model` the client sent.
    pub requested_model: String,
    /// What the guardrails found and did (the masked body, the vault).
    pub screening: screen::Screening,
}

/// The API paths Signalbox answers or routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    ChatCompletions,
    Embeddings,
    Models,
    /// Anthropic's `POST /v1/messages`, translated to chat.
    Messages,
    /// `POST /v1/messages/count_tokens`, answered by the gateway.
    CountTokens,
    /// OpenAI's `POST /v1/responses`, translated to chat.
    Responses,
    /// Not Signalbox's: passed through to the Envoy route table untouched.
    Other,
}

impl Endpoint {
    /// The client format of a request that is translated to chat (and its
    /// answer back), or answered in that format's shape.
    pub fn ingress(self) -> Option<Ingress> {
        match self {
            Endpoint::Messages => Some(Ingress::Messages),
            Endpoint::CountTokens => Some(Ingress::CountTokens),
            Endpoint::Responses => Some(Ingress::Responses),
            Endpoint::ChatCompletions | Endpoint::Embeddings | Endpoint::Models | Endpoint::Other => None,
        }
    }

    /// A request planned and sent to a provider (metrics, access log).
    pub fn is_routed(self) -> bool {
        matches!(
            self,
            Endpoint::ChatCompletions | Endpoint::Embeddings | Endpoint::Messages | Endpoint::Responses
        )
    }

    /// The endpoint's name in reports and the access log.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Embeddings => "embeddings",
            Endpoint::Messages => "messages",
            Endpoint::CountTokens => "messages.count_tokens",
            Endpoint::Responses => "responses",
            Endpoint::ChatCompletions | Endpoint::Models | Endpoint::Other => "chat.completions",
        }
    }
}

pub fn endpoint(path: &str) -> Endpoint {
    let path = path.split_once('?').map_or(path, |(path, _query)| path);
    match path.trim_end_matches('/') {
        "/v1/chat/completions" | "/chat/completions" => Endpoint::ChatCompletions,
        "/v1/embeddings" | "/embeddings" => Endpoint::Embeddings,
        "/v1/models" | "/models" => Endpoint::Models,
        _ => match Ingress::for_path(path) {
            Some(Ingress::Messages) => Endpoint::Messages,
            Some(Ingress::CountTokens) => Endpoint::CountTokens,
            Some(Ingress::Responses) => Endpoint::Responses,
            Some(Ingress::Chat) | None => Endpoint::Other,
        },
    }
}

/// Checks what the headers say about a JSON request body, before it is
/// buffered: a compressed or non-JSON body would be forwarded blind (the
/// classifier cannot read it, and providers would fail on it).
pub fn check_body_headers(headers: &HeaderMap) -> Result<(), GatewayError> {
    let encoding = headers.get("content-encoding").map(str::trim).unwrap_or_default();
    if !encoding.is_empty() && !encoding.eq_ignore_ascii_case("identity") {
        return Err(GatewayError::invalid_param(
            "content-encoding",
            "Compressed request bodies are not accepted; send the JSON body uncompressed.",
        ));
    }
    let media_type = headers
        .get("content-type")
        .and_then(|value| value.split(';').next())
        .map(|value| value.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let json = media_type.is_empty()
        || media_type == "application/json"
        || (media_type.starts_with("application/") && media_type.ends_with("+json"));
    if !json {
        return Err(GatewayError::invalid_param(
            "content-type",
            "The request body must be JSON: send `Content-Type: application/json`.",
        ));
    }
    Ok(())
}

/// Reads the client's hints; steering hints only when the config trusts clients.
pub fn client_hints(config: &Config, headers: &HeaderMap) -> ClientHints {
    let explain = headers
        .get(HEADER_EXPLAIN)
        .is_some_and(|value| matches!(value.trim(), "1" | "true" | "yes"));
    let steering = |name: &str| {
        if config.trust_client_headers {
            headers
                .get(name)
                .map(|value| value.trim().to_string())
                .filter(|value| !value.is_empty())
        } else {
            None
        }
    };
    ClientHints {
        explain,
        tier: steering(HEADER_FORCE_TIER),
        model: steering(HEADER_FORCE_MODEL),
    }
}

/// The `GET /v1/models` answer: auto aliases and every configured model.
pub fn models_listing(config: &Config) -> Vec<u8> {
    let auto = config.auto_models.iter().map(|alias| (alias.as_str(), "signalbox"));
    let models = config
        .models
        .iter()
        .map(|model| (model.name.as_str(), config.providers[model.provider].name.as_str()));
    let data: Vec<serde_json::Value> = auto
        .chain(models)
        .map(|(id, owner)| serde_json::json!({"id": id, "object": "model", "created": 0, "owned_by": owner}))
        .collect();
    serde_json::json!({"object": "list", "data": data})
        .to_string()
        .into_bytes()
}

/// What a plan needs besides the request: health of the deployments and a
/// random draw (for weighted, canary and key choices).
pub struct Situation<'a> {
    pub health: &'a dyn HealthView,
    pub draw: u64,
    /// The calling tenant's policy, when governance is on.
    pub policy: Option<&'a Tenant>,
    /// The tenant is past its soft threshold: route to its downgrade tier.
    pub downgrade: bool,
    /// The guardrails let the request reach this (private) model only.
    pub confined_to: Option<ModelId>,
}

impl<'a> Situation<'a> {
    /// No tenant policy (governance off).
    pub fn open(health: &'a dyn HealthView, draw: u64) -> Situation<'a> {
        Situation {
            health,
            draw,
            policy: None,
            downgrade: false,
            confined_to: None,
        }
    }

    /// A confined request goes to its private model whatever the tenant's
    /// model list says: the operator named that model for the data.
    fn allows(&self, model: ModelId) -> bool {
        match self.confined_to {
            Some(private) => model == private,
            None => self.policy.is_none_or(|tenant| tenant.allows(model)),
        }
    }

    /// The tenant's own guardrails, else every request's.
    pub fn guardrails<'c>(&self, config: &'c Config) -> &'c Guardrails
    where
        'a: 'c,
    {
        self.policy
            .and_then(|tenant| tenant.guardrails.as_ref())
            .unwrap_or(&config.guardrails)
    }

    /// OpenAI's built-in tools run their own models and bill outside the
    /// price table: a governed tenant uses only those its policy lists.
    fn allows_builtin_tools<'t>(
        &self,
        mut tools: impl Iterator<Item = (&'t str, &'t str)>,
    ) -> Result<(), GatewayError> {
        let Some(tenant) = self.policy else { return Ok(()) };
        match tools.find(|(_, kind)| !tenant.allowed_builtin_tools.iter().any(|allowed| allowed == kind)) {
            Some((param, kind)) => Err(GatewayError::Forbidden {
                message: format!("The built-in tool `{kind}` (`{param}`) is not allowed for this key."),
            }),
            None => Ok(()),
        }
    }

    /// The tenant's hard cap: its `max_tier`, else the strongest tier.
    fn max_tier(&self, config: &Config) -> TierId {
        let top = config.tiers.len().saturating_sub(1);
        self.policy.and_then(|tenant| tenant.max_tier).unwrap_or(top).min(top)
    }

    /// The highest tier this request may use, and whether a downgrade set it.
    fn ceiling(&self, config: &Config) -> (TierId, bool) {
        let cap = self.max_tier(config);
        match self
            .policy
            .and_then(|tenant| tenant.downgrade_tier)
            .filter(|_| self.downgrade)
        {
            Some(downgrade) if downgrade < cap => (downgrade, true),
            _ => (cap, false),
        }
    }
}

/// Plans a chat-completions request from its body, its headers (for rules
/// and sticky assignment), the client's hints and the deployments' health.
pub fn plan_chat(
    config: &Config,
    body: &[u8],
    headers: &HeaderMap,
    hints: &ClientHints,
    situation: &Situation<'_>,
) -> Result<RequestPlan, GatewayError> {
    plan_chat_for(config, body, headers, hints, situation, None, None)
}

/// [`plan_chat`], with the chain kept to providers that speak a client's
/// API natively when `native_only` says so (and why, for the 400 when
/// none of the request's candidates does). `client_body` is the body a
/// translated request came in (screened too: native attempts send it).
fn plan_chat_for(
    config: &Config,
    body: &[u8],
    headers: &HeaderMap,
    hints: &ClientHints,
    situation: &Situation<'_>,
    native_only: Option<(NativeApi, GatewayError)>,
    client_body: Option<&[u8]>,
) -> Result<RequestPlan, GatewayError> {
    let request = parse_chat(body)?;
    let screening = screen::screen(situation.guardrails(config), body, &request, client_body)?;
    let situation = &Situation {
        confined_to: screening.private_model,
        ..*situation
    };
    let view = request.prompt_view();
    let expressible =
        Expressibility::new(body, Operation::ChatCompletions, request.stream.unwrap_or(false)).native_only(native_only);
    let decision = decide(config, &request, &view, &expressible, headers, hints, situation)?;
    let explain = match config.explain {
        ExplainMode::Never => false,
        ExplainMode::OnRequest => hints.explain,
        ExplainMode::Always => true,
    };
    let stream = request.stream.unwrap_or(false);
    let attempts = AttemptPlan {
        chain: decision.chain.clone(),
        stream,
        client_wants_usage: request.wants_stream_usage(),
        native: NativeApi::None,
        operation: Operation::ChatCompletions,
        authority: headers.get(":authority").unwrap_or_default().to_string(),
        // A tenant's output cap is also a default the provider must honour,
        // so the reservation made for it is an upper bound.
        max_tokens: decision
            .max_output_tokens
            .filter(|_| request.max_output_tokens().is_none()),
        trials: decision.trials.clone(),
        prompt_tokens: decision.prompt_tokens,
        output_limit: decision.max_output_tokens,
        choices: decision.choices,
        per_try_timeout_ms: attempts::per_try_timeout_ms(config, &decision.chain, decision.max_output_tokens, stream),
        deadline_at_ms: 0,
        request: 0,
        tier: decision.tier,
        escalation: escalation_for(config, &decision, stream),
    };
    let request_headers = downstream_edits(config, &attempts, headers);
    let mut response_headers = decision_headers(config, &decision, explain);
    response_headers.extend(screening.headers());
    Ok(RequestPlan {
        decision,
        attempts,
        request_headers,
        response_headers,
        explain,
        requested_model: request.model.as_str().to_string(),
        screening,
    })
}

/// Where weak answers of the decided tier go, when that tier cascades: the
/// first link of the chain outside the tier (a stronger tier's, as
/// [`candidates`] orders them). Streams only when the cascade holds their
/// first tokens (`stream_tokens`); a chain that
/// never leaves the tier (`max_attempts` too small, stronger tiers above
/// the tenant's ceiling) has nowhere to escalate.
fn escalation_for(config: &Config, decision: &RoutingDecision, stream: bool) -> Option<Escalation> {
    let tier = decision.tier?;
    let cascading = config.tiers.get(tier)?;
    let cascade = cascading.cascade?;
    if stream && cascade.stream_tokens == 0 {
        return None;
    }
    let to_link = decision
        .chain
        .iter()
        .position(|deployment| !cascading.models.contains(&config.deployments[*deployment].model))?;
    (to_link > 0).then_some(Escalation { tier, to_link })
}

/// A Messages or Responses request planned as the chat request it
/// translates to: the router replaces the client's body with `chat_body`,
/// and the chat pipeline (governance, failover, provider adapters, usage)
/// takes it from there. A request whose chain has a link that speaks the
/// client's API (Anthropic for Messages, OpenAI for Responses) is marked
/// `native`: the router keeps the client's body for those attempts
/// ([`attempts::prepare_native_attempt`]). A Responses request only OpenAI
/// can take (stored state, built-in tools) is planned from its texts with
/// only OpenAI links in its chain, or refused when there is none.
#[derive(Debug, Clone, PartialEq)]
pub struct TranslatedPlan {
    pub plan: RequestPlan,
    pub chat_body: Vec<u8>,
    /// What the client sent that chat cannot express (see [`Translated`]).
    pub dropped: Vec<&'static str>,
}

/// Plans a request in another ingress format: validated once (a 400 names
/// the field), translated to a chat body, then planned exactly as chat
/// (model names, aliases and `auto` included).
pub fn plan_translated(
    config: &Config,
    ingress: Ingress,
    body: &[u8],
    headers: &HeaderMap,
    hints: &ClientHints,
    situation: &Situation<'_>,
) -> Result<TranslatedPlan, GatewayError> {
    let mut native_only = None;
    let mut stored_input = false;
    let (
        native,
        Translated {
            body: chat_body,
            dropped,
        },
    ) = match ingress {
        Ingress::Messages => (NativeApi::Messages, messages::Request::parse(body)?.to_chat_body()?),
        Ingress::Responses => {
            let request = responses::Request::parse(body)?;
            situation.allows_builtin_tools(request.builtin_tools())?;
            stored_input = request.reads_stored_input();
            match request.to_chat_body() {
                Ok(translated) => (NativeApi::Responses, translated),
                // Only OpenAI can take it: planned from its texts, sent as it came.
                Err(refusal) if request.needs_openai() => {
                    native_only = Some((NativeApi::Responses, refusal));
                    let planning = Translated {
                        body: request.to_planning_body()?,
                        dropped: Vec::new(),
                    };
                    (NativeApi::Responses, planning)
                }
                Err(refusal) => return Err(refusal),
            }
        }
        Ingress::Chat => (
            NativeApi::None,
            Translated {
                body: body.to_vec(),
                dropped: Vec::new(),
            },
        ),
        Ingress::CountTokens => {
            return Err(GatewayError::invalid(
                "Token counts are answered by the gateway, not routed.",
            ))
        }
    };
    let sent_as_it_came = native_only.is_some();
    let client_body = (ingress != Ingress::Chat).then_some(body);
    let mut plan = plan_chat_for(config, &chat_body, headers, hints, situation, native_only, client_body)?;
    // Masked text exists only in the chat body: the client's own body
    // cannot go out, so no attempt is native.
    let decision = situation.guardrails(config).pii.decide(&plan.screening.found);
    if let (Decision::Mask(masked), true) = (decision, sent_as_it_came) {
        return Err(GatewayError::ContentRefused {
            code: screen::PII_REFUSAL,
            message: format!(
                "The request carries data the gateway masks ({}), but it can only be sent to OpenAI as it came.",
                masked.names()
            ),
        });
    }
    let chat_body = plan.screening.masked_body.take().unwrap_or(chat_body);
    if stored_input {
        reserve_whole_windows(config, &mut plan);
    }
    // Attempts on a provider that speaks the client's API take the client's
    // own body: the router keeps it only when the chain has such a link.
    if plan.screening.vault.is_none() {
        plan.attempts.native = native;
    }
    if !plan
        .attempts
        .chain
        .iter()
        .any(|deployment| attempts::is_native(config, &plan.attempts, *deployment))
    {
        plan.attempts.native = NativeApi::None;
    }
    Ok(TranslatedPlan {
        plan,
        chat_body,
        dropped,
    })
}

/// A request whose provider adds stored input (an earlier response, a
/// conversation) may fill its model's whole context window: its prompt
/// is taken at the largest window of its chain, so the reservation stays an
/// upper bound and an attempt without a usage report is billed that much.
fn reserve_whole_windows(config: &Config, plan: &mut RequestPlan) {
    let window = plan
        .decision
        .chain
        .iter()
        .filter_map(|deployment| config.deployments.get(*deployment))
        .map(|deployment| config.models[deployment.model].context_window)
        .max()
        .unwrap_or(0);
    let output = plan.decision.max_output_tokens.unwrap_or(0);
    let prompt = window.saturating_sub(output).max(plan.decision.prompt_tokens);
    plan.decision.prompt_tokens = prompt;
    plan.decision.estimated_tokens = plan.decision.estimated_tokens.max(prompt.saturating_add(output));
    plan.attempts.prompt_tokens = prompt;
}

/// Plans an embeddings request: the client must name a configured model;
/// its fallbacks back it up.
pub fn plan_embeddings(
    config: &Config,
    body: &[u8],
    headers: &HeaderMap,
    situation: &Situation<'_>,
) -> Result<RequestPlan, GatewayError> {
    let request = parse_embeddings(body)?;
    let requested = request.model.as_str();
    if config.is_auto(requested) {
        return Err(GatewayError::invalid_param(
            "model",
            "Embeddings need a model name; `auto` routing is for chat.",
        ));
    }
    let model = config
        .model_named(requested)
        .ok_or_else(|| GatewayError::UnknownModel {
            model: requested.to_string(),
        })?;
    // The same policy as chat: a tenant may use only its allowed models,
    // and only providers that can express the request join the chain.
    if !situation.allows(model) {
        return Err(GatewayError::Forbidden {
            message: format!("Model `{requested}` is not allowed for this key."),
        });
    }
    // A model in a tier's pool is held to the tenant's `max_tier` as in
    // chat; embedding models usually sit in no pool (tiers order chat
    // models), and `allowed_models` governs those.
    let max_tier = situation.max_tier(config);
    let within_max_tier = |candidate: ModelId| {
        !config.tiers.iter().any(|tier| tier.models.contains(&candidate)) || select::rank(config, candidate) <= max_tier
    };
    if !within_max_tier(model) {
        return Err(GatewayError::Forbidden {
            message: format!("Model `{requested}` is above this key's maximum tier."),
        });
    }
    let expressible = Expressibility::new(body, Operation::Embeddings, false);
    let models: Vec<ModelId> = std::iter::once(model)
        .chain(config.models[model].fallbacks.iter().copied())
        .filter(|candidate| {
            situation.allows(*candidate) && within_max_tier(*candidate) && expressible.allows(config, *candidate)
        })
        .collect();
    if models.is_empty() {
        return Err(expressible.refusal().unwrap_or_else(|| GatewayError::NoUsableModel {
            message: "No deployment of this model is configured.".into(),
        }));
    }
    let chain = chain::build(config, &models, situation.health, situation.draw);
    let estimated_tokens = u64::from(crate::tokens::estimate(request.input.get()));
    let decision = RoutingDecision {
        chain: chain.deployments,
        models,
        degraded: chain.degraded,
        trials: chain.trials,
        tier: None,
        escalated_from: None,
        downgraded: false,
        source: DecisionSource::Explicit,
        classification: None,
        estimated_tokens,
        prompt_tokens: estimated_tokens,
        max_output_tokens: Some(0),
        choices: 1,
        affinity: None,
        pinning: None,
    };
    if decision.chain.is_empty() {
        return Err(GatewayError::NoUsableModel {
            message: "No deployment of this model is configured.".into(),
        });
    }
    let attempts = AttemptPlan {
        chain: decision.chain.clone(),
        stream: false,
        client_wants_usage: false,
        native: NativeApi::None,
        operation: Operation::Embeddings,
        authority: headers.get(":authority").unwrap_or_default().to_string(),
        max_tokens: None,
        trials: decision.trials.clone(),
        prompt_tokens: decision.prompt_tokens,
        output_limit: None,
        choices: 1,
        per_try_timeout_ms: config.resilience.per_try_timeout_ms,
        deadline_at_ms: 0,
        request: 0,
        tier: decision.tier,
        escalation: None,
    };
    let screening = screen::screen_embeddings(situation.guardrails(config), body)?;
    let request_headers = downstream_edits(config, &attempts, headers);
    Ok(RequestPlan {
        decision,
        attempts,
        request_headers,
        response_headers: screening.headers(),
        explain: false,
        requested_model: requested.to_string(),
        screening,
    })
}

/// What the router changes on the request itself: client credentials go,
/// Envoy learns how many retries the chain allows and the deadline.
fn downstream_edits(config: &Config, attempts: &AttemptPlan, headers: &HeaderMap) -> Vec<HeaderEdit> {
    let mut edits: Vec<HeaderEdit> = CREDENTIAL_HEADERS
        .iter()
        .filter(|name| headers.contains(name))
        .map(|name| HeaderEdit::Remove(Cow::Borrowed(*name)))
        .collect();
    // Envoy retries the request on the next deployment; one retry per extra link.
    edits.push(HeaderEdit::Set(
        Cow::Borrowed("x-envoy-max-retries"),
        attempts.chain.len().saturating_sub(1).to_string(),
    ));
    if !attempts.stream {
        edits.push(HeaderEdit::Set(
            Cow::Borrowed("x-envoy-upstream-rq-timeout-ms"),
            config.resilience.deadline_ms.to_string(),
        ));
    }
    if attempts.per_try_timeout_ms != config.resilience.per_try_timeout_ms {
        edits.push(HeaderEdit::Set(
            Cow::Borrowed("x-envoy-upstream-rq-per-try-timeout-ms"),
            attempts.per_try_timeout_ms.to_string(),
        ));
    }
    edits
}

/// The draw for this request, and the affinity source that fixed it: the
/// tier's sticky header (one user, one model) first, then the request's
/// conversation (its [`affinity`] hash), else the random draw.
fn draw_for(
    config: &Config,
    tier: Option<TierId>,
    conversation: Option<(u64, AffinitySource)>,
    headers: &HeaderMap,
    situation: &Situation<'_>,
) -> (u64, Option<AffinitySource>) {
    let sticky = tier
        .and_then(|tier| config.tiers[tier].sticky_header.as_deref())
        .and_then(|name| headers.get(name));
    if let Some(value) = sticky {
        let hash = value.bytes().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3)
        });
        return (hash, None);
    }
    match conversation {
        Some((draw, source)) => (draw, Some(source)),
        None => (situation.draw, None),
    }
}

/// Ordered candidate models: the primary's tier (or the named model), then
/// fallbacks; only models that can take the request.
fn candidates(
    config: &Config,
    primary: Primary,
    usable: &dyn Fn(ModelId) -> bool,
    situation: &Situation<'_>,
    basis: CostBasis,
    stream: bool,
    draw: u64,
) -> Vec<ModelId> {
    let health = situation.health;
    let (ceiling, _) = situation.ceiling(config);
    let fits = |model: &ModelId| usable(*model);
    let mut ordered: Vec<ModelId> = match primary {
        // A fallback ranked above the ceiling is left out, as a stronger
        // tier is for tier routing.
        // Confined: the private model's own deployments, no fallbacks.
        Primary::Model(model) if situation.confined_to == Some(model) => std::iter::once(model).filter(fits).collect(),
        Primary::Model(model) => std::iter::once(model)
            .chain(config.models[model].fallbacks.iter().copied())
            .filter(|candidate| fits(candidate) && select::rank(config, *candidate) <= ceiling)
            .collect(),
        Primary::Tier(tier) => {
            let fitting: Vec<ModelId> = config.tiers[tier].models.iter().copied().filter(fits).collect();
            let stats: Vec<ModelStats> = fitting
                .iter()
                .map(|model| model_stats(config, *model, health, stream))
                .collect();
            let canary_share = config.tiers[tier].canary.as_ref().map_or(0.0, |canary| {
                match (&canary.rollout, health.canary_record(tier)) {
                    (Some(rollout), Some(record)) => record.share(rollout),
                    _ => canary.share,
                }
            });
            let mut ordered = strategy::order(config, &config.tiers[tier], &fitting, &stats, basis, draw, canary_share);
            // Stronger tiers (up to the ceiling) back the tier up when its own models fail.
            for stronger in config.tiers.iter().take(ceiling + 1).skip(tier + 1) {
                ordered.extend(stronger.models.iter().copied().filter(fits));
            }
            ordered
        }
    };
    let mut seen = Vec::with_capacity(ordered.len());
    ordered.retain(|model| {
        let first = !seen.contains(model);
        seen.push(*model);
        first
    });
    ordered
}

/// What the strategies need about a model, from its deployments' health.
fn model_stats(config: &Config, model: ModelId, health: &dyn HealthView, stream: bool) -> ModelStats {
    let mut stats = ModelStats::default();
    for &deployment in &config.models[model].deployments {
        let record = health.health(deployment);
        stats.in_flight += record.in_flight(health.now_ms(), &config.resilience.health);
        let histogram = if stream { &record.first_token } else { &record.latency };
        if let Some(p95) = histogram.quantile_ms(0.95) {
            stats.p95_ms = Some(stats.p95_ms.map_or(p95, |known| known.min(p95)));
        }
    }
    stats
}

/// Where the chain starts: a named (or forced) model, or a tier.
#[derive(Debug, Clone, Copy)]
enum Primary {
    Model(ModelId),
    Tier(TierId),
}

fn decide(
    config: &Config,
    request: &ChatRequest<'_>,
    view: &PromptView<'_>,
    expressible: &Expressibility<'_>,
    headers: &HeaderMap,
    hints: &ClientHints,
    situation: &Situation<'_>,
) -> Result<RoutingDecision, GatewayError> {
    let requested = request.model.as_str();
    let explicit = !config.is_auto(requested);
    let named = config.model_named(requested);
    if explicit && named.is_none() {
        return Err(GatewayError::UnknownModel {
            model: requested.to_string(),
        });
    }
    let policy_cap = situation.policy.and_then(|tenant| tenant.max_tokens_per_request);
    if let (Some(cap), Some(asked)) = (policy_cap, request.max_output_tokens()) {
        if asked > cap {
            return Err(GatewayError::invalid_param(
                "max_tokens",
                format!("This key may ask for at most {cap} output tokens."),
            ));
        }
    }
    let classification = if explicit {
        hints.explain.then(|| config.classifier.classify(view))
    } else {
        Some(config.classifier.classify(view))
    };
    let prompt_tokens = classification
        .as_ref()
        .map_or_else(|| view.last_user_tokens(), |c| c.prompt_tokens);
    let max_output_tokens = request.max_output_tokens().or(policy_cap);
    let requirements = Requirements::of(view, prompt_tokens, max_output_tokens);
    let permitted = |model: ModelId| requirements.unmet_by(&config.models[model]).is_none() && situation.allows(model);
    let usable = |model: ModelId| permitted(model) && expressible.allows(config, model);
    let score = classification.as_ref().map_or(0.0, |c| c.score);
    let (ceiling, downgraded) = situation.ceiling(config);
    let tenant = situation.policy.map(|tenant| tenant.name.as_str());
    let conversation = config
        .affinity
        .as_ref()
        .and_then(|affinity| affinity::draw(affinity, request, headers, tenant));
    let mut pinning = None;

    let (primary, source, scored_tier) = match named.filter(|_| explicit && situation.confined_to.is_none()) {
        Some(model) => {
            if !situation.allows(model) {
                return Err(GatewayError::Forbidden {
                    message: format!("Model `{requested}` is not allowed for this key."),
                });
            }
            // The tenant's tier caps hold for a named model as for `auto`:
            // above `max_tier` it is refused; above the downgrade tier in
            // force, that tier serves the request.
            match select::named_model(config, model, situation.max_tier(config), ceiling) {
                NamedModel::AboveMaxTier(cap) => {
                    return Err(GatewayError::Forbidden {
                        message: format!(
                            "Model `{requested}` is above this key's maximum tier `{}`; name a model of that tier or use `auto`.",
                            config.tiers[cap].name
                        ),
                    });
                }
                NamedModel::Downgraded(tier) => (Primary::Tier(tier), DecisionSource::Explicit, None),
                NamedModel::AsAsked => {
                    if let Some(reason) = requirements.unmet_by(&config.models[model]) {
                        return Err(GatewayError::NoUsableModel {
                            message: format!(
                                "Model `{requested}` cannot take this request ({reason}; about {} tokens needed).",
                                requirements.tokens
                            ),
                        });
                    }
                    (Primary::Model(model), DecisionSource::Explicit, None)
                }
            }
        }
        // Whatever was asked, the guardrails' private model serves it.
        None if let Some(private) = situation.confined_to => {
            if let Some(reason) = requirements.unmet_by(&config.models[private]) {
                return Err(GatewayError::NoUsableModel {
                    message: format!(
                        "This request's data may only reach model `{}`, which cannot take it ({reason}).",
                        config.models[private].name
                    ),
                });
            }
            (Primary::Model(private), DecisionSource::Guardrails, None)
        }
        None => match forced_choice(config, request, view, classification.as_ref(), headers, hints)? {
            // A forced model that cannot (or may not) take the request, or
            // ranks above the tenant's ceiling, falls back to the scored
            // tier rather than failing the request.
            Some((RuleAction::Model(model), source)) if usable(model) && select::rank(config, model) <= ceiling => {
                (Primary::Model(model), source, None)
            }
            Some((RuleAction::Tier(tier), source)) => (Primary::Tier(tier.min(ceiling)), source, Some(tier)),
            _ => {
                let scored = config.tier_for_score(score);
                let pin = config.affinity.as_ref().and_then(|affinity| affinity.pin_tier);
                let (tier, source) = match (pin, conversation) {
                    (Some(pin), Some((hash, _))) => {
                        let (tier, pinned) =
                            pin::apply(config, &pin, scored, score, situation.health.pinned_tier(hash));
                        pinning = Some(pinned);
                        let source = match pinned {
                            Pinning::Kept { scored } if scored != tier => DecisionSource::Pinned,
                            _ => DecisionSource::Score,
                        };
                        (tier, source)
                    }
                    _ => (scored, DecisionSource::Score),
                };
                (Primary::Tier(tier.min(ceiling)), source, Some(tier))
            }
        },
    };
    // The tier that can actually supply a model (a stronger one, up to the
    // ceiling, when the chosen tier's windows are too small).
    let primary = match primary {
        Primary::Tier(tier) => {
            let fits = |model: ModelId| requirements.unmet_by(&config.models[model]).is_none();
            let Pick { tier: supplying, .. } = select::pick(config, tier, ceiling, &usable).ok_or_else(|| {
                // Blame the providers' formats when a permitted model fits;
                // the policy only when, without it, some model would fit.
                if select::pick(config, tier, ceiling, &permitted).is_some() {
                    expressible.refusal().unwrap_or_else(|| GatewayError::NoUsableModel {
                        message: "No configured model can take this request.".into(),
                    })
                } else if select::pick(config, tier, config.tiers.len() - 1, &fits).is_some() {
                    GatewayError::Forbidden { message: "No model this key may use can take this request.".into() }
                } else {
                    GatewayError::NoUsableModel {
                        message: format!(
                            "No configured model can take this request (about {} tokens needed, or a capability no model offers).",
                            requirements.tokens
                        ),
                    }
                }
            })?;
            Primary::Tier(supplying)
        }
        model => model,
    };
    let tier = match primary {
        Primary::Tier(tier) => Some(tier),
        Primary::Model(_) => None,
    };
    if let (Some(_), Some((hash, _)), Some(tier)) = (pinning, conversation, tier) {
        situation.health.pin_tier(hash, tier);
    }
    let (draw, affinity) = draw_for(config, tier, conversation, headers, situation);
    let basis = CostBasis {
        prompt_tokens: requirements.tokens,
        output_tokens: max_output_tokens.unwrap_or(DEFAULT_OUTPUT_TOKENS),
    };
    let stream = request.stream.unwrap_or(false);
    let models = candidates(config, primary, &usable, situation, basis, stream, draw);
    let chain = chain::build(config, &models, situation.health, draw);
    if chain.deployments.is_empty() {
        return Err(expressible.refusal().unwrap_or_else(|| GatewayError::NoUsableModel {
            message: "No configured model deployment can take this request.".into(),
        }));
    }
    Ok(RoutingDecision {
        chain: chain.deployments,
        models,
        degraded: chain.degraded,
        trials: chain.trials,
        tier,
        escalated_from: scored_tier.filter(|scored| Some(*scored) != tier),
        downgraded: downgraded && tier == Some(ceiling),
        source,
        classification,
        estimated_tokens: requirements.tokens,
        prompt_tokens: requirements.tokens.saturating_sub(max_output_tokens.unwrap_or(0)),
        max_output_tokens,
        choices: request.choices(),
        affinity,
        pinning,
    })
}

/// A tier or model forced by a trusted client header or an operator rule.
fn forced_choice(
    config: &Config,
    request: &ChatRequest<'_>,
    view: &PromptView<'_>,
    classification: Option<&Classification>,
    headers: &HeaderMap,
    hints: &ClientHints,
) -> Result<Option<(RuleAction, DecisionSource)>, GatewayError> {
    if let Some(name) = &hints.model {
        let model = config
            .model_named(name)
            .ok_or_else(|| GatewayError::UnknownModel { model: name.clone() })?;
        return Ok(Some((RuleAction::Model(model), DecisionSource::ClientHeader)));
    }
    if let Some(name) = &hints.tier {
        let tier = config
            .tier_named(name)
            .ok_or_else(|| GatewayError::invalid(format!("Unknown tier `{name}` in {HEADER_FORCE_TIER}.")))?;
        return Ok(Some((RuleAction::Tier(tier), DecisionSource::ClientHeader)));
    }
    let language = classification.map_or(Language::Undetermined, |classification| classification.language);
    Ok(rules::first_match(config, request, view, language, headers)
        .map(|index| (config.rules[index].action, DecisionSource::Rule(index))))
}

/// Response headers known once the route is decided.
fn decision_headers(config: &Config, decision: &RoutingDecision, explain: bool) -> Vec<(&'static str, String)> {
    let mut headers = Vec::with_capacity(4);
    if let Some(tier) = decision.tier {
        headers.push((HEADER_TIER, config.tiers[tier].name.clone()));
    }
    if !explain {
        return headers;
    }
    if let Some(classification) = &decision.classification {
        headers.push((HEADER_SCORE, format!("{:.3}", classification.score)));
        headers.push((HEADER_SIGNALS, classification.explain()));
    }
    headers.push((HEADER_REASON, decision_reason(config, decision)));
    if let Some(source) = decision.affinity {
        headers.push((HEADER_AFFINITY, source.name().to_string()));
    }
    if let Some(pinning) = decision.pinning {
        headers.push((HEADER_PIN, pinning.name().to_string()));
    }
    headers
}

/// Why the model was chosen: `score`, `explicit`, `client-header` or
/// `rule:<name>`, with `;escalated-from:<tier>`, `;downgraded`, `;degraded`.
pub fn decision_reason(config: &Config, decision: &RoutingDecision) -> String {
    let mut reason = match decision.source {
        DecisionSource::Explicit => "explicit".to_string(),
        DecisionSource::ClientHeader => "client-header".to_string(),
        DecisionSource::Rule(index) => format!("rule:{}", config.rules[index].name),
        DecisionSource::Score => "score".to_string(),
        DecisionSource::Guardrails => "guardrails".to_string(),
        DecisionSource::Pinned => "pinned".to_string(),
    };
    if let Some(from) = decision.escalated_from {
        let _ = write!(reason, ";escalated-from:{}", config.tiers[from].name);
    }
    if decision.downgraded {
        reason.push_str(";downgraded");
    }
    if decision.degraded {
        reason.push_str(";degraded");
    }
    reason
}

/// Whether a final response means every attempt failed: the client then gets
/// one OpenAI-style error instead of the last provider's (or Envoy's) answer.
pub fn is_exhausted(status: u16) -> bool {
    status == 429 || status >= 500
}

/// The final response of an exhausted chain: its status and the wait the
/// last provider asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FinalResponse {
    pub status: u16,
    pub retry_after_ms: Option<u64>,
}

/// The error for a request whose every attempt failed. `retry-after` is the
/// soonest moment a deployment of the chain leaves its cooldown or open
/// state, or the wait the last provider asked for.
pub fn exhausted_error(
    config: &Config,
    plan: &AttemptPlan,
    trail: &AttemptTrail,
    last: FinalResponse,
    health: &dyn HealthView,
) -> GatewayError {
    let now = health.now_ms();
    let status = last.status;
    let settings = &config.resilience.health;
    let ready_at = plan
        .chain
        .iter()
        .filter_map(
            |deployment| match health.health(*deployment).availability(now, settings) {
                Availability::CoolingDown { until_ms } | Availability::Open { until_ms } => Some(until_ms),
                _ => None,
            },
        )
        .chain(last.retry_after_ms.map(|wait| now.saturating_add(wait)))
        .min();
    let rate_limited = status == 429 && trail.0.iter().all(|record| record.status == 429);
    let attempts = trail.describe(config);
    GatewayError::ProvidersUnavailable {
        attempts,
        rate_limited,
        retry_after_secs: ready_at.map(|until| until.saturating_sub(now).div_ceil(1000).max(1)),
    }
}

/// Response headers that depend on which attempt answered: the model and
/// provider that served it, `primary` / `fallback-N` / `cascade`, and with
/// explain (or after a cascade) the attempted chain; after a cascade, the
/// weaknesses it found (`cascade`, as the upstream filter recorded them). With no trail (no attempt reached a provider) the plan's
/// primary stands in.
pub fn attempt_headers(
    config: &Config,
    plan: &AttemptPlan,
    trail: &AttemptTrail,
    explain: bool,
    cascade: Option<&str>,
) -> Vec<(&'static str, String)> {
    let served_by = trail
        .last()
        .map(|record| record.deployment)
        .or_else(|| plan.chain.first().copied());
    let mut headers = Vec::with_capacity(4);
    if let Some(deployment) = served_by.and_then(|deployment| config.deployments.get(deployment)) {
        let model = &config.models[deployment.model];
        headers.push((HEADER_MODEL, model.name.clone()));
        headers.push((HEADER_PROVIDER, config.providers[model.provider].name.clone()));
    }
    let escalated = trail.escalated();
    let route = match trail.0.len() {
        _ if escalated => "cascade".to_string(),
        0 | 1 => "primary".to_string(),
        attempts => format!("fallback-{}", attempts - 1),
    };
    headers.push((HEADER_ROUTE, route));
    if (explain || escalated) && !trail.0.is_empty() {
        headers.push((HEADER_ATTEMPTS, trail.describe(config)));
    }
    if let Some(weaknesses) = cascade.filter(|_| escalated) {
        headers.push((HEADER_CASCADE, weaknesses.to_string()));
    }
    headers
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod credential_tests;

#[cfg(test)]
mod affinity_tests;
#[cfg(test)]
mod pin_tests;
