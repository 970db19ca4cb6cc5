//! The fleet ledger's key names: the one place they are spelled.
//!
//! Every key of a tenant starts with `sb:{<tenant>}:`, so Redis Cluster puts
//! them in one slot (the hash tag) and one script can touch them all. Tenant
//! and user names are visible ASCII from the config; `{`, `}`, `:` and `%`
//! in them are percent-encoded so a name can neither move the hash tag nor
//! run into the next part of the key.

/// Where the tenant's keys start.
const PREFIX: &str = "sb:";

/// `{`, `}`, `:` and `%` as `%7B`, `%7D`, `%3A`, `%25`; everything else as is.
fn escaped(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for character in name.chars() {
        match character {
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            ':' => out.push_str("%3A"),
            '%' => out.push_str("%25"),
            other => out.push(other),
        }
    }
    out
}

/// The keys every script of the ledger takes, in the order of its KEYS:
/// reservations, their due times, the cost ledger, the tenant's window, the
/// user's window (`sb:{T}:user:` when there is no user: never written then),
/// then one per quota, by its index in the tenant's config.
pub fn tenant_keys(tenant: &str, user: Option<&str>, quota_count: usize) -> Vec<String> {
    let base = format!("{PREFIX}{{{}}}:", escaped(tenant));
    let mut keys = Vec::with_capacity(5 + quota_count);
    keys.push(format!("{base}res"));
    keys.push(format!("{base}due"));
    keys.push(format!("{base}ledger"));
    keys.push(format!("{base}rate"));
    keys.push(format!("{base}user:{}", user.map(escaped).unwrap_or_default()));
    keys.extend((0..quota_count).map(|index| format!("{base}quota:{index}")));
    keys
}

/// The record of the canary rollout of `model` in `tier`, fleet-wide (`:`
/// parts them: it is escaped inside names, `/` is not).
pub fn rollout_key(tier: &str, model: &str) -> String {
    format!("{PREFIX}rollout:{{{}:{}}}", escaped(tier), escaped(model))
}

/// An answer `tenant` may rate by `request_id`, fleet-wide (the tenant's
/// hash tag; the id is escaped like a name).
pub fn answer_key(tenant: &str, request_id: &str) -> String {
    format!("{PREFIX}{{{}}}:fb:{}", escaped(tenant), escaped(request_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_a_tenant_shares_its_hash_tag() {
        assert_eq!(
            tenant_keys("research", Some("alice"), 2),
            vec![
                "sb:{research}:res",
                "sb:{research}:due",
                "sb:{research}:ledger",
                "sb:{research}:rate",
                "sb:{research}:user:alice",
                "sb:{research}:quota:0",
                "sb:{research}:quota:1",
            ]
        );
        assert_eq!(tenant_keys("research", None, 0)[4], "sb:{research}:user:");
    }

    #[test]
    fn braces_colons_and_percents_in_names_are_escaped() {
        let keys = tenant_keys("}odd{:%", Some("a:b}"), 0);
        assert_eq!(keys[0], "sb:{%7Dodd%7B%3A%25}:res");
        assert_eq!(keys[4], "sb:{%7Dodd%7B%3A%25}:user:a%3Ab%7D");
        assert_eq!(rollout_key("simple", "fr{e}sh"), "sb:rollout:{simple:fr%7Be%7Dsh}");
        assert_eq!(answer_key("acme", "id:{1}"), "sb:{acme}:fb:id%3A%7B1%7D");
        // Names may hold `/` (model names like `openai/gpt-4o` do).
        assert_ne!(rollout_key("a/b", "c"), rollout_key("a", "b/c"));
    }
}
