//! Provider adapters: how one attempt at a model is rewritten for the
//! provider that serves it, and how the provider's answer (whole, streamed,
//! or failed) becomes OpenAI's chat-completions shape again. Pure Rust: the
//! filter hands bytes in and applies what comes out.
//!
//! This module is the front: the types and functions the rest of the
//! gateway calls, dispatching on [`ProviderKind`]. Behind it:
//! [`adapters`] has one module per provider API ([`openai`] for OpenAI,
//! Azure and the compatible vendors, [`anthropic`], [`gemini`],
//! [`bedrock`], and the Responses API reader); [`openai_format`] reads and
//! writes OpenAI's own shapes for them (`chat` requests, `compose`d answers
//! and chunks, `usage`, [`body_edit`]); [`wire`] holds transport pieces
//! ([`sse`] and [`eventstream`] framing, [`sigv4`] signing). `failure` says
//! what an error means for routing, and `stream` is what every stream
//! translator shares.

pub mod adapters;
pub mod openai_format;
pub mod wire;

mod failure;
pub(crate) use failure::header;
mod stream;

use adapters::responses;
pub use adapters::{anthropic, bedrock, gemini, openai};
pub use openai_format::body_edit;
pub(crate) use openai_format::body_edit::set_member;
pub(crate) use openai_format::{chat, compose, usage};
pub use wire::{eventstream, sigv4, sse};

#[cfg(test)]
mod properties;
#[cfg(test)]
mod testkit;

use std::borrow::Cow;

use serde::Deserialize;

use crate::error::GatewayError;
use crate::failure::FailureKind;
use crate::secret::Secret;

pub use openai::Quirks;
pub use usage::TokenUsage;

/// The wire format a provider speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// OpenAI and every OpenAI-compatible API (Groq, Mistral, DeepSeek,
    /// Together, Cerebras, OpenRouter, vLLM, Ollama).
    #[default]
    Openai,
    /// Azure OpenAI deployments (`/openai/deployments/{name}/...`).
    Azure,
    /// Anthropic Messages.
    Anthropic,
    /// Google Gemini API (`generateContent`); Vertex AI with a base path of
    /// `/v1/projects/{project}/locations/{location}/publishers/google`.
    Gemini,
    /// AWS Bedrock Converse.
    Bedrock,
}

impl ProviderKind {
    /// The `max_tokens` this kind's adapter sends when the client set none
    /// (the most output such a request can produce).
    pub fn injected_max_tokens(self) -> Option<u64> {
        match self {
            ProviderKind::Anthropic => Some(anthropic::DEFAULT_MAX_TOKENS),
            _ => None,
        }
    }

    /// The provider as OpenTelemetry's GenAI conventions name it
    /// (`gen_ai.provider.name`).
    pub fn semconv_name(self) -> &'static str {
        match self {
            ProviderKind::Openai => "openai",
            ProviderKind::Azure => "azure.ai.openai",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Gemini => "gcp.gemini",
            ProviderKind::Bedrock => "aws.bedrock",
        }
    }

    /// The API prefix when the configuration gives none.
    pub fn default_base_path(self) -> &'static str {
        match self {
            ProviderKind::Openai | ProviderKind::Anthropic => "/v1",
            ProviderKind::Gemini => "/v1beta",
            ProviderKind::Azure | ProviderKind::Bedrock => "",
        }
    }
}

pub const DEFAULT_ANTHROPIC_VERSION: &str = "2023-06-01";

/// Resolved per-provider settings.
#[derive(Clone, Debug, PartialEq)]
pub struct ProviderSpec {
    pub kind: ProviderKind,
    /// Path prefix without a trailing slash: `/v1` (OpenAI), `/openai/v1`
    /// (Groq), `""` (Azure, Bedrock), `/v1` (Anthropic), `/v1beta` (Gemini).
    pub base_path: String,
    /// Azure's `api-version` query parameter (required for Azure).
    pub api_version: Option<String>,
    /// Anthropic's `anthropic-version` header.
    pub anthropic_version: String,
    /// AWS region (required for Bedrock).
    pub region: Option<String>,
    /// `:authority` to send. Bedrock signs it, so it defaults to
    /// `bedrock-runtime.{region}.amazonaws.com` there.
    pub host: Option<String>,
    /// OpenAI-compatible vendor differences; ignored by other kinds.
    pub quirks: Quirks,
}

