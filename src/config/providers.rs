//! The `providers` section: how each provider is reached (cluster, wire
//! format, vendor quirks) and the keys it is called with, written into the
//! config or read from the environment.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::check_name;
use crate::error::ConfigError;
use crate::providers::{Credential, ProviderKind, ProviderSpec, Quirks};
use crate::secret::Secret;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    /// The provider's wire format (default `openai`: any OpenAI-compatible API).
    #[serde(default)]
    pub kind: ProviderKind,
    /// Envoy cluster that reaches this provider.
    pub cluster: String,
    /// Path prefix of the API (`/v1` for OpenAI, `/openai/v1` for Groq);
    /// defaults to the kind's.
    #[serde(default)]
    pub base_path: Option<String>,
    /// Value for `:authority`, when the cluster does not rewrite the host.
    #[serde(default)]
    pub host: Option<String>,
    /// OpenAI-compatible vendor whose quirks to apply (`mistral`, `groq`, ...).
    #[serde(default)]
    pub vendor: Option<String>,
    /// Azure OpenAI `api-version`.
    #[serde(default)]
    pub api_version: Option<String>,
    /// Anthropic `anthropic-version` header.
    #[serde(default)]
    pub anthropic_version: Option<String>,
    /// AWS region (Bedrock).
    #[serde(default)]
    pub region: Option<String>,
    /// AWS access keys for Signature V4 (Bedrock), literal or from the environment.
    #[serde(default)]
    pub aws_access_key_id: Option<String>,
    #[serde(default)]
    pub aws_access_key_id_env: Option<String>,
    #[serde(default)]
    pub aws_secret_access_key: Option<String>,
    #[serde(default)]
    pub aws_secret_access_key_env: Option<String>,
    #[serde(default)]
    pub aws_session_token: Option<String>,
    #[serde(default)]
    pub aws_session_token_env: Option<String>,
    /// API key written into the config.
    #[serde(default)]
    pub api_key: Option<String>,
    /// Name of an environment variable holding the API key (exposed to the
    /// Wasm VM with `vm_config.environment_variables.host_env_keys`).
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Several keys, balanced by weight, each with its own health and
    /// cooldown (instead of `api_key` / `api_key_env`).
    #[serde(default)]
    pub api_keys: Vec<RawKey>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    /// Label for logs, headers and metrics (never the key itself).
    pub name: String,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub env: Option<String>,
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

#[derive(Debug)]
pub struct Provider {
    pub name: String,
    pub cluster: String,
    /// Wire format, paths, versions, region, host.
    pub spec: ProviderSpec,
    /// At least one; a keyless provider (self-hosted) has one without a credential.
    pub keys: Vec<ProviderKey>,
}

#[derive(Debug)]
pub struct ProviderKey {
    pub name: String,
    pub credential: Option<Credential>,
    /// Relative share of traffic; 0 keeps the key configured but unused.
    pub weight: u32,
}

/// Every provider, in name order (a model's `provider` is an index into it).
pub(super) fn resolve(
    raw: &BTreeMap<String, RawProvider>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Provider>, ConfigError> {
    if raw.is_empty() {
        return Err(ConfigError::new("providers", "at least one provider is required"));
    }
    raw.iter()
        .map(|(name, provider)| resolve_provider(name, provider, env))
        .collect()
}

fn resolve_provider(
    name: &str,
    raw: &RawProvider,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Provider, ConfigError> {
    let path = format!("providers.{name}");
    check_name(path.clone(), name)?;
    check_name(format!("{path}.cluster"), &raw.cluster)?;
    if let Some(host) = &raw.host {
        check_name(format!("{path}.host"), host)?;
    }
    let quirks = match &raw.vendor {
        None => Quirks::STANDARD,
        Some(vendor) => Quirks::for_vendor(vendor)
            .ok_or_else(|| ConfigError::new(format!("{path}.vendor"), format!("unknown vendor `{vendor}`")))?,
    };
    let mut spec = ProviderSpec::new(raw.kind);
    spec.base_path = raw
        .base_path
        .as_deref()
        .map_or(spec.base_path, |base| base.trim_end_matches('/').to_string());
    spec.host = raw.host.clone();
    spec.api_version = raw.api_version.clone();
    spec.region = raw.region.clone();
    spec.quirks = quirks;
    if let Some(version) = &raw.anthropic_version {
        spec.anthropic_version = version.clone();
    }
    spec.validate()
        .map_err(|(field, message)| ConfigError::new(format!("{path}.{field}"), message))?;
    let keys = resolve_keys(&path, raw, env)?;
    Ok(Provider {
        name: name.to_string(),
        cluster: raw.cluster.clone(),
        spec,
        keys,
    })
}

/// Reads a secret from the config or the environment (exactly one of them).
fn secret_from(
    path: &str,
    literal: (&str, &Option<String>),
    variable: (&str, &Option<String>),
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Secret>, ConfigError> {
    let value = match (literal.1, variable.1) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(format!("{path}.{}", variable.0), format!("set either `{}` or `{}`, not both", literal.0, variable.0)));
        }
        (Some(value), None) => value.clone(),
        (None, Some(name)) => env(name).filter(|value| !value.is_empty()).ok_or_else(|| {
            ConfigError::new(
                format!("{path}.{}", variable.0),
                format!("environment variable `{name}` is not set or not exposed to the Wasm VM (vm_config.environment_variables.host_env_keys)"),
            )
        })?,
        (None, None) => return Ok(None),
    };
    if value.is_empty() || value.bytes().any(|b| !b.is_ascii_graphic()) {
        return Err(ConfigError::new(
            format!("{path}.{}", literal.0),
            "must be a non-empty string of visible ASCII characters",
        ));
    }
    Ok(Some(Secret::new(value)))
}

