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
    let Translation {
        native,
        chat: Translated {
            body: chat_body,
            dropped,
        },
        native_only,
        stored_input,
    } = translate(ingress, body, situation)?;
    let sent_as_it_came = native_only.is_some();
    let client_body = (ingress != Ingress::Chat).then_some(body);
    let mut plan = plan_chat_for(config, &chat_body, headers, hints, situation, native_only, client_body)?;
    refuse_unmaskable(config, situation, &plan, sent_as_it_came)?;
    let chat_body = plan.screening.masked_body.take().unwrap_or(chat_body);
    if stored_input {
        reserve_whole_windows(config, &mut plan);
    }
    keep_client_body_if_native(config, &mut plan, native);
    Ok(TranslatedPlan {
        plan,
        chat_body,
        dropped,
    })
}

/// A client's request as chat, and what planning it must know besides.
struct Translation {
    /// The client's API, for links that speak it.
    native: NativeApi,
    chat: Translated,
    /// Only links speaking the client's API may take it, and the 400 when
    /// none of its candidates does.
    native_only: Option<(NativeApi, GatewayError)>,
    /// Its provider adds stored input (see [`reserve_whole_windows`]).
    stored_input: bool,
}

impl Translation {
    fn new(native: NativeApi, chat: Translated) -> Translation {
        Translation {
            native,
            chat,
            native_only: None,
            stored_input: false,
        }
    }
}

/// Validates the client's body and translates it to chat.
fn translate(ingress: Ingress, body: &[u8], situation: &Situation<'_>) -> Result<Translation, GatewayError> {
    match ingress {
        Ingress::Messages => Ok(Translation::new(
            NativeApi::Messages,
            messages::Request::parse(body)?.to_chat_body()?,
        )),
        Ingress::Responses => translate_responses(body, situation),
        Ingress::Chat => Ok(Translation::new(
            NativeApi::None,
            Translated {
                body: body.to_vec(),
                dropped: Vec::new(),
            },
        )),
        Ingress::CountTokens => Err(GatewayError::invalid(
            "Token counts are answered by the gateway, not routed.",
        )),
    }
}

/// A Responses request, within the tenant's built-in tools. One only OpenAI
/// can take is planned from its texts, and sent as it came.
fn translate_responses(body: &[u8], situation: &Situation<'_>) -> Result<Translation, GatewayError> {
    let request = responses::Request::parse(body)?;
    situation.allows_builtin_tools(request.builtin_tools())?;
    let stored_input = request.reads_stored_input();
    let (chat, native_only) = match request.to_chat_body() {
        Ok(translated) => (translated, None),
        Err(refusal) if request.needs_openai() => {
            let planning = Translated {
                body: request.to_planning_body()?,
                dropped: Vec::new(),
            };
            (planning, Some((NativeApi::Responses, refusal)))
        }
        Err(refusal) => return Err(refusal),
    };
    Ok(Translation {
        native: NativeApi::Responses,
        chat,
        native_only,
        stored_input,
    })
}

/// Masked text exists only in the chat body: a request that can only be
/// sent as it came is refused when the guardrails would mask it.
fn refuse_unmaskable(
    config: &Config,
    situation: &Situation<'_>,
    plan: &RequestPlan,
    sent_as_it_came: bool,
) -> Result<(), GatewayError> {
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
    Ok(())
}

/// Attempts on a provider that speaks the client's API take the client's
/// own body: the router keeps it only when the chain has such a link, and
/// never for a masked request (the client's body holds what was masked).
fn keep_client_body_if_native(config: &Config, plan: &mut RequestPlan, native: NativeApi) {
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
