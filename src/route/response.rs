//! How one attempt's answer becomes the client's: streamed successes go
//! through the provider's stream translator chunk by chunk; everything else
//! (non-streamed answers, every error) is translated whole. Token usage is
//! handed to the router through filter state, for accounting.

use crate::assess::{assess, Assessment, Expectations};
use crate::config::cascade::Cascade;
use crate::config::{Config, DeploymentId};
use crate::failure::FailureKind;
use crate::ingress::Ingress;
use crate::providers::{self, Call, Failure, Operation, StreamTranslator, TokenUsage};

use super::attempts::{call_for, is_native, AttemptPlan, Escalation, NativeApi};
use super::HeaderEdit;

/// Whether a request's response code details say its client ended it: an
/// HTTP/1 client closed its connection (`downstream_remote_disconnect`), or
/// an HTTP/2 or HTTP/3 client reset its stream (`http2.remote_reset`: the
/// downstream codec's remote is the client).
pub fn ended_by_client(details: &str) -> bool {
    details == "downstream_remote_disconnect" || (details.starts_with("http") && details.ends_with(".remote_reset"))
}

/// How an attempt ended, as its upstream filter saw it.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct AttemptEnd {
    /// The response status, if response headers came.
    pub status: Option<u16>,
    /// What the answer (or its stream) said went wrong.
    pub failure: Option<Failure>,
    /// The response reached its end (not cut by a reset, a timeout or the client).
    pub complete: bool,
    /// The client went away first.
    pub client_gone: bool,
    /// The request's deadline ended it (see [`AttemptPlan::deadline_at_ms`]).
    pub deadline_passed: bool,
    /// The attempt was answered by the gateway itself and never sent.
    pub never_sent: bool,
    pub elapsed_ms: u64,
}

/// What an ended attempt tells the deployment's shared health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing about the provider: it was never asked, or the client left
    /// before it could answer (one impatient client must not open a
    /// circuit for every tenant).
    Silent,
    Succeeded,
    Failed(FailureKind),
}

/// Judges an ended attempt. Only the provider's own failures count: a
/// provider cut off mid-answer by its own reset or a timeout failed; one
/// cut off by the client did not.
pub fn verdict(end: &AttemptEnd, per_try_timeout_ms: u64) -> Verdict {
    if end.never_sent {
        return Verdict::Silent;
    }
    if let Some(failure) = end.failure {
        return Verdict::Failed(failure.kind);
    }
    let Some(status) = end.status else {
        // Cut by the client, or by the deadline after earlier links used
        // most of it: nothing said about this provider.
        if end.client_gone || end.deadline_passed {
            return Verdict::Silent;
        }
        // No response: refused or reset, or nothing before the per-try timeout.
        let timed_out = end.elapsed_ms.saturating_mul(10) >= per_try_timeout_ms.saturating_mul(9);
        return Verdict::Failed(if timed_out {
            FailureKind::Timeout
        } else {
            FailureKind::Unreachable
        });
    };
    match FailureKind::from_status(status) {
        Some(kind) => Verdict::Failed(kind),
        None if end.complete => Verdict::Succeeded,
        // A success the client stopped reading: the provider was delivering.
        None if end.client_gone => Verdict::Succeeded,
        // A success cut short by the provider's reset or an idle timeout.
        None => Verdict::Failed(FailureKind::Unreachable),
    }
}

/// What an attempt's provider may have generated that the gateway did not
/// see counted, for an attempt that ends without a usage report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Unreported {
    /// Estimated prompt tokens.
    pub prompt_tokens: u64,
    /// Output relayed to the client (counted from a stream).
    pub relayed_output_tokens: u64,
    /// The output bound of a whole (non-streamed) answer: its provider
    /// generates it all before sending anything, and bills it even when the
    /// attempt timed out or the client left. Zero for a stream, which stops
    /// when its reader does.
    pub unseen_output_tokens: u64,
}

