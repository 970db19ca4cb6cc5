//! Thin, panic-free wrappers over proxy-wasm host calls.
//!
//! The SDK's trait methods unwrap host results (and its `String` header
//! getters unwrap UTF-8 decoding of client-controlled values), so a bad
//! header or an unexpected host status would trap the VM. These helpers use
//! the raw `hostcalls` and turn every failure into a logged `None`/no-op.

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType};

use crate::error::GatewayError;
use crate::headers::HeaderMap;

/// All request headers in one host call (see [`HeaderMap`]).
pub fn request_headers() -> HeaderMap {
    match hostcalls::get_map_bytes(MapType::HttpRequestHeaders) {
        Ok(entries) => HeaderMap::new(entries),
        Err(status) => {
            log::warn!("cannot read the request headers: {status:?}");
            HeaderMap::default()
        }
    }
}

pub fn set_request_header(name: &str, value: &str) {
    if let Err(status) = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value)) {
        log::warn!("cannot set request header {name}: {status:?}");
    }
}

pub fn remove_request_header(name: &str) {
    if let Err(status) = hostcalls::remove_map_value(MapType::HttpRequestHeaders, name) {
        log::warn!("cannot remove request header {name}: {status:?}");
    }
}

pub fn set_response_header(name: &str, value: &str) {
    if let Err(status) = hostcalls::set_map_value(MapType::HttpResponseHeaders, name, Some(value)) {
        log::warn!("cannot set response header {name}: {status:?}");
    }
}

pub fn request_body(size: usize) -> Option<Vec<u8>> {
    match hostcalls::get_buffer(BufferType::HttpRequestBody, 0, size) {
        Ok(body) => Some(body.unwrap_or_default()),
        Err(status) => {
            log::warn!("cannot read the request body: {status:?}");
            None
        }
    }
}

/// Replaces the whole buffered request body (`size` bytes) with `body`.
pub fn replace_request_body(size: usize, body: &[u8]) -> bool {
    match hostcalls::set_buffer(BufferType::HttpRequestBody, 0, size, body) {
        Ok(()) => true,
        Err(status) => {
            log::warn!("cannot replace the request body: {status:?}");
            false
        }
    }
}

/// Answers the client directly with a JSON body.
pub fn send_json(status: u32, extra_headers: &[(&str, &str)], body: &[u8]) {
    let mut headers = vec![("content-type", "application/json")];
    headers.extend_from_slice(extra_headers);
    if let Err(status) = hostcalls::send_http_response(status, headers, Some(body)) {
        log::warn!("cannot send a local reply: {status:?}");
    }
}

/// Answers the client with an OpenAI-style error.
pub fn send_error(error: &GatewayError) {
    send_json(error.status(), &error.headers(), &error.to_json());
}
