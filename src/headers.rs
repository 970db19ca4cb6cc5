//! A snapshot of the request headers, read from the host in one call.
//!
//! Every host call costs a few microseconds in the Wasm VM, so the filter
//! reads the whole map once and the core looks headers up here: for rules,
//! client hints, and to emit only the edits that change something.

/// Header names are lowercase (Envoy normalizes them); values are raw bytes
/// because clients may send anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderMap {
    entries: Vec<(String, Vec<u8>)>,
}

impl HeaderMap {
    pub fn new(entries: Vec<(String, Vec<u8>)>) -> HeaderMap {
        HeaderMap { entries }
    }

    /// The first value of `name`, when it is valid UTF-8.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(key, _)| key == name)
            .and_then(|(_, value)| std::str::from_utf8(value).ok())
    }

    pub fn contains(&self, name: &str) -> bool {
        self.entries.iter().any(|(key, _)| key == name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(key, _)| key.as_str())
    }

    /// Name-value pairs as text (invalid UTF-8 replaced), for code that
    /// reads provider response headers.
    pub fn to_pairs(&self) -> Vec<(String, String)> {
        self.entries
            .iter()
            .map(|(key, value)| (key.clone(), String::from_utf8_lossy(value).into_owned()))
            .collect()
    }
}

impl<'a> FromIterator<(&'a str, &'a str)> for HeaderMap {
    fn from_iter<I: IntoIterator<Item = (&'a str, &'a str)>>(pairs: I) -> Self {
        HeaderMap::new(
            pairs
                .into_iter()
                .map(|(name, value)| (name.to_string(), value.as_bytes().to_vec()))
                .collect(),
        )
    }
}

/// The proxy-wasm ABI's header map encoding (what the host returns for a
/// whole map and takes to replace one): a little-endian `u32` count, a
/// (name length, value length) `u32` pair for each header, then each name
/// and value followed by a NUL.
pub fn encode_pairs(pairs: &[(&str, &str)]) -> Vec<u8> {
    let text: usize = pairs.iter().map(|(name, value)| name.len() + value.len() + 2).sum();
    let mut bytes = Vec::with_capacity(4 + pairs.len() * 8 + text);
    let length = |len: usize| u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes();
    bytes.extend_from_slice(&length(pairs.len()));
    for (name, value) in pairs {
        bytes.extend_from_slice(&length(name.len()));
        bytes.extend_from_slice(&length(value.len()));
    }
    for (name, value) in pairs {
        bytes.extend_from_slice(name.as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(value.as_bytes());
        bytes.push(0);
    }
    bytes
}

/// Reads [`encode_pairs`]' encoding; stops at the first pair that does not
/// fit in `bytes`. Names are header names (tokens); an invalid byte in one
/// is replaced rather than trusted.
pub fn decode_pairs(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let number = |at: usize| {
        let four = bytes.get(at..at.checked_add(4)?)?;
        Some(u32::from_le_bytes(<[u8; 4]>::try_from(four).ok()?) as usize)
    };
    let Some(count) = number(0) else {
        return Vec::new();
    };
    let mut pairs = Vec::with_capacity(count.min(64));
    let mut text_at = count.saturating_mul(8).saturating_add(4);
    let mut take = |len: usize| {
        let end = text_at.checked_add(len)?;
        let slice = bytes.get(text_at..end)?;
        text_at = end.checked_add(1)?;
        Some(slice)
    };
    for index in 0..count {
        let Some(lengths_at) = index.checked_mul(8).and_then(|offset| offset.checked_add(4)) else {
            break;
        };
        let (Some(name_len), Some(value_len)) = (number(lengths_at), number(lengths_at.saturating_add(4))) else {
            break;
        };
        let (Some(name), Some(value)) = (take(name_len), take(value_len)) else {
            break;
        };
        pairs.push((String::from_utf8_lossy(name).into_owned(), value.to_vec()));
    }
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_return_the_first_utf8_value() {
        let headers = HeaderMap::new(vec![
            ("x-team".into(), b"research".to_vec()),
            ("x-team".into(), b"sales".to_vec()),
            ("x-bad".into(), vec![0xff, 0xfe]),
        ]);
        assert_eq!(headers.get("x-team"), Some("research"));
        assert_eq!(headers.get("x-bad"), None);
        assert!(headers.contains("x-bad"));
        assert_eq!(headers.get("x-missing"), None);
        assert_eq!(headers.names().count(), 3);
    }

    #[test]
    fn pairs_survive_the_round_trip() {
        let pairs = [
            (":status", "200"),
            ("content-type", "application/json"),
            ("x-empty", ""),
        ];
        let decoded = decode_pairs(&encode_pairs(&pairs));
        let expected: Vec<(String, Vec<u8>)> = pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.as_bytes().to_vec()))
            .collect();
        assert_eq!(decoded, expected);
    }

    #[test]
    fn a_truncated_or_lying_encoding_never_panics() {
        let whole = encode_pairs(&[("a", "1"), ("bb", "22")]);
        for end in 0..whole.len() {
            let decoded = decode_pairs(&whole[..end]);
            assert!(decoded.len() <= 2);
        }
        // A count far beyond the bytes, and lengths that overflow.
        let mut lying = u32::MAX.to_le_bytes().to_vec();
        lying.extend_from_slice(&u32::MAX.to_le_bytes());
        lying.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_pairs(&lying).is_empty());
        assert!(decode_pairs(&[]).is_empty());
    }
}
