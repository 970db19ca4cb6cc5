//! The proxy-wasm ABI imports the filter calls on a request's path, called
//! directly rather than through the SDK's wrappers: those panic on any
//! status they do not expect, and a panic traps the VM, failing every later
//! request of its worker. Envoy does answer such statuses: writing a
//! response body from the headers callback of a response that has none is
//! `NotFound`. Here every status other than `Ok` is an `Err` the caller logs.
//!
//! Memory the host returns was allocated through the SDK's exported
//! allocator (`proxy_on_memory_allocate`, a `Vec` of exactly that size), so
//! it is taken back as one.

use std::ptr::null_mut;

use proxy_wasm::types::{BufferType, MapType, Status};

use crate::headers::{decode_pairs, encode_pairs};

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
    fn proxy_set_buffer_bytes(buffer_type: u32, start: usize, size: usize, data: *const u8, data_size: usize) -> u32;
    fn proxy_get_header_map_pairs(map_type: u32, return_data: *mut *mut u8, return_size: *mut usize) -> u32;
    fn proxy_get_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, key_data: *const u8, key_size: usize) -> u32;
    fn proxy_set_header_map_pairs(map_type: u32, map_data: *const u8, map_size: usize) -> u32;
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
    fn proxy_set_property(path_data: *const u8, path_size: usize, value_data: *const u8, value_size: usize) -> u32;
}

/// A host status other than `Ok`, as the ABI numbers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostStatus(pub u32);

const OK: u32 = Status::Ok as u32;
const NOT_FOUND: u32 = Status::NotFound as u32;

fn checked(status: u32) -> Result<(), HostStatus> {
    if status == OK {
        Ok(())
    } else {
        Err(HostStatus(status))
    }
}

/// Calls an import that returns bytes; `Ok(None)` when there are none
/// (`NotFound`, or nothing allocated).
fn returned(call: impl FnOnce(*mut *mut u8, *mut usize) -> u32) -> Result<Option<Vec<u8>>, HostStatus> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    match call(&mut data, &mut size) {
        OK if data.is_null() => Ok(None),
        // SAFETY: the host allocated `size` bytes at `data` through the
        // SDK's allocator (a `Vec<u8>` of capacity `size`) and hands them over.
        OK => Ok(Some(unsafe { Vec::from_raw_parts(data, size, size) })),
        NOT_FOUND => Ok(None),
        status => Err(HostStatus(status)),
    }
}

/// Up to `max_size` bytes of a buffer from `start`.
pub fn get_buffer(buffer: BufferType, start: usize, max_size: usize) -> Result<Option<Vec<u8>>, HostStatus> {
    // SAFETY: the out-pointers are valid for the call.
    returned(|data, size| unsafe { proxy_get_buffer_bytes(buffer as u32, start, max_size, data, size) })
}

/// Replaces `size` bytes of a buffer from `start` with `value`.
pub fn set_buffer(buffer: BufferType, start: usize, size: usize, value: &[u8]) -> Result<(), HostStatus> {
    // SAFETY: `value` outlives the call, which only reads it.
    checked(unsafe { proxy_set_buffer_bytes(buffer as u32, start, size, value.as_ptr(), value.len()) })
}

/// Every header of a map, names and values as the host has them.
pub fn get_map(map: MapType) -> Result<Vec<(String, Vec<u8>)>, HostStatus> {
    // SAFETY: the out-pointers are valid for the call.
    let bytes = returned(|data, size| unsafe { proxy_get_header_map_pairs(map as u32, data, size) })?;
    Ok(bytes.map(|bytes| decode_pairs(&bytes)).unwrap_or_default())
}

/// One header's value; `None` when absent.
pub fn get_map_value(map: MapType, name: &str) -> Result<Option<Vec<u8>>, HostStatus> {
    // SAFETY: `name` outlives the call; the out-pointers are valid for it.
    returned(|data, size| unsafe { proxy_get_header_map_value(map as u32, name.as_ptr(), name.len(), data, size) })
}

/// Sets a header (replacing every value it had).
pub fn set_map_value(map: MapType, name: &str, value: &str) -> Result<(), HostStatus> {
    // SAFETY: both slices outlive the call, which only reads them.
    checked(unsafe {
        proxy_replace_header_map_value(map as u32, name.as_ptr(), name.len(), value.as_ptr(), value.len())
    })
}

pub fn remove_map_value(map: MapType, name: &str) -> Result<(), HostStatus> {
    // SAFETY: `name` outlives the call, which only reads it.
    checked(unsafe { proxy_remove_header_map_value(map as u32, name.as_ptr(), name.len()) })
}

/// Replaces a whole header map with `pairs`.
pub fn set_map(map: MapType, pairs: &[(&str, &str)]) -> Result<(), HostStatus> {
    let bytes = encode_pairs(pairs);
    // SAFETY: `bytes` outlives the call, which only reads it.
    checked(unsafe { proxy_set_header_map_pairs(map as u32, bytes.as_ptr(), bytes.len()) })
}

/// A property (`path`'s elements); `None` when it has no value.
pub fn get_property(path: &[&str]) -> Result<Option<Vec<u8>>, HostStatus> {
    let path = path.join("\0");
    // SAFETY: `path` outlives the call; the out-pointers are valid for it.
    returned(|data, size| unsafe { proxy_get_property(path.as_ptr(), path.len(), data, size) })
}

/// Writes a property whose path is the one element `name` (for filter
/// state: `wasm.<key>`).
pub fn set_property(name: &str, value: &str) -> Result<(), HostStatus> {
    // SAFETY: both slices outlive the call, which only reads them.
    checked(unsafe { proxy_set_property(name.as_ptr(), name.len(), value.as_ptr(), value.len()) })
}
