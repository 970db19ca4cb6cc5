//! Client requests: the chat and embeddings parsers, the classifier on what
//! they accept, and every provider's request builder on what they accept.

use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::value::RawValue;

use signalbox::classify::{Classifier, ClassifierSettings};
use signalbox::providers::{self, Call, Operation, ProviderKind};
use signalbox::request::{parse_chat, parse_embeddings, PromptView, ResponseFormatKind};
use signalbox::tokens;

use crate::{assert_openai_error, call, is_json, kind_from, spec, Input, Members};

fn classifier() -> &'static Classifier {
    static CLASSIFIER: OnceLock<Classifier> = OnceLock::new();
    CLASSIFIER.get_or_init(|| Classifier::compile(&ClassifierSettings::default()).expect("default classifier"))
}

/// A score in [0, 1], an explanation, and the classifier's token count
/// agreeing with the view's.
pub fn assert_classifies(view: &PromptView<'_>) {
    let classification = classifier().classify(view);
    assert!(
        (0.0..=1.0).contains(&classification.score),
        "score {} out of [0, 1]",
        classification.score
    );
    assert!(classification.contributions.iter().all(|c| c.is_finite()));
    assert!(!classification.explain().is_empty());
    // The scan rounds the counts of all parts together, the view each part
    // on its own (within two tokens, ASCII and not, per extra part); the
    // view's estimate also never goes below the text's pieces, so it may be
    // higher than the scan's, never lower.
    let parts = view.last_user_parts.len().max(1) as u32;
    assert!(
        classification.prompt_tokens <= view.last_user_tokens() + 2 * (parts - 1),
        "{} tokens scanned, {} estimated",
        classification.prompt_tokens,
        view.last_user_tokens()
    );
}

#[derive(Deserialize)]
struct ModelOnly<'a> {
    #[serde(borrow)]
    model: &'a RawValue,
}

/// Any bytes as a chat request: an OpenAI 400, or a request whose model is
/// the body's and whose view the classifier can score.
pub fn check_chat(body: &[u8]) {
    match parse_chat(body) {
        Err(error) => {
            assert_eq!(error.status(), 400, "a bad body is the client's fault: {error:?}");
            assert_openai_error(&error.to_json());
        }
        Ok(request) => {
            assert!(is_json(body), "only JSON is accepted");
            let model = serde_json::from_slice::<ModelOnly<'_>>(body).expect("an accepted body has a model");
            assert_eq!(
                serde_json::from_str::<String>(model.model.get()).ok().as_deref(),
                Some(request.model.as_str())
            );
            let view = request.prompt_view();
            assert!(view.user_turns as usize <= request.messages.len());
            let _ = request.system_parts().count();
            let _ = request.max_output_tokens();
            assert_classifies(&view);
        }
    }
}

pub fn check_embeddings_request(body: &[u8]) {
    match parse_embeddings(body) {
        Err(error) => {
            assert_eq!(error.status(), 400, "a bad body is the client's fault: {error:?}");
            assert_openai_error(&error.to_json());
        }
        Ok(request) => {
            assert!(is_json(body), "only JSON is accepted");
            assert!(is_json(request.input.get().as_bytes()));
        }
    }
}

