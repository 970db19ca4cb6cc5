//! Incremental decoder for AWS's binary event-stream framing
//! (`application/vnd.amazon.eventstream`), which Bedrock streams use.
//!
//! A message is: total length (u32 BE) | headers length (u32 BE) | CRC32 of
//! those 8 bytes | headers | payload | CRC32 of everything before it. Each
//! header is name length (u8) | name | value type (u8) | value. Both CRCs
//! are checked, so a corrupted or misaligned stream is an error, never a
//! message read from the wrong bytes.

use crate::error::GatewayError;

use super::sse::MAX_FRAME_BYTES;

const PRELUDE_BYTES: usize = 12;
/// Prelude plus the trailing message CRC.
const OVERHEAD_BYTES: usize = PRELUDE_BYTES + 4;

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), as AWS uses.
pub fn crc32(bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut index = 0;
        while index < 256 {
            let mut value = index as u32;
            let mut bit = 0;
            while bit < 8 {
                value = if value & 1 == 1 {
                    0xEDB8_8320 ^ (value >> 1)
                } else {
                    value >> 1
                };
                bit += 1;
            }
            table[index] = value;
            index += 1;
        }
        table
    };
    !bytes.iter().fold(!0u32, |crc, &byte| {
        TABLE[((crc ^ u32::from(byte)) & 0xff) as usize] ^ (crc >> 8)
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderValue<'a> {
    Bool(bool),
    Byte(i8),
    Short(i16),
    Int(i32),
    Long(i64),
    Bytes(&'a [u8]),
    String(&'a str),
    /// Milliseconds since the Unix epoch.
    Timestamp(i64),
    Uuid(&'a [u8]),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    pub name: &'a str,
    pub value: HeaderValue<'a>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    pub headers: Vec<Header<'a>>,
    pub payload: &'a [u8],
}

impl<'a> Message<'a> {
    /// The value of a string header such as `:event-type`.
    pub fn header_str(&self, name: &str) -> Option<&'a str> {
        self.headers
            .iter()
            .find(|header| header.name == name)
            .and_then(|header| match header.value {
                HeaderValue::String(value) => Some(value),
                _ => None,
            })
    }
}

#[derive(Debug)]
pub struct EventStreamDecoder {
    buffer: Vec<u8>,
    start: usize,
}

impl Default for EventStreamDecoder {
    fn default() -> Self {
        EventStreamDecoder::new()
    }
}

fn garbage(what: &str) -> GatewayError {
    GatewayError::Internal {
        message: format!("The provider's event stream is corrupt ({what})."),
    }
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let field: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_be_bytes(field))
}

/// Reads `len` bytes at `*cursor` and advances it.
fn take<'a>(bytes: &'a [u8], cursor: &mut usize, len: usize) -> Result<&'a [u8], GatewayError> {
    let end = cursor.checked_add(len).ok_or_else(|| garbage("header overflow"))?;
    let field = bytes.get(*cursor..end).ok_or_else(|| garbage("truncated header"))?;
    *cursor = end;
    Ok(field)
}

fn take_array<const N: usize>(bytes: &[u8], cursor: &mut usize) -> Result<[u8; N], GatewayError> {
    take(bytes, cursor, N)?
        .try_into()
        .map_err(|_| garbage("truncated header"))
}

fn parse_headers(bytes: &[u8]) -> Result<Vec<Header<'_>>, GatewayError> {
    let mut headers = Vec::new();
    let mut cursor = 0;
    while cursor < bytes.len() {
        let [name_len] = take_array::<1>(bytes, &mut cursor)?;
        let name = std::str::from_utf8(take(bytes, &mut cursor, usize::from(name_len))?)
            .map_err(|_| garbage("header name is not UTF-8"))?;
        let [kind] = take_array::<1>(bytes, &mut cursor)?;
        let value = match kind {
            0 => HeaderValue::Bool(true),
            1 => HeaderValue::Bool(false),
            2 => HeaderValue::Byte(i8::from_be_bytes(take_array(bytes, &mut cursor)?)),
            3 => HeaderValue::Short(i16::from_be_bytes(take_array(bytes, &mut cursor)?)),
            4 => HeaderValue::Int(i32::from_be_bytes(take_array(bytes, &mut cursor)?)),
            5 => HeaderValue::Long(i64::from_be_bytes(take_array(bytes, &mut cursor)?)),
            6 | 7 => {
                let len = u16::from_be_bytes(take_array(bytes, &mut cursor)?);
                let value = take(bytes, &mut cursor, usize::from(len))?;
                if kind == 6 {
                    HeaderValue::Bytes(value)
                } else {
                    HeaderValue::String(std::str::from_utf8(value).map_err(|_| garbage("string header is not UTF-8"))?)
                }
            }
            8 => HeaderValue::Timestamp(i64::from_be_bytes(take_array(bytes, &mut cursor)?)),
            9 => HeaderValue::Uuid(take(bytes, &mut cursor, 16)?),
            _ => return Err(garbage("unknown header type")),
        };
        headers.push(Header { name, value });
    }
    Ok(headers)
}

