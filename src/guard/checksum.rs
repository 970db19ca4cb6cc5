//! Check-digit algorithms the validators use. Each takes the characters of
//! a candidate with separators already removed and says whether its check
//! character is right; none allocates.

/// Luhn (ISO/IEC 7812): payment cards. `digits` are 0–9 values.
pub fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(position, &digit)| {
            let digit = u32::from(digit);
            if position % 2 == 1 {
                let doubled = digit * 2;
                if doubled > 9 {
                    doubled - 9
                } else {
                    doubled
                }
            } else {
                digit
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// ISO 7064 mod 97-10 over an IBAN (upper-case letters and digits, no
/// spaces): the first four characters move to the end, letters count as
/// 10–35, and the whole number must leave 1 modulo 97.
pub fn iban_mod97(iban: &[u8]) -> bool {
    if iban.len() < 5 {
        return false;
    }
    let (head, tail) = iban.split_at(4);
    let mut remainder: u32 = 0;
    for &byte in tail.iter().chain(head) {
        remainder = match byte {
            b'0'..=b'9' => (remainder * 10 + u32::from(byte - b'0')) % 97,
            b'A'..=b'Z' => (remainder * 100 + u32::from(byte - b'A') + 10) % 97,
            _ => return false,
        };
    }
    remainder == 1
}

/// Verhoeff's dihedral-group check (Aadhaar). `digits` are 0–9 values.
pub fn verhoeff(digits: &[u8]) -> bool {
    const MULTIPLY: [[u8; 10]; 10] = [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
        [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
        [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
        [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
        [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
        [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
        [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
        [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
        [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
    ];
    const PERMUTE: [[u8; 10]; 8] = [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
        [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
        [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
        [9, 4, 5, 3, 1, 2, 8, 7, 6, 0],
        [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
        [2, 7, 9, 3, 8, 0, 6, 4, 1, 5],
        [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
    ];
    let mut check = 0u8;
    for (position, &digit) in digits.iter().rev().enumerate() {
        let permuted = PERMUTE[position % 8][usize::from(digit % 10)];
        check = MULTIPLY[usize::from(check)][usize::from(permuted)];
    }
    check == 0
}

/// The GSTIN check character: Luhn mod 36 over `0-9A-Z`, the 15th
/// character checking the first fourteen.
pub fn gstin_check(gstin: &[u8]) -> bool {
    const BASE: u32 = 36;
    let value = |byte: u8| match byte {
        b'0'..=b'9' => Some(u32::from(byte - b'0')),
        b'A'..=b'Z' => Some(u32::from(byte - b'A') + 10),
        _ => None,
    };
    let Some((&check, body)) = gstin.split_last() else {
        return false;
    };
    let mut sum = 0;
    for (position, &byte) in body.iter().enumerate() {
        let Some(value) = value(byte) else {
            return false;
        };
        let product = value * if position % 2 == 1 { 2 } else { 1 };
        sum += product / BASE + product % BASE;
    }
    let expected = (BASE - sum % BASE) % BASE;
    value(check) == Some(expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digits(text: &str) -> Vec<u8> {
        text.bytes()
            .filter(u8::is_ascii_digit)
            .map(|byte| byte - b'0')
            .collect()
    }

    #[test]
    fn luhn_accepts_real_card_numbers_only() {
        assert!(luhn(&digits("4111-1111-1111-1111")));
        assert!(luhn(&digits("5500 0000 0000 0004")));
        assert!(!luhn(&digits("4111 1111 1111 1112")));
    }

    #[test]
    fn an_iban_passes_mod_97_and_a_changed_digit_fails() {
        assert!(iban_mod97(b"DE89370400440532013000"));
        assert!(iban_mod97(b"GB82WEST12345698765432"));
        assert!(!iban_mod97(b"DE89370400440532013001"));
        assert!(!iban_mod97(b"DE8"));
    }

    #[test]
    fn verhoeff_catches_a_single_changed_digit() {
        assert!(verhoeff(&digits("2363")));
        assert!(!verhoeff(&digits("2364")));
        assert!(verhoeff(&digits("234123412346")));
        assert!(!verhoeff(&digits("234123412347")));
    }

    #[test]
    fn a_gstin_check_character_is_verified() {
        assert!(gstin_check(b"27AAPFU0939F1ZV"));
        assert!(!gstin_check(b"27AAPFU0939F1ZW"));
        assert!(!gstin_check(b""));
    }
}
