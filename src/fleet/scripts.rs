//! The ledger's Lua scripts as Redis receives them, and their SHA-1 names.
//!
//! A ledger script is `fleet/prelude.lua` followed by `fleet/<name>.lua`,
//! byte for byte, built into the module at compile time; the rollout script
//! (`fleet/rollout.lua`) stands alone. The SHA-1 is computed once
//! at load from that same text, so EVALSHA and the EVAL fallback always name
//! the same script.

use sha1::{Digest, Sha1};

/// One of the ledger's scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Script {
    Admit,
    Settle,
    Spend,
    /// A canary rollout's shared record (compare-and-set).
    Rollout,
    /// Answers remembered for rating, and ratings counted once.
    Feedback,
}

impl Script {
    pub const ALL: [Script; 5] = [
        Script::Admit,
        Script::Settle,
        Script::Spend,
        Script::Rollout,
        Script::Feedback,
    ];

    /// The whole text sent with EVAL.
    pub fn text(self) -> &'static str {
        match self {
            Script::Admit => concat!(
                include_str!("../../fleet/prelude.lua"),
                include_str!("../../fleet/admit.lua")
            ),
            Script::Settle => concat!(
                include_str!("../../fleet/prelude.lua"),
                include_str!("../../fleet/settle.lua")
            ),
            Script::Spend => concat!(
                include_str!("../../fleet/prelude.lua"),
                include_str!("../../fleet/spend.lua")
            ),
            Script::Rollout => include_str!("../../fleet/rollout.lua"),
            Script::Feedback => include_str!("../../fleet/feedback.lua"),
        }
    }
}

/// The SHA-1 (lower-case hex) of each script, as EVALSHA wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptNames {
    names: [String; 5],
}

impl ScriptNames {
    /// Hashes the scripts (about 30 KiB): do it once, at configure time.
    pub fn compute() -> ScriptNames {
        ScriptNames {
            names: Script::ALL.map(|script| hex(&Sha1::digest(script.text().as_bytes()))),
        }
    }

    pub fn sha1(&self, script: Script) -> &str {
        &self.names[script as usize]
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The bytes of lower- or upper-case hex; `None` for anything else.
pub(crate) fn unhex(text: &str) -> Option<Vec<u8>> {
    let digits = text.as_bytes();
    if digits.is_empty() || !digits.len().is_multiple_of(2) {
        return None;
    }
    let value = |digit: u8| {
        char::from(digit)
            .to_digit(16)
            .and_then(|value| u8::try_from(value).ok())
    };
    digits
        .chunks(2)
        .map(|pair| match pair {
            [high, low] => Some(value(*high)? << 4 | value(*low)?),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_script_starts_with_the_prelude_and_has_its_own_name() {
        let names = ScriptNames::compute();
        for script in [Script::Admit, Script::Settle, Script::Spend] {
            assert!(script.text().starts_with("-- Signalbox fleet ledger: helpers shared"));
        }
        for script in Script::ALL {
            assert_eq!(names.sha1(script).len(), 40);
        }
        assert_ne!(names.sha1(Script::Admit), names.sha1(Script::Settle));
        assert_ne!(names.sha1(Script::Settle), names.sha1(Script::Spend));
        assert_ne!(names.sha1(Script::Spend), names.sha1(Script::Rollout));
        assert_ne!(names.sha1(Script::Rollout), names.sha1(Script::Feedback));
    }

    #[test]
    fn the_name_is_the_sha1_redis_computes() {
        // `redis-cli SCRIPT LOAD "return 1"` answers this digest.
        assert_eq!(
            hex(&Sha1::digest(b"return 1")),
            "e0e1f9fabfc9d4800c877a703b823ac0578ff8db"
        );
    }
}
