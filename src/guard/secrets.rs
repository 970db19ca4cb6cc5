//! API keys, tokens, private keys and passwords.
//!
//! Known formats first: vendor prefixes with their lengths (`sk-`,
//! `sk-ant-`, `AKIA`, `ghp_`, `xoxb-`, `AIza`, `glpat-`, `hf_`…), JWTs (two
//! base64url JSON segments and a signature), PEM private-key blocks, and
//! the token after `Bearer`. Then unknown formats: a long token that looks
//! random (entropy, digits and letters, frequent changes of character class)
//! counts when a word like key, secret, token or password stands just before
//! it; and a value assigned to `password`/`passwd`/`pwd`.

use super::scan::{keyword_before, Scan};
use super::Category;

pub(super) const BEARER: &str = "bearer";
/// A bearer token shorter than this is not reported.
pub(super) const SHORTEST_BEARER_TOKEN: usize = 16;

/// (prefix, characters that may follow, fewest of them): vendor key formats.
const PREFIXES: &[(&str, Charset, usize)] = &[
    ("sk-", Charset::Url, 20),        // OpenAI (incl. sk-proj-), Anthropic (sk-ant-), compatibles
    ("sk_live_", Charset::Alnum, 16), // Stripe
    ("sk_test_", Charset::Alnum, 16),
    ("rk_live_", Charset::Alnum, 16),
    ("ghp_", Charset::Alnum, 30), // GitHub
    ("gho_", Charset::Alnum, 30),
    ("ghu_", Charset::Alnum, 30),
    ("ghs_", Charset::Alnum, 30),
    ("ghr_", Charset::Alnum, 30),
    ("github_pat_", Charset::Url, 40),
    ("glpat-", Charset::Url, 20), // GitLab
    ("xoxb-", Charset::Url, 10),  // Slack
    ("xoxp-", Charset::Url, 10),
    ("xoxa-", Charset::Url, 10),
    ("xoxr-", Charset::Url, 10),
    ("xoxs-", Charset::Url, 10),
    ("xoxe-", Charset::Url, 10),
    ("hf_", Charset::Alnum, 30),  // Hugging Face
    ("npm_", Charset::Alnum, 36), // npm
    ("AIza", Charset::Url, 35),   // Google API keys
    ("AKIA", Charset::Upper, 16), // AWS access keys
    ("ASIA", Charset::Upper, 16),
];

/// First bytes of the prefixes above and of JWTs (`eyJ`): a cheap rejection.
const PREFIX_STARTS: [bool; 256] = {
    let mut starts = [false; 256];
    starts[b'e' as usize] = true;
    let mut index = 0;
    while index < PREFIXES.len() {
        starts[PREFIXES[index].0.as_bytes()[0] as usize] = true;
        index += 1;
    }
    starts
};

/// Words that make a random-looking token a secret.
const SECRET_WORDS: &[&str] = &[
    "key",
    "secret",
    "token",
    "password",
    "passwd",
    "pwd",
    "credential",
    "auth",
    "bearer",
    "api",
];
/// Hex strings are also hashes and ids; only these words make one a secret.
const HEX_SECRET_WORDS: &[&str] = &[
    "secret",
    "token",
    "password",
    "passwd",
    "credential",
    "apikey",
    "api_key",
    "api key",
];
const PASSWORD_WORDS: &[&str] = &["password", "passwd", "pwd", "passphrase"];
/// No known format is shorter (`xoxb-` and ten characters).
pub(super) const SHORTEST_KNOWN_FORMAT: usize = 15;
/// Tokens this short are not worth an entropy test.
const RANDOM_TOKEN_MIN: usize = 20;
const RANDOM_TOKEN_MAX: usize = 512;
/// How far before a token its keyword is looked for.
const KEYWORD_WINDOW: usize = 48;

#[derive(Debug, Clone, Copy)]
enum Charset {
    /// Letters, digits, `-`, `_`.
    Url,
    Alnum,
    /// Upper-case letters and digits.
    Upper,
}

impl Charset {
    fn allows(self, byte: u8) -> bool {
        match self {
            Charset::Url => byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_'),
            Charset::Alnum => byte.is_ascii_alphanumeric(),
            Charset::Upper => byte.is_ascii_uppercase() || byte.is_ascii_digit(),
        }
    }
}

/// Characters of tokens, keys and their encodings (base64, base64url).
fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'+' | b'/' | b'=')
}