impl ProviderSpec {
    /// A spec with the kind's defaults; fill in what the kind requires.
    pub fn new(kind: ProviderKind) -> ProviderSpec {
        ProviderSpec {
            kind,
            base_path: kind.default_base_path().to_string(),
            api_version: None,
            anthropic_version: DEFAULT_ANTHROPIC_VERSION.to_string(),
            region: None,
            host: None,
            quirks: Quirks::STANDARD,
        }
    }

    /// What is missing or malformed, as (field, problem), for the
    /// configuration loader to report against the provider's entry.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if !(self.base_path.is_empty() || self.base_path.starts_with('/'))
            || self.base_path.ends_with('/')
            || self
                .base_path
                .bytes()
                .any(|b| !b.is_ascii_graphic() || b == b'?' || b == b'#')
        {
            return Err((
                "base_path",
                "must be empty or an absolute path without a trailing slash or query".into(),
            ));
        }
        let token = |value: &str| !value.is_empty() && value.bytes().all(|b| b.is_ascii_graphic());
        match self.kind {
            ProviderKind::Azure if !self.api_version.as_deref().is_some_and(token) => Err((
                "api_version",
                "an Azure provider needs api_version (for example 2024-10-21)".into(),
            )),
            ProviderKind::Bedrock if !self.region.as_deref().is_some_and(token) => Err((
                "region",
                "a Bedrock provider needs region (for example us-east-1)".into(),
            )),
            ProviderKind::Anthropic if !token(&self.anthropic_version) => {
                Err(("anthropic_version", "must be a version date such as 2023-06-01".into()))
            }
            _ => Ok(()),
        }
    }

    /// The `:authority` requests carry, when the gateway sets one.
    pub fn upstream_host(&self) -> Option<Cow<'_, str>> {
        if let Some(host) = &self.host {
            return Some(Cow::Borrowed(host));
        }
        match (self.kind, &self.region) {
            (ProviderKind::Bedrock, Some(region)) => {
                Some(Cow::Owned(format!("bedrock-runtime.{region}.amazonaws.com")))
            }
            _ => None,
        }
    }
}

/// How the gateway proves itself to a provider. Secrets print as `***`.
#[derive(Clone, Debug, PartialEq)]
pub enum Credential {
    /// `Authorization: Bearer` (the OpenAI family, Bedrock API keys, Vertex
    /// access tokens).
    Bearer(Secret),
    /// A key in its own header: Azure `api-key`, Anthropic `x-api-key`,
    /// Gemini `x-goog-api-key`.
    Header { name: &'static str, value: Secret },
    /// AWS access keys, for Bedrock's Signature V4.
    AwsSigV4 {
        access_key_id: String,
        secret_access_key: Secret,
        session_token: Option<Secret>,
    },
}

impl Credential {
    /// The usual way to send an API key to a provider of `kind`.
    pub fn api_key(kind: ProviderKind, key: Secret) -> Credential {
        match kind {
            ProviderKind::Openai | ProviderKind::Bedrock => Credential::Bearer(key),
            ProviderKind::Azure => Credential::Header {
                name: "api-key",
                value: key,
            },
            ProviderKind::Anthropic => Credential::Header {
                name: "x-api-key",
                value: key,
            },
            ProviderKind::Gemini => Credential::Header {
                name: "x-goog-api-key",
                value: key,
            },
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    ChatCompletions,
    Embeddings,
}

/// Everything needed to rewrite one attempt for one provider.
#[derive(Clone, Copy, Debug)]
pub struct Call<'a> {
    pub spec: &'a ProviderSpec,
    /// The provider's model id (Azure: the deployment name).
    pub model_id: &'a str,
    pub credential: Option<&'a Credential>,
    pub operation: Operation,
    /// The client asked for `stream: true`.
    pub stream: bool,
    /// The client sent `stream_options.include_usage: true`.
    pub client_wants_usage: bool,
    /// Wall-clock time: SigV4's `x-amz-date`, `created` in answers, and
    /// rate-limit resets given as timestamps.
    pub now_unix_seconds: u64,
}

/// One attempt as the provider must receive it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamRequest {
    /// Absolute path and query.
    pub path: String,
    /// Headers to set (lowercase names): credentials, `content-type`,
    /// `accept-encoding: identity` (answers are read, so they must not be
    /// compressed), `:authority` when the provider needs one, and the
    /// provider's own (`anthropic-version`, `x-amz-date`, ...).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// OpenAI request fields the provider cannot express, dropped rather than
    /// failing the request (for logs and headers, not for the client body).
    pub dropped: Vec<&'static str>,
}

/// Every header through which a client's (or another provider's) credential
/// or account can travel. The caller removes all of them before setting
/// [`UpstreamRequest::headers`], so no client key ever reaches a provider.
pub const CREDENTIAL_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "api-key",
    "x-goog-api-key",
    "x-amz-security-token",
    "ocp-apim-subscription-key",
    // Not keys, but they bind the request to the client's OpenAI account,
    // which the gateway's key does not belong to.
    "openai-organization",
    "openai-project",
];