impl EventStreamDecoder {
    pub fn new() -> EventStreamDecoder {
        EventStreamDecoder {
            buffer: Vec::new(),
            start: 0,
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        if self.start > 0 {
            self.buffer.drain(..self.start);
            self.start = 0;
        }
        self.buffer.extend_from_slice(chunk);
    }

    /// Bytes received that do not yet form a whole message.
    pub fn pending(&self) -> usize {
        self.buffer.len() - self.start
    }

    /// The next whole, CRC-checked message, or `None` until more bytes arrive.
    pub fn next_message(&mut self) -> Result<Option<Message<'_>>, GatewayError> {
        let available = self.buffer.get(self.start..).unwrap_or_default();
        let (Some(total), Some(headers_len), Some(prelude_crc)) =
            (read_u32(available, 0), read_u32(available, 4), read_u32(available, 8))
        else {
            return Ok(None);
        };
        if crc32(available.get(..8).unwrap_or_default()) != prelude_crc {
            return Err(garbage("prelude checksum mismatch"));
        }
        let (total, headers_len) = (total as usize, headers_len as usize);
        if total < OVERHEAD_BYTES || headers_len > total - OVERHEAD_BYTES {
            return Err(garbage("impossible lengths"));
        }
        if total > MAX_FRAME_BYTES {
            return Err(GatewayError::Internal {
                message: format!("A provider stream message exceeded the gateway's limit of {MAX_FRAME_BYTES} bytes."),
            });
        }
        let Some(message) = available.get(..total) else {
            return Ok(None);
        };
        let (checked, crc) = message.split_at(total - 4);
        if read_u32(crc, 0) != Some(crc32(checked)) {
            return Err(garbage("message checksum mismatch"));
        }
        let body = checked.get(PRELUDE_BYTES..).unwrap_or_default();
        let (headers, payload) = body.split_at(headers_len.min(body.len()));
        let headers = parse_headers(headers)?;
        self.start += total;
        Ok(Some(Message { headers, payload }))
    }
}

