//! Thin, panic-free wrappers over proxy-wasm host calls.
//!
//! The SDK's trait methods unwrap host results (and its `String` header
//! getters unwrap UTF-8 decoding of client-controlled values), and its
//! `hostcalls` panic on a status they do not expect, so a bad header or an
//! unexpected host status would trap the VM. These helpers call the ABI
//! ([`super::abi`]) for headers, bodies and properties, the SDK's
//! `hostcalls` for the rest (whose statuses Envoy keeps to the expected
//! ones), and turn every failure into a logged `None`/no-op.
//! Request headers must not be read in response callbacks (the host answers
//! BadArgument): callers snapshot them in the request path.

use std::time::{Duration, Instant, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType, MetricType, Status};

use super::abi;
use super::hostcall_stats::{record, Crossing};

use crate::contract;
use crate::error::GatewayError;
use crate::headers::HeaderMap;
use crate::route::HeaderEdit;
use crate::state::{Store, StoreError};

fn headers(map: MapType) -> HeaderMap {
    record(Crossing::HeaderMapRead);
    match abi::get_map(map) {
        Ok(entries) => HeaderMap::new(entries),
        Err(status) => {
            log::warn!("cannot read headers {map:?}: {status:?}");
            HeaderMap::default()
        }
    }
}

/// All request headers in one host call (see [`HeaderMap`]).
pub fn request_headers() -> HeaderMap {
    headers(MapType::HttpRequestHeaders)
}

pub fn response_headers() -> HeaderMap {
    headers(MapType::HttpResponseHeaders)
}

/// The response's `:status` alone (0 if missing or malformed), without
/// copying the whole header map out of Envoy.
pub fn response_status() -> u16 {
    status_of(MapType::HttpResponseHeaders)
}

/// A header map's `:status` (0 if missing or malformed). Read as bytes: the
/// SDK's string variant panics on invalid UTF-8.
fn status_of(map: MapType) -> u16 {
    record(Crossing::HeaderRead);
    abi::get_map_value(map, ":status")
        .ok()
        .flatten()
        .and_then(|bytes| std::str::from_utf8(&bytes).ok()?.parse().ok())
        .unwrap_or(0)
}

fn set_header(map: MapType, name: &str, value: &str) {
    record(Crossing::HeaderWrite);
    if let Err(status) = abi::set_map_value(map, name, value) {
        log::warn!("cannot set header {name}: {status:?}");
    }
}

fn remove_header(map: MapType, name: &str) {
    record(Crossing::HeaderRemove);
    if let Err(status) = abi::remove_map_value(map, name) {
        log::warn!("cannot remove header {name}: {status:?}");
    }
}

pub fn remove_request_header(name: &str) {
    remove_header(MapType::HttpRequestHeaders, name);
}

pub fn set_response_header(name: &str, value: &str) {
    set_header(MapType::HttpResponseHeaders, name, value);
}

/// Replaces the whole response header map (one host call).
pub fn replace_response_headers(headers: &[(String, String)]) {
    record(Crossing::HeaderWrite);
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    if let Err(status) = abi::set_map(MapType::HttpResponseHeaders, &pairs) {
        log::warn!("cannot replace the response headers: {status:?}");
    }
}

pub fn remove_response_header(name: &str) {
    remove_header(MapType::HttpResponseHeaders, name);
}

/// Applies request header edits, skipping those that change nothing given
/// `current` (each skipped edit is a host call saved).
pub fn apply_request_edits(edits: &[HeaderEdit], current: &HeaderMap) {
    let changes = |edit: &&HeaderEdit| match edit {
        HeaderEdit::Remove(name) => current.contains(name),
        HeaderEdit::Set(name, value) => current.get(name) != Some(value.as_str()),
    };
    apply_edits(MapType::HttpRequestHeaders, edits.iter().filter(changes));
}

/// Applies response header edits (the core left out those that change nothing).
pub fn apply_response_edits(edits: &[HeaderEdit]) {
    apply_edits(MapType::HttpResponseHeaders, edits.iter());
}

fn apply_edits<'e>(map: MapType, edits: impl Iterator<Item = &'e HeaderEdit>) {
    for edit in edits {
        match edit {
            HeaderEdit::Remove(name) => remove_header(map, name),
            HeaderEdit::Set(name, value) => set_header(map, name, value),
        }
    }
}

