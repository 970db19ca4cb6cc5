//! What travels between the router filter (which plans a request once) and
//! the upstream filter (which runs once per attempt): the [`AttemptPlan`]
//! going down through Envoy filter state, the [`AttemptTrail`] coming back
//! through the record both keep in their VM (`filter::shared`).
//! Also what the upstream filter does with them: rewrite attempt N for its
//! deployment ([`prepare_attempt`]) and name the cluster of attempt N+1.

use std::borrow::Cow;

use crate::config::{Config, DeploymentId, TierId};
use crate::error::GatewayError;
use crate::headers::HeaderMap;
use crate::health::LeaseToken;
use crate::ingress::{self, messages};
use crate::providers::{self, Call, Operation, ProviderKind, ProviderSpec, ADAPTER_HEADERS, CREDENTIAL_HEADERS};

use super::HeaderEdit;

pub use crate::contract::ATTEMPT_COUNT_HEADER;

/// The 1-based chain position of Envoy's attempt `envoy_attempt`, after
/// `shift` links were skipped.
pub fn link_of_attempt(envoy_attempt: usize, shift: usize) -> usize {
    envoy_attempt.saturating_add(shift)
}

/// The link shift that makes Envoy's next attempt after `attempt` (a
/// chain position reached with `shift`) the 0-based link `to_link`.
pub fn shift_to(attempt: usize, shift: usize, to_link: usize) -> usize {
    to_link.saturating_sub(attempt.saturating_sub(shift))
}

const PLAN_VERSION: &str = "9";

/// The client's own API, when the router kept the client's body because
/// some links of the chain speak that API: attempts on those links send it
/// as it came ([`is_native`]), the others the chat translation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NativeApi {
    #[default]
    None,
    /// Anthropic's Messages API, spoken by `anthropic` providers.
    Messages,
    /// OpenAI's Responses API, spoken by OpenAI itself.
    Responses,
}

/// The router's decision, as the upstream filter needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptPlan {
    /// One deployment per attempt, in order.
    pub chain: Vec<DeploymentId>,
    pub stream: bool,
    /// The client asked for usage in its stream (`stream_options.include_usage`).
    pub client_wants_usage: bool,
    /// The client's API, when links speaking it get the client's body.
    pub native: NativeApi,
    pub operation: Operation,
    /// `max_tokens` to add when the client sent none (a tenant's cap).
    pub max_tokens: Option<u64>,
    /// Half-open trial slots claimed for links: (chain position, lease).
    pub trials: Vec<(usize, LeaseToken)>,
    /// Estimated prompt tokens: what an attempt that reached its provider
    /// without a usage report is billed for its input.
    pub prompt_tokens: u64,
    /// The output limit the request asked for (or a tenant's cap), and the
    /// answers it asked for (`n`): a whole answer that never reached the
    /// gateway is billed up to its bound, as its provider generated it.
    pub output_limit: Option<u64>,
    pub choices: u64,
    /// This request's per-try timeout (see [`per_try_timeout_ms`]).
    pub per_try_timeout_ms: u64,
    /// When the request's deadline ends any attempt still running (epoch
    /// ms; 0: none, a stream): such an attempt was cut by the gateway, not
    /// failed by its provider.
    pub deadline_at_ms: u64,
    /// The router's id of this request in its VM, which its attempts share.
    pub request: u32,
    /// The tier the router chose (none for a named model outside the tiers).
    pub tier: Option<TierId>,
    /// Where a weak whole answer of the decided tier's links goes (its tier
    /// cascades); its tier is `tier`.
    pub escalation: Option<Escalation>,
    /// The client's `:authority`, restored for providers without a host.
    pub authority: String,
}

/// A tier's cascade in one request: answers of the links before `to_link`
/// (the first link outside `tier`) are assessed, and a weak one is
/// replaced by attempting `to_link`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Escalation {
    pub tier: TierId,
    /// 0-based chain position.
    pub to_link: usize,
}

