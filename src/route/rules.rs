//! Operator rules: regexes on the last user message or the system prompt,
//! and header matches, that force a tier or a model. The first rule whose
//! conditions all hold wins.

use crate::config::{Config, Rule};
use crate::headers::HeaderMap;
use crate::request::{ChatRequest, PromptView};

/// Index of the first rule that matches, if any.
pub fn first_match(
    config: &Config,
    request: &ChatRequest<'_>,
    view: &PromptView<'_>,
    headers: &HeaderMap,
) -> Option<usize> {
    config
        .rules
        .iter()
        .position(|rule| matches(rule, request, view, headers))
}

fn matches(rule: &Rule, request: &ChatRequest<'_>, view: &PromptView<'_>, headers: &HeaderMap) -> bool {
    let last_user_ok = rule
        .last_user
        .as_ref()
        .is_none_or(|regex| view.last_user_parts.iter().any(|part| regex.is_match(part)));
    let system_ok = rule
        .system
        .as_ref()
        .is_none_or(|regex| request.system_parts().any(|part| regex.is_match(part)));
    let headers_ok = rule
        .headers
        .iter()
        .all(|(name, regex)| headers.get(name).is_some_and(|value| regex.is_match(value)));
    last_user_ok && system_ok && headers_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::parse_chat;
    use crate::testing::sample_config;

    fn research_team() -> HeaderMap {
        [("x-team", "research")].into_iter().collect()
    }

    fn rule_for(body: &str, headers: &HeaderMap) -> Option<String> {
        let config = sample_config();
        let request = parse_chat(body.as_bytes()).unwrap();
        let view = request.prompt_view();
        first_match(&config, &request, &view, headers).map(|index| config.rules[index].name.clone())
    }

    #[test]
    fn a_regex_on_the_last_user_message_matches() {
        let body = r#"{"model":"auto","messages":[{"role":"user","content":"Review this Contract please"}]}"#;
        assert_eq!(rule_for(body, &HeaderMap::default()).as_deref(), Some("legal"));
    }

    #[test]
    fn earlier_messages_do_not_trigger_a_last_user_rule() {
        let body = r#"{"model":"auto","messages":[{"role":"user","content":"contract"},{"role":"assistant","content":"ok"},{"role":"user","content":"thanks"}]}"#;
        assert_eq!(rule_for(body, &HeaderMap::default()), None);
    }

    #[test]
    fn header_rules_need_the_header_to_match() {
        let body = r#"{"model":"auto","messages":[{"role":"user","content":"hello"}]}"#;
        assert_eq!(rule_for(body, &research_team()).as_deref(), Some("research-team"));
        assert_eq!(rule_for(body, &HeaderMap::default()), None);
    }

    #[test]
    fn the_first_matching_rule_wins() {
        let body = r#"{"model":"auto","messages":[{"role":"user","content":"a contract"}]}"#;
        assert_eq!(rule_for(body, &research_team()).as_deref(), Some("legal"));
    }
}