/// What an ended attempt consumed at its provider, and whether that is an
/// estimate. The provider's usage when it reported it (a stream cut short
/// keeps what it did report, e.g. Anthropic's input tokens, and never less
/// output than was relayed). Otherwise an attempt that reached the provider
/// and may have made it work — a success cut short by the client or the
/// provider, a timeout, a client gone before any answer — is billed the
/// prompt estimate plus its output: what was relayed, or for a whole answer
/// its bound. Error answers and attempts that never left cost nothing:
/// providers do not bill them.
pub fn attempt_consumption(
    end: &AttemptEnd,
    reported: Option<TokenUsage>,
    unreported: &Unreported,
    per_try_timeout_ms: u64,
) -> Option<(TokenUsage, bool)> {
    if end.never_sent {
        return None;
    }
    let complete_report = end.complete && end.failure.is_none();
    if let (true, Some(usage)) = (complete_report, reported) {
        return Some((usage, false));
    }
    let reached = match (end.status, verdict(end, per_try_timeout_ms)) {
        (Some(status), _) => (200..300).contains(&status),
        (None, Verdict::Silent | Verdict::Failed(FailureKind::Timeout)) => true,
        (None, _) => false,
    };
    if !reached && reported.is_none() {
        return None;
    }
    let output = unreported.relayed_output_tokens.max(unreported.unseen_output_tokens);
    Some(match reported {
        // What the provider did report stands; the output seen bounds it below.
        Some(usage) => (
            TokenUsage {
                output: usage.output.max(output),
                ..usage
            },
            usage.output < output || !end.complete,
        ),
        None => (
            TokenUsage {
                input: unreported.prompt_tokens,
                output,
                ..TokenUsage::default()
            },
            true,
        ),
    })
}

/// Whether this attempt's answer is translated as a stream.
pub fn is_stream(plan: &AttemptPlan, status: u16) -> bool {
    plan.stream && plan.operation == Operation::ChatCompletions && (200..300).contains(&status)
}

/// A whole answer, translated.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    /// The status the router (and, if final, the client) sees.
    pub status: u16,
    pub body: Vec<u8>,
    pub usage: Option<TokenUsage>,
    pub failure: Option<Failure>,
}

/// Status that makes Envoy retry on the next link of the chain.
pub const RETRY_STATUS: u16 = 503;

/// Translates a non-streamed answer (or any error) of attempt `attempt`.
/// With `context_length_fallback`, a prompt too long for this model becomes
/// a retry when the next link has a larger context window.
#[allow(clippy::too_many_arguments)]
pub fn finish_buffered(
    config: &Config,
    plan: &AttemptPlan,
    attempt: usize,
    deployment: DeploymentId,
    request_body: &[u8],
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
    now_unix_seconds: u64,
) -> Finished {
    let call = call_for(config, plan, deployment, now_unix_seconds);
    let translated = match plan.operation {
        Operation::ChatCompletions if reads_responses_api(config, plan, deployment) => {
            providers::read_responses_answer(&call, status, headers, body)
        }
        Operation::ChatCompletions => providers::translate_response(&call, status, headers, body),
        Operation::Embeddings => providers::translate_embeddings(&call, request_body, status, headers, body),
    };
    let mut finished = Finished {
        status: translated.status,
        body: translated.body,
        usage: translated.usage,
        failure: translated.failure,
    };
    let too_long = finished
        .failure
        .is_some_and(|failure| failure.kind == FailureKind::ContextLength);
    if too_long
        && config.resilience.context_length_fallback
        && next_has_larger_window(config, plan, attempt, deployment)
    {
        finished.status = RETRY_STATUS;
    }
    finished
}