impl AttemptPlan {
    /// `9;<stream>;<usage>;<native api: 0 none, 1 messages, 2 responses>;<operation>;<max tokens or ->;<output limit or ->;<choices>;<per-try ms>;<deadline at>;<prompt tokens>;<request>;<tier or ->[@escalation link];<chain>;<trials or ->;<authority>`
    /// (trials as `position:lease,…`): the authority is last because it is
    /// the only free-form field.
    pub fn encode(&self) -> String {
        let chain: Vec<String> = self.chain.iter().map(|deployment| deployment.to_string()).collect();
        let trials: Vec<String> = self
            .trials
            .iter()
            .map(|(position, lease)| format!("{position}:{lease}"))
            .collect();
        let trials = if trials.is_empty() {
            "-".to_string()
        } else {
            trials.join(",")
        };
        let operation = match self.operation {
            Operation::ChatCompletions => "c",
            Operation::Embeddings => "e",
        };
        let optional = |tokens: Option<u64>| tokens.map_or_else(|| "-".to_string(), |tokens| tokens.to_string());
        let escalation = match (self.escalation, self.tier) {
            (Some(escalation), _) => format!("{}@{}", escalation.tier, escalation.to_link),
            (None, Some(tier)) => tier.to_string(),
            (None, None) => "-".to_string(),
        };
        format!(
            "{PLAN_VERSION};{};{};{};{operation};{};{};{};{};{};{};{};{escalation};{};{trials};{}",
            u8::from(self.stream),
            u8::from(self.client_wants_usage),
            self.native as u8,
            optional(self.max_tokens),
            optional(self.output_limit),
            self.choices,
            self.per_try_timeout_ms,
            self.deadline_at_ms,
            self.prompt_tokens,
            self.request,
            chain.join(","),
            self.authority
        )
    }

    pub fn decode(text: &str) -> Option<AttemptPlan> {
        let mut fields = text.splitn(16, ';');
        if fields.next()? != PLAN_VERSION {
            return None;
        }
        let stream = decode_flag(fields.next()?)?;
        let client_wants_usage = decode_flag(fields.next()?)?;
        let native = decode_native(fields.next()?)?;
        let operation = decode_operation(fields.next()?)?;
        let max_tokens = decode_optional(fields.next()?)?;
        let output_limit = decode_optional(fields.next()?)?;
        let choices = fields.next()?.parse().ok()?;
        let per_try_timeout_ms = fields.next()?.parse().ok()?;
        let deadline_at_ms = fields.next()?.parse().ok()?;
        let prompt_tokens = fields.next()?.parse().ok()?;
        let request = fields.next()?.parse().ok()?;
        let (tier, escalation) = decode_tier(fields.next()?)?;
        let chain = decode_chain(fields.next()?)?;
        let trials = decode_trials(fields.next()?)?;
        let authority = fields.next()?.to_string();
        (!chain.is_empty()).then_some(AttemptPlan {
            chain,
            stream,
            client_wants_usage,
            native,
            operation,
            max_tokens,
            trials,
            prompt_tokens,
            output_limit,
            choices,
            per_try_timeout_ms,
            deadline_at_ms,
            request,
            tier,
            escalation,
            authority,
        })
    }

    /// The trial lease attempt `attempt` (1-based) was planned on, if any.
    pub fn trial_for(&self, attempt: usize) -> Option<LeaseToken> {
        let position = attempt.checked_sub(1)?;
        self.trials
            .iter()
            .find(|(trial_position, _)| *trial_position == position)
            .map(|(_, lease)| *lease)
    }

    /// The trial slots of links no attempt began, given the chain positions
    /// that did (`begun`: `0,2`, as attempts record them): their leases are
    /// given back by the router when the request ends.
    pub fn unbegun_trials<'p>(&'p self, begun: &'p str) -> impl Iterator<Item = (DeploymentId, LeaseToken)> + 'p {
        self.trials.iter().filter_map(move |(position, lease)| {
            let began = begun
                .split(',')
                .any(|entry| entry.parse::<usize>().ok() == Some(*position));
            (!began).then_some((*self.chain.get(*position)?, *lease))
        })
    }

    /// The escalation of attempt `attempt` (1-based), when its answer is
    /// assessed: it is on a link before the escalation's.
    pub fn escalation_for(&self, attempt: usize) -> Option<Escalation> {
        self.escalation.filter(|escalation| attempt <= escalation.to_link)
    }

    /// The deployment of attempt `attempt` (1-based), if the chain has one.
    pub fn deployment_for(&self, attempt: usize) -> Option<DeploymentId> {
        self.chain.get(attempt.checked_sub(1)?).copied()
    }
}

// Decoders of an encoded [`AttemptPlan`]'s fields, one each: `None` for a
// field this version did not write.

fn decode_flag(field: &str) -> Option<bool> {
    match field {
        "0" => Some(false),
        "1" => Some(true),
        _ => None,
    }
}

