//! The path of the field a serde_json error is about (`tiers[1].canary.model`),
//! found from the error's position by walking the JSON text once.
//!
//! Tracking the path while deserializing (the `serde_path_to_error` crate)
//! wraps every visitor and seed, which adds a copy of the tracking code for
//! each deserialized type to the Wasm module. An error is rare, so instead
//! the text is walked up to where serde_json stopped and the member being
//! read there is named. The path has that crate's format: `.key` for an
//! object member, `[index]` for an array element, empty for the root.
//!
//! Where serde_json stops depends on the error:
//! - a wrong type or value: just after the value (after the opening bracket
//!   of an object or array given where something else was expected);
//! - an unknown field: just after the key;
//! - a missing field: just after the object's closing brace;
//! - an error raised after serde_json returned a value (untagged and
//!   internally tagged enums, which read the value first): where the
//!   enclosing object or array ends or goes on, i.e. at the comma after the
//!   value, at the start of the next element, or just after the enclosing
//!   closing bracket.
//!
//! The walk is for untrusted text: malformed JSON gives some path, never a
//! panic, and memory stays bounded by the nesting it keeps track of.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::ops::Range;

use crate::json_edit::{skip_whitespace, string_end};

/// The path of the field `err` (from parsing `json`) is about; empty for
/// the root value.
pub fn error_path(json: &[u8], err: &serde_json::Error) -> String {
    let offset = error_offset(json, err.line(), err.column());
    path_at(json, offset, Reading::of(&err.to_string()))
}

/// Byte offset of serde_json's 1-based `line` and `column`; its columns
/// count bytes from the start of the line. Line 0 (no position) is 0.
fn error_offset(json: &[u8], line: usize, column: usize) -> usize {
    let line_start = if line <= 1 {
        0
    } else {
        memchr::memchr_iter(b'\n', json)
            .nth(line - 2)
            .map_or(json.len(), |newline| newline + 1)
    };
    line_start.saturating_add(column).min(json.len())
}

/// What an error's message tells about where serde_json raised it, for
/// the positions that are alike for several kinds of error.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reading {
    /// `missing field `name``: raised at the end of the object that lacks it.
    MissingField(String),
    /// Too few elements for a tuple: at the end of the array.
    InvalidLength,
    /// A key given twice: raised after the key, about the object.
    DuplicateField,
    /// An enum's variant serde does not know; when written as an object's
    /// only key (`{"variant": ...}`), raised after it, about the object.
    UnknownVariant,
    /// An object or array given where something else was expected: raised
    /// at its opening bracket.
    ContainerType,
    Other,
}

impl Reading {
    fn of(message: &str) -> Reading {
        if let Some(rest) = message.strip_prefix("missing field `") {
            let name = rest.split_once('`').map_or(rest, |(name, _)| name);
            return Reading::MissingField(name.to_owned());
        }
        if message.starts_with("invalid length ") {
            return Reading::InvalidLength;
        }
        if message.starts_with("duplicate field `") {
            return Reading::DuplicateField;
        }
        if message.starts_with("unknown variant `") {
            return Reading::UnknownVariant;
        }
        if message.starts_with("invalid type: map,") || message.starts_with("invalid type: sequence,") {
            return Reading::ContainerType;
        }
        Reading::Other
    }
}

/// Deepest nesting the walk remembers; deeper containers are only counted.
const MAX_FRAMES: usize = 512;

/// An object or array opened before the offset and not yet closed.
struct Frame {
    object: bool,
    /// The current member's key (with its quotes), in an object.
    key: Option<Range<usize>>,
    /// The current element's index, in an array (`started`: one began).
    index: usize,
    started: bool,
    /// Whether a key equal to the missing field's name was seen.
    has_wanted: bool,
    /// Whether the last member read is an object without that key.
    last_lacks_wanted: bool,
}

impl Frame {
    fn new(object: bool) -> Frame {
        Frame {
            object,
            key: None,
            index: 0,
            started: false,
            has_wanted: false,
            last_lacks_wanted: false,
        }
    }

    /// The segment of the member being read, if any.
    fn segment(&self) -> Option<Segment> {
        if self.object {
            self.key.clone().map(Segment::Key)
        } else {
            self.started.then_some(Segment::Index(self.index))
        }
    }
}