/// The edits that make a held answer's headers describe its rewritten
/// whole body: `status`, a JSON content type, `length` bytes, no content
/// encoding. `received` are the provider's headers; an edit they already
/// satisfy is left out (each is a host call). The length is always set:
/// a success's own was taken off when its headers were held.
pub fn whole_answer_header_edits(received: &[(String, String)], status: u16, length: usize) -> Vec<HeaderEdit> {
    let status = status.to_string();
    let mut edits = Vec::with_capacity(4);
    if providers::header(received, ":status") != Some(status.as_str()) {
        edits.push(HeaderEdit::Set(":status".into(), status));
    }
    if providers::header(received, "content-type") != Some("application/json") {
        edits.push(HeaderEdit::Set("content-type".into(), "application/json".into()));
    }
    edits.push(HeaderEdit::Set("content-length".into(), length.to_string()));
    if providers::header(received, "content-encoding").is_some() {
        edits.push(HeaderEdit::Remove("content-encoding".into()));
    }
    edits
}

/// A tier's cascade judged one whole answer.
#[derive(Debug, Clone, PartialEq)]
pub struct CascadeCheck {
    pub escalation: Escalation,
    pub assessment: Assessment,
    /// The assessment fell below the tier's threshold.
    pub weak: bool,
    /// The answer was weak and there is time for the stronger link: Envoy
    /// retries there. A weak answer without that time is kept.
    pub escalated: bool,
}

impl CascadeCheck {
    /// The metric's `result`: escalated, kept (weak, but no time left) or accepted.
    pub fn result(&self) -> &'static str {
        match (self.weak, self.escalated) {
            (_, true) => "escalated",
            (true, false) => "kept",
            (false, false) => "accepted",
        }
    }
}

/// When a cascade may escalate: what one attempt takes to answer, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptClock {
    pub started_ms: u64,
    pub now_ms: u64,
}

/// Assesses the whole answer of attempt `attempt` when its plan cascades
/// from that link: a chat success, translated (a native answer passes as
/// it came, unassessed), whose headers are still `held` (a released one
/// is the client's already). A weak answer becomes a retry — the caller
/// sends the next attempt to the escalation link — unless the request's
/// deadline leaves less time than this attempt took: then the weak answer
/// beats an error.
#[allow(clippy::too_many_arguments)]
pub fn check_cascade(
    config: &Config,
    plan: &AttemptPlan,
    attempt: usize,
    deployment: DeploymentId,
    request_body: &[u8],
    finished: &mut Finished,
    held: bool,
    clock: AttemptClock,
) -> Option<CascadeCheck> {
    let escalation = plan.escalation_for(attempt)?;
    let cascade = config.tiers.get(escalation.tier)?.cascade?;
    let assessable = held
        && plan.operation == Operation::ChatCompletions
        && (200..300).contains(&finished.status)
        && finished.failure.is_none()
        && !is_native(config, plan, deployment);
    if !assessable {
        return None;
    }
    let expectations = Expectations::of_request(request_body, plan.output_limit);
    let check = judge(plan, escalation, &cascade, &expectations, &finished.body, clock);
    if check.escalated {
        finished.status = RETRY_STATUS;
    }
    Some(check)
}

/// Assesses `answer` and decides: weak below the cascade's threshold,
/// escalated when weak and the request's deadline leaves at least the time
/// this attempt took.
fn judge(
    plan: &AttemptPlan,
    escalation: Escalation,
    cascade: &Cascade,
    expectations: &Expectations,
    answer: &[u8],
    clock: AttemptClock,
) -> CascadeCheck {
    let assessment = assess(expectations, answer, cascade);
    let weak = assessment.is_weak(cascade);
    let took = clock.now_ms.saturating_sub(clock.started_ms);
    let out_of_time = plan.deadline_at_ms != 0 && clock.now_ms.saturating_add(took) >= plan.deadline_at_ms;
    CascadeCheck {
        escalation,
        assessment,
        weak,
        escalated: weak && !out_of_time,
    }
}