/// Headers some adapter sets besides credentials. An attempt removes any of
/// these a previous attempt (for another provider) left on the request.
pub const ADAPTER_HEADERS: &[&str] = &[
    "anthropic-version",
    "anthropic-beta",
    "x-amz-date",
    "x-amz-content-sha256",
];

/// Provider response headers a client may see. Everything else a provider
/// sends is about the gateway's account with it — organization and project
/// ids, cookies, the shared key's own rate-limit counters (which would let
/// one tenant watch every other tenant's traffic) — and stays here.
const CLIENT_RESPONSE_HEADERS: &[&str] = &[
    ":status",
    "content-type",
    "content-length",
    "content-encoding",
    "date",
    "retry-after",
    "retry-after-ms",
];

/// The response headers to give the client instead of `headers`, or `None`
/// when every one of them may go as it is.
pub fn client_response_headers(headers: &[(String, String)]) -> Option<Vec<(String, String)>> {
    let allowed = |name: &str| {
        CLIENT_RESPONSE_HEADERS
            .iter()
            .any(|kept| name.eq_ignore_ascii_case(kept))
    };
    if headers.iter().all(|(name, _)| allowed(name)) {
        return None;
    }
    Some(headers.iter().filter(|(name, _)| allowed(name)).cloned().collect())
}

/// Rewrites an OpenAI request body (already validated by
/// [`crate::request::parse_chat`] for chat) for `call`'s provider.
pub fn build_request(call: &Call<'_>, openai_body: &[u8]) -> Result<UpstreamRequest, GatewayError> {
    let mut request = adapter_request(call, openai_body)?;
    request.headers.push(("content-type".into(), "application/json".into()));
    request.headers.push(("accept-encoding".into(), "identity".into()));
    if let Some(host) = call.spec.upstream_host() {
        request.headers.push((":authority".into(), host.into_owned()));
    }
    add_credential(call, &mut request)?;
    Ok(request)
}

fn adapter_request(call: &Call<'_>, openai_body: &[u8]) -> Result<UpstreamRequest, GatewayError> {
    match call.spec.kind {
        ProviderKind::Openai | ProviderKind::Azure => openai::build_request(call, openai_body),
        ProviderKind::Anthropic => anthropic::build_request(call, openai_body),
        ProviderKind::Gemini => gemini::build_request(call, openai_body),
        ProviderKind::Bedrock => bedrock::build_request(call, openai_body),
    }
}

/// Whether `spec`'s adapter can express this (valid) OpenAI request at all,
/// and if not, the client's error saying why. The router asks before a
/// deployment joins a failover chain, so no attempt is ever planned that
/// its adapter could not prepare (and sent half-prepared, with another
/// provider's path, body or credentials). The answer depends on the kind
/// of provider and the request only.
pub fn check_expressible(
    spec: &ProviderSpec,
    operation: Operation,
    stream: bool,
    body: &[u8],
) -> Result<(), GatewayError> {
    if matches!(spec.kind, ProviderKind::Openai | ProviderKind::Azure) && operation == Operation::ChatCompletions {
        // The body passes through with its model spliced in.
        return Ok(());
    }
    let call = Call {
        spec,
        model_id: "",
        credential: None,
        operation,
        stream,
        client_wants_usage: false,
        now_unix_seconds: 0,
    };
    adapter_request(&call, body).map(|_| ())
}