fn body(buffer: BufferType, size: usize) -> Option<Vec<u8>> {
    // An empty buffer (a body's closing callback, mostly) reads as empty
    // anyway: skip the host call.
    if size == 0 {
        return Some(Vec::new());
    }
    record(Crossing::BodyRead);
    match abi::get_buffer(buffer, 0, size) {
        Ok(body) => Some(body.unwrap_or_default()),
        Err(status) => {
            log::warn!("cannot read body {buffer:?}: {status:?}");
            None
        }
    }
}

fn replace_body(buffer: BufferType, size: usize, value: &[u8]) -> bool {
    record(Crossing::BodyWrite);
    match abi::set_buffer(buffer, 0, size, value) {
        Ok(()) => true,
        Err(status) => {
            log::warn!("cannot replace body {buffer:?}: {status:?}");
            false
        }
    }
}

pub fn response_body(size: usize) -> Option<Vec<u8>> {
    body(BufferType::HttpResponseBody, size)
}

pub fn request_body(size: usize) -> Option<Vec<u8>> {
    body(BufferType::HttpRequestBody, size)
}

/// Replaces the whole buffered request body (`size` bytes) with `value`.
pub fn replace_request_body(size: usize, value: &[u8]) -> bool {
    replace_body(BufferType::HttpRequestBody, size, value)
}

/// Replaces the current response body chunk (`size` bytes) with `value`.
pub fn replace_response_body(size: usize, value: &[u8]) -> bool {
    replace_body(BufferType::HttpResponseBody, size, value)
}

/// Answers the client directly with a JSON body.
pub fn send_json(status: u32, extra_headers: &[(&str, String)], body: &[u8]) {
    send_reply(status, "application/json", extra_headers, body);
}

/// Answers the client directly.
pub fn send_reply(status: u32, content_type: &str, extra_headers: &[(&str, String)], body: &[u8]) {
    let mut headers = vec![("content-type", content_type)];
    headers.extend(extra_headers.iter().map(|(name, value)| (*name, value.as_str())));
    record(Crossing::LocalReply);
    if let Err(status) = hostcalls::send_http_response(status, headers, Some(body)) {
        log::warn!("cannot send a local reply: {status:?}");
    }
}

/// Answers the client with an OpenAI-style error.
pub fn send_error(error: &GatewayError) {
    send_json(error.status(), &error.headers(), &error.to_json());
}

/// Writes filter state `wasm.<name>` (visible to the route's matcher, the
/// other Signalbox filter of this request and access logs).
pub fn set_filter_state(name: &str, value: &str) {
    record(Crossing::FilterStateWrite);
    if let Err(status) = abi::set_property(name, value) {
        log::warn!("cannot set filter state {name}: {status:?}");
    }
}

/// Writes access-log field `field` (filter state `wasm.signalbox.<field>`).
pub fn set_access_log_field(field: &str, value: &str) {
    match contract::field_state(field) {
        Some(key) => set_filter_state(key, value),
        None => log::warn!("{field} is not an access-log field"),
    }
}

pub fn filter_state(name: &str) -> Option<String> {
    let key = format!("wasm.{name}");
    record(Crossing::FilterStateRead);
    let bytes = abi::get_property(&["filter_state", &key]).ok().flatten()?;
    String::from_utf8(bytes).ok()
}

/// Makes Envoy pick the route (and cluster) again, after filter state changed.
pub fn clear_route_cache() {
    record(Crossing::ForeignFunction);
    if let Err(status) = hostcalls::call_foreign_function("clear_route_cache", None) {
        log::warn!("cannot clear the route cache: {status:?}");
    }
}

