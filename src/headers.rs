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
}