fn add_credential(call: &Call<'_>, request: &mut UpstreamRequest) -> Result<(), GatewayError> {
    match call.credential {
        None => {}
        Some(Credential::Bearer(secret)) => request
            .headers
            .push(("authorization".into(), format!("Bearer {}", secret.expose()))),
        Some(Credential::Header { name, value }) => request.headers.push((name.to_string(), value.expose().into())),
        Some(Credential::AwsSigV4 {
            access_key_id,
            secret_access_key,
            session_token,
        }) => {
            let misconfigured = |what: &str| GatewayError::Internal {
                message: format!("The provider cannot sign requests: {what}."),
            };
            if call.spec.kind != ProviderKind::Bedrock {
                return Err(misconfigured("AWS credentials are only for Bedrock"));
            }
            let region = call.spec.region.as_deref().ok_or_else(|| misconfigured("no region"))?;
            let host = call.spec.upstream_host().ok_or_else(|| misconfigured("no host"))?;
            let signer = sigv4::Signer {
                access_key_id,
                secret_access_key: secret_access_key.expose(),
                session_token: session_token.as_ref().map(Secret::expose),
                region,
                service: "bedrock",
            };
            // The body is final here: nothing may change it after signing.
            let signed = signer.sign(
                "POST",
                &request.path,
                &[],
                &[("host", &host)],
                &request.body,
                call.now_unix_seconds,
            );
            request.headers.extend(signed);
        }
    }
    Ok(())
}

/// A provider answer (or error) translated for the client.
#[derive(Clone, Debug, PartialEq)]
pub struct TranslatedResponse {
    /// The status to send the client (provider errors keep their meaning:
    /// 429 stays 429, a rejected gateway key becomes 502, ...).
    pub status: u16,
    /// OpenAI-shaped JSON.
    pub body: Vec<u8>,
    pub usage: Option<TokenUsage>,
    /// What went wrong, for routing; `None` on success.
    pub failure: Option<Failure>,
}

/// Translates a whole (non-streamed) answer. Use it for every non-2xx
/// answer too, streamed request or not: error bodies are never streams.
pub fn translate_response(
    call: &Call<'_>,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
) -> TranslatedResponse {
    if !(200..300).contains(&status) {
        return failure::translate_error(call, status, headers, body);
    }
    match call.spec.kind {
        ProviderKind::Openai | ProviderKind::Azure => openai::translate_response(call, body),
        ProviderKind::Anthropic => anthropic::translate_response(call, body),
        ProviderKind::Gemini => gemini::translate_response(call, body),
        ProviderKind::Bedrock => bedrock::translate_response(call, headers, body),
    }
}

/// Reads a whole answer of OpenAI's Responses API, sent to a Responses
/// client as it came: usage and failures for the gateway; errors are
/// OpenAI's, as for chat.
pub fn read_responses_answer(
    call: &Call<'_>,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
) -> TranslatedResponse {
    if (200..300).contains(&status) {
        responses::read_answer(call, body)
    } else {
        responses::read_error(call, status, headers, body)
    }
}

/// Reads a Responses API event stream for usage, content and failures (the
/// client gets the provider's events; what this writes is not sent).
pub fn responses_stream_reader(call: &Call<'_>) -> Box<dyn StreamTranslator> {
    responses::stream_reader(call)
}

/// Translates an embeddings answer. The client's request body is needed
/// again: providers that do not speak OpenAI's embeddings API know nothing
/// of the encoding the client asked for (base64) nor, for Gemini, of usage
/// (it is estimated from the inputs).
pub fn translate_embeddings(
    call: &Call<'_>,
    request_body: &[u8],
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
) -> TranslatedResponse {
    match call.spec.kind {
        ProviderKind::Gemini if (200..300).contains(&status) => {
            gemini::translate_embeddings_with_request(call, request_body, body)
        }
        // Errors, and the other providers' answers, as for chat.
        _ => translate_response(call, status, headers, body),
    }
}

/// Streaming translation: provider stream bytes in, in any chunking and
/// split anywhere (mid-frame, mid-UTF-8), OpenAI SSE out
/// (`data: {chat.completion.chunk}\n\n` ... `data: [DONE]\n\n`), emitted as
/// events complete. The client's response must be sent as
/// `content-type: text/event-stream` without a content-length.
pub trait StreamTranslator {
    /// Translates the next piece of the upstream stream. An error means the
    /// stream is unreadable (a frame over 1 MiB, garbage, a failed checksum);
    /// later pushes fail too, and [`StreamTranslator::finish`] still ends
    /// the client's stream with an error event.
    fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), GatewayError>;
    /// The upstream stream ended: flushes, writes the usage chunk if the
    /// client asked for it, an error event if the answer was cut short, and
    /// `data: [DONE]`.
    fn finish(&mut self, out: &mut Vec<u8>);
    fn usage(&self) -> Option<TokenUsage>;
    /// Estimated output tokens of the content relayed to the client so far
    /// (what a stream cut short is billed at when no usage came).
    fn relayed_output_tokens(&self) -> u64;
    /// Content (text or a tool call) has reached the client: time to first
    /// token is now.
    fn saw_content(&self) -> bool;
    /// An error seen in the stream (a provider error event, truncation,
    /// garbage).
    fn failure(&self) -> Option<Failure>;
}