fn decode_native(field: &str) -> Option<NativeApi> {
    match field {
        "0" => Some(NativeApi::None),
        "1" => Some(NativeApi::Messages),
        "2" => Some(NativeApi::Responses),
        _ => None,
    }
}

fn decode_operation(field: &str) -> Option<Operation> {
    match field {
        "c" => Some(Operation::ChatCompletions),
        "e" => Some(Operation::Embeddings),
        _ => None,
    }
}

fn decode_optional(field: &str) -> Option<Option<u64>> {
    match field {
        "-" => Some(None),
        tokens => Some(Some(tokens.parse().ok()?)),
    }
}

/// `-`, `<tier>`, or `<tier>@<escalation link>`.
fn decode_tier(field: &str) -> Option<(Option<TierId>, Option<Escalation>)> {
    match field {
        "-" => Some((None, None)),
        field => match field.split_once('@') {
            Some((tier, to_link)) => {
                let tier = tier.parse().ok()?;
                let to_link = to_link.parse().ok()?;
                Some((Some(tier), Some(Escalation { tier, to_link })))
            }
            None => Some((Some(field.parse().ok()?), None)),
        },
    }
}

fn decode_chain(field: &str) -> Option<Vec<DeploymentId>> {
    field.split(',').map(|id| id.parse().ok()).collect()
}

/// `-` or `position:lease,…`.
fn decode_trials(field: &str) -> Option<Vec<(usize, LeaseToken)>> {
    match field {
        "-" => Some(Vec::new()),
        trials => trials
            .split(',')
            .map(|entry| {
                let (position, lease) = entry.split_once(':')?;
                Some((position.parse().ok()?, lease.parse().ok()?))
            })
            .collect(),
    }
}

/// The per-try timeout of a request: the configured one, plus, for a whole
/// (non-streamed) chat answer, `output_token_ms` per token its longest link
/// may generate — its headers come only when it is done, so a long answer is
/// not a silent provider. The stretch stops at an equal share of the
/// deadline per link, so a hung provider still leaves the other links their
/// turn (and Envoy ignores a per-try timeout that is not below the deadline).
pub fn per_try_timeout_ms(config: &Config, chain: &[DeploymentId], output_limit: Option<u64>, stream: bool) -> u64 {
    let resilience = &config.resilience;
    if stream {
        return resilience.per_try_timeout_ms;
    }
    let longest = chain
        .iter()
        .filter_map(|&link| config.deployments.get(link))
        .filter_map(|deployment| config.output_limit(deployment.model, output_limit))
        .max()
        .unwrap_or(0);
    let scaled = resilience
        .per_try_timeout_ms
        .saturating_add(longest.saturating_mul(resilience.output_token_ms));
    let links = u64::try_from(chain.len().max(1)).unwrap_or(u64::MAX);
    let share = (resilience.deadline_ms / links).min(resilience.deadline_ms.saturating_sub(1));
    scaled.min(share).max(resilience.per_try_timeout_ms)
}

/// One attempt's result: an HTTP status, or none when no response came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptRecord {
    pub deployment: DeploymentId,
    /// 0 when the attempt got no response (reset, timeout, refused).
    pub status: u16,
    /// A tier's cascade judged the answer weak and escalated the request.
    pub escalated: bool,
}

/// The attempts so far, in the order their answers (or ends) came.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttemptTrail(pub Vec<AttemptRecord>);

impl AttemptTrail {
    pub fn last(&self) -> Option<AttemptRecord> {
        self.0.last().copied()
    }

    /// A cascade escalated one of the attempts.
    pub fn escalated(&self) -> bool {
        self.0.iter().any(|record| record.escalated)
    }

    /// `claude-sonnet:429,gpt-4o:200` (`none` for no response, `weak` for
    /// an answer a cascade escalated).
    pub fn describe(&self, config: &Config) -> String {
        let entries: Vec<String> = self
            .0
            .iter()
            .filter_map(|record| {
                let name = &config.deployments.get(record.deployment)?.name;
                Some(match record.status {
                    _ if record.escalated => format!("{name}:weak"),
                    0 => format!("{name}:none"),
                    status => format!("{name}:{status}"),
                })
            })
            .collect();
        entries.join(",")
    }
}

/// A comma-separated list as kept in filter state, with one more entry.
pub fn append_entry(existing: &str, entry: &str) -> String {
    let mut text = String::with_capacity(existing.len() + entry.len() + 1);
    text.push_str(existing);
    if !text.is_empty() {
        text.push(',');
    }
    text.push_str(entry);
    text
}