/// How many output tokens of a stream attempt are held before the client
/// sees any, when its plan cascades from its link (0: none held).
pub fn stream_tokens_held(config: &Config, plan: &AttemptPlan, attempt: usize, deployment: DeploymentId) -> u64 {
    plan.escalation_for(attempt)
        .filter(|_| !is_native(config, plan, deployment))
        .and_then(|escalation| config.tiers.get(escalation.tier)?.cascade)
        .map_or(0, |cascade| u64::from(cascade.stream_tokens))
}

/// Assesses the held start of a streamed answer (`sse`: the chat chunks
/// translated so far; `ended`: the whole stream). Until the stream ends,
/// only what a start can show counts: a refusal, hedging, a filter; JSON
/// and the answer's length wait for the end. A weak start becomes a retry
/// on the escalation link, as a weak whole answer does.
#[allow(clippy::too_many_arguments)]
pub fn check_stream_cascade(
    config: &Config,
    plan: &AttemptPlan,
    attempt: usize,
    deployment: DeploymentId,
    request_body: &[u8],
    sse: &[u8],
    ended: bool,
    clock: AttemptClock,
) -> Option<CascadeCheck> {
    let escalation = plan.escalation_for(attempt)?;
    let cascade = config.tiers.get(escalation.tier)?.cascade?;
    if cascade.stream_tokens == 0 || is_native(config, plan, deployment) {
        return None;
    }
    let mut answer = crate::assess::answer_from_stream(sse)?;
    let mut expectations = Expectations::of_request(request_body, plan.output_limit);
    if !ended {
        // A start is judged on its whole words; one with no answer text yet
        // (a reasoning model still thinking) cannot be judged: it goes on.
        let content = answer.pointer_mut("/choices/0/message/content")?;
        let text = content.as_str().unwrap_or_default();
        let whole_words = text
            .rfind(char::is_whitespace)
            .map_or("", |end| &text[..end])
            .to_string();
        if whole_words.trim().is_empty() {
            return None;
        }
        *content = serde_json::Value::String(whole_words);
        expectations.json = None;
        expectations.question_chars = 0;
    }
    let body = serde_json::to_vec(&answer).ok()?;
    Some(judge(plan, escalation, &cascade, &expectations, &body, clock))
}

/// Whether the attempt's answer is in OpenAI's Responses API: a native
/// attempt of a Responses client.
pub fn reads_responses_api(config: &Config, plan: &AttemptPlan, deployment: DeploymentId) -> bool {
    plan.native == NativeApi::Responses && super::attempts::is_native(config, plan, deployment)
}

/// The reader of a streamed answer: the provider's translator to chat, or
/// for a native Responses attempt a reader of its events.
pub fn stream_reader(
    config: &Config,
    plan: &AttemptPlan,
    deployment: DeploymentId,
    call: &Call<'_>,
) -> Box<dyn StreamTranslator> {
    if reads_responses_api(config, plan, deployment) {
        providers::responses_stream_reader(call)
    } else {
        providers::stream_translator(call)
    }
}

impl Finished {
    /// A native attempt's body for its client (see
    /// [`super::attempts::is_native`]): a successful answer as it came,
    /// already in the client's format. An error is the gateway's own, in the
    /// client's API's shape: the provider's message quoted with secrets
    /// scrubbed and cut as on chat, or the gateway's judgement when it
    /// changed the status.
    pub fn native_body(&self, api: NativeApi, status: u16, body: &[u8]) -> Vec<u8> {
        let ingress = match api {
            NativeApi::Messages => Ingress::Messages,
            NativeApi::Responses => Ingress::Responses,
            NativeApi::None => Ingress::Chat,
        };
        if self.status == status && (200..300).contains(&status) {
            body.to_vec()
        } else {
            ingress.error_from_chat(self.status, &self.body)
        }
    }
}