#[derive(Clone)]
enum Segment {
    Key(Range<usize>),
    Index(usize),
}

/// A container that closed just before the offset.
struct Closed {
    object: bool,
    has_wanted: bool,
    /// Its last member, if it had any.
    last: Option<Segment>,
    last_lacks_wanted: bool,
    /// Just past its closing bracket.
    end: usize,
}

/// The last token before the offset.
enum Last {
    Nothing,
    Open,
    Key,
    Colon,
    Comma,
    Value,
    Closed(Closed),
}

/// The path of the member being read at `offset` (see the module's notes).
fn path_at(json: &[u8], offset: usize, reading: Reading) -> String {
    let wanted = match &reading {
        Reading::MissingField(name) => Some(name.as_str()),
        _ => None,
    };
    let mut walk = Walk {
        json,
        wanted,
        frames: Vec::new(),
        excess: 0,
        last: Last::Nothing,
    };
    let mut cursor = 0;
    loop {
        cursor = skip_whitespace(json, cursor);
        if cursor >= offset {
            break;
        }
        let Some(&byte) = json.get(cursor) else { break };
        cursor = walk.step(byte, cursor);
    }
    walk.path(offset, &reading)
}

/// The state of the walk up to the error's offset.
struct Walk<'a> {
    json: &'a [u8],
    /// The missing field's name, when the error is about one.
    wanted: Option<&'a str>,
    frames: Vec<Frame>,
    /// Containers open beyond MAX_FRAMES.
    excess: usize,
    last: Last,
}

impl Walk<'_> {
    /// Reads the token starting with `byte` at `cursor`; returns where the
    /// next one may start.
    fn step(&mut self, byte: u8, cursor: usize) -> usize {
        match byte {
            b'{' | b'[' => {
                self.open(byte == b'{');
                cursor + 1
            }
            b'}' | b']' => {
                self.close(cursor + 1);
                cursor + 1
            }
            b'"' => self.string(cursor),
            b':' => {
                self.last = Last::Colon;
                cursor + 1
            }
            b',' => {
                self.comma();
                cursor + 1
            }
            _ => {
                begin_value(&mut self.frames);
                self.last = Last::Value;
                let mut end = cursor + 1;
                while !matches!(
                    self.json.get(end),
                    None | Some(b',' | b'}' | b']' | b':' | b'"' | b'{' | b'[' | b' ' | b'\t' | b'\n' | b'\r')
                ) {
                    end += 1;
                }
                end
            }
        }
    }

    fn open(&mut self, object: bool) {
        if self.excess > 0 || self.frames.len() >= MAX_FRAMES {
            self.excess += 1;
        } else {
            begin_value(&mut self.frames);
            self.frames.push(Frame::new(object));
        }
        self.last = Last::Open;
    }

    /// A closing bracket ending just before `end`.
    fn close(&mut self, end: usize) {
        if self.excess > 0 {
            self.excess -= 1;
            self.last = Last::Value;
            return;
        }
        let Some(frame) = self.frames.pop() else {
            self.last = Last::Value;
            return;
        };
        let closed = Closed {
            object: frame.object,
            has_wanted: frame.has_wanted,
            last: frame.segment(),
            last_lacks_wanted: frame.last_lacks_wanted,
            end,
        };
        if let Some(parent) = self.frames.last_mut() {
            parent.last_lacks_wanted = self.wanted.is_some() && closed.object && !closed.has_wanted;
        }
        self.last = Last::Closed(closed);
    }

    /// A string at `cursor`: an object's key or a value; returns its end.
    fn string(&mut self, cursor: usize) -> usize {
        let json = self.json;
        let end = string_end(json, cursor).unwrap_or(json.len());
        let expecting_key =
            self.frames.last().is_some_and(|frame| frame.object) && matches!(self.last, Last::Open | Last::Comma);
        if expecting_key {
            if let Some(frame) = self.frames.last_mut() {
                if self
                    .wanted
                    .is_some_and(|name| decode_key(json.get(cursor..end).unwrap_or_default()) == name)
                {
                    frame.has_wanted = true;
                }
                frame.key = Some(cursor..end);
                frame.last_lacks_wanted = false;
            }
            self.last = Last::Key;
        } else {
            begin_value(&mut self.frames);
            self.last = Last::Value;
        }
        end
    }

    fn comma(&mut self) {
        if self.excess == 0 {
            if let Some(frame) = self.frames.last_mut() {
                if frame.object {
                    frame.key = None;
                } else if frame.started {
                    frame.index += 1;
                }
            }
        }
        self.last = Last::Comma;
    }

    /// The path the error at `offset` is about, from where the walk stopped.
    fn path(self, offset: usize, reading: &Reading) -> String {
        let Walk { json, frames, last, .. } = self;
        let depth = frames.len();
        let outer = || frames.iter().take(depth.saturating_sub(1)).filter_map(Frame::segment);
        let member = |extra: Option<Segment>| render(json, frames.iter().filter_map(Frame::segment).chain(extra));
        // The container on top of the stack itself (its parent's member).
        let container = || render(json, outer());
        match last {
            Last::Nothing => String::new(),
            Last::Open => match frames.last() {
                // An array's first element given as the wrong kind of container.
                Some(frame) if !frame.object && opens_container(json, offset, reading) => {
                    render(json, outer().chain(Some(Segment::Index(0))))
                }
                _ => container(),
            },
            Last::Key if matches!(reading, Reading::DuplicateField | Reading::UnknownVariant) => container(),
            Last::Key | Last::Colon | Last::Value => member(None),
            Last::Comma => match frames.last() {
                Some(frame) if !frame.object && frame.started => {
                    // An error in the element before the comma is raised after
                    // serde_json moved past the comma; a wrong container type
                    // is raised at the next element's bracket.
                    if opens_container(json, offset, reading) {
                        member(None)
                    } else {
                        let previous = frame.index.saturating_sub(1);
                        render(json, outer().chain(Some(Segment::Index(previous))))
                    }
                }
                _ => container(),
            },
            Last::Closed(closed) => {
                if closed_is_named(&closed, json, offset, reading) {
                    member(None)
                } else {
                    member(closed.last)
                }
            }
        }
    }
}

