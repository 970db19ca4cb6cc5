//! The per-request HTTP context. Chat requests are held at the headers,
//! buffered until the body is complete, planned by the core, and released
//! with the plan applied; every path ends in exactly one outcome: the request
//! continues upstream, or the client gets one local reply.

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use super::host;
use super::root::Loaded;
use crate::error::GatewayError;
use crate::headers::HeaderMap;
use crate::route::{self, ClientHints, Endpoint, HeaderEdit, RequestPlan, CLIENT_HEADER_PREFIX};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not a request Signalbox handles.
    PassThrough,
    /// Chat request held until its body is complete.
    AwaitingBody,
    /// Plan applied; the request is on its way upstream.
    Routed,
    /// A local reply was sent.
    Replied,
}

pub struct ChatFilter {
    state: Option<Rc<Loaded>>,
    phase: Phase,
    /// Request headers as they arrived (one host call), for planning.
    headers: HeaderMap,
    hints: ClientHints,
    response_headers: Vec<(&'static str, String)>,
}

impl ChatFilter {
    pub fn new(state: Option<Rc<Loaded>>) -> ChatFilter {
        ChatFilter {
            state,
            phase: Phase::PassThrough,
            headers: HeaderMap::default(),
            hints: ClientHints::default(),
            response_headers: Vec::new(),
        }
    }

    fn reply_error(&mut self, error: &GatewayError) -> Action {
        host::send_error(error);
        self.phase = Phase::Replied;
        Action::Pause
    }

    fn apply(&mut self, plan: RequestPlan, body_size: usize) -> Action {
        for edit in &plan.request_headers {
            match edit {
                HeaderEdit::Remove(name) => host::remove_request_header(name),
                HeaderEdit::Set(name, value) => host::set_request_header(name, value),
            }
        }
        if !host::replace_request_body(body_size, &plan.body) {
            return self.reply_error(&GatewayError::Internal {
                message: "The gateway could not forward the request body.".into(),
            });
        }
        self.response_headers = plan.response_headers;
        self.phase = Phase::Routed;
        Action::Continue
    }
}

impl Context for ChatFilter {}

impl HttpContext for ChatFilter {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(state) = self.state.clone() else {
            return self.reply_error(&GatewayError::Internal {
                message: "Signalbox is not configured.".into(),
            });
        };
        let config = &state.config;
        let headers = host::request_headers();
        // The routing header is Signalbox's alone: a client must never pick a cluster.
        if headers.contains(&config.routing_header) {
            host::remove_request_header(&config.routing_header);
        }
        let method = headers.get(":method").unwrap_or_default();
        match route::endpoint(headers.get(":path").unwrap_or_default()) {
            Endpoint::Other => return Action::Continue,
            Endpoint::Models if method == "GET" => {
                host::send_json(200, &[], &state.models_json);
                self.phase = Phase::Replied;
                return Action::Pause;
            }
            Endpoint::Models => return self.reply_error(&GatewayError::MethodNotAllowed { allowed: "GET" }),
            Endpoint::ChatCompletions if method != "POST" => {
                return self.reply_error(&GatewayError::MethodNotAllowed { allowed: "POST" });
            }
            Endpoint::ChatCompletions => {}
        }

        self.hints = route::client_hints(config, &headers);
        for name in headers.names().filter(|name| name.starts_with(CLIENT_HEADER_PREFIX)) {
            host::remove_request_header(name);
        }
        let declared_length = headers
            .get("content-length")
            .and_then(|value| value.trim().parse::<u64>().ok());
        self.headers = headers;
        if declared_length.is_some_and(|length| length > config.max_body_bytes as u64) {
            return self.reply_error(&GatewayError::BodyTooLarge {
                limit: config.max_body_bytes,
            });
        }
        if end_of_stream {
            return self.reply_error(&GatewayError::invalid("A JSON request body is required."));
        }
        self.phase = Phase::AwaitingBody;
        Action::Pause
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.phase != Phase::AwaitingBody {
            return if self.phase == Phase::Replied {
                Action::Pause
            } else {
                Action::Continue
            };
        }
        let Some(state) = self.state.clone() else {
            return Action::Continue;
        };
        let config = &state.config;
        if body_size > config.max_body_bytes {
            return self.reply_error(&GatewayError::BodyTooLarge {
                limit: config.max_body_bytes,
            });
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let Some(body) = host::request_body(body_size) else {
            return self.reply_error(&GatewayError::Internal {
                message: "The gateway could not read the request body.".into(),
            });
        };
        match route::plan_chat(config, &body, &self.headers, &self.hints) {
            Ok(plan) => self.apply(plan, body_size),
            Err(error) => self.reply_error(&error),
        }
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        match self.phase {
            // The body never reported its end: trailers closed the stream.
            Phase::AwaitingBody => self.reply_error(&GatewayError::invalid("Request trailers are not supported.")),
            Phase::Replied => Action::Pause,
            Phase::PassThrough | Phase::Routed => Action::Continue,
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        for (name, value) in &self.response_headers {
            host::set_response_header(name, value);
        }
        Action::Continue
    }
}
