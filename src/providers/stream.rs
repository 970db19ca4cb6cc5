//! What every stream translator shares. A [`Framer`] cuts the provider's
//! bytes into events (SSE or AWS event-stream), a provider's [`Handler`]
//! turns each event into OpenAI chunks through [`Output`], and the end of
//! the stream (clean, truncated, or broken by garbage) is handled once, the
//! same way for every provider.

use crate::error::GatewayError;

use super::failure::{self, ClientError, ErrorContext, ErrorInfo};
use super::openai_format::compose::ChunkWriter;
use super::wire::eventstream::{EventStreamDecoder, Message};
use super::wire::sse::{SseEvent, SseFramer};
use super::{Call, Failure, StreamTranslator, TokenUsage};
use crate::failure::FailureKind;

pub(crate) trait Framer {
    type Event<'a>
    where
        Self: 'a;
    fn feed(&mut self, chunk: &[u8]);
    /// The upstream stream ended; an error if it stopped mid-frame.
    fn end(&mut self) -> Result<(), GatewayError>;
    fn next_event(&mut self) -> Result<Option<Self::Event<'_>>, GatewayError>;
}

impl Framer for SseFramer {
    type Event<'a> = SseEvent<'a>;

    fn feed(&mut self, chunk: &[u8]) {
        SseFramer::feed(self, chunk);
    }

    fn end(&mut self) -> Result<(), GatewayError> {
        SseFramer::end(self);
        Ok(())
    }

    fn next_event(&mut self) -> Result<Option<SseEvent<'_>>, GatewayError> {
        SseFramer::next_event(self)
    }
}

impl Framer for EventStreamDecoder {
    type Event<'a> = Message<'a>;

    fn feed(&mut self, chunk: &[u8]) {
        EventStreamDecoder::feed(self, chunk);
    }

    fn end(&mut self) -> Result<(), GatewayError> {
        if self.pending() > 0 {
            return Err(GatewayError::Internal {
                message: "The provider's event stream ended in the middle of a message.".into(),
            });
        }
        Ok(())
    }

    fn next_event(&mut self) -> Result<Option<Message<'_>>, GatewayError> {
        self.next_message()
    }
}

/// A provider's half of a stream translator.
pub(crate) trait Handler<F: Framer> {
    fn on_event(&mut self, event: F::Event<'_>, output: &mut Output, out: &mut Vec<u8>) -> Result<(), GatewayError>;

    /// The stream ended; for providers whose last event ends the answer
    /// without an explicit stop event.
    fn on_end(&mut self, _output: &mut Output, _out: &mut Vec<u8>) {}
}

/// An event payload that is not the JSON the provider documents.
pub(crate) fn unreadable_event(provider: &str, error: &serde_json::Error) -> GatewayError {
    GatewayError::Internal {
        message: format!("A {provider} stream event could not be read: {error}."),
    }
}

/// The client-facing side of a translation: chunks, usage, failure.
#[derive(Debug)]
pub(crate) struct Output {
    pub writer: ChunkWriter,
    pub usage: Option<TokenUsage>,
    pub failure: Option<Failure>,
    context: ErrorContext,
    /// Why the stream could not be read, once it could not.
    broken: Option<String>,
}

impl Output {
    pub(crate) fn new(call: &Call<'_>, usage_requested: bool) -> Output {
        Output {
            writer: ChunkWriter::new(call.model_id, call.now_unix_seconds, usage_requested),
            usage: None,
            failure: None,
            context: ErrorContext::of(call),
            broken: None,
        }
    }

    /// An error the provider reported inside the stream: it is recorded for
    /// routing and passed to the client as an OpenAI error event.
    pub(crate) fn provider_error(&mut self, info: &ErrorInfo, out: &mut Vec<u8>) {
        if self.failure.is_some() || self.writer.is_closed() {
            return;
        }
        let kind = failure::kind_of(None, info);
        self.failure = Some(Failure {
            kind,
            retry_after_ms: info.retry_delay_ms,
        });
        self.writer
            .error(&ClientError::for_failure(&self.context, kind, None, info), out);
    }

    /// The provider said the answer is complete: the usage chunk (when the
    /// client asked) and `[DONE]` go out now rather than at the stream's end.
    pub(crate) fn complete(&mut self, out: &mut Vec<u8>) {
        if self.failure.is_none() {
            self.writer.close(self.usage, out);
        }
    }

    /// Whether events still matter: after an error or `[DONE]` they do not.
    pub(crate) fn is_open(&self) -> bool {
        self.failure.is_none() && !self.writer.is_closed()
    }

    fn gateway_error(&mut self, message: String, out: &mut Vec<u8>) {
        let info = ErrorInfo {
            message: Some(message),
            ..ErrorInfo::default()
        };
        self.failure.get_or_insert(Failure {
            kind: FailureKind::Server,
            retry_after_ms: None,
        });
        self.writer.error(
            &ClientError::for_failure(&self.context, FailureKind::Server, None, &info),
            out,
        );
    }

    /// Ends the client's stream whatever state it is in.
    fn end(&mut self, out: &mut Vec<u8>) {
        if self.writer.is_closed() {
            return;
        }
        if let Some(reason) = self.broken.take() {
            self.gateway_error(format!("its stream could not be read ({reason})"), out);
        } else if self.failure.is_none() && !self.writer.is_finished() {
            self.gateway_error("its stream ended before the answer was complete".to_string(), out);
        }
        // After a failure the client gets the error, not a usage chunk.
        let usage = if self.failure.is_none() { self.usage } else { None };
        self.writer.close(usage, out);
    }
}

/// A framer, a provider handler, and the output they write to.
pub(crate) struct Translator<F, H> {
    framer: F,
    handler: H,
    output: Output,
}

impl<F: Framer, H: Handler<F>> Translator<F, H> {
    pub(crate) fn new(framer: F, handler: H, output: Output) -> Translator<F, H> {
        Translator {
            framer,
            handler,
            output,
        }
    }

    fn broke(&mut self, error: GatewayError) -> GatewayError {
        if self.output.broken.is_none() {
            self.output.broken = Some(error.to_string());
        }
        error
    }

    fn drain(&mut self, out: &mut Vec<u8>) -> Result<(), GatewayError> {
        let result = loop {
            match self.framer.next_event() {
                Ok(Some(event)) => {
                    if let Err(error) = self.handler.on_event(event, &mut self.output, out) {
                        break Err(error);
                    }
                }
                Ok(None) => break Ok(()),
                Err(error) => break Err(error),
            }
        };
        result.map_err(|error| self.broke(error))
    }
}

impl<F: Framer, H: Handler<F>> StreamTranslator for Translator<F, H> {
    fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), GatewayError> {
        if let Some(reason) = &self.output.broken {
            return Err(GatewayError::Internal {
                message: reason.clone(),
            });
        }
        self.framer.feed(chunk);
        self.drain(out)
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        if self.output.broken.is_none() {
            let ended = self.framer.end();
            // A drain error is recorded in `broken` and reported by `end`.
            let _ = self.drain(out);
            if let Err(error) = ended {
                self.broke(error);
            }
            if self.output.broken.is_none() {
                self.handler.on_end(&mut self.output, out);
            }
        }
        self.output.end(out);
    }

    fn usage(&self) -> Option<TokenUsage> {
        self.output.usage
    }

    fn relayed_output_tokens(&self) -> u64 {
        self.output.writer.relayed_output_tokens()
    }

    fn saw_content(&self) -> bool {
        self.output.writer.saw_content()
    }

    fn failure(&self) -> Option<Failure> {
        self.output.failure
    }
}
