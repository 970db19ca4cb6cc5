//! The `guardrails` section: what happens to personal data, secrets and
//! prompt-injection attempts in a request before it leaves the gateway. The
//! top-level section is every request's default; a tenant's own
//! `guardrails` replaces it whole for that tenant's requests (an empty one
//! turns the checks off for it).

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

use super::ModelId;
use crate::error::ConfigError;
use crate::guard::{Category, Mode, Policy};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGuardrails {
    /// Category name (`card`, `email`, …, or `all`) to mode (`mask`,
    /// `block`, `route`, `log`). A named category overrides `all`.
    #[serde(default)]
    pub pii: BTreeMap<String, String>,
    /// The model that takes requests whose findings say `route` (a model
    /// the data may reach, such as one served on premises).
    #[serde(default)]
    pub private_model: Option<String>,
    #[serde(default)]
    pub injection: Option<RawInjection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInjection {
    /// `flag` (header, metric, access log) or `block` (400).
    pub mode: String,
    /// Score from which a request is flagged or blocked (default 0.5).
    #[serde(default)]
    pub threshold: Option<f64>,
}

/// What a flagged prompt-injection attempt makes the gateway do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InjectionMode {
    Flag,
    Block,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InjectionPolicy {
    pub mode: InjectionMode,
    pub threshold: f64,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Guardrails {
    pub pii: Policy,
    /// Where `route` findings send a request (set exactly when a category
    /// has mode `route`).
    pub private_model: Option<ModelId>,
    pub injection: Option<InjectionPolicy>,
}

impl Guardrails {
    /// Whether any check runs.
    pub fn is_active(&self) -> bool {
        !self.pii.watched().is_empty() || self.injection.is_some()
    }
}

pub fn resolve(
    path: &str,
    raw: &RawGuardrails,
    model_by_name: &HashMap<String, ModelId, ahash::RandomState>,
) -> Result<Guardrails, ConfigError> {
    let mut pii = Policy::default();
    let mode_of = |category: &str, name: &str| {
        Mode::from_name(name).ok_or_else(|| {
            ConfigError::new(
                format!("{path}.pii.{category}"),
                format!("unknown mode `{name}` (use mask, block, route or log)"),
            )
        })
    };
    if let Some(name) = raw.pii.get("all") {
        let mode = mode_of("all", name)?;
        Category::ALL.into_iter().for_each(|category| pii.set(category, mode));
    }
    for (category_name, mode_name) in raw.pii.iter().filter(|(name, _)| *name != "all") {
        let category = Category::from_name(category_name).ok_or_else(|| {
            let known: Vec<&str> = Category::ALL.iter().map(|category| category.name()).collect();
            ConfigError::new(
                format!("{path}.pii.{category_name}"),
                format!("unknown category (use all, {})", known.join(", ")),
            )
        })?;
        pii.set(category, mode_of(category_name, mode_name)?);
    }
    let routes = Category::ALL
        .into_iter()
        .any(|category| pii.mode(category) == Some(Mode::Route));
    let private_model = match (&raw.private_model, routes) {
        (Some(name), true) => Some(
            *model_by_name
                .get(name)
                .ok_or_else(|| ConfigError::new(format!("{path}.private_model"), format!("unknown model `{name}`")))?,
        ),
        (None, false) => None,
        (None, true) => {
            return Err(ConfigError::new(
                format!("{path}.private_model"),
                "is required when a category's mode is `route`",
            ))
        }
        (Some(_), false) => {
            return Err(ConfigError::new(
                format!("{path}.private_model"),
                "is set but no category's mode is `route`",
            ))
        }
    };
    let injection = raw
        .injection
        .as_ref()
        .map(|raw| resolve_injection(path, raw))
        .transpose()?;
    Ok(Guardrails {
        pii,
        private_model,
        injection,
    })
}

fn resolve_injection(path: &str, raw: &RawInjection) -> Result<InjectionPolicy, ConfigError> {
    let mode = match raw.mode.as_str() {
        "flag" => InjectionMode::Flag,
        "block" => InjectionMode::Block,
        other => {
            return Err(ConfigError::new(
                format!("{path}.injection.mode"),
                format!("unknown mode `{other}` (use flag or block)"),
            ))
        }
    };
    let threshold = raw.threshold.unwrap_or(crate::guard::injection::FLAG_THRESHOLD);
    if !(threshold > 0.0 && threshold <= 1.0) {
        return Err(ConfigError::new(
            format!("{path}.injection.threshold"),
            "must be above 0 and at most 1",
        ));
    }
    Ok(InjectionPolicy { mode, threshold })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn models() -> HashMap<String, ModelId, ahash::RandomState> {
        let mut models = HashMap::default();
        models.insert("local".to_string(), 3);
        models
    }

    fn parse(json: &str) -> Result<Guardrails, ConfigError> {
        let raw: RawGuardrails = serde_json::from_str(json).expect("raw guardrails");
        resolve("guardrails", &raw, &models())
    }

    #[test]
    fn a_named_category_overrides_all() {
        let guardrails = parse(r#"{"pii":{"all":"mask","card":"block"}}"#).unwrap();
        assert_eq!(guardrails.pii.mode(Category::Card), Some(Mode::Block));
        assert_eq!(guardrails.pii.mode(Category::Email), Some(Mode::Mask));
        assert!(guardrails.is_active());
        assert!(!parse("{}").unwrap().is_active());
    }

    #[test]
    fn route_needs_a_known_private_model_and_a_private_model_needs_route() {
        let routed = parse(r#"{"pii":{"ssn":"route"},"private_model":"local"}"#).unwrap();
        assert_eq!(routed.private_model, Some(3));
        let error = parse(r#"{"pii":{"ssn":"route"}}"#).unwrap_err();
        assert_eq!(error.path, "guardrails.private_model");
        let error = parse(r#"{"pii":{"ssn":"route"},"private_model":"nope"}"#).unwrap_err();
        assert!(error.message.contains("unknown model `nope`"), "{error:?}");
        let error = parse(r#"{"pii":{"ssn":"mask"},"private_model":"local"}"#).unwrap_err();
        assert!(error.message.contains("no category"), "{error:?}");
    }

    #[test]
    fn unknown_categories_modes_and_thresholds_are_named() {
        let error = parse(r#"{"pii":{"cards":"mask"}}"#).unwrap_err();
        assert_eq!(error.path, "guardrails.pii.cards");
        assert!(error.message.contains("card, iban"), "{error:?}");
        let error = parse(r#"{"pii":{"card":"hide"}}"#).unwrap_err();
        assert_eq!(error.path, "guardrails.pii.card");
        let error = parse(r#"{"injection":{"mode":"warn"}}"#).unwrap_err();
        assert_eq!(error.path, "guardrails.injection.mode");
        let error = parse(r#"{"injection":{"mode":"flag","threshold":0}}"#).unwrap_err();
        assert_eq!(error.path, "guardrails.injection.threshold");
        let flagged = parse(r#"{"injection":{"mode":"block","threshold":0.7}}"#).unwrap();
        assert_eq!(
            flagged.injection,
            Some(InjectionPolicy {
                mode: InjectionMode::Block,
                threshold: 0.7
            })
        );
    }
}
