//! AWS Signature Version 4, header form: the `Authorization` value that
//! proves a request was made with an access key, for Bedrock.
//!
//! The steps are AWS's: a canonical request (method, path, sorted query,
//! sorted signed headers, payload hash), a string to sign naming the date
//! and credential scope, a signing key derived from the secret through four
//! HMACs, and the hex HMAC of the string to sign. Tests pin each step to
//! AWS's published examples.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use super::dates;

const ALGORITHM: &str = "AWS4-HMAC-SHA256";

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length, so construction cannot fail; the
    // fallback only keeps this free of panics.
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(key) else {
        return [0; 32];
    };
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// RFC 3986 percent-encoding of everything but the unreserved characters,
/// with uppercase hex, as SigV4 requires.
pub fn uri_encode(text: &str, encode_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(char::from(byte)),
            b'/' if !encode_slash => out.push('/'),
            _ => {
                const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
                out.push('%');
                out.push(char::from(DIGITS[usize::from(byte >> 4)]));
                out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
            }
        }
    }
    out
}

/// What is signed about one request.
#[derive(Debug, Clone, Copy)]
pub struct CanonicalInput<'a> {
    pub method: &'a str,
    /// The path exactly as it is sent (its segments already percent-encoded
    /// once); every service but S3 signs it encoded a second time.
    pub path: &'a str,
    /// Query parameters, decoded.
    pub query: &'a [(&'a str, &'a str)],
    /// The headers to sign, names in any case.
    pub headers: &'a [(&'a str, &'a str)],
    pub payload_sha256: &'a str,
}

/// The canonical request and its `SignedHeaders` list.
pub fn canonical_request(input: &CanonicalInput<'_>) -> (String, String) {
    let path = if input.path.is_empty() {
        "/".to_string()
    } else {
        uri_encode(input.path, false)
    };
    let mut query: Vec<(String, String)> = input
        .query
        .iter()
        .map(|(name, value)| (uri_encode(name, true), uri_encode(value, true)))
        .collect();
    query.sort();
    let query = query
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join("&");

    let mut headers: Vec<(String, String)> = input
        .headers
        .iter()
        .map(|(name, value)| {
            // Values are trimmed and inner runs of spaces collapse to one.
            let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
            (name.to_ascii_lowercase(), value)
        })
        .collect();
    headers.sort_by(|a, b| a.0.cmp(&b.0));
    let mut canonical_headers = String::new();
    let mut signed_headers: Vec<&str> = Vec::new();
    for (name, value) in &headers {
        if signed_headers.last() == Some(&name.as_str()) {
            // A repeated header is one line with comma-separated values.
            canonical_headers.pop();
            canonical_headers.push(',');
        } else {
            canonical_headers.push_str(name);
            canonical_headers.push(':');
            signed_headers.push(name);
        }
        canonical_headers.push_str(value);
        canonical_headers.push('\n');
    }
    let signed_headers = signed_headers.join(";");
    let canonical = format!(
        "{}\n{path}\n{query}\n{canonical_headers}\n{signed_headers}\n{}",
        input.method, input.payload_sha256
    );
    (canonical, signed_headers)
}

/// `YYYYMMDD/region/service/aws4_request`.
pub fn credential_scope(amz_date: &str, region: &str, service: &str) -> String {
    format!(
        "{}/{region}/{service}/aws4_request",
        amz_date.get(..8).unwrap_or(amz_date)
    )
}

pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    )
}

pub fn signing_key(secret_access_key: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let date_key = hmac_sha256(format!("AWS4{secret_access_key}").as_bytes(), date.as_bytes());
    let region_key = hmac_sha256(&date_key, region.as_bytes());
    let service_key = hmac_sha256(&region_key, service.as_bytes());
    hmac_sha256(&service_key, b"aws4_request")
}

/// The key and where it applies.
#[derive(Debug, Clone, Copy)]
pub struct Signer<'a> {
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
    pub session_token: Option<&'a str>,
    pub region: &'a str,
    pub service: &'a str,
}

