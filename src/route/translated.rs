//! Requests in another client format (Anthropic Messages, OpenAI
//! Responses), planned as the chat request they translate to.

use crate::config::Config;
use crate::error::GatewayError;
use crate::guard::Decision;
use crate::headers::HeaderMap;
use crate::ingress::{messages, responses, Ingress, Translated};

use super::attempts::{self, NativeApi};
use super::chat::plan_chat_for;
use super::{screen, ClientHints, RequestPlan, Situation};

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