/// How long a provider asked us to wait, from `retry-after-ms` or
/// `retry-after` (seconds; an HTTP date counts as unknown).
pub fn retry_after_ms(headers: &HeaderMap) -> Option<u64> {
    let parse = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.trim().parse::<f64>().ok())
            .filter(|value| value.is_finite() && *value >= 0.0)
    };
    parse("retry-after-ms")
        .map(|ms| ms as u64)
        .or_else(|| parse("retry-after").map(|seconds| (seconds * 1000.0) as u64))
}

/// Attempt `attempt` rewritten for its deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedAttempt {
    pub deployment: DeploymentId,
    pub request_headers: Vec<HeaderEdit>,
    pub body: Vec<u8>,
    /// Request fields the provider cannot express (dropped, not failed).
    pub dropped: Vec<&'static str>,
}

/// The cluster attempt `attempt + 1` goes to, if the chain goes on.
pub fn next_cluster<'c>(config: &'c Config, plan: &AttemptPlan, attempt: usize) -> Option<&'c str> {
    let deployment = plan.deployment_for(attempt + 1)?;
    Some(
        config.models[config.deployments.get(deployment)?.model]
            .cluster
            .as_str(),
    )
}

/// The provider call of `deployment` for this plan.
pub fn call_for<'c>(
    config: &'c Config,
    plan: &AttemptPlan,
    deployment: DeploymentId,
    now_unix_seconds: u64,
) -> Call<'c> {
    let model = &config.models[config.deployments[deployment].model];
    Call {
        spec: &config.providers[model.provider].spec,
        model_id: &model.upstream_id,
        credential: config.key_of(deployment).credential.as_ref(),
        operation: plan.operation,
        stream: plan.stream,
        client_wants_usage: plan.client_wants_usage,
        now_unix_seconds,
    }
}

const OUTPUT_LIMIT_KEYS: [&str; 2] = ["max_tokens", "max_completion_tokens"];

/// The body with a tenant's output cap as `max_tokens` when the client set
/// no limit of its own (`null` counts as none: it is removed).
pub fn with_output_cap(body: &[u8], cap: u64) -> Option<Vec<u8>> {
    let is_null = |body: &[u8], key: &str| {
        crate::json_edit::member_value_span(body, key).and_then(|span| body.get(span)) == Some(&b"null"[..])
    };
    let mut edited: Option<Vec<u8>> = None;
    for key in OUTPUT_LIMIT_KEYS {
        let current = edited.as_deref().unwrap_or(body);
        if is_null(current, key) {
            edited = providers::body_edit::remove_member(current, key).or(edited);
        }
    }
    let current = edited.as_deref().unwrap_or(body);
    let asks = OUTPUT_LIMIT_KEYS
        .iter()
        .any(|key| crate::json_edit::member_value_span(current, key).is_some());
    if asks {
        return edited;
    }
    providers::set_member(current, "max_tokens", cap.to_string().as_bytes())
}

/// Rewrites the (original, replayed) request for attempt `attempt`. Header
/// edits are absolute: an earlier attempt's edits are still in the headers.
pub fn prepare_attempt(
    config: &Config,
    plan: &AttemptPlan,
    attempt: usize,
    body: &[u8],
    now_unix_seconds: u64,
) -> Result<PreparedAttempt, GatewayError> {
    let deployment = plan
        .deployment_for(attempt)
        .filter(|deployment| *deployment < config.deployments.len())
        .ok_or_else(|| GatewayError::Internal {
            message: format!("No deployment planned for attempt {attempt}."),
        })?;
    let capped = plan.max_tokens.and_then(|cap| with_output_cap(body, cap));
    let body = capped.as_deref().unwrap_or(body);
    let upstream = providers::build_request(&call_for(config, plan, deployment, now_unix_seconds), body)?;
    let mut request_headers: Vec<HeaderEdit> = CREDENTIAL_HEADERS
        .iter()
        .chain(ADAPTER_HEADERS)
        .filter(|name| !upstream.headers.iter().any(|(set, _)| set == *name))
        .map(|name| HeaderEdit::Remove(Cow::Borrowed(*name)))
        .collect();
    let mut authority_set = false;
    for (name, value) in upstream.headers {
        authority_set |= name == ":authority";
        request_headers.push(HeaderEdit::Set(Cow::Owned(name), value));
    }
    if !authority_set {
        request_headers.push(HeaderEdit::Set(Cow::Borrowed(":authority"), plan.authority.clone()));
    }
    request_headers.push(HeaderEdit::Set(Cow::Borrowed(":path"), upstream.path));
    request_headers.push(HeaderEdit::Remove(Cow::Borrowed("transfer-encoding")));
    request_headers.push(HeaderEdit::Set(
        Cow::Borrowed("content-length"),
        upstream.body.len().to_string(),
    ));
    Ok(PreparedAttempt {
        deployment,
        request_headers,
        body: upstream.body,
        dropped: upstream.dropped,
    })
}

