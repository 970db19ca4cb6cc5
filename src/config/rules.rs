//! The `rules` section: conditions on the request (regexes on the last user
//! message, system prompt and headers, the guessed language) that send it
//! straight to a tier or a model, before any scoring.

use std::collections::{BTreeMap, HashMap};

use regex::{Regex, RegexBuilder};
use serde::Deserialize;

use super::{check_header_name, check_name, ModelId, TierId};
use crate::classify::Language;
use crate::error::ConfigError;

/// Compiled regexes are capped so a pathological rule cannot eat the VM's memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub name: String,
    pub when: RawCondition,
    pub then: RawAction,
}

/// Every condition given must hold.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCondition {
    /// Regex searched in the last user message.
    #[serde(default)]
    pub last_user: Option<String>,
    /// Regex searched in the system (and developer) messages.
    #[serde(default)]
    pub system: Option<String>,
    /// Header name → regex its value must match.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Guessed language of the last user message: codes (`"de"`, `["de","fr"]`)
    /// or `"non_en"` (recognised and not English).
    #[serde(default)]
    pub language: Option<OneOrMany>,
}

/// A string or a list of strings.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn items(&self) -> &[String] {
        match self {
            OneOrMany::One(item) => std::slice::from_ref(item),
            OneOrMany::Many(items) => items,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAction {
    #[serde(default)]
    pub tier: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
}

#[derive(Debug)]
pub struct Rule {
    pub name: String,
    pub last_user: Option<Regex>,
    pub system: Option<Regex>,
    /// Lowercase header name and the regex its value must match.
    pub headers: Vec<(String, Regex)>,
    /// Languages the last user message must be guessed as, if any.
    pub languages: Option<LanguageSet>,
    pub action: RuleAction,
}

/// The languages a rule's `when.language` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LanguageSet(u32);

impl LanguageSet {
    /// `non_en` in a rule: any recognised language but English.
    pub const NON_ENGLISH: &'static str = "non_en";

    pub fn contains(self, language: Language) -> bool {
        self.0 & (1 << language.index()) != 0
    }

    fn insert(&mut self, language: Language) {
        self.0 |= 1 << language.index();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleAction {
    Tier(TierId),
    Model(ModelId),
}

/// The rules in order (the first that matches decides), names unique.
pub(super) fn resolve(
    raw: &[RawRule],
    model_by_name: &HashMap<String, ModelId, ahash::RandomState>,
    tier_by_name: &HashMap<String, TierId, ahash::RandomState>,
) -> Result<Vec<Rule>, ConfigError> {
    let mut rules = Vec::with_capacity(raw.len());
    for (position, rule) in raw.iter().enumerate() {
        if raw[..position].iter().any(|earlier| earlier.name == rule.name) {
            return Err(ConfigError::new(
                format!("rules[{position}].name"),
                format!("duplicate rule name `{}`", rule.name),
            ));
        }
        rules.push(resolve_rule(position, rule, model_by_name, tier_by_name)?);
    }
    Ok(rules)
}

fn resolve_rule(
    position: usize,
    raw: &RawRule,
    model_by_name: &HashMap<String, ModelId, ahash::RandomState>,
    tier_by_name: &HashMap<String, TierId, ahash::RandomState>,
) -> Result<Rule, ConfigError> {
    let path = format!("rules[{position}]");
    check_name(format!("{path}.name"), &raw.name)?;
    let condition = &raw.when;
    if condition.last_user.is_none()
        && condition.system.is_none()
        && condition.headers.is_empty()
        && condition.language.is_none()
    {
        return Err(ConfigError::new(
            format!("{path}.when"),
            "give at least one of last_user, system, headers, language",
        ));
    }
    let languages = condition
        .language
        .as_ref()
        .map(|codes| resolve_languages(&format!("{path}.when.language"), codes.items()))
        .transpose()?;
    let last_user = condition
        .last_user
        .as_deref()
        .map(|p| compile_regex(format!("{path}.when.last_user"), p))
        .transpose()?;
    let system = condition
        .system
        .as_deref()
        .map(|p| compile_regex(format!("{path}.when.system"), p))
        .transpose()?;
    let mut headers = Vec::with_capacity(condition.headers.len());
    for (name, pattern) in &condition.headers {
        let header_path = format!("{path}.when.headers.{name}");
        check_header_name(&header_path, name)?;
        headers.push((name.clone(), compile_regex(header_path, pattern)?));
    }
    Ok(Rule {
        name: raw.name.clone(),
        last_user,
        system,
        headers,
        languages,
        action: resolve_action(&path, &raw.then, model_by_name, tier_by_name)?,
    })
}

fn compile_regex(path: String, pattern: &str) -> Result<Regex, ConfigError> {
    RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|err| ConfigError::new(path, format!("invalid regex: {err}")))
}

/// `then`: the tier or the model a matching request goes to.
fn resolve_action(
    path: &str,
    raw: &RawAction,
    model_by_name: &HashMap<String, ModelId, ahash::RandomState>,
    tier_by_name: &HashMap<String, TierId, ahash::RandomState>,
) -> Result<RuleAction, ConfigError> {
    match raw {
        RawAction {
            tier: Some(tier),
            model: None,
        } => Ok(RuleAction::Tier(*tier_by_name.get(tier).ok_or_else(|| {
            ConfigError::new(format!("{path}.then.tier"), format!("unknown tier `{tier}`"))
        })?)),
        RawAction {
            tier: None,
            model: Some(model),
        } => Ok(RuleAction::Model(*model_by_name.get(model).ok_or_else(|| {
            ConfigError::new(format!("{path}.then.model"), format!("unknown model `{model}`"))
        })?)),
        _ => Err(ConfigError::new(
            format!("{path}.then"),
            "give exactly one of `tier` or `model`",
        )),
    }
}

/// Language codes (or `non_en`) → the set a rule accepts.
fn resolve_languages(path: &str, codes: &[String]) -> Result<LanguageSet, ConfigError> {
    if codes.is_empty() {
        return Err(ConfigError::new(path, "give at least one language code"));
    }
    let mut set = LanguageSet::default();
    for (position, code) in codes.iter().enumerate() {
        if code == LanguageSet::NON_ENGLISH {
            Language::ALL
                .into_iter()
                .filter(|language| language.is_other_than_english())
                .for_each(|language| set.insert(language));
            continue;
        }
        let language = Language::from_code(code).ok_or_else(|| {
            let known: Vec<&str> = Language::ALL.iter().map(|language| language.code()).collect();
            ConfigError::new(
                format!("{path}[{position}]"),
                format!(
                    "unknown language `{code}`; known: {}, or `{}`",
                    known.join(", "),
                    LanguageSet::NON_ENGLISH
                ),
            )
        })?;
        set.insert(language);
    }
    Ok(set)
}