/// Secrets inside one token: vendor prefixes, JWTs, and random-looking
/// runs after a keyword.
pub(super) fn detect_token(scan: &mut Scan<'_>, token_start: usize, token_end: usize, mixed: bool) {
    let mut cursor = token_start;
    while cursor < token_end {
        if !is_token_byte(scan.byte(cursor)) {
            cursor += 1;
            continue;
        }
        let run_start = cursor;
        while is_token_byte(scan.byte(cursor)) {
            cursor += 1;
        }
        let run = run_start..cursor;
        if run.len() < SHORTEST_KNOWN_FORMAT {
            continue;
        }
        // A JWT holds dots, so it ends past the run.
        match known_formats_inside(scan, run.clone()) {
            Some(end) => cursor = cursor.max(end),
            None if mixed && (RANDOM_TOKEN_MIN..=RANDOM_TOKEN_MAX).contains(&run.len()) => {
                random_after_keyword(scan, run)
            }
            None => {}
        }
    }
}

/// Vendor keys and JWTs at the start of a run or after `=`, `/`, `+`
/// inside it (`KEY=sk-…`); the end of the last one found.
fn known_formats_inside(scan: &mut Scan<'_>, run: std::ops::Range<usize>) -> Option<usize> {
    let mut found = None;
    let mut cursor = run.start;
    while cursor < run.end {
        let starts = cursor == run.start || matches!(scan.byte_before(cursor), b'=' | b'/' | b'+');
        match starts.then(|| known_format(scan, cursor)).flatten() {
            Some(end) => {
                scan.found(Category::Secret, cursor, end);
                found = Some(end);
                cursor = end;
            }
            None => cursor += 1,
        }
    }
    found
}

/// End of a vendor key or JWT starting exactly at `start`.
fn known_format(scan: &Scan<'_>, start: usize) -> Option<usize> {
    let rest = scan.bytes.get(start..)?;
    if !PREFIX_STARTS[usize::from(*rest.first()?)] {
        return None;
    }
    if rest.starts_with(b"eyJ") {
        return jwt_end(rest).map(|length| start + length);
    }
    let (prefix, charset, fewest) = PREFIXES
        .iter()
        .find(|(prefix, _, _)| rest.starts_with(prefix.as_bytes()))?;
    let body = rest
        .get(prefix.len()..)?
        .iter()
        .take_while(|&&byte| charset.allows(byte))
        .count();
    let end = start + prefix.len() + body;
    let whole = !scan.byte(end).is_ascii_alphanumeric();
    (body >= *fewest && whole).then_some(end)
}

