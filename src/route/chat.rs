//! The chat-completions plan: screen the body, decide the route, and turn
//! the decision into the attempt plan and the headers to set.

use crate::config::{Config, ExplainMode};
use crate::error::GatewayError;
use crate::headers::HeaderMap;
use crate::providers::Operation;
use crate::request::parse_chat;

use super::attempts::{self, AttemptPlan, Escalation, NativeApi};
use super::decide::decide;
use super::explain::decision_headers;
use super::select::Expressibility;
use super::{downstream_edits, screen, ClientHints, RequestPlan, RoutingDecision, Situation};

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
pub(super) fn plan_chat_for(
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
/// [`candidates`](super::candidates::candidates) orders them). Streams only
/// when the cascade holds their first tokens (`stream_tokens`); a chain that
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