pub fn stream_translator(call: &Call<'_>) -> Box<dyn StreamTranslator> {
    match call.spec.kind {
        ProviderKind::Openai | ProviderKind::Azure => openai::stream_translator(call),
        ProviderKind::Anthropic => anthropic::stream_translator(call),
        ProviderKind::Gemini => gemini::stream_translator(call),
        ProviderKind::Bedrock => bedrock::stream_translator(call),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    /// How long the provider asked to wait.
    pub retry_after_ms: Option<u64>,
}

/// What a provider answer means for routing; `None` for 2xx.
pub fn classify_failure(call: &Call<'_>, status: u16, headers: &[(String, String)], body: &[u8]) -> Option<Failure> {
    failure::classify(call, status, headers, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use testkit::{call_for, secret, spec};

    #[test]
    fn specs_say_what_their_kind_requires() {
        assert!(ProviderSpec::new(ProviderKind::Openai).validate().is_ok());
        assert!(ProviderSpec::new(ProviderKind::Azure).validate().is_err());
        assert!(ProviderSpec::new(ProviderKind::Bedrock).validate().is_err());
        let bedrock = ProviderSpec {
            region: Some("eu-west-1".into()),
            ..ProviderSpec::new(ProviderKind::Bedrock)
        };
        assert!(bedrock.validate().is_ok());
        assert_eq!(
            bedrock.upstream_host().as_deref(),
            Some("bedrock-runtime.eu-west-1.amazonaws.com")
        );
        let trailing = ProviderSpec {
            base_path: "/v1/".into(),
            ..ProviderSpec::new(ProviderKind::Openai)
        };
        assert!(trailing.validate().is_err());
    }

    #[test]
    fn every_credential_kind_reaches_its_header() {
        let key = || secret("k-123456");
        let cases = [
            (ProviderKind::Openai, "authorization", "Bearer k-123456"),
            (ProviderKind::Azure, "api-key", "k-123456"),
            (ProviderKind::Anthropic, "x-api-key", "k-123456"),
            (ProviderKind::Gemini, "x-goog-api-key", "k-123456"),
            (ProviderKind::Bedrock, "authorization", "Bearer k-123456"),
        ];
        for (kind, name, value) in cases {
            let spec = spec(kind);
            let credential = Credential::api_key(kind, key());
            let mut call = call_for(&spec);
            call.credential = Some(&credential);
            let body = br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
            let request = build_request(&call, body).unwrap();
            assert!(
                request.headers.contains(&(name.to_string(), value.to_string())),
                "{kind:?}: {:?}",
                request.headers
            );
            assert!(request.headers.contains(&("accept-encoding".into(), "identity".into())));
            assert!(CREDENTIAL_HEADERS.contains(&name));
        }
    }

    #[test]
    fn an_answer_with_unreadable_usage_is_still_the_clients() {
        // Negative, fractional or quoted counts: the answer is served and
        // billed its estimate (no usage), not turned into a failure.
        let cases = [
            (
                ProviderKind::Openai,
                r#"{"choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":-5,"completion_tokens":"7"}}"#,
            ),
            (
                ProviderKind::Anthropic,
                r#"{"id":"m","type":"message","role":"assistant","model":"c","content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn","usage":{"input_tokens":5.5,"output_tokens":-1}}"#,
            ),
            (
                ProviderKind::Gemini,
                r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"hi"}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":"x"}}"#,
            ),
            (
                ProviderKind::Bedrock,
                r#"{"output":{"message":{"role":"assistant","content":[{"text":"hi"}]}},"stopReason":"end_turn","usage":{"inputTokens":-3,"outputTokens":2}}"#,
            ),
        ];
        for (kind, body) in cases {
            let spec = spec(kind);
            let call = call_for(&spec);
            let translated = translate_response(&call, 200, &[], body.as_bytes());
            assert_eq!(
                translated.status,
                200,
                "{kind:?}: {}",
                String::from_utf8_lossy(&translated.body)
            );
            assert!(translated.failure.is_none(), "{kind:?}");
            assert_eq!(translated.usage, None, "{kind:?}");
            assert!(String::from_utf8_lossy(&translated.body).contains("hi"), "{kind:?}");
        }
    }

    #[test]
    fn secrets_do_not_print() {
        let credential = Credential::api_key(ProviderKind::Anthropic, secret("sk-ant-very-secret"));
        assert!(!format!("{credential:?}").contains("very-secret"));
    }

    #[test]
    fn aws_credentials_sign_only_bedrock_requests() {
        let credential = Credential::AwsSigV4 {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: secret("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
            session_token: None,
        };
        let openai = spec(ProviderKind::Openai);
        let mut call = call_for(&openai);
        call.credential = Some(&credential);
        assert_eq!(
            build_request(&call, br#"{"model":"m","messages":[]}"#)
                .unwrap_err()
                .status(),
            500
        );
    }

    /// Every adapter's decoders, fed random and truncated bodies: never a
    /// panic, always an OpenAI-shaped JSON answer.
    #[test]
    fn garbage_never_panics_any_adapter() {
        let mut next = crate::testing::xorshift(0x2545_f491_4f6c_dd1d);
        let valid: &[&[u8]] = &[
            br#"{"id":"x","content":[{"type":"text","text":"hi"},{"type":"tool_use","id":"t","name":"f","input":{}}],"stop_reason":"end_turn","usage":{"input_tokens":1}}"#,
            br#"{"candidates":[{"content":{"parts":[{"text":"hi"},{"functionCall":{"name":"f","args":{}}}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":1}}"#,
            br#"{"output":{"message":{"content":[{"text":"hi"},{"toolUse":{"toolUseId":"t","name":"f","input":{}}}]}},"stopReason":"end_turn","usage":{"inputTokens":1}}"#,
            br#"{"embeddings":[{"values":[1,2]}]}"#,
            br#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,AA"}}]},{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c","content":"x"}],"tools":[{"type":"function","function":{"name":"f"}}],"input":["a"]}"#,
        ];
        let mut bodies: Vec<Vec<u8>> = Vec::new();
        for body in valid {
            for end in (0..body.len()).step_by(7) {
                bodies.push(body[..end].to_vec());
            }
            for _ in 0..40 {
                let mut mutated = body.to_vec();
                for _ in 0..4 {
                    let at = (next() % mutated.len() as u64) as usize;
                    mutated[at] = next() as u8;
                }
                bodies.push(mutated);
            }
        }
        bodies.push((0..300).map(|_| next() as u8).collect());
        for kind in [
            ProviderKind::Openai,
            ProviderKind::Azure,
            ProviderKind::Anthropic,
            ProviderKind::Gemini,
            ProviderKind::Bedrock,
        ] {
            let spec = spec(kind);
            for operation in [Operation::ChatCompletions, Operation::Embeddings] {
                let mut call = call_for(&spec);
                call.operation = operation;
                for body in &bodies {
                    let _ = build_request(&call, body);
                    for status in [200, 400, 429, 500] {
                        let translated = translate_response(&call, status, &[], body);
                        // The OpenAI family passes successful bodies through as they are.
                        let passed_through = matches!(kind, ProviderKind::Openai | ProviderKind::Azure);
                        if translated.failure.is_some() || !passed_through {
                            assert!(serde_json::from_slice::<serde_json::Value>(&translated.body).is_ok());
                        }
                        let _ = translate_embeddings(&call, body, status, &[], body);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod response_header_tests {
    use super::client_response_headers;

    #[test]
    fn the_gateways_account_headers_never_reach_a_client() {
        let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
            list.iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect()
        };
        let plain = pairs(&[(":status", "200"), ("content-type", "application/json")]);
        assert_eq!(client_response_headers(&plain), None);
        let provider = pairs(&[
            (":status", "429"),
            ("Retry-After", "3"),
            ("openai-organization", "org-gateway"),
            ("x-ratelimit-remaining-tokens", "149984"),
            ("set-cookie", "__cf_bm=x"),
        ]);
        assert_eq!(
            client_response_headers(&provider),
            Some(pairs(&[(":status", "429"), ("Retry-After", "3")]))
        );
    }
}