impl Signer<'_> {
    /// The headers to add to a request: `x-amz-date`, `x-amz-security-token`
    /// when there is a session token, and `authorization`. `headers` are the
    /// request's own headers to sign (at least `host`); the added ones are
    /// signed too.
    pub fn sign(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        payload: &[u8],
        unix_seconds: u64,
    ) -> Vec<(String, String)> {
        let amz_date = dates::amz_date(unix_seconds);
        let mut signed: Vec<(&str, &str)> = headers.to_vec();
        signed.push(("x-amz-date", &amz_date));
        if let Some(token) = self.session_token {
            signed.push(("x-amz-security-token", token));
        }
        let payload_sha256 = sha256_hex(payload);
        let (canonical, signed_headers) = canonical_request(&CanonicalInput {
            method,
            path,
            query,
            headers: &signed,
            payload_sha256: &payload_sha256,
        });
        let scope = credential_scope(&amz_date, self.region, self.service);
        let to_sign = string_to_sign(&amz_date, &scope, &canonical);
        let key = signing_key(
            self.secret_access_key,
            amz_date.get(..8).unwrap_or(""),
            self.region,
            self.service,
        );
        let signature = hex(&hmac_sha256(&key, to_sign.as_bytes()));
        let mut added = vec![("x-amz-date".to_string(), amz_date.clone())];
        if let Some(token) = self.session_token {
            added.push(("x-amz-security-token".to_string(), token.to_string()));
        }
        added.push((
            "authorization".to_string(),
            format!(
                "{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
                self.access_key_id
            ),
        ));
        added
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    /// 2015-08-30T12:36:00Z, the time of every published example below.
    const EXAMPLE_TIME: u64 = 1_440_938_160;
    const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn suite_signer(session_token: Option<&'static str>) -> Signer<'static> {
        Signer {
            access_key_id: "AKIDEXAMPLE",
            secret_access_key: SECRET,
            session_token,
            region: "us-east-1",
            service: "service",
        }
    }

    fn authorization(headers: &[(String, String)]) -> &str {
        &headers.iter().find(|(name, _)| name == "authorization").unwrap().1
    }

    #[test]
    fn signing_keys_match_the_documented_derivations() {
        assert_eq!(
            hex(&signing_key(SECRET, "20120215", "us-east-1", "iam")),
            "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
        );
        assert_eq!(
            hex(&signing_key(SECRET, "20150830", "us-east-1", "iam")),
            "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"
        );
    }

    /// The worked example of AWS's SigV4 guide: IAM ListUsers.
    #[test]
    fn the_iam_list_users_example_signs_as_documented() {
        let headers = [
            ("Content-Type", "application/x-www-form-urlencoded; charset=utf-8"),
            ("Host", "iam.amazonaws.com"),
            ("X-Amz-Date", "20150830T123600Z"),
        ];
        let query = [("Version", "2010-05-08"), ("Action", "ListUsers")];
        let (canonical, signed_headers) = canonical_request(&CanonicalInput {
            method: "GET",
            path: "/",
            query: &query,
            headers: &headers,
            payload_sha256: EMPTY_SHA256,
        });
        assert_eq!(
            canonical,
            "GET\n/\nAction=ListUsers&Version=2010-05-08\n\
             content-type:application/x-www-form-urlencoded; charset=utf-8\nhost:iam.amazonaws.com\n\
             x-amz-date:20150830T123600Z\n\ncontent-type;host;x-amz-date\n"
                .to_string()
                + EMPTY_SHA256
        );
        assert_eq!(signed_headers, "content-type;host;x-amz-date");
        assert_eq!(
            sha256_hex(canonical.as_bytes()),
            "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59"
        );
        let scope = credential_scope("20150830T123600Z", "us-east-1", "iam");
        let to_sign = string_to_sign("20150830T123600Z", &scope, &canonical);
        assert_eq!(
            to_sign,
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/iam/aws4_request\n\
             f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59"
        );
        let key = signing_key(SECRET, "20150830", "us-east-1", "iam");
        assert_eq!(
            hex(&hmac_sha256(&key, to_sign.as_bytes())),
            "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
        );
    }

    /// `get-vanilla` from AWS's SigV4 test suite.
    #[test]
    fn get_vanilla_signs_as_the_test_suite_says() {
        let signer = suite_signer(None);
        let headers = signer.sign("GET", "/", &[], &[("host", "example.amazonaws.com")], b"", EXAMPLE_TIME);
        assert_eq!(
            authorization(&headers),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
        assert_eq!(headers[0], ("x-amz-date".to_string(), "20150830T123600Z".to_string()));
        let (canonical, _) = canonical_request(&CanonicalInput {
            method: "GET",
            path: "/",
            query: &[],
            headers: &[("host", "example.amazonaws.com"), ("x-amz-date", "20150830T123600Z")],
            payload_sha256: EMPTY_SHA256,
        });
        assert_eq!(
            string_to_sign(
                "20150830T123600Z",
                "20150830/us-east-1/service/aws4_request",
                &canonical
            ),
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n\
             bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63"
        );
    }

    /// `post-vanilla` from AWS's SigV4 test suite.
    #[test]
    fn post_vanilla_signs_as_the_test_suite_says() {
        let headers = suite_signer(None).sign(
            "POST",
            "/",
            &[],
            &[("host", "example.amazonaws.com")],
            b"",
            EXAMPLE_TIME,
        );
        assert!(authorization(&headers)
            .ends_with("Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"));
    }

    /// `post-x-www-form-urlencoded` from AWS's SigV4 test suite: a signed body.
    #[test]
    fn a_form_body_signs_as_the_test_suite_says() {
        let body = b"Param1=value1";
        let payload = sha256_hex(body);
        assert_eq!(
            payload,
            "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e"
        );
        let headers = [
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Host", "example.amazonaws.com"),
            ("Content-Length", "13"),
            ("x-amz-content-sha256", payload.as_str()),
        ];
        let signed = suite_signer(None).sign("POST", "/", &[], &headers, body, EXAMPLE_TIME);
        assert_eq!(
            authorization(&signed),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=content-length;content-type;host;x-amz-content-sha256;x-amz-date, \
             Signature=d3875051da38690788ef43de4db0d8f280229d82040bfac253562e56c3f20e0b"
        );
    }

    /// `get-vanilla-with-session-token` from AWS's SigV4 test suite.
    #[test]
    fn a_session_token_is_sent_and_signed() {
        let token = "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267";
        let headers =
            suite_signer(Some(token)).sign("GET", "/", &[], &[("host", "example.amazonaws.com")], b"", EXAMPLE_TIME);
        assert!(headers.contains(&("x-amz-security-token".to_string(), token.to_string())));
        assert_eq!(
            authorization(&headers),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date;x-amz-security-token, \
             Signature=07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8"
        );
    }

    #[test]
    fn paths_are_signed_encoded_a_second_time() {
        let (canonical, _) = canonical_request(&CanonicalInput {
            method: "POST",
            path: "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse",
            query: &[],
            headers: &[("host", "h")],
            payload_sha256: EMPTY_SHA256,
        });
        assert!(canonical.starts_with("POST\n/model/anthropic.claude-3-haiku-20240307-v1%253A0/converse\n"));
    }

    #[test]
    fn header_values_are_trimmed_and_repeated_names_joined() {
        let (canonical, signed) = canonical_request(&CanonicalInput {
            method: "GET",
            path: "/",
            query: &[],
            headers: &[("My-Header1", "  a   b  "), ("my-header1", "c"), ("Host", "h")],
            payload_sha256: EMPTY_SHA256,
        });
        assert!(canonical.contains("\nhost:h\nmy-header1:a b,c\n\n"), "{canonical}");
        assert_eq!(signed, "host;my-header1");
    }
}