fn next_has_larger_window(config: &Config, plan: &AttemptPlan, attempt: usize, deployment: DeploymentId) -> bool {
    let window = |deployment: DeploymentId| config.models[config.deployments[deployment].model].context_window;
    plan.deployment_for(attempt + 1)
        .is_some_and(|next| window(next) > window(deployment))
}

/// The status that replaces a held streaming 200 whose stream failed before
/// any content: Envoy then retries on the next link.
pub fn failed_stream_status(failure: Option<Failure>) -> Option<u16> {
    failure
        .filter(|failure| failure.kind != FailureKind::Client)
        .map(|_| RETRY_STATUS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::sample_config;

    fn pairs(headers: &[(&str, &str)]) -> Vec<(String, String)> {
        headers
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn a_whole_answer_keeps_the_headers_that_already_describe_it() {
        let received = pairs(&[(":status", "200"), ("content-type", "application/json")]);
        assert_eq!(
            whole_answer_header_edits(&received, 200, 42),
            [HeaderEdit::Set("content-length".into(), "42".into())],
            "only the length, which the held headers no longer carry"
        );
    }

    #[test]
    fn a_rewritten_answer_gets_its_status_type_and_length_and_loses_its_encoding() {
        let received = pairs(&[
            (":status", "200"),
            ("Content-Type", "application/json; charset=utf-8"),
            ("content-encoding", "gzip"),
        ]);
        assert_eq!(
            whole_answer_header_edits(&received, 502, 7),
            [
                HeaderEdit::Set(":status".into(), "502".into()),
                HeaderEdit::Set("content-type".into(), "application/json".into()),
                HeaderEdit::Set("content-length".into(), "7".into()),
                HeaderEdit::Remove("content-encoding".into()),
            ]
        );
    }

    fn plan(config: &Config, models: &[&str]) -> AttemptPlan {
        AttemptPlan {
            chain: models
                .iter()
                .map(|name| config.models[config.model_named(name).unwrap()].deployments[0])
                .collect(),
            stream: false,
            client_wants_usage: false,
            native: NativeApi::None,
            operation: Operation::ChatCompletions,
            max_tokens: None,
            trials: Vec::new(),
            prompt_tokens: 0,
            output_limit: None,
            choices: 1,
            per_try_timeout_ms: 30_000,
            deadline_at_ms: 0,
            request: 0,
            tier: None,
            escalation: None,
            authority: "gw".into(),
        }
    }

    #[test]
    fn only_the_providers_own_failures_move_its_health() {
        let timeout = 30_000;
        let gone = AttemptEnd {
            client_gone: true,
            elapsed_ms: 300,
            ..AttemptEnd::default()
        };
        assert_eq!(verdict(&gone, timeout), Verdict::Silent, "an impatient client");
        let never_sent = AttemptEnd {
            never_sent: true,
            ..AttemptEnd::default()
        };
        assert_eq!(verdict(&never_sent, timeout), Verdict::Silent);
        let refused = AttemptEnd {
            elapsed_ms: 3,
            ..AttemptEnd::default()
        };
        assert_eq!(verdict(&refused, timeout), Verdict::Failed(FailureKind::Unreachable));
        let silent_provider = AttemptEnd {
            elapsed_ms: 29_990,
            ..AttemptEnd::default()
        };
        assert_eq!(
            verdict(&silent_provider, timeout),
            Verdict::Failed(FailureKind::Timeout)
        );
        let answered = AttemptEnd {
            status: Some(200),
            complete: true,
            ..AttemptEnd::default()
        };
        assert_eq!(verdict(&answered, timeout), Verdict::Succeeded);
        let cut_by_provider = AttemptEnd {
            status: Some(200),
            ..AttemptEnd::default()
        };
        assert_eq!(
            verdict(&cut_by_provider, timeout),
            Verdict::Failed(FailureKind::Unreachable)
        );
        let cut_by_client = AttemptEnd {
            client_gone: true,
            ..cut_by_provider
        };
        assert_eq!(verdict(&cut_by_client, timeout), Verdict::Succeeded);
        let failed_stream = AttemptEnd {
            failure: Some(Failure {
                kind: FailureKind::Overloaded,
                retry_after_ms: None,
            }),
            ..answered
        };
        assert_eq!(
            verdict(&failed_stream, timeout),
            Verdict::Failed(FailureKind::Overloaded)
        );
    }

    #[test]
    fn every_attempt_that_reached_a_provider_is_billed_and_estimated_when_unreported() {
        let timeout = 30_000;
        let streamed = |relayed| Unreported {
            prompt_tokens: 12,
            relayed_output_tokens: relayed,
            unseen_output_tokens: 0,
        };
        let usage = |input, output| TokenUsage {
            input,
            output,
            ..TokenUsage::default()
        };
        let answered = AttemptEnd {
            status: Some(200),
            complete: true,
            ..AttemptEnd::default()
        };
        assert_eq!(
            attempt_consumption(&answered, Some(usage(10, 5)), &streamed(5), timeout),
            Some((usage(10, 5), false))
        );
        // The client left mid-stream: no usage came; the prompt estimate
        // plus what was relayed.
        let abandoned = AttemptEnd {
            client_gone: true,
            complete: false,
            ..answered
        };
        assert_eq!(
            attempt_consumption(&abandoned, None, &streamed(40), timeout),
            Some((usage(12, 40), true))
        );
        // Anthropic told the input at the start; the output is what was relayed.
        assert_eq!(
            attempt_consumption(&abandoned, Some(usage(30, 1)), &streamed(40), timeout),
            Some((usage(30, 40), true))
        );
        // A timeout after the request was sent: the prompt was processed.
        let silent = AttemptEnd {
            elapsed_ms: timeout,
            ..AttemptEnd::default()
        };
        assert_eq!(
            attempt_consumption(&silent, None, &streamed(0), timeout),
            Some((usage(12, 0), true))
        );
        // A client gone before any answer: the provider may be working on it.
        let gone_early = AttemptEnd {
            client_gone: true,
            elapsed_ms: 300,
            ..AttemptEnd::default()
        };
        assert_eq!(
            attempt_consumption(&gone_early, None, &streamed(0), timeout),
            Some((usage(12, 0), true))
        );
        // Refused at once, an error answer, or never sent: nothing.
        let refused = AttemptEnd {
            elapsed_ms: 2,
            ..AttemptEnd::default()
        };
        assert_eq!(attempt_consumption(&refused, None, &streamed(0), timeout), None);
        let error = AttemptEnd {
            status: Some(503),
            complete: true,
            ..AttemptEnd::default()
        };
        assert_eq!(attempt_consumption(&error, None, &streamed(0), timeout), None);
        let never_sent = AttemptEnd {
            never_sent: true,
            ..AttemptEnd::default()
        };
        assert_eq!(attempt_consumption(&never_sent, None, &streamed(0), timeout), None);
    }

    #[test]
    fn a_whole_answer_unseen_by_the_gateway_is_billed_its_output_bound() {
        let timeout = 30_000;
        let whole = Unreported {
            prompt_tokens: 12,
            relayed_output_tokens: 0,
            unseen_output_tokens: 500,
        };
        let usage = TokenUsage {
            input: 12,
            output: 500,
            ..TokenUsage::default()
        };
        // Timed out, or left by its client, before the headers: the provider
        // went on generating.
        for end in [
            AttemptEnd {
                elapsed_ms: timeout,
                ..AttemptEnd::default()
            },
            AttemptEnd {
                client_gone: true,
                elapsed_ms: 300,
                ..AttemptEnd::default()
            },
            AttemptEnd {
                status: Some(200),
                client_gone: true,
                ..AttemptEnd::default()
            },
            // Cut by the request's deadline before its own per-try timeout.
            AttemptEnd {
                deadline_passed: true,
                elapsed_ms: 900,
                ..AttemptEnd::default()
            },
        ] {
            assert_eq!(
                attempt_consumption(&end, None, &whole, timeout),
                Some((usage, true)),
                "{end:?}"
            );
        }
        // Refused at once: nothing was generated.
        let refused = AttemptEnd {
            elapsed_ms: 2,
            ..AttemptEnd::default()
        };
        assert_eq!(attempt_consumption(&refused, None, &whole, timeout), None);
    }

    #[test]
    fn a_successful_openai_answer_keeps_its_body_and_yields_usage() {
        let config = sample_config();
        let plan = plan(&config, &["small"]);
        let body = br#"{"id":"x","object":"chat.completion","model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":7,"completion_tokens":2,"total_tokens":9}}"#;
        let finished = finish_buffered(&config, &plan, 1, plan.chain[0], b"{}", 200, &[], body, 0);
        assert_eq!(finished.status, 200);
        assert_eq!(finished.usage.map(|usage| (usage.input, usage.output)), Some((7, 2)));
        assert!(finished.failure.is_none());
    }

    #[test]
    fn a_context_length_error_moves_to_a_larger_window_only_when_configured() {
        let mut config = sample_config();
        let error = br#"{"error":{"message":"This model's maximum context length is 1000 tokens","type":"invalid_request_error","code":"context_length_exceeded"}}"#;
        let small_then_medium = plan(&config, &["small", "medium"]);
        let stays = finish_buffered(
            &config,
            &small_then_medium,
            1,
            small_then_medium.chain[0],
            b"{}",
            400,
            &[],
            error,
            0,
        );
        assert_eq!(stays.status, 400);
        assert_eq!(
            stays.failure.map(|failure| failure.kind),
            Some(FailureKind::ContextLength)
        );
        config.resilience.context_length_fallback = true;
        let moves = finish_buffered(
            &config,
            &small_then_medium,
            1,
            small_then_medium.chain[0],
            b"{}",
            400,
            &[],
            error,
            0,
        );
        assert_eq!(moves.status, RETRY_STATUS);
        let medium_then_small = plan(&config, &["medium", "small"]);
        let smaller_next = finish_buffered(
            &config,
            &medium_then_small,
            1,
            medium_then_small.chain[0],
            b"{}",
            400,
            &[],
            error,
            0,
        );
        assert_eq!(smaller_next.status, 400, "a smaller window would not help");
    }

    #[test]
    fn a_cascade_turns_a_weak_held_answer_before_its_escalation_link_into_a_retry() {
        let mut config = sample_config();
        config.tiers[0].cascade = Some(crate::config::cascade::Cascade {
            threshold: 0.5,
            min_mean_logprob: -1.0,
            stream_tokens: 0,
        });
        let mut cascading = plan(&config, &["small", "large"]);
        cascading.escalation = Some(Escalation { tier: 0, to_link: 1 });
        let answer = |finish: &str| {
            format!(
                r#"{{"id":"x","object":"chat.completion","model":"gpt-4o-mini","choices":[{{"index":0,"message":{{"role":"assistant","content":"The first step is to"}},"finish_reason":"{finish}"}}]}}"#
            )
        };
        let check = |plan: &AttemptPlan, attempt: usize, body: &str, held: bool| {
            let deployment = plan.chain[attempt - 1];
            let mut finished = finish_buffered(&config, plan, attempt, deployment, b"{}", 200, &[], body.as_bytes(), 0);
            let clock = AttemptClock {
                started_ms: 1_000,
                now_ms: 2_000,
            };
            let check = check_cascade(&config, plan, attempt, deployment, b"{}", &mut finished, held, clock);
            (finished.status, check)
        };
        let (status, weak) = check(&cascading, 1, &answer("length"), true);
        assert_eq!(status, RETRY_STATUS);
        let weak = weak.expect("assessed");
        assert!(weak.escalated);
        assert_eq!(weak.assessment.describe(), "truncated");
        let (status, good) = check(&cascading, 1, &answer("stop"), true);
        assert_eq!(status, 200);
        assert!(!good.expect("assessed").escalated);
        assert_eq!(
            check(&cascading, 1, &answer("length"), false),
            (200, None),
            "its headers went out"
        );
        assert_eq!(
            check(&cascading, 2, &answer("length"), true),
            (200, None),
            "the escalation link's answer stands"
        );
        assert_eq!(
            check(&plan(&config, &["small", "large"]), 1, &answer("length"), true),
            (200, None)
        );
    }

    #[test]
    fn a_held_stream_start_is_judged_on_whole_words_and_only_with_answer_text() {
        let mut config = sample_config();
        config.tiers[0].cascade = Some(crate::config::cascade::Cascade {
            threshold: 0.5,
            min_mean_logprob: -1.0,
            stream_tokens: 16,
        });
        let mut cascading = plan(&config, &["small", "large"]);
        cascading.stream = true;
        cascading.escalation = Some(Escalation { tier: 0, to_link: 1 });
        let chunk = |delta: &str| format!("data: {{\"choices\":[{{\"delta\":{delta}}}]}}\n\n");
        let clock = AttemptClock {
            started_ms: 0,
            now_ms: 1,
        };
        let check = |sse: &str, ended: bool| {
            check_stream_cascade(
                &config,
                &cascading,
                1,
                cascading.chain[0],
                b"{}",
                sse.as_bytes(),
                ended,
                clock,
            )
        };
        let refusal = chunk(r#"{"content":"I'm sorry, but I can't help with that. Really"}"#);
        assert!(check(&refusal, false).unwrap().escalated);
        let good = chunk(r#"{"content":"Paris is the capital of France and its larg"}"#);
        assert!(!check(&good, false).unwrap().escalated);
        let thinking = chunk(r#"{"reasoning_content":"Let me think about capitals"}"#);
        assert_eq!(check(&thinking, false), None, "no answer text yet: not judged");
        assert!(
            check(&thinking, true).unwrap().escalated,
            "a stream that ended with none is empty"
        );
    }

    #[test]
    fn only_successful_chat_streams_are_translated_as_streams() {
        let config = sample_config();
        let mut streamed = plan(&config, &["small"]);
        streamed.stream = true;
        assert!(is_stream(&streamed, 200));
        assert!(!is_stream(&streamed, 429));
        streamed.operation = Operation::Embeddings;
        assert!(!is_stream(&streamed, 200));
    }

    #[test]
    fn a_stream_that_fails_before_content_is_retried() {
        let overloaded = Failure {
            kind: FailureKind::Overloaded,
            retry_after_ms: None,
        };
        assert_eq!(failed_stream_status(Some(overloaded)), Some(RETRY_STATUS));
        assert_eq!(failed_stream_status(None), None);
        assert_eq!(
            failed_stream_status(Some(Failure {
                kind: FailureKind::Client,
                retry_after_ms: None
            })),
            None
        );
    }

    #[test]
    fn a_native_answer_passes_as_it_came_unless_judged_otherwise() {
        let finished = Finished {
            status: 200,
            body: b"{\"object\":\"chat.completion\"}".to_vec(),
            usage: None,
            failure: None,
        };
        let native = br#"{"type":"message","content":[]}"#;
        assert_eq!(finished.native_body(NativeApi::Messages, 200, native), native.to_vec());
        let judged = Finished {
            status: RETRY_STATUS,
            body:
                br#"{"error":{"message":"too long","type":"invalid_request_error","code":"context_length_exceeded"}}"#
                    .to_vec(),
            ..finished
        };
        let error: serde_json::Value =
            serde_json::from_slice(&judged.native_body(NativeApi::Messages, 400, native)).unwrap();
        assert_eq!(error["type"], "error");
    }
}