/// The provider's keys: AWS keys (Bedrock), one API key, several weighted
/// ones, or none (a self-hosted provider).
fn resolve_keys(
    path: &str,
    raw: &RawProvider,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<ProviderKey>, ConfigError> {
    let single = secret_from(path, ("api_key", &raw.api_key), ("api_key_env", &raw.api_key_env), env)?;
    if let Some(aws) = aws_key(path, raw, env, single.is_some())? {
        return Ok(vec![aws]);
    }
    if raw.api_keys.is_empty() {
        let name = if single.is_some() { "default" } else { "none" };
        let credential = single.map(|key| Credential::api_key(raw.kind, key));
        return Ok(vec![ProviderKey {
            name: name.to_string(),
            credential,
            weight: 1,
        }]);
    }
    if single.is_some() {
        return Err(ConfigError::new(
            format!("{path}.api_keys"),
            "use either `api_keys` or `api_key`/`api_key_env`, not both",
        ));
    }
    weighted_keys(path, raw, env)
}

/// The Signature V4 key of a Bedrock provider given AWS keys; None when it
/// has none.
fn aws_key(
    path: &str,
    raw: &RawProvider,
    env: &dyn Fn(&str) -> Option<String>,
    has_api_key: bool,
) -> Result<Option<ProviderKey>, ConfigError> {
    let key_id = secret_from(
        path,
        ("aws_access_key_id", &raw.aws_access_key_id),
        ("aws_access_key_id_env", &raw.aws_access_key_id_env),
        env,
    )?;
    let secret = secret_from(
        path,
        ("aws_secret_access_key", &raw.aws_secret_access_key),
        ("aws_secret_access_key_env", &raw.aws_secret_access_key_env),
        env,
    )?;
    let session_token = secret_from(
        path,
        ("aws_session_token", &raw.aws_session_token),
        ("aws_session_token_env", &raw.aws_session_token_env),
        env,
    )?;
    if key_id.is_none() && secret.is_none() {
        return Ok(None);
    }
    let (Some(access_key_id), Some(secret_access_key)) = (key_id, secret) else {
        return Err(ConfigError::new(
            format!("{path}.aws_secret_access_key"),
            "give both the AWS access key id and secret",
        ));
    };
    if raw.kind != ProviderKind::Bedrock || has_api_key || !raw.api_keys.is_empty() {
        return Err(ConfigError::new(
            format!("{path}.aws_access_key_id"),
            "AWS keys are for a bedrock provider without api keys",
        ));
    }
    let credential = Credential::AwsSigV4 {
        access_key_id: access_key_id.expose().to_string(),
        secret_access_key,
        session_token,
    };
    Ok(Some(ProviderKey {
        name: "aws".to_string(),
        credential: Some(credential),
        weight: 1,
    }))
}

/// `api_keys`: named keys sharing the traffic by weight.
fn weighted_keys(
    path: &str,
    raw: &RawProvider,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<ProviderKey>, ConfigError> {
    let mut keys: Vec<ProviderKey> = Vec::with_capacity(raw.api_keys.len());
    for (
        position,
        RawKey {
            name,
            key,
            env: variable,
            weight,
        },
    ) in raw.api_keys.iter().enumerate()
    {
        let key_path = format!("{path}.api_keys[{position}]");
        check_name(format!("{key_path}.name"), name)?;
        if keys.iter().any(|known| &known.name == name) {
            return Err(ConfigError::new(
                format!("{key_path}.name"),
                format!("duplicate key name `{name}`"),
            ));
        }
        let secret = secret_from(&key_path, ("key", key), ("env", variable), env)?
            .ok_or_else(|| ConfigError::new(format!("{key_path}.key"), "give `key` or `env`"))?;
        keys.push(ProviderKey {
            name: name.clone(),
            credential: Some(Credential::api_key(raw.kind, secret)),
            weight: *weight,
        });
    }
    if keys.iter().all(|key| key.weight == 0) {
        return Err(ConfigError::new(
            format!("{path}.api_keys"),
            "at least one key needs a weight above 0",
        ));
    }
    Ok(keys)
}