/// Whether an error raised just after a container closed is about that
/// container itself rather than its last member.
fn closed_is_named(closed: &Closed, json: &[u8], offset: usize, reading: &Reading) -> bool {
    match reading {
        Reading::MissingField(_) => {
            (closed.object && !closed.has_wanted) || !closed.last_lacks_wanted || closed.last.is_none()
        }
        Reading::InvalidLength => true,
        // At a comma: raised where the enclosing object goes on, about
        // this value (serde buffered it: an untagged enum). Else right
        // after the bracket, where this container's end was read after an
        // error in its last member. (An error in the last member of a
        // container followed by a comma also stops at that comma without
        // whitespace: the two cannot be told apart, and the container is
        // named.)
        _ => closed.last.is_none() || closed.end < offset || json.get(offset) == Some(&b','),
    }
}

/// Whether the error is about an object or array given where something
/// else was expected, and one opens at `offset`.
fn opens_container(json: &[u8], offset: usize, reading: &Reading) -> bool {
    *reading == Reading::ContainerType && matches!(json.get(skip_whitespace(json, offset)), Some(b'{' | b'['))
}

/// A value starts in the innermost container: an array's element begins.
fn begin_value(frames: &mut [Frame]) {
    if let Some(frame) = frames.last_mut() {
        if !frame.object {
            frame.started = true;
            frame.last_lacks_wanted = false;
        }
    }
}

fn render(json: &[u8], segments: impl Iterator<Item = Segment>) -> String {
    let mut path = String::new();
    for segment in segments {
        match segment {
            Segment::Key(range) => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(&decode_key(json.get(range).unwrap_or_default()));
            }
            Segment::Index(index) => {
                let _ = write!(path, "[{index}]");
            }
        }
    }
    path
}

/// The text of a quoted key, its escapes decoded (as written when they are
/// malformed).
fn decode_key(quoted: &[u8]) -> Cow<'_, str> {
    let inner = quoted.strip_prefix(b"\"").unwrap_or(quoted);
    let inner = inner.strip_suffix(b"\"").unwrap_or(inner);
    if inner.contains(&b'\\') {
        if let Ok(decoded) = serde_json::from_slice::<String>(quoted) {
            return Cow::Owned(decoded);
        }
    }
    String::from_utf8_lossy(inner)
}

#[cfg(test)]
mod tests;
