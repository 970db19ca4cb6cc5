//! The way back for a translated request: the chat answer the pipeline
//! produced (whole or streamed, success or error) in the client's format.
//! The router holds one [`Relay`] per translated request and moves bytes
//! through it; every decision is here.

use super::{messages, responses, Ingress, StreamEncode};

/// How a translated request's answer reaches its client.
pub enum Relay {
    /// A whole answer: translated once its body is complete.
    Whole { ingress: Ingress, status: u16 },
    /// A streamed success: chat chunks in, the format's events out.
    Stream(Box<dyn StreamEncode>),
}

/// The media type of a streamed answer.
pub const EVENT_STREAM: &str = "text/event-stream";

impl Relay {
    /// The relay for an answer with `status` whose headers just came:
    /// `event_stream` when a stream was asked and the answer is one.
    /// `model` names the answer until the stream says otherwise.
    pub fn for_answer(ingress: Ingress, status: u16, event_stream: bool, model: &str, now_unix_seconds: u64) -> Relay {
        let success = (200..300).contains(&status);
        let encoder: Option<Box<dyn StreamEncode>> = match ingress {
            _ if !(success && event_stream) => None,
            Ingress::Messages => Some(Box::new(messages::StreamEncoder::new(model))),
            Ingress::Responses => Some(Box::new(responses::StreamEncoder::new(model, now_unix_seconds))),
            Ingress::Chat | Ingress::CountTokens => None,
        };
        match encoder {
            Some(encoder) => Relay::Stream(encoder),
            None => Relay::Whole { ingress, status },
        }
    }

    /// The response's content type in the client's format.
    pub fn content_type(&self) -> &'static str {
        match self {
            Relay::Whole { .. } => "application/json",
            Relay::Stream(_) => EVENT_STREAM,
        }
    }
}

/// A whole chat answer (a completion, or an OpenAI-shaped error) as the
/// client's status and body. A success that cannot be read becomes the
/// error it is, in the client's shape.
pub fn whole_answer(ingress: Ingress, status: u16, chat_body: &[u8]) -> (u16, Vec<u8>) {
    if !(200..300).contains(&status) {
        return (status, ingress.error_from_chat(status, chat_body));
    }
    let translated = match ingress {
        Ingress::Messages => messages::response_from_chat(chat_body),
        Ingress::Responses => responses::response_from_chat(chat_body),
        Ingress::Chat | Ingress::CountTokens => Ok(chat_body.to_vec()),
    };
    match translated {
        Ok(body) => (status, body),
        Err(error) => (u16::try_from(error.status()).unwrap_or(502), ingress.error_body(&error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMPLETION: &[u8] = br#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}"#;

    fn json(body: &[u8]) -> serde_json::Value {
        serde_json::from_slice(body).unwrap()
    }

    #[test]
    fn a_whole_success_takes_the_clients_shape() {
        let (status, body) = whole_answer(Ingress::Messages, 200, COMPLETION);
        assert_eq!(status, 200);
        let message = json(&body);
        assert_eq!(message["type"], "message");
        assert_eq!(message["content"][0]["text"], "Hello");
        assert_eq!(message["usage"]["output_tokens"], 1);
        let (status, body) = whole_answer(Ingress::Responses, 200, COMPLETION);
        assert_eq!(status, 200);
        let response = json(&body);
        assert_eq!(response["object"], "response");
        assert_eq!(response["usage"]["total_tokens"], 6);
    }

    #[test]
    fn errors_keep_their_status_in_the_clients_shape() {
        let error = br#"{"error":{"message":"slow down","type":"rate_limit_exceeded","param":null,"code":"rate_limit_exceeded"}}"#;
        let (status, body) = whole_answer(Ingress::Messages, 429, error);
        assert_eq!(status, 429);
        let body = json(&body);
        assert_eq!(body["type"], "error");
        assert_eq!(body["error"]["type"], "rate_limit_error");
        // The Responses API's errors are OpenAI's, unchanged.
        assert_eq!(whole_answer(Ingress::Responses, 429, error), (429, error.to_vec()));
    }

    #[test]
    fn an_unreadable_success_is_an_error() {
        let (status, body) = whole_answer(Ingress::Messages, 200, b"not json");
        assert!(status >= 500, "{status}");
        assert_eq!(json(&body)["type"], "error");
    }

    #[test]
    fn only_a_streamed_success_is_encoded_as_events() {
        let relay = Relay::for_answer(Ingress::Messages, 200, true, "auto", 0);
        assert_eq!(relay.content_type(), EVENT_STREAM);
        let Relay::Stream(mut encoder) = relay else {
            panic!("not a stream")
        };
        let mut out = Vec::new();
        encoder.push(
            b"data: {\"id\":\"c\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n",
            &mut out,
        );
        encoder.push(b"data: [DONE]\n\n", &mut out);
        encoder.finish(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("event: message_start"), "{text}");
        assert!(text.contains("\"text\":\"Hi\""), "{text}");
        assert!(text.contains("event: message_stop"), "{text}");
        for (status, event_stream) in [(200, false), (429, true), (503, false)] {
            let relay = Relay::for_answer(Ingress::Responses, status, event_stream, "auto", 0);
            assert!(matches!(relay, Relay::Whole { status: s, .. } if s == status));
            assert_eq!(relay.content_type(), "application/json");
        }
    }
}