/// Whether the attempt on `deployment` sends the client's own body: the
/// client speaks Anthropic's Messages API and so does the provider, or
/// OpenAI's Responses API and the provider is OpenAI.
pub fn is_native(config: &Config, plan: &AttemptPlan, deployment: DeploymentId) -> bool {
    plan.operation == Operation::ChatCompletions
        && config
            .deployments
            .get(deployment)
            .is_some_and(|target| speaks(&config.provider_of(target.model).spec, plan.native))
}

/// Whether a provider speaks a client's API natively.
pub fn speaks(spec: &ProviderSpec, api: NativeApi) -> bool {
    match api {
        NativeApi::None => false,
        NativeApi::Messages => spec.kind == ProviderKind::Anthropic,
        NativeApi::Responses => spec.kind == ProviderKind::Openai && spec.quirks.responses_api,
    }
}

/// Rewrites attempt `attempt` for a deployment that speaks the client's
/// API ([`is_native`]): the adapter's authority and credentials (as
/// [`prepare_attempt`] gives them for the chat body), but the client's own
/// `native_body` with only `model` replaced. A Messages body keeps the
/// client's `anthropic-version` / `anthropic-beta` (the provider's version
/// when the client sent none); a Responses body goes to the provider's
/// `/responses`.
pub fn prepare_native_attempt(
    config: &Config,
    plan: &AttemptPlan,
    attempt: usize,
    chat_body: &[u8],
    native_body: &[u8],
    client: &HeaderMap,
    now_unix_seconds: u64,
) -> Result<PreparedAttempt, GatewayError> {
    let mut prepared = prepare_attempt(config, plan, attempt, chat_body, now_unix_seconds)?;
    let model = &config.models[config.deployments[prepared.deployment].model];
    let spec = &config.providers[model.provider].spec;
    let not_an_object = || GatewayError::Internal {
        message: "The client's body is not a JSON object.".into(),
    };
    let mut body = ingress::with_model(native_body, &model.upstream_id).ok_or_else(not_an_object)?;
    // A tenant's output cap the client did not ask for is sent, as for chat
    // (Messages bodies always carry their `max_tokens`).
    if let (NativeApi::Responses, Some(cap)) = (plan.native, plan.max_tokens) {
        body =
            providers::set_member(&body, "max_output_tokens", cap.to_string().as_bytes()).ok_or_else(not_an_object)?;
    }
    let native = match plan.native {
        NativeApi::Messages => messages::native_headers(client, &spec.anthropic_version),
        NativeApi::Responses => vec![(":path".to_string(), format!("{}/responses", spec.base_path))],
        NativeApi::None => Vec::new(),
    };
    // The client's headers replace the adapter's; one it did not send stays removed.
    let replaced = |name: &str| name == "content-length" || native.iter().any(|(set, _)| set == name);
    prepared
        .request_headers
        .retain(|edit| !matches!(edit, HeaderEdit::Set(name, _) | HeaderEdit::Remove(name) if replaced(name)));
    for (name, value) in native {
        prepared.request_headers.push(HeaderEdit::Set(Cow::Owned(name), value));
    }
    prepared
        .request_headers
        .push(HeaderEdit::Set(Cow::Borrowed("content-length"), body.len().to_string()));
    prepared.body = body;
    prepared.dropped = Vec::new();
    Ok(prepared)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::sample_config;

    fn plan(chain: Vec<DeploymentId>) -> AttemptPlan {
        AttemptPlan {
            chain,
            stream: true,
            client_wants_usage: false,
            native: NativeApi::None,
            operation: Operation::ChatCompletions,
            max_tokens: None,
            trials: Vec::new(),
            prompt_tokens: 42,
            output_limit: None,
            choices: 1,
            per_try_timeout_ms: 30_000,
            deadline_at_ms: 0,
            request: 7,
            tier: Some(0),
            escalation: None,
            authority: "gw.example:10000".into(),
        }
    }

    #[test]
    fn an_escalation_makes_envoys_next_attempt_its_link() {
        // Chain [small key 1, small key 2, big]: a weak answer at attempt 1
        // goes to link 2 (0-based), skipping the tier's second key.
        let shift = shift_to(1, 0, 2);
        assert_eq!(link_of_attempt(2, shift), 3, "Envoy's second attempt is the third link");
        // After a failover (Envoy's attempt 2 is link 2, no shift) a weak
        // answer escalates to link 3.
        let shift = shift_to(link_of_attempt(2, 0), 0, 3);
        assert_eq!(link_of_attempt(3, shift), 4);
        // A shift already in force is kept in the count.
        assert_eq!(link_of_attempt(3, shift_to(link_of_attempt(2, 1), 1, 4)), 5);
    }

    #[test]
    fn the_plan_round_trips_through_filter_state() {
        let plan = AttemptPlan {
            authority: "odd;host".into(),
            ..plan(vec![3, 0, 7])
        };
        assert_eq!(AttemptPlan::decode(&plan.encode()), Some(plan.clone()));
        let with_trials = AttemptPlan {
            trials: vec![(1, 587_000_123), (2, 9)],
            ..plan
        };
        assert_eq!(AttemptPlan::decode(&with_trials.encode()), Some(with_trials.clone()));
        let untiered = AttemptPlan {
            tier: None,
            ..with_trials.clone()
        };
        assert_eq!(AttemptPlan::decode(&untiered.encode()), Some(untiered));
        let cascading = AttemptPlan {
            tier: Some(1),
            escalation: Some(Escalation { tier: 1, to_link: 2 }),
            ..with_trials.clone()
        };
        assert_eq!(AttemptPlan::decode(&cascading.encode()), Some(cascading.clone()));
        assert_eq!(
            cascading.escalation_for(2).map(|escalation| escalation.to_link),
            Some(2)
        );
        assert_eq!(cascading.escalation_for(3), None, "the escalation link's answer stands");
        let native = AttemptPlan {
            native: NativeApi::Messages,
            ..with_trials.clone()
        };
        assert_eq!(AttemptPlan::decode(&native.encode()), Some(native));
        assert_eq!(with_trials.trial_for(2), Some(587_000_123));
        assert_eq!(with_trials.trial_for(1), None);
        assert_eq!(with_trials.unbegun_trials("1").collect::<Vec<_>>(), vec![(7, 9)]);
        assert_eq!(with_trials.unbegun_trials("").count(), 2);
        assert_eq!(with_trials.unbegun_trials("2,1").count(), 0);
        for broken in [
            "",
            "2;1;0;c;1;h",
            "1;1;0;c;;h",
            "1;x;0;c;1;h",
            "1;1;0;c;a,b;h",
            "1;1;0;x;1;h",
            "1;1;0",
        ] {
            assert_eq!(AttemptPlan::decode(broken), None, "{broken}");
        }
    }

    #[test]
    fn a_whole_answer_gets_time_per_token_of_its_longest_link_below_the_deadline() {
        let mut config = sample_config();
        config.resilience.per_try_timeout_ms = 1_000;
        config.resilience.output_token_ms = 20;
        config.resilience.deadline_ms = 200_000;
        let deployment = |name| config.models[config.model_named(name).unwrap()].deployments[0];
        let (small, medium) = (deployment("small"), deployment("medium"));
        let medium_provider = config.models[config.model_named("medium").unwrap()].provider;
        config.providers[medium_provider].spec.kind = providers::ProviderKind::Anthropic;
        // A stream's headers come at once: the configured timeout.
        assert_eq!(per_try_timeout_ms(&config, &[small], Some(500), true), 1_000);
        assert_eq!(
            per_try_timeout_ms(&config, &[small], Some(500), false),
            1_000 + 500 * 20
        );
        // Unbounded on OpenAI; Anthropic's adapter sends 4096 when none is set.
        assert_eq!(per_try_timeout_ms(&config, &[small], None, false), 1_000);
        assert_eq!(
            per_try_timeout_ms(&config, &[small, medium], None, false),
            1_000 + 4_096 * 20
        );
        // Envoy ignores a per-try timeout not below the deadline.
        assert_eq!(per_try_timeout_ms(&config, &[small], Some(300_000), false), 199_999);
        // A link's stretch stops at its share of the deadline: a hung primary
        // leaves the fallback its turn.
        assert_eq!(
            per_try_timeout_ms(&config, &[small, small], Some(300_000), false),
            100_000
        );
        // The client's max_tokens is held to the model's own limit.
        let small_model = config.model_named("small").unwrap();
        config.models[small_model].max_output_tokens = Some(50);
        assert_eq!(
            per_try_timeout_ms(&config, &[small], Some(300_000), false),
            1_000 + 50 * 20
        );
    }

    #[test]
    fn a_tenant_cap_becomes_max_tokens_unless_the_client_set_one() {
        let config = sample_config();
        let small = config.models[config.model_named("small").unwrap()].deployments[0];
        let capped = AttemptPlan {
            max_tokens: Some(256),
            ..plan(vec![small])
        };
        let bare = br#"{"model":"auto","messages":[{"role":"user","content":"hi"}]}"#;
        let prepared = prepare_attempt(&config, &capped, 1, bare, 0).unwrap();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&prepared.body).unwrap()["max_tokens"],
            256
        );
        let own = br#"{"model":"auto","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}"#;
        let prepared = prepare_attempt(&config, &capped, 1, own, 0).unwrap();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&prepared.body).unwrap()["max_tokens"],
            10
        );
        let null = br#"{"model":"auto","max_tokens":null,"max_completion_tokens":null,"messages":[{"role":"user","content":"hi"}]}"#;
        let prepared = prepare_attempt(&config, &capped, 1, null, 0).unwrap();
        let sent: serde_json::Value = serde_json::from_slice(&prepared.body).unwrap();
        assert_eq!(sent["max_tokens"], 256, "a null limit is no limit: the cap goes in");
        assert!(sent.get("max_completion_tokens").is_none());
    }

    #[test]
    fn retry_after_is_read_in_seconds_or_milliseconds() {
        let seconds: HeaderMap = [("retry-after", "3")].into_iter().collect();
        assert_eq!(retry_after_ms(&seconds), Some(3_000));
        let millis: HeaderMap = [("retry-after-ms", "250"), ("retry-after", "9")].into_iter().collect();
        assert_eq!(retry_after_ms(&millis), Some(250));
        let date: HeaderMap = [("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")].into_iter().collect();
        assert_eq!(retry_after_ms(&date), None);
        assert_eq!(retry_after_ms(&HeaderMap::default()), None);
    }

    #[test]
    fn attempts_map_to_the_chain_in_order() {
        let plan = plan(vec![3, 0]);
        assert_eq!(plan.deployment_for(1), Some(3));
        assert_eq!(plan.deployment_for(2), Some(0));
        assert_eq!(plan.deployment_for(3), None);
        assert_eq!(plan.deployment_for(0), None);
    }

    #[test]
    fn the_trail_describes_each_attempt_by_deployment_name() {
        let record = |deployment, status, escalated| AttemptRecord {
            deployment,
            status,
            escalated,
        };
        let trail = AttemptTrail(vec![record(1, 429, false), record(0, 200, true), record(2, 0, false)]);
        assert_eq!(trail.last(), Some(record(2, 0, false)));
        assert!(trail.escalated());
        let config = sample_config();
        let names: Vec<&str> = (0..3).map(|index| config.deployments[index].name.as_str()).collect();
        assert_eq!(
            trail.describe(&config),
            format!("{}:429,{}:weak,{}:none", names[1], names[0], names[2])
        );
        assert!(!AttemptTrail(vec![record(1, 429, false)]).escalated());
    }

    #[test]
    fn each_attempt_is_rewritten_absolutely_for_its_deployment() {
        let config = sample_config();
        let small = config.models[config.model_named("small").unwrap()].deployments[0];
        let medium = config.models[config.model_named("medium").unwrap()].deployments[0];
        let plan = plan(vec![small, medium]);
        let body = br#"{"model":"auto","messages":[{"role":"user","content":"hi"}]}"#;
        let first = prepare_attempt(&config, &plan, 1, body, 0).unwrap();
        let second = prepare_attempt(&config, &plan, 2, body, 0).unwrap();
        assert_eq!(first.deployment, small);
        assert!(first.request_headers.contains(&HeaderEdit::Set(
            Cow::Borrowed("authorization"),
            "Bearer sk-test-openai".into()
        )));
        assert!(second.request_headers.contains(&HeaderEdit::Set(
            Cow::Borrowed("authorization"),
            "Bearer sk-ant-from-env".into()
        )));
        assert!(second
            .request_headers
            .contains(&HeaderEdit::Set(Cow::Borrowed(":authority"), "gw.example:10000".into())));
        assert!(String::from_utf8_lossy(&second.body).contains("claude-haiku"));
        assert_eq!(next_cluster(&config, &plan, 1), Some("anthropic"));
        assert_eq!(next_cluster(&config, &plan, 2), None);
        assert!(prepare_attempt(&config, &plan, 3, body, 0).is_err());
    }

    #[test]
    fn a_native_messages_attempt_sends_the_clients_body_and_headers() {
        let config = crate::testing::anthropic_kind_config();
        let small = config.models[config.model_named("small").unwrap()].deployments[0];
        let medium = config.models[config.model_named("medium").unwrap()].deployments[0];
        let plan = AttemptPlan {
            native: NativeApi::Messages,
            ..plan(vec![small, medium])
        };
        assert!(!is_native(&config, &plan, small));
        assert!(is_native(&config, &plan, medium));
        let translated_only = AttemptPlan {
            native: NativeApi::None,
            ..plan.clone()
        };
        assert!(!is_native(&config, &translated_only, medium));

        let chat = br#"{"model":"auto","max_completion_tokens":9,"messages":[{"role":"user","content":"hi"}]}"#;
        let messages = br#"{"model":"auto","max_tokens":9,"top_k":3,"messages":[{"role":"user","content":"hi"}]}"#;
        let client: HeaderMap = [("anthropic-beta", "tools-2024"), ("anthropic-version", "2023-06-01")]
            .into_iter()
            .collect();
        let native = prepare_native_attempt(&config, &plan, 2, chat, messages, &client, 0).unwrap();
        assert_eq!(native.deployment, medium);
        assert_eq!(
            native.body,
            br#"{"model":"claude-haiku","max_tokens":9,"top_k":3,"messages":[{"role":"user","content":"hi"}]}"#
                .to_vec()
        );
        let set = |name: &str| {
            native.request_headers.iter().find_map(|edit| match edit {
                HeaderEdit::Set(key, value) if key == name => Some(value.as_str()),
                _ => None,
            })
        };
        assert_eq!(set("x-api-key"), Some("sk-ant-from-env"));
        assert_eq!(set(":path"), Some("/v1/messages"));
        assert_eq!(set("anthropic-beta"), Some("tools-2024"));
        assert_eq!(set("content-length"), Some(native.body.len().to_string().as_str()));
        let lengths = native
            .request_headers
            .iter()
            .filter(|edit| matches!(edit, HeaderEdit::Set(key, _) if key == "content-length"))
            .count();
        assert_eq!(lengths, 1);
        // Without the client's version, the provider's.
        let bare = prepare_native_attempt(&config, &plan, 2, chat, messages, &HeaderMap::default(), 0).unwrap();
        assert!(bare.request_headers.contains(&HeaderEdit::Set(
            Cow::Borrowed("anthropic-version"),
            "2023-06-01".into()
        )));
        assert!(bare
            .request_headers
            .contains(&HeaderEdit::Remove(Cow::Borrowed("anthropic-beta"))));
    }

    #[test]
    fn a_native_responses_attempt_goes_to_openais_responses_path_with_the_tenants_cap() {
        let config = crate::testing::anthropic_kind_config();
        let small = config.models[config.model_named("small").unwrap()].deployments[0];
        let medium = config.models[config.model_named("medium").unwrap()].deployments[0];
        let plan = AttemptPlan {
            native: NativeApi::Responses,
            max_tokens: Some(64),
            ..plan(vec![medium, small])
        };
        assert!(is_native(&config, &plan, small));
        assert!(!is_native(&config, &plan, medium), "Anthropic does not speak Responses");
        let chat = br#"{"model":"auto","messages":[{"role":"user","content":"hi"}]}"#;
        let responses = br#"{"model":"auto","input":"hi","reasoning":{"effort":"low"}}"#;
        let native = prepare_native_attempt(&config, &plan, 2, chat, responses, &HeaderMap::default(), 0).unwrap();
        assert_eq!(native.deployment, small);
        let body: serde_json::Value = serde_json::from_slice(&native.body).unwrap();
        assert_eq!(body["model"], "gpt-4o-mini");
        assert_eq!(body["reasoning"]["effort"], "low", "what chat would drop survives");
        assert_eq!(body["max_output_tokens"], 64);
        assert!(native
            .request_headers
            .contains(&HeaderEdit::Set(Cow::Borrowed(":path"), "/v1/responses".into())));
        assert!(native.request_headers.contains(&HeaderEdit::Set(
            Cow::Borrowed("authorization"),
            "Bearer sk-test-openai".into()
        )));
    }
}