/// Length of a JWT: header and payload are base64url JSON objects (so both
/// start `eyJ`), then a signature.
fn jwt_end(text: &[u8]) -> Option<usize> {
    let segment = |from: usize| {
        text.get(from..).map_or(0, |rest| {
            rest.iter()
                .take_while(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_'))
                .count()
        })
    };
    let header = segment(0);
    let payload_start = header + 1;
    if text.get(header) != Some(&b'.') || !text.get(payload_start..)?.starts_with(b"eyJ") {
        return None;
    }
    let payload = segment(payload_start);
    let signature_start = payload_start + payload + 1;
    if header < 10 || payload < 10 || text.get(payload_start + payload) != Some(&b'.') {
        return None;
    }
    Some(signature_start + segment(signature_start))
}

/// `-----BEGIN … PRIVATE KEY-----` to its `-----END …-----` line, or to the
/// end of the text when the block was cut.
pub(super) fn detect_private_key(scan: &mut Scan<'_>, start: usize) {
    if start < scan.inside_private_key_until {
        return;
    }
    let Some(rest) = scan.bytes.get(start..).filter(|rest| rest.starts_with(b"-----BEGIN")) else {
        return;
    };
    let label_area = rest.get(10..).unwrap_or_default();
    let label_area = label_area.get(..64).unwrap_or(label_area);
    let label_end = memchr::memmem::find(label_area, b"-----").map(|at| at + 10);
    let Some(label) = label_end.and_then(|end| rest.get(..end)) else {
        return;
    };
    if !label.ends_with(b"PRIVATE KEY") || label.len() > 64 {
        return;
    }
    let end = match memchr::memmem::find(rest, b"-----END ") {
        Some(at) => {
            let after_end = at + 9;
            let close = rest
                .get(after_end..)
                .and_then(|tail| memchr::memmem::find(tail, b"-----"))
                .map_or(rest.len(), |close| after_end + close + 5);
            start + close
        }
        None => scan.bytes.len(),
    };
    scan.found(Category::Secret, start, end);
    // Armour lines inside this block are not searched again: many BEGIN
    // lines without an END would otherwise each read to the end.
    scan.inside_private_key_until = end;
}

/// A random-looking run after a keyword.
fn random_after_keyword(scan: &mut Scan<'_>, run: std::ops::Range<usize>) {
    let Some(text) = scan.bytes.get(run.clone()) else {
        return;
    };
    if !looks_random(text) || is_uuid(text) {
        return;
    }
    let hex = text.iter().all(u8::is_ascii_hexdigit);
    let keywords = if hex { HEX_SECRET_WORDS } else { SECRET_WORDS };
    if keyword_before(scan.bytes, run.start, KEYWORD_WINDOW, keywords) {
        scan.found(Category::Secret, run.start, run.end);
    }
}

/// Letters and digits, high Shannon entropy, frequent changes
/// between lower case, upper case and digits, and few vowels: identifiers
/// made of words (`getUserAccountV2`) fail the last two.
fn looks_random(text: &[u8]) -> bool {
    let mut counts = [0u16; 128];
    let (mut digits, mut letters, mut vowels, mut changes) = (0, 0, 0, 0);
    let class = |byte: u8| match byte {
        b'0'..=b'9' => 0,
        b'a'..=b'z' => 1,
        b'A'..=b'Z' => 2,
        _ => 3,
    };
    for (index, &byte) in text.iter().enumerate() {
        if let Some(count) = counts.get_mut(usize::from(byte)) {
            *count += 1;
        }
        digits += usize::from(byte.is_ascii_digit());
        letters += usize::from(byte.is_ascii_alphabetic());
        vowels += usize::from(matches!(byte.to_ascii_lowercase(), b'a' | b'e' | b'i' | b'o' | b'u'));
        if index > 0
            && text
                .get(index - 1)
                .is_some_and(|&previous| class(previous) != class(byte))
        {
            changes += 1;
        }
    }
    let length = text.len() as f64;
    let entropy: f64 = counts
        .iter()
        .filter(|&&count| count > 0)
        .map(|&count| {
            let p = f64::from(count) / length;
            -p * p.log2()
        })
        .sum();
    digits > 0
        && letters > 0
        && entropy >= 3.3
        && changes as f64 / (length - 1.0) >= 0.3
        && vowels as f64 / length <= 0.3
}

/// `8-4-4-4-12` hex digits: an identifier, not a secret.
fn is_uuid(text: &[u8]) -> bool {
    text.len() == 36
        && text.iter().enumerate().all(|(index, byte)| match index {
            8 | 13 | 18 | 23 => *byte == b'-',
            _ => byte.is_ascii_hexdigit(),
        })
}

/// The token after the word `Bearer`, whatever its shape, once it is 16
/// characters long. Called for the word itself (`Bearer` has a capital)
/// and for the token after it (`bearer` has no trigger byte, its token
/// usually has).
pub(super) fn detect_bearer(scan: &mut Scan<'_>, token_start: usize, token_end: usize) {
    let is_bearer = |start: usize| {
        scan.bytes
            .get(start..start + BEARER.len())
            .is_some_and(|word| word.eq_ignore_ascii_case(BEARER.as_bytes()))
            && scan.byte(start + BEARER.len()) == b' '
            && !scan.byte_before(start).is_ascii_alphanumeric()
    };
    let value_start = if token_end - token_start == BEARER.len() && is_bearer(token_start) {
        token_end + 1
    } else if token_start > BEARER.len() && is_bearer(token_start - BEARER.len() - 1) {
        token_start
    } else {
        return;
    };
    let length = scan
        .bytes
        .get(value_start..)
        .unwrap_or_default()
        .iter()
        .take_while(|&&byte| is_token_byte(byte) || matches!(byte, b'.' | b'~'))
        .count();
    if length >= SHORTEST_BEARER_TOKEN {
        scan.found(Category::Secret, value_start, value_start + length);
    }
}

/// `password=…`, `password: …`, `"password": "…"`: the value, when it is
/// at least six characters and not a word, a variable or a call.
pub(super) fn detect_assignment(scan: &mut Scan<'_>, token_start: usize, token_end: usize) {
    let token = scan.bytes.get(token_start..token_end).unwrap_or_default();
    let Some(separator) = token.iter().position(|&byte| matches!(byte, b':' | b'=')) else {
        return;
    };
    let name = token.get(..separator).unwrap_or_default();
    let name = name.strip_suffix(b"\"").unwrap_or(name);
    let names_a_password = PASSWORD_WORDS.iter().any(|word| {
        name.len() >= word.len()
            && name
                .get(name.len() - word.len()..)
                .is_some_and(|end| end.eq_ignore_ascii_case(word.as_bytes()))
    });
    if !names_a_password {
        return;
    }
    let mut value_start = token_start + separator + 1;
    while matches!(scan.byte(value_start), b' ' | b'"' | b'\'') {
        value_start += 1;
    }
    let value_end = value_start
        + scan
            .bytes
            .get(value_start..)
            .unwrap_or_default()
            .iter()
            .take(128)
            .take_while(|&&byte| !matches!(byte, b' ' | b'"' | b'\'' | b',' | b'}' | b'\n' | b'\r' | b'\t' | b';'))
            .count();
    let Some(value) = scan.bytes.get(value_start..value_end) else {
        return;
    };
    let placeholder = value
        .iter()
        .all(|byte| matches!(byte, b'*' | b'x' | b'X' | b'.' | b'<' | b'>'))
        || matches!(value.first(), Some(b'$' | b'{' | b'<' | b'%'))
        || value.contains(&b'(');
    let plain_word = value.iter().all(|byte| byte.is_ascii_lowercase() || *byte == b'_');
    if value.len() >= 6 && !placeholder && !plain_word {
        scan.found(Category::Secret, value_start, value_end);
    }
}

#[cfg(test)]
mod tests {
    use super::super::found_of;
    use super::*;

    fn secrets(text: &str) -> Vec<&str> {
        found_of(Category::Secret, text)
    }

    #[test]
    fn vendor_keys_are_found_by_prefix_and_length() {
        for key in [
            "sk-proj-abcdefghijklmnop1234567890ABCDEF",
            "sk-ant-api03-abcdefghijklmnopqrstuvwxyz012345",
            "AKIAIOSFODNN7EXAMPLE",
            "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
            "xoxb-123456789012-abcdefghij",
            "AIzaSyA-abcdefghijklmnopqrstuvwxyz01234",
            "glpat-abcdefghij0123456789",
        ] {
            assert_eq!(secrets(&format!("use \"{key}\" here")), [key], "{key}");
        }
        assert_eq!(
            secrets("OPENAI_API_KEY=sk-abcdefghijklmnopqrstuvwx"),
            ["sk-abcdefghijklmnopqrstuvwx"]
        );
    }

    #[test]
    fn short_or_prose_prefixes_are_not_keys() {
        for text in [
            "sk-learn is a library",
            "use sk-short",
            "AKIA is a prefix",
            "task-based",
        ] {
            assert!(secrets(text).is_empty(), "{text}");
        }
    }

    #[test]
    fn a_jwt_is_found_whole() {
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        assert_eq!(secrets(&format!("token {jwt}.")), [jwt]);
    }

    #[test]
    fn a_pem_private_key_is_found_to_its_end_line() {
        let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----";
        assert_eq!(secrets(&format!("key:\n{pem}\nthanks")), [pem]);
        assert!(secrets("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----").is_empty());
    }

    #[test]
    fn many_begin_lines_without_an_end_make_one_finding() {
        let text = "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n".repeat(20_000);
        assert_eq!(secrets(&text), [text.as_str()]);
        let unterminated = "-----BEGIN ".repeat(20_000);
        assert!(secrets(&unterminated).is_empty());
    }

    #[test]
    fn a_random_token_counts_only_after_a_keyword() {
        let token = "q8Zr2LpX7vKm4NwT9sYb3Hd";
        assert_eq!(secrets(&format!("my api secret is {token}")), [token]);
        assert!(secrets(&format!("the build id is {token}")).is_empty());
        assert!(secrets("the key is getUserAccountSettingsV2").is_empty());
        assert!(secrets("key 123e4567-e89b-12d3-a456-426614174000").is_empty());
    }

    #[test]
    fn a_hex_digest_is_a_secret_only_after_a_strong_keyword() {
        let hex = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        assert_eq!(secrets(&format!("secret: {hex}")), [hex]);
        assert!(secrets(&format!("cache key {hex}")).is_empty());
        assert!(secrets(&format!("sha256 {hex}")).is_empty());
    }

    #[test]
    fn bearer_tokens_and_assigned_passwords_are_found() {
        assert_eq!(
            secrets("Authorization: Bearer abcdefghijklmnopqrstuvwx"),
            ["abcdefghijklmnopqrstuvwx"]
        );
        assert_eq!(
            secrets("header bearer abcdefgh1jklmnopqrstuvwx"),
            ["abcdefgh1jklmnopqrstuvwx"]
        );
        assert_eq!(secrets("password=Hunter2!x"), ["Hunter2!x"]);
        assert_eq!(secrets(r#"{"password": "s3cr3t-Pa55"}"#), ["s3cr3t-Pa55"]);
        for text in [
            "password: required",
            "password=${DB_PASSWORD}",
            "password: ********",
            "pwd=getpass()",
        ] {
            assert!(secrets(text).is_empty(), "{text}");
        }
    }
}