/// Milliseconds since the Unix epoch (0 if the host cannot say).
pub fn now_ms() -> u64 {
    record(Crossing::WallClock);
    hostcalls::get_current_time()
        .ok()
        .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

/// Microseconds since `started` (a monotonic clock: WASI's).
pub fn elapsed_us(started: Instant) -> u64 {
    // Counted here for both reads: every `Instant::now()` in the filter is
    // the start of a phase that ends here.
    record(Crossing::MonotonicClock);
    record(Crossing::MonotonicClock);
    u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// A string property such as `plugin_root_id`.
pub fn property(path: &[&str]) -> Option<String> {
    record(Crossing::PropertyRead);
    String::from_utf8(abi::get_property(path).ok().flatten()?).ok()
}

/// The plugin configuration (`size` bytes); empty when there is none.
pub fn plugin_configuration(size: usize) -> Option<Vec<u8>> {
    record(Crossing::Configuration);
    match abi::get_buffer(BufferType::PluginConfiguration, 0, size) {
        Ok(raw) => Some(raw.unwrap_or_default()),
        Err(status) => {
            log::error!("cannot read the plugin configuration: {status:?}");
            None
        }
    }
}

/// Asks for `on_tick` every `period`.
pub fn set_tick_period(period: Duration) {
    record(Crossing::Configuration);
    if let Err(status) = hostcalls::set_tick_period(period) {
        log::warn!("cannot schedule probes and gauges: {status:?}");
    }
}

/// Defines an Envoy stat; its id, or `None` if the host refused.
pub fn define_metric(kind: MetricType, name: &str) -> Option<u32> {
    record(Crossing::MetricDefine);
    match hostcalls::define_metric(kind, name) {
        Ok(id) => Some(id),
        Err(status) => {
            log::warn!("cannot define metric {name}: {status:?}");
            None
        }
    }
}

/// Adds `value` to a counter.
pub fn increment_metric(id: u32, value: u64) {
    record(Crossing::MetricIncrement);
    if let Err(status) = hostcalls::increment_metric(id, i64::try_from(value).unwrap_or(i64::MAX)) {
        log::warn!("cannot update metric {id}: {status:?}");
    }
}

/// Sets a gauge, or records a histogram value.
pub fn record_metric(id: u32, value: u64) {
    record(Crossing::MetricRecord);
    if let Err(status) = hostcalls::record_metric(id, value) {
        log::warn!("cannot update metric {id}: {status:?}");
    }
}

/// Sends a request to `cluster` outside any client stream; the answer
/// arrives in the root context's `on_http_call_response`.
pub fn dispatch(cluster: &str, headers: Vec<(&str, &str)>, body: &[u8], timeout: Duration) -> Option<u32> {
    record(Crossing::HttpCall);
    match hostcalls::dispatch_http_call(cluster, headers, Some(body), Vec::new(), timeout) {
        Ok(token) => Some(token),
        Err(status) => {
            log::warn!("cannot call cluster {cluster}: {status:?}");
            None
        }
    }
}

/// Dispatches a request the gateway sends itself (a probe, a shadow call).
pub fn dispatch_own(request: &crate::probe::OwnRequest, timeout: Duration) -> Option<u32> {
    let headers = request
        .headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    dispatch(&request.cluster, headers, &request.body, timeout)
}

/// The body of a dispatched call's response.
pub fn call_response_body(size: usize) -> Option<Vec<u8>> {
    body(BufferType::HttpCallResponseBody, size)
}

/// Lets a request paused in its body callbacks go on.
pub fn resume_request() {
    record(Crossing::Resume);
    if let Err(status) = hostcalls::resume_http_request() {
        log::warn!("cannot resume the request: {status:?}");
    }
}

/// From the root context: lets the response held by HTTP context `context`
/// go on, then acts as the root (`root`) again.
pub fn resume_response_of(context: u32, root: u32) {
    record(Crossing::Resume);
    let resumed = hostcalls::set_effective_context(context).and_then(|()| hostcalls::resume_http_response());
    if let Err(status) = resumed {
        log::warn!("cannot release a held answer's headers: {status:?}");
    }
    if let Err(status) = hostcalls::set_effective_context(root) {
        log::warn!("cannot return to the root context: {status:?}");
    }
}

/// The `:status` of a dispatched call's response (0 when it was reset).
pub fn call_response_status() -> u16 {
    status_of(MapType::HttpCallResponseHeaders)
}

/// Envoy shared data: one map per `vm_id`, seen by every worker.
pub struct HostStore;

impl Store for HostStore {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        record(Crossing::SharedDataRead);
        match hostcalls::get_shared_data(key) {
            // A token of 0 means "none": a later write is then unconditional.
            Ok((Some(value), cas)) => Some((value, cas.unwrap_or(0))),
            Ok((None, _)) => None,
            Err(status) => {
                log::warn!("cannot read shared data {key}: {status:?}");
                None
            }
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        record(Crossing::SharedDataWrite);
        match hostcalls::set_shared_data(key, Some(value), cas) {
            Ok(()) => Ok(()),
            Err(Status::CasMismatch) => Err(StoreError::CasMismatch),
            Err(status) => {
                log::warn!("cannot write shared data {key}: {status:?}");
                Err(StoreError::Failed)
            }
        }
    }
}
