//! Operator rules: regexes on the last user message or the system prompt,
//! header matches and the guessed language of the last user message, that
//! force a tier or a model. The first rule whose conditions all hold wins.

use crate::classify::Language;
use crate::config::{Config, Rule};
use crate::headers::HeaderMap;
use crate::request::{ChatRequest, PromptView};

/// Index of the first rule that matches, if any.
pub fn first_match(
    config: &Config,
    request: &ChatRequest<'_>,
    view: &PromptView<'_>,
    language: Language,
    headers: &HeaderMap,
) -> Option<usize> {
    config
        .rules
        .iter()
        .position(|rule| matches(rule, request, view, language, headers))
}

fn matches(
    rule: &Rule,
    request: &ChatRequest<'_>,
    view: &PromptView<'_>,
    language: Language,
    headers: &HeaderMap,
) -> bool {
    let language_ok = rule.languages.is_none_or(|languages| languages.contains(language));
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
    language_ok && last_user_ok && system_ok && headers_ok
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
        rule_in(&sample_config(), body, headers)
    }

    fn rule_in(config: &Config, body: &str, headers: &HeaderMap) -> Option<String> {
        let request = parse_chat(body.as_bytes()).unwrap();
        let view = request.prompt_view();
        let language = config.classifier.classify(&view).language;
        first_match(config, &request, &view, language, headers).map(|index| config.rules[index].name.clone())
    }

    fn with_language_rules() -> Config {
        let mut document: serde_json::Value = serde_json::from_str(crate::testing::SAMPLE_CONFIG).unwrap();
        document["rules"] = serde_json::json!([
            {"name": "german-or-french", "when": {"language": ["de", "fr"]}, "then": {"model": "medium"}},
            {"name": "other-languages", "when": {"language": "non_en"}, "then": {"tier": "complex"}}
        ]);
        Config::parse(document.to_string().as_bytes(), &crate::testing::env).unwrap()
    }

    fn chat(text: &str) -> String {
        serde_json::json!({"model": "auto", "messages": [{"role": "user", "content": text}]}).to_string()
    }

    #[test]
    fn a_language_rule_matches_the_guessed_language_of_the_last_user_message() {
        let config = with_language_rules();
        let none = HeaderMap::default();
        let german = chat("Kannst du mir bitte erklären, wie die Steuer in Deutschland funktioniert?");
        assert_eq!(rule_in(&config, &german, &none).as_deref(), Some("german-or-french"));
        let japanese = chat("このコードのバグを直してください");
        assert_eq!(rule_in(&config, &japanese, &none).as_deref(), Some("other-languages"));
        let english = chat("Can you explain how the tax system works in Germany?");
        assert_eq!(rule_in(&config, &english, &none), None);
        // Too little text to tell is not "another language".
        assert_eq!(rule_in(&config, &chat("x = 42"), &none), None);
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
