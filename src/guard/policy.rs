//! What to do about a request's findings. Each category may have a
//! [`Mode`]; a request's findings are counted first ([`super::scan_body`])
//! and one [`Decision`] comes back, the strictest that applies:
//! `block` before `route` before `mask`; `log` only counts. A routed request
//! goes unmasked to the private model: that model is trusted with the data.

use super::{Category, CategorySet, FindingCounts};

/// What a category's findings make the gateway do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Replace with placeholders before sending, restore in the answer.
    Mask,
    /// Refuse the request (400) naming the categories, never the values.
    Block,
    /// Send the request to a private model instead.
    Route,
    /// Only record categories and counts in the audit line.
    Log,
}

impl Mode {
    pub fn from_name(name: &str) -> Option<Mode> {
        match name {
            "mask" => Some(Mode::Mask),
            "block" => Some(Mode::Block),
            "route" => Some(Mode::Route),
            "log" => Some(Mode::Log),
            _ => None,
        }
    }
}

/// A mode per category; categories without one are not looked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    modes: [Option<Mode>; Category::ALL.len()],
}

/// The one outcome for a request, with the categories that caused it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Forward as is (nothing found, or only `log` categories).
    Forward,
    Mask(CategorySet),
    Route(CategorySet),
    Block(CategorySet),
}

impl Policy {
    pub fn set(&mut self, category: Category, mode: Mode) {
        self.modes[category as usize] = Some(mode);
    }

    pub fn mode(&self, category: Category) -> Option<Mode> {
        self.modes[category as usize]
    }

    /// The categories to scan for.
    pub fn watched(&self) -> CategorySet {
        Category::ALL
            .into_iter()
            .filter(|category| self.mode(*category).is_some())
            .collect()
    }

    fn found_with(&self, counts: &FindingCounts, mode: Mode) -> CategorySet {
        counts
            .categories()
            .iter()
            .filter(|category| self.mode(*category) == Some(mode))
            .collect()
    }

    pub fn decide(&self, counts: &FindingCounts) -> Decision {
        let block = self.found_with(counts, Mode::Block);
        let route = self.found_with(counts, Mode::Route);
        let mask = self.found_with(counts, Mode::Mask);
        if !block.is_empty() {
            Decision::Block(block)
        } else if !route.is_empty() {
            Decision::Route(route)
        } else if !mask.is_empty() {
            Decision::Mask(mask)
        } else {
            Decision::Forward
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::scan_body;

    fn policy(modes: &[(Category, Mode)]) -> Policy {
        let mut policy = Policy::default();
        for &(category, mode) in modes {
            policy.set(category, mode);
        }
        policy
    }

    fn decide(policy: &Policy, text: &str) -> Decision {
        let body = serde_json::json!({"messages":[{"role":"user","content":text}]}).to_string();
        policy.decide(&scan_body(body.as_bytes(), policy.watched()))
    }

    #[test]
    fn the_strictest_mode_among_found_categories_wins() {
        let policy = policy(&[
            (Category::Email, Mode::Mask),
            (Category::Card, Mode::Block),
            (Category::Secret, Mode::Route),
            (Category::Phone, Mode::Log),
        ]);
        let card: CategorySet = [Category::Card].into_iter().collect();
        let email: CategorySet = [Category::Email].into_iter().collect();
        assert_eq!(decide(&policy, "a@x.io 4111 1111 1111 1111"), Decision::Block(card));
        assert_eq!(
            decide(&policy, "a@x.io, key sk-abcdefghijklmnopqrstuvwxyz"),
            Decision::Route([Category::Secret].into_iter().collect())
        );
        assert_eq!(decide(&policy, "a@x.io, call +1 415 555 0132"), Decision::Mask(email));
        assert_eq!(decide(&policy, "call +1 415 555 0132"), Decision::Forward);
        assert_eq!(decide(&policy, "hello"), Decision::Forward);
    }

    #[test]
    fn categories_without_a_mode_are_not_looked_for() {
        let policy = policy(&[(Category::Email, Mode::Mask)]);
        assert_eq!(policy.watched(), [Category::Email].into_iter().collect());
        assert_eq!(decide(&policy, "4111 1111 1111 1111"), Decision::Forward);
        assert_eq!(Mode::from_name("route"), Some(Mode::Route));
        assert_eq!(Mode::from_name("drop"), None);
    }
}