/// Any text as the last user message, with the context the first bytes
/// choose.
pub fn check_classify(data: &[u8]) {
    let Some((&context, text)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(text);
    // A form feed separates parts of a multi-part message.
    let parts: Vec<&str> = text.split('\u{c}').collect();
    let view = PromptView {
        last_user_parts: parts,
        user_turns: u32::from(context & 0x07),
        context_tokens: u32::from(context) * 97,
        has_tools: context & 0x08 != 0,
        tool_results: u32::from(context >> 4 & 0x01),
        images: u32::from(context >> 7),
        response_format: match context >> 5 & 0x03 {
            0 => ResponseFormatKind::None,
            1 => ResponseFormatKind::Text,
            2 => ResponseFormatKind::JsonObject,
            _ => ResponseFormatKind::JsonSchema,
        },
    };
    assert_eq!(
        view.last_user_tokens(),
        view.last_user_parts
            .iter()
            .map(|part| tokens::estimate(part))
            .sum::<u32>()
    );
    assert_classifies(&view);
}

/// A request the gateway accepted, rewritten for a provider: valid JSON
/// with the provider's model, and for the OpenAI family the client's
/// members kept except where the vendor's quirks say otherwise.
pub fn check_build(data: &[u8]) {
    let Some(input) = Input::parse(data) else { return };
    let Some((&selector, body)) = input.payload.split_first() else {
        return;
    };
    let kind = kind_from(selector);
    let spec = spec(kind, input.flags);
    let mut call = call(&spec, input.flags);
    // The filter builds only what the parser accepted, with the stream
    // settings the client's body asked for.
    match call.operation {
        Operation::ChatCompletions => {
            let Ok(request) = parse_chat(body) else { return };
            call.stream = request.stream.unwrap_or(false);
            call.client_wants_usage = request.wants_stream_usage();
        }
        Operation::Embeddings => {
            if parse_embeddings(body).is_err() {
                return;
            }
        }
    }
    let upstream = match providers::build_request(&call, body) {
        Ok(upstream) => upstream,
        Err(error) => {
            assert_eq!(
                error.status(),
                400,
                "an accepted request fails only as the client's fault: {error:?}"
            );
            assert_openai_error(&error.to_json());
            return;
        }
    };
    assert!(
        is_json(&upstream.body),
        "the upstream body is JSON: {}",
        String::from_utf8_lossy(&upstream.body)
    );
    assert!(upstream.path.starts_with('/'));
    if !matches!(spec.kind, ProviderKind::Openai | ProviderKind::Azure) {
        return;
    }
    let (Some(sent), Some(built)) = (Members::of(body), Members::of(&upstream.body)) else {
        // Only bodies too deeply nested for the oracle get here.
        return;
    };
    let mut expected = expected_members(sent, &call);
    for (name, value) in expected.iter_mut().filter(|(_, value)| value == BUILT) {
        let at = built.position(name).expect("a merged member is present");
        *value = built.0[at].1.clone();
        let options: serde_json::Value = serde_json::from_str(value).expect("merged options are JSON");
        assert_eq!(options["include_usage"], true, "usage is asked of streams");
    }
    assert_eq!(
        Members(expected),
        built,
        "the client's members, edited only as the provider needs"
    );
}

/// The members an OpenAI-family body must have after the rewrite, with
/// `stream_options`' value taken as built when the gateway merges into it.
fn expected_members(sent: Members, call: &Call<'_>) -> Vec<(String, String)> {
    let mut members = sent.0;
    let mut set = |key: &str, value: Option<&str>| {
        if let Some(at) = members.iter().position(|(name, _)| name == key) {
            match value {
                Some(value) => members[at].1 = value.to_string(),
                None => {
                    members.remove(at);
                }
            }
        } else if let Some(value) = value {
            members.insert(0, (key.to_string(), value.to_string()));
        }
    };
    set("model", Some("\"fuzz-model\""));
    if call.operation == Operation::ChatCompletions {
        let quirks = call.spec.quirks;
        if call.stream && !call.client_wants_usage && quirks.stream_options {
            set("stream_options", Some(BUILT));
        } else if !quirks.stream_options {
            set("stream_options", None);
        }
        if !quirks.max_completion_tokens {
            if let Some(at) = members.iter().position(|(name, _)| name == "max_completion_tokens") {
                members.retain(|(name, _)| name != "max_tokens");
                let at = members
                    .iter()
                    .position(|(name, _)| name == "max_completion_tokens")
                    .unwrap_or(at);
                members[at].0 = "max_tokens".into();
            }
        }
    }
    members
}

/// Stands for "whatever value was built" in [`expected_members`].
const BUILT: &str = "\u{0}built";