/// One message with string headers, for tests that build recorded streams.
#[cfg(test)]
pub(crate) fn encode_message(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut encoded_headers = Vec::new();
    for (name, value) in headers {
        encoded_headers.push(name.len() as u8);
        encoded_headers.extend_from_slice(name.as_bytes());
        encoded_headers.push(7);
        encoded_headers.extend_from_slice(&(value.len() as u16).to_be_bytes());
        encoded_headers.extend_from_slice(value.as_bytes());
    }
    let total = OVERHEAD_BYTES + encoded_headers.len() + payload.len();
    let mut message = Vec::with_capacity(total);
    message.extend_from_slice(&(total as u32).to_be_bytes());
    message.extend_from_slice(&(encoded_headers.len() as u32).to_be_bytes());
    message.extend_from_slice(&crc32(&message).to_be_bytes());
    message.extend_from_slice(&encoded_headers);
    message.extend_from_slice(payload);
    message.extend_from_slice(&crc32(&message).to_be_bytes());
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn a_message_decodes_to_its_headers_and_payload() {
        let bytes = encode_message(
            &[(":event-type", "messageStart"), (":message-type", "event")],
            b"{\"role\":\"assistant\"}",
        );
        let mut decoder = EventStreamDecoder::new();
        decoder.feed(&bytes);
        let message = decoder.next_message().unwrap().unwrap();
        assert_eq!(message.header_str(":event-type"), Some("messageStart"));
        assert_eq!(message.header_str(":message-type"), Some("event"));
        assert_eq!(message.header_str(":missing"), None);
        assert_eq!(message.payload, b"{\"role\":\"assistant\"}");
        assert!(decoder.next_message().unwrap().is_none());
        assert_eq!(decoder.pending(), 0);
    }

    #[test]
    fn every_header_type_is_read() {
        let mut headers = vec![
            2, b'b', b't', 0, 2, b'b', b'f', 1, 1, b'y', 2, 0xff, 1, b's', 3, 0x01, 0x02,
        ];
        headers.extend_from_slice(&[1, b'i', 4, 0, 0, 0, 7, 1, b'l', 5, 0, 0, 0, 0, 0, 0, 0, 9]);
        headers.extend_from_slice(&[1, b'x', 6, 0, 2, 0xde, 0xad, 1, b't', 8, 0, 0, 0, 0, 0, 0, 3, 232]);
        headers.extend_from_slice(&[1, b'u', 9]);
        headers.extend_from_slice(&[7; 16]);
        let parsed = parse_headers(&headers).unwrap();
        let values: Vec<HeaderValue> = parsed.iter().map(|header| header.value).collect();
        assert_eq!(
            values,
            vec![
                HeaderValue::Bool(true),
                HeaderValue::Bool(false),
                HeaderValue::Byte(-1),
                HeaderValue::Short(0x0102),
                HeaderValue::Int(7),
                HeaderValue::Long(9),
                HeaderValue::Bytes(&[0xde, 0xad]),
                HeaderValue::Timestamp(1000),
                HeaderValue::Uuid(&[7; 16]),
            ]
        );
    }

    #[test]
    fn messages_split_at_every_byte_decode_the_same() {
        let mut stream = encode_message(&[(":event-type", "a")], b"first");
        stream.extend(encode_message(&[(":event-type", "b")], b""));
        stream.extend(encode_message(&[], b"third"));
        for split in 0..=stream.len() {
            let mut decoder = EventStreamDecoder::new();
            let mut payloads = Vec::new();
            for part in [&stream[..split], &stream[split..]] {
                decoder.feed(part);
                while let Some(message) = decoder.next_message().unwrap() {
                    payloads.push(message.payload.to_vec());
                }
            }
            assert_eq!(
                payloads,
                vec![b"first".to_vec(), vec![], b"third".to_vec()],
                "split at {split}"
            );
        }
    }

    #[test]
    fn a_flipped_bit_anywhere_is_detected() {
        let message = encode_message(
            &[(":event-type", "contentBlockDelta")],
            b"{\"delta\":{\"text\":\"hi\"}}",
        );
        for index in 0..message.len() {
            for bit in 0..8 {
                let mut corrupt = message.clone();
                corrupt[index] ^= 1 << bit;
                let mut decoder = EventStreamDecoder::new();
                decoder.feed(&corrupt);
                match decoder.next_message() {
                    Err(_) => {}
                    // A corrupted length can only make the decoder wait for more bytes.
                    Ok(None) => assert!(index < 4, "byte {index} bit {bit}"),
                    Ok(Some(_)) => panic!("corruption at byte {index} bit {bit} went unnoticed"),
                }
            }
        }
    }

    #[test]
    fn impossible_lengths_are_errors() {
        let mut prelude = Vec::new();
        prelude.extend_from_slice(&8u32.to_be_bytes());
        prelude.extend_from_slice(&0u32.to_be_bytes());
        prelude.extend_from_slice(&crc32(&prelude).to_be_bytes());
        let mut decoder = EventStreamDecoder::new();
        decoder.feed(&prelude);
        assert!(decoder.next_message().is_err());

        let mut huge = Vec::new();
        huge.extend_from_slice(&(64u32 << 20).to_be_bytes());
        huge.extend_from_slice(&0u32.to_be_bytes());
        huge.extend_from_slice(&crc32(&huge).to_be_bytes());
        let mut decoder = EventStreamDecoder::new();
        decoder.feed(&huge);
        assert!(decoder.next_message().is_err());
    }

    #[test]
    fn random_and_truncated_bytes_never_panic() {
        let valid = encode_message(
            &[(":event-type", "metadata"), (":content-type", "application/json")],
            b"{}",
        );
        for end in 0..valid.len() {
            let mut decoder = EventStreamDecoder::new();
            decoder.feed(&valid[..end]);
            assert!(matches!(decoder.next_message(), Ok(None)), "truncated at {end}");
        }
        let mut next = crate::testing::xorshift(0x9e37_79b9_7f4a_7c15);
        for _ in 0..2000 {
            let bytes: Vec<u8> = (0..48).map(|_| next() as u8).collect();
            let mut decoder = EventStreamDecoder::new();
            decoder.feed(&bytes);
            let _ = decoder.next_message();
            // Headers with valid framing but random content.
            let _ = parse_headers(&bytes);
        }
    }
}
